"""grain input pipelines: fixed-shape batches, deterministic, resumable, the same global batch whatever the number
of processes.

Every pipeline is a ``grain.MapDataset`` of host batches built the same way:

    records -> [train: shuffle(seed) -> repeat(num_epochs) -> random_map(sample one epoch's list)]
            -> batch(batch_size / process_count) -> featurize -> [process_index::process_count]

so global step ``t`` is records ``[t * batch_size, (t + 1) * batch_size)`` of one global order, and process ``p``
holds its ``p``-th slice of them: the global batch (the processes' rows in process order) does not depend on the
process count, and the iterator state ``{"next_index": t, "fingerprint"}`` is the same in every process.

* Padding is masked, never dropped: short lists are padded to ``list_size`` (``mask`` False, ``doc_index``
  -1, labels 0); evaluation records are padded to a multiple of ``batch_size`` with empty rows
  (``query_index`` -1), so every process yields the same number of batches.
* Long lists: training samples a list per epoch (text: positives + uniform negatives, LETOR: a uniform
  subset of ``list_size`` documents in their original order); evaluation splits a list into consecutive
  chunks with the same ``query_index`` (nothing is dropped).
* Determinism: shuffling and per-epoch sampling derive from ``seed`` and the element's global index only.

The batch contract (``b`` = this process's rows, ``L`` = list size; what models and views read):

    query_index int32 [b]        row of the ``queries`` split, -1 on padding rows
    doc_index int32 [b, L]       row of the ``corpus`` split, -1 on padding slots
    labels float32 [b, L]        graded relevance, 0 on padding;  mask bool [b, L]: real slots
    cross_encoder / prett_pair   pair_ids, pair_mask, pair_type_ids int32 [b, L, T]  ([CLS] q [SEP] d [SEP])
    bi_encoder / colbert / tk / prett   query_ids, query_mask [b, Tq]; doc_ids, doc_mask [b, L, Td]
    optional (text)              teacher_scores [b, L]; first_stage_scores [b, L]; propensities [b, L];
                                 epoch int32 [b] (training); pseudo_ids, pseudo_mask [b, Tp] (E2Rank)
    letor                        features float32 [b, L, F]
    images                       images float32 [b, F], class_labels int32 [b], mask bool [b]
    preference                   see :func:`ranking_jax.data.preference.preference_pipeline`

Token arrays are padded to the configured lengths; :func:`ranking_jax.data.encoding.trim_padding` cuts them to
a bucket before a step.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Callable, Mapping, Sequence

import grain
import numpy as np

from ranking_jax.data import letor as letor_lib
from ranking_jax.data.lists import Texts, sample_training_list
from ranking_jax.data.tokenize import Ragged, TextTokenizer, TokenTable

__all__ = ["Pipeline", "Batches", "build_pipeline", "process_shard", "text_pipeline", "letor_pipeline",
           "image_pipeline", "letor_records", "stack_lists", "TEXT_FAMILIES"]

PAIR_FAMILIES = ("cross_encoder", "prett_pair")
SPLIT_FAMILIES = ("bi_encoder", "colbert", "tk", "prett")
TEXT_FAMILIES = PAIR_FAMILIES + SPLIT_FAMILIES
PAD = {"pad": True}  # an empty row (grain drops None elements, so padding is an explicit record)


class Batches:
    """Iterator over a :class:`Pipeline` with JSON-serializable, validated ``get_state``/``set_state``."""

    def __init__(self, pipeline: "Pipeline", *, num_threads: int, prefetch: int):
        options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
        self._it = iter(pipeline.dataset.to_iter_dataset(options))
        self._fingerprint = pipeline.fingerprint

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._it)

    def get_state(self) -> dict:
        return {**self._it.get_state(), "fingerprint": self._fingerprint}

    def set_state(self, state: dict) -> None:
        if state.get("fingerprint") != self._fingerprint:
            raise ValueError(f"data iterator state was saved by a different pipeline (fingerprint "
                             f"{state.get('fingerprint')!r}, this pipeline {self._fingerprint!r}): the records, "
                             "batch size, list size, seed, epochs or process sharding changed since the checkpoint. "
                             "Restore with the original data config, or start the data from scratch.")
        self._it.set_state({k: v for k, v in state.items() if k != "fingerprint"})


class Pipeline:
    """A finished pipeline: ``dataset`` (grain.MapDataset of batches), ``len()``, ``[i]``, ``iterator()``."""

    def __init__(self, dataset: grain.MapDataset, fingerprint: str):
        self.dataset, self.fingerprint = dataset, fingerprint

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        return self.dataset[step]

    def iterator(self, *, num_threads: int = 2, prefetch: int = 4) -> Batches:
        return Batches(self, num_threads=num_threads, prefetch=prefetch)


def process_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        import jax
        return jax.process_index(), jax.process_count()
    return shard


def build_pipeline(records: Sequence, *, batch_size: int, train: bool, seed: int, num_epochs: int | None,
           shard: tuple[int, int] | None, batch_fn: Callable[[list], dict], sample: Callable | None = None,
           options: dict | None = None) -> Pipeline:
    index, count = process_shard(shard)
    if batch_size <= 0 or batch_size % count:
        raise ValueError(f"batch_size={batch_size} must be a positive multiple of the number of processes ({count})")
    if not train and num_epochs not in (None, 1):
        raise ValueError("evaluation pipelines run one pass; num_epochs must be None or 1")
    records = list(records)
    if not train or num_epochs is not None:  # whole global batches, so every process has as many
        records += [PAD] * (-len(records) % batch_size)
    shuffle_seed, sample_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    ds = grain.MapDataset.source(records)
    if train:
        n = len(records)
        # "forever" as a finite count: the slice below needs a length that fits an index
        ds = ds.shuffle(seed=shuffle_seed).repeat(num_epochs or (1 << 40) // max(n, 1))
        ds = ds.map_with_index(lambda i, r: r if "pad" in r else dict(r, epoch=i // n))
        if sample is not None:
            ds = ds.random_map(lambda r, rng: r if "pad" in r else sample(r, rng), seed=sample_seed)
    ds = ds.batch(batch_size // count, drop_remainder=False, batch_fn=batch_fn)
    ds = ds[:len(ds) - len(ds) % count][index::count]  # whole global steps only
    spec = {"records": digest(records), "batch_size": batch_size, "train": train, "seed": seed,
            "epochs": num_epochs, **(options or {})}
    return Pipeline(ds, digest([spec]))


def digest(records: Sequence[dict]) -> str:
    """A short content hash of records (dicts of scalars / arrays / strings)."""
    h = hashlib.sha1()
    for r in records:
        for k in sorted(r):
            v = r[k]
            h.update(k.encode())
            h.update(np.asarray(v).tobytes() if isinstance(v, np.ndarray) else json.dumps(v, default=str).encode())
    return h.hexdigest()[:16]


def stack_lists(records: list[dict], *, batch_size: int, list_size: int, teacher: bool = False,
                num_features: int | None = None, extra: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Stacks list records into [B, L] arrays: query_index, doc_index, labels, mask (+ teacher_scores if
    ``teacher``, features [B, L, F] if ``num_features``, each per-item field of ``extra``, and ``epoch`` [B] when
    the records carry it); padding rows and slots are masked."""
    b, size = batch_size, list_size
    out = {"query_index": np.full(b, -1, np.int32), "doc_index": np.full((b, size), -1, np.int32),
           "labels": np.zeros((b, size), np.float32), "mask": np.zeros((b, size), bool)}
    if teacher:
        out["teacher_scores"] = np.zeros((b, size), np.float32)
    for key in extra:
        out[key] = np.zeros((b, size), np.float32)
    if any("epoch" in r for r in records):
        out["epoch"] = np.zeros(b, np.int32)
    if num_features is not None:
        out["features"] = np.zeros((b, size, num_features), np.float32)
    for i, r in enumerate(records):
        if "pad" in r:
            continue
        n = len(r["doc_index"])
        if n > size:
            raise ValueError(f"a list of {n} items reached the batcher with list_size={size}; eval lists must be "
                             "chunked (lists.eval_lists) and training lists sampled")
        out["query_index"][i] = r["query_index"]
        out["doc_index"][i, :n], out["labels"][i, :n], out["mask"][i, :n] = r["doc_index"], r["labels"], True
        for key in ("teacher_scores", "features", *extra):
            if key in out:
                out[key][i, :n] = r[key]
        if "epoch" in out:
            out["epoch"][i] = r["epoch"]
    return out


