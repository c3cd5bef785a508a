"""Text ranking on a BEIR-format collection: first-stage candidates, sampled training lists (or teacher-scored
triples), re-ranking and dense-retrieval evaluators, the same evaluations zero-shot on other collections, and the
first stage's own ranking as the baseline row.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Callable, Sequence

import numpy as np

from ranking_jax import data as data_lib
from ranking_jax import registry
from ranking_jax.evaluators import evaluate_baselines, evaluate_run
from ranking_jax.tasks import Context, Task
from ranking_jax.tasks.cache import cached, prepared
from ranking_jax.models._common import resolve_pretrained
from ranking_jax.tasks.first_stage import spec_of

TEXT_FAMILIES = ("cross_encoder", "bi_encoder", "colbert", "tk", "prett")


def source_folder(config, collection: str) -> pathlib.Path:
    """The BEIR folder of ``collection``: ``"chatterbot"`` (converted from its PyPI package, cached) or a path."""
    if collection == "chatterbot":
        from ranking_jax.data import chatterbot
        folder = cached(config, "chatterbot-beir", key=(chatterbot.english_dir(),),
                        build=lambda out: chatterbot.write_beir(out))
        return folder
    path = pathlib.Path(collection)
    if not (path / "corpus.jsonl").is_file():
        raise FileNotFoundError(f"collection {collection!r} (config.data.collection or config.evals.zero_shot) is "
                                "neither 'chatterbot' nor a BEIR folder holding corpus.jsonl, queries.jsonl and "
                                "qrels/*.tsv")
    return path


def limit(qrels: dict, n: int) -> dict:
    """``n`` of the judged queries (all when ``n`` is 0): one fixed sample, the same for every seed, so runs at
    different seeds are evaluated on the same queries and pair query by query."""
    if not n or n >= len(qrels):
        return qrels
    keep = sorted(np.random.default_rng(0).choice(sorted(qrels), size=n, replace=False).tolist())
    return {q: qrels[q] for q in keep}


@dataclasses.dataclass
class Collection:
    """A BEIR collection's ids, texts, token tables and first-stage candidates ``{query row: (doc rows,
    scores)}`` of the judged queries."""
    source: pathlib.Path
    doc_ids: list
    corpus_texts: list
    query_ids: list
    query_texts: list
    corpus: Any
    query_table: Any
    candidates: dict

    def ranked(self, depth: int) -> dict[int, np.ndarray]:
        return {q: rows[:depth] for q, (rows, _) in self.candidates.items()}

    @functools.cached_property
    def _first_stage(self) -> tuple[dict, dict]:
        table = {q: dict(zip(rows.tolist(), scores.tolist())) for q, (rows, scores) in self.candidates.items()}
        return table, {q: (min(t.values()) if t else 0.0) for q, t in table.items()}

    def first_stage_scores(self, queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """The first stage's scores of (query row, document row) pairs; a document it did not retrieve gets the
        query's lowest."""
        table, lowest = self._first_stage
        return np.array([table.get(q, {}).get(d, lowest.get(q, 0.0)) for q, d in zip(queries.tolist(), docs.tolist())],
                        np.float32)


def load(config, ctx: Context, collection: str, qrels_by_split: Callable, tokenizer, *, splits: Sequence[str],
         depth: int) -> tuple[Collection, dict]:
    """``collection`` (its ``splits`` must exist), its judged queries ``qrels_by_split(src) -> {split: qrels}``
    and the first stage's top ``depth`` of them (``config.data.candidates``, cached by content)."""
    d = config.data
    source = source_folder(config, collection)
    src = prepared(config, data_lib.Beir, name="beir", builder_config="custom", source=source,
                   manual_dir=source).as_data_source()
    for split in splits:
        if split not in src:
            raise ValueError(f"config.data: split {split!r} is not in {source} (has {sorted(src)})")
    qrels = qrels_by_split(src)
    doc_ids, corpus_texts = data_lib.ids_and_texts(src["corpus"], "doc_id")
    query_ids, query_texts = data_lib.ids_and_texts(src["queries"], "query_id")
    rows = sorted(set().union(*qrels.values()))
    spec = spec_of(d.candidates)

    def search(out):
        top, scores = registry.lookup(spec)([query_texts[r] for r in rows], corpus_texts, depth=depth,
                                            mesh=ctx.mesh, rules=ctx.rules)
        np.savez(out / "candidates.npz", rows=np.asarray(rows, np.int64), top=top, scores=scores)

    with np.load(cached(config, "candidates", key=(source, spec, depth, rows), build=search) / "candidates.npz") as f:
        candidates = {int(q): (t[t >= 0].astype(np.int32), s[t >= 0].astype(np.float32))
                      for q, t, s in zip(f["rows"], f["top"], f["scores"])}
    corpus = data_lib.TokenTable(tokenizer, corpus_texts, max_tokens=d.doc_length)
    query_table = data_lib.TokenTable(tokenizer, query_texts, max_tokens=d.query_length)
    return Collection(source, doc_ids, corpus_texts, query_ids, query_texts, corpus, query_table, candidates), qrels