class _TextFeatures:
    """Adds the token arrays of one text model family to a list batch (the batch contract above)."""

    def __init__(self, *, family: str, tokenizer: TextTokenizer, queries: Texts | TokenTable,
                 corpus: Texts | TokenTable, item_fields: Mapping[str, Callable] | None = None,
                 pseudo: TokenTable | None = None, pseudo_length: int = 0):
        if family not in TEXT_FAMILIES:
            raise ValueError(f"unknown text model family {family!r}; expected one of {TEXT_FAMILIES}")
        if (family == "colbert") != tokenizer.colbert:
            raise ValueError(f"family {family!r} needs a TextTokenizer with colbert={family == 'colbert'}")
        for name, table in (("queries", queries), ("corpus", corpus), ("pseudo", pseudo)):
            if isinstance(table, TokenTable) and table.digest != tokenizer.digest:
                raise ValueError(f"the {name} token table was built with another tokenizer than this pipeline's "
                                 f"({table.digest} != {tokenizer.digest}); pass the texts, or a table of its own")
        self.family, self.tok, self.queries, self.corpus = family, tokenizer, queries, corpus
        self.item_fields, self.pseudo, self.pseudo_length = dict(item_fields or {}), pseudo, pseudo_length

    def _tokens(self, source: Texts | TokenTable, rows: np.ndarray) -> Ragged:
        return source.ragged(rows) if isinstance(source, TokenTable) else self.tok.ragged(source[rows])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        qi, di, mask = batch["query_index"], batch["doc_index"], batch["mask"]
        b, size = mask.shape
        rows, slots = np.nonzero(mask)
        real = np.flatnonzero(qi >= 0)  # a superset of ``rows``
        queries, docs = self._tokens(self.queries, qi[real]), self._tokens(self.corpus, di[rows, slots])
        for key, values in self.item_fields.items():  # per (query, document) values, e.g. first-stage scores
            batch[key] = np.zeros((b, size), np.float32)
            batch[key][rows, slots] = values(qi[rows], di[rows, slots])
        if self.pseudo is not None:  # E2Rank's pseudo-query: the query and its first-stage top documents
            enc = self.tok.encode(self.pseudo.ragged(qi[real]), length=self.pseudo_length)
            for name in ("ids", "mask"):
                batch[f"pseudo_{name}"] = np.zeros((b, self.pseudo_length), np.int32)
                batch[f"pseudo_{name}"][real] = enc[name]
        if self.family in PAIR_FAMILIES:
            t = self.tok.pair_length
            enc = self.tok.encode_pairs(queries.take(np.searchsorted(real, rows)), docs)
            for name in ("ids", "mask", "type_ids"):
                batch[f"pair_{name}"] = np.zeros((b, size, t), np.int32)
                batch[f"pair_{name}"][rows, slots] = enc[name]
            return batch
        q = self.tok.encode_queries(queries)
        d = self.tok.encode_docs(docs)
        for name in ("ids", "mask"):
            batch[f"query_{name}"] = np.zeros((b, self.tok.query_length), np.int32)
            batch[f"query_{name}"][real] = q[name]
            batch[f"doc_{name}"] = np.zeros((b, size, self.tok.doc_length), np.int32)
            batch[f"doc_{name}"][rows, slots] = d[name]
        return batch


def text_pipeline(records: Sequence[dict], *, family: str, queries: Texts | TokenTable, corpus: Texts | TokenTable,
                  batch_size: int, list_size: int, train: bool, seed: int = 0, num_epochs: int | None = None,
                  max_positives: int = 1, tokenizer: TextTokenizer | None = None, pretokenize: bool = True,
                  item_fields: Mapping[str, Callable] | None = None, pseudo: TokenTable | None = None,
                  pseudo_length: int = 0, shard: tuple[int, int] | None = None) -> Pipeline:
    """Token batches for a text ranking family from :mod:`ranking_jax.data.lists` records.

    ``item_fields`` ``{key: f(query_index [n], doc_index [n]) -> [n]}`` add per-item float fields (e.g.
    ``first_stage_scores``); ``pseudo`` (a TokenTable by query row) adds ``pseudo_ids``/``pseudo_mask``
    ``[b, pseudo_length]``.

    Training records with a negative pool (``lists.train_lists``) are sampled per epoch
    (``max_positives`` positives + negatives); eval and teacher records are batched as they are.
    With ``pretokenize``, in-memory ``Texts`` are tokenized once into a :class:`TokenTable` (same
    batches, no tokenizer work per step); pass TokenTables to share them between pipelines.
    """
    tokenizer = tokenizer or TextTokenizer(colbert=family == "colbert")
    if pretokenize:
        longest = max(tokenizer.doc_length, tokenizer.pair_length)
        queries, corpus = (TokenTable(tokenizer, t[range(len(t))], max_tokens=longest)
                           if isinstance(t, Texts) and t.in_memory else t for t in (queries, corpus))
    featurize = _TextFeatures(family=family, tokenizer=tokenizer, queries=queries, corpus=corpus,
                              item_fields=item_fields, pseudo=pseudo, pseudo_length=pseudo_length)
    sample = None
    if train and records and "positives" in records[0]:
        sample = functools.partial(sample_training_list, list_size=list_size, max_positives=max_positives)
    stack = functools.partial(stack_lists, batch_size=batch_size // process_shard(shard)[1], list_size=list_size,
                              teacher=any("teacher_scores" in r for r in records))
    batch_fn = lambda rs: featurize(stack(rs))
    options = {"family": family, "list_size": list_size, "max_positives": max_positives,
               "lengths": [tokenizer.query_length, tokenizer.doc_length, tokenizer.pair_length, pseudo_length],
               "fields": sorted(item_fields or ())}
    return build_pipeline(records, batch_size=batch_size, train=train, seed=seed, num_epochs=num_epochs, shard=shard,
                  batch_fn=batch_fn, sample=sample, options=options)