def _qrels_by_id(c: Collection, judged: dict) -> dict:
    return {c.query_ids[q]: {c.doc_ids[int(doc)]: int(lab) for doc, lab in zip(*j)} for q, j in judged.items()}


def evaluation(config, ctx: Context, c: Collection, eval_qrels: dict, tokenizer, *, prefix: str = ""
               ) -> tuple[dict, dict]:
    """``(evaluators, baselines)`` on the judged queries ``eval_qrels``: re-ranking of the first stage's top
    ``eval_depth`` (a bi-encoder from embeddings, each text encoded once) and, for bi-encoders, dense retrieval;
    the baselines re-order the same candidates (:func:`ranking_jax.evaluators.evaluate_baselines`). Names start
    with ``prefix``."""
    d, family = config.data, config.model.name
    qrels = _qrels_by_id(c, eval_qrels)
    eval_cands = {q: rows for q, rows in c.ranked(d.eval_depth).items() if q in eval_qrels}
    common = dict(qrels=qrels, measures=config.evals.measures, mesh=ctx.mesh, rules=ctx.rules)
    name = prefix.replace("/", "_")
    first_stage = {c.query_ids[q]: dict(zip((c.doc_ids[int(r)] for r in rows[:d.eval_depth]),
                                            map(float, scores[:d.eval_depth])))
                   for q, (rows, scores) in c.candidates.items() if q in eval_qrels}
    baselines = evaluate_baselines(first_stage, qrels=qrels, measures=config.evals.measures, seed=config.seed,
                                   directory=ctx.workdir, prefix=prefix)
    if family != "bi_encoder":
        records = data_lib.eval_lists(eval_qrels, eval_cands, list_size=d.eval_list_size)
        batches = data_lib.text_pipeline(records, family=family, queries=c.query_table, corpus=c.corpus,
                                         batch_size=d.eval_batch_size, list_size=d.eval_list_size, train=False,
                                         tokenizer=tokenizer, item_fields=first_stage_fields(config, c))
        return {f"{prefix}rerank": registry.lookup("evaluators.rerank")(
            batches, query_ids=c.query_ids, doc_id=lambda q, doc: c.doc_ids[doc],
            run_path=ctx.workdir / f"{name}rerank.run", **common)}, baselines
    eval_rows = sorted(eval_qrels)
    doc_rows = np.unique(np.concatenate([np.zeros(0, np.int64), *eval_cands.values()]))
    dense = dict(query_tokens=tokenizer.encode_queries(c.query_table.ragged(eval_rows)), query_rows=eval_rows,
                 query_ids=c.query_ids, doc_ids=c.doc_ids, batch_size=d.eval_batch_size * d.eval_list_size, **common)
    evaluators = {f"{prefix}rerank": registry.lookup("evaluators.dense_rerank")(
        doc_tokens=tokenizer.encode_docs(c.corpus.ragged(doc_rows)), doc_rows=doc_rows, candidates=eval_cands,
        run_path=ctx.workdir / f"{name}rerank.run", **dense)}
    if config.evals.retrieval:
        evaluators[f"{prefix}retrieval"] = registry.lookup("evaluators.retrieval")(
            doc_tokens=tokenizer.encode_docs(c.corpus.ragged(np.arange(len(c.corpus)))),
            k=config.evals.retrieval_depth, run_path=ctx.workdir / f"{name}retrieval.run", **dense)
    return evaluators, baselines


def first_stage_fields(config, c: Collection, *, needed: bool = False) -> dict[str, Callable]:
    """``first_stage_scores``, the first stage's score of each candidate (a document it did not retrieve gets the
    query's lowest), when ``needed`` or ``data.first_stage_weight`` adds them to the model's scores."""
    if not (needed or config.data.first_stage_weight):
        return {}
    if config.data.first_stage_weight and config.model.name == "bi_encoder":
        raise ValueError("config.data.first_stage_weight: a bi-encoder re-ranks from embeddings, without the first "
                         "stage's scores; use it with cross_encoder, colbert, tk or prett")
    return {"first_stage_scores": c.first_stage_scores}