def letor_records(source, *, list_size: int, train: bool, normalization: str = "query_zscore",
                  stats: dict | None = None) -> list[dict]:
    """Records of a ``letor`` split, normalized per :func:`letor.normalize` over each query's full list.

    Eval lists longer than ``list_size`` are split into chunks; training lists are kept whole and sampled
    per epoch by the pipeline.
    """
    records = []
    for q in range(len(source)):
        row = source[q]
        x = letor_lib.normalize(row["features"], mode=normalization, stats=stats)
        y = np.asarray(row["labels"], np.float32)
        docs = np.arange(len(y), dtype=np.int32)
        for start in ([0] if train else range(0, max(len(y), 1), list_size)):
            end = None if train else start + list_size
            records.append({"query_index": q, "doc_index": docs[start:end], "labels": y[start:end],
                            "features": x[start:end]})
    return records


def _sample_subset(record: dict, rng: np.random.Generator, *, list_size: int) -> dict:
    n = len(record["doc_index"])
    if n <= list_size:
        return record
    keep = np.sort(rng.choice(n, size=list_size, replace=False))
    return {k: (v[keep] if k not in ("query_index", "epoch") else v) for k, v in record.items()}


def letor_pipeline(records: Sequence[dict], *, batch_size: int, list_size: int, train: bool, seed: int = 0,
                   num_epochs: int | None = None, shard: tuple[int, int] | None = None) -> Pipeline:
    """Feature batches ``features`` [B, L, F] + list fields from :func:`letor_records`; ``doc_index`` is the
    document's row within its query's list."""
    num_features = records[0]["features"].shape[-1] if records else 0
    batch_fn = functools.partial(stack_lists, batch_size=batch_size // process_shard(shard)[1], list_size=list_size,
                                 num_features=num_features)
    return build_pipeline(records, batch_size=batch_size, train=train, seed=seed, num_epochs=num_epochs, shard=shard,
                  batch_fn=batch_fn, sample=functools.partial(_sample_subset, list_size=list_size),
                  options={"list_size": list_size, "kind": "letor"})


def image_pipeline(source, *, batch_size: int, train: bool, seed: int = 0, num_epochs: int | None = None,
                   max_value: float = 255.0, classes_per_batch: int | None = None,
                   shard: tuple[int, int] | None = None) -> Pipeline:
    """Batches {images float32 [B, H*W] in [0, 1], class_labels int32 [B], mask bool [B]} of an
    ``image_classes`` split.

    With ``classes_per_batch=P`` (training), every batch holds P classes x (B/P) images each, drawn per
    step from a seed-derived generator (the "m per class" sampler of metric learning); otherwise the
    split is shuffled (training) or read in order (eval) and the last batch padded (mask False, label -1).
    """
    rows = [source[i] for i in range(len(source))]
    images = np.stack([r["image"].reshape(-1) for r in rows]).astype(np.float32) / float(max_value)
    labels = np.array([r["label"] for r in rows], np.int32)
    index, count = process_shard(shard)
    local = batch_size // count

    def stack(rs):
        out = {"images": np.zeros((local, images.shape[1]), np.float32),
               "class_labels": np.full(local, -1, np.int32), "mask": np.zeros(local, bool)}
        real = [i for i, r in enumerate(rs) if "pad" not in r]
        rows = [rs[i]["row"] for i in real]
        out["images"][real], out["class_labels"][real], out["mask"][real] = images[rows], labels[rows], True
        return out

    if classes_per_batch is None or not train:
        return build_pipeline([{"row": i} for i in range(len(rows))], batch_size=batch_size, train=train, seed=seed,
                      num_epochs=num_epochs, shard=shard, batch_fn=stack, options={"kind": "images"})
    classes = np.unique(labels)
    per_class = batch_size // classes_per_batch
    if classes_per_batch > len(classes) or per_class * classes_per_batch != batch_size:
        raise ValueError(f"classes_per_batch={classes_per_batch} must divide batch_size ({batch_size}) and be at "
                         f"most the number of classes ({len(classes)})")
    members = [np.flatnonzero(labels == c) for c in classes]

    def draw(step, rng):  # the global batch of this step, then this process's rows of it
        chosen = rng.choice(len(classes), size=classes_per_batch, replace=False)
        picks = [rng.choice(members[c], size=per_class, replace=len(members[c]) < per_class) for c in chosen]
        mine = np.concatenate(picks)[index * local:(index + 1) * local]
        return stack([{"row": int(i)} for i in mine])

    steps = max(len(rows) // batch_size, 1) * (num_epochs or 1)
    ds = grain.MapDataset.range(steps)
    ds = (ds.repeat(None) if num_epochs is None else ds).random_map(
        draw, seed=int(np.random.SeedSequence([seed, 0]).generate_state(1)[0]))
    spec = {"labels": labels, "batch_size": batch_size, "seed": seed, "epochs": num_epochs,
            "classes_per_batch": classes_per_batch}
    return Pipeline(ds, digest([spec]))