def item_fields(config, objective, c: Collection, train_qrels: dict) -> dict[str, Callable]:
    """The per-item batch fields of training lists: the first stage's scores (:func:`first_stage_fields`) and
    Rel-MF exposure propensities (popularity of each document among the training positives, ``(n_d / max
    n)^0.5``), when the objective's views read them."""
    out = first_stage_fields(config, c, needed="first_stage_scores" in objective.batch_keys)
    if "propensities" in objective.batch_keys:
        if config.data.propensities != "popularity":
            raise ValueError(f"config.data.propensities={config.data.propensities!r}: the loss reads exposure "
                             "propensities; set it to 'popularity'")
        counts = np.zeros(len(c.doc_ids), np.float64)
        for docs, labels in train_qrels.values():
            np.add.at(counts, docs[labels > 0], 1.0)
        from ranking_jax.losses import popularity_propensity
        theta = np.asarray(popularity_propensity(counts), np.float32)
        out["propensities"] = lambda qs, ds: theta[ds]
    return out


def pseudo_queries(config, c: Collection, tokenizer):
    """E2Rank's pseudo-queries: each query followed by its first stage's top ``data.pseudo_docs`` documents."""
    d = config.data
    texts = [" ".join([q] + [c.corpus_texts[r] for r in c.candidates.get(i, (np.zeros(0, int),))[0][:d.pseudo_docs]])
             for i, q in enumerate(c.query_texts)]
    return data_lib.TokenTable(tokenizer, texts, max_tokens=d.pseudo_length)


@registry.register("tasks.text_ranking", resolves=())
def text_ranking(config, objective, ctx: Context) -> Task:
    """A BEIR-format collection (``data.collection``); training lists from ``data.train_split`` (with
    ``data.teacher``, teacher-scored triples: :mod:`ranking_jax.tasks.distillation`); evaluation on
    ``data.eval_split`` and zero-shot on each folder of ``evals.zero_shot`` (evaluators ``<folder>/rerank``)."""
    d, family = config.data, config.model.name
    if family not in TEXT_FAMILIES:
        raise ValueError(f"config.model.name={family!r} is not a text ranking family {sorted(TEXT_FAMILIES)}")
    tokenizer = data_lib.TextTokenizer(resolve_pretrained(config.model.get("pretrained") or None),
                                       query_length=d.query_length, doc_length=d.doc_length,
                                       colbert=family == "colbert")

    def own(src):
        return {"train": data_lib.qrels_from_split(src[d.train_split]),
                "eval": limit(data_lib.qrels_from_split(src[d.eval_split]), d.max_eval_queries)}

    c, qrels = load(config, ctx, d.collection, own, tokenizer, splits=(d.train_split, d.eval_split),
                    depth=max(d.train_depth, d.eval_depth))
    teacher_run = None
    if d.teacher:
        from ranking_jax.tasks.distillation import teacher_records
        records, teacher_run = teacher_records(config, ctx, c, qrels["train"], qrels["eval"])
    else:
        records = data_lib.train_lists(qrels["train"], c.ranked(d.train_depth), depth=d.train_depth)
    pseudo = pseudo_queries(config, c, tokenizer) if "pseudo_ids" in objective.batch_keys else None
    train_data = data_lib.text_pipeline(
        records, family=family, queries=c.query_table, corpus=c.corpus, batch_size=d.batch_size,
        list_size=d.list_size, train=True, seed=config.seed, max_positives=d.max_positives, tokenizer=tokenizer,
        item_fields=item_fields(config, objective, c, qrels["train"]), pseudo=pseudo,
        pseudo_length=d.pseudo_length if pseudo is not None else 0).iterator()
    evaluators, baselines = evaluation(config, ctx, c, qrels["eval"], tokenizer)
    if teacher_run is not None:
        baselines["teacher"] = evaluate_run(teacher_run, qrels=_qrels_by_id(c, qrels["eval"]),
                                            measures=config.evals.measures, run_path=ctx.workdir / "teacher.run",
                                            tag="teacher")
    for collection in filter(None, config.evals.get("zero_shot", "").split(",")):
        name = pathlib.Path(collection).name
        if f"{name}/rerank" in evaluators:
            raise ValueError(f"config.evals.zero_shot names two collections {name!r}; give distinct folders")
        target, target_qrels = load(
            config, ctx, collection,
            lambda src: {"eval": limit(data_lib.qrels_from_split(src[d.eval_split]), d.max_eval_queries)},
            tokenizer, splits=(d.eval_split,), depth=d.eval_depth)
        more, more_baselines = evaluation(config, ctx, target, target_qrels["eval"], tokenizer, prefix=f"{name}/")
        evaluators.update(more)
        baselines.update(more_baselines)
    return Task(train_data, evaluators, baselines)
