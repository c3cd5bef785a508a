"""From a config to a trained, evaluated run: mesh, model, loss, optimizer, data and evaluators.

``run(config, workdir)`` is what ``python -m ranking_jax.main`` calls. ``config.task`` picks how data and
evaluators are built; everything else (model family, loss, optimizer) is a registry name in the config,
so swapping any of them is one line. A config with ``runs`` (a dict of complete configs) runs each in
``workdir/<name>`` and prints one summary table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ranking_jax import checkpoint
from ranking_jax import data as data_lib
from ranking_jax import evaluate, optim, registry, sharding, train

_log = logging.getLogger(__name__)
TEXT_FAMILIES = ("cross_encoder", "bi_encoder", "colbert", "tk", "prett")


@dataclasses.dataclass
class Task:
    """What ``train_and_evaluate`` needs besides the model: data, evaluators and the loss inputs.

    ``objective(outputs, batch) -> loss`` replaces the ranking loss ``config.loss(scores, labels, where=mask)``
    for tasks whose loss reads more of the batch (see :func:`ranking_jax.train.objective_loss_fn`).
    """
    train_data: Any
    evaluators: dict[str, Callable]
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    objective: Callable | None = None


def rules_from(config) -> tuple:
    spec = config.get("sharding_rules", "default")
    if isinstance(spec, str):
        table = {"default": sharding.DEFAULT_RULES, "fsdp": sharding.FSDP_RULES}
        if spec not in table:
            raise ValueError(f"config.sharding_rules={spec!r} is unknown; use 'default', 'fsdp' or a list of "
                             "(logical_name, mesh_axis) pairs")
        return table[spec]
    return tuple(tuple(r) for r in spec)


def data_cache(config, key: str) -> pathlib.Path:
    """Where built tfds datasets live: ``config.data.cache_dir`` or ``$RANKING_JAX_CACHE`` or ~/.cache."""
    root = config.data.get("cache_dir") or os.environ.get("RANKING_JAX_CACHE") or \
        os.path.join(os.path.expanduser("~"), ".cache", "ranking_jax")
    return pathlib.Path(root) / hashlib.sha1(key.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------ model
def build_model(config, *, pretrained: bool = True) -> nnx.Module:
    """``registry.lookup("models." + config.model.name)(**rest, seed=config.seed)``."""
    kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
    if not pretrained:
        kwargs.pop("pretrained", None)
    for k, v in list(kwargs.items()):
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    return registry.lookup(f"models.{config.model.name}")(**kwargs, seed=config.seed)


# ------------------------------------------------------------------------------------ text ranking
def _beir_source(config, collection: str) -> pathlib.Path:
    """The BEIR folder of ``collection``: ``"chatterbot"`` (written on first use) or a folder path."""
    if collection == "chatterbot":
        from ranking_jax.data import chatterbot
        return chatterbot.write_beir(data_cache(config, "chatterbot-beir"))
    path = pathlib.Path(collection)
    if not (path / "corpus.jsonl").is_file():
        raise FileNotFoundError(f"collection {collection!r} (config.data.collection or config.evals.zero_shot) is "
                                "neither 'chatterbot' nor a BEIR folder holding corpus.jsonl, queries.jsonl and "
                                "qrels/*.tsv")
    return path


def _limit(qrels: dict, n: int) -> dict:
    """``n`` of the judged queries (all when ``n`` is 0): one fixed sample, the same for every seed, so runs at
    different seeds are evaluated on the same queries and pair query by query."""
    if not n or n >= len(qrels):
        return qrels
    keep = sorted(np.random.default_rng(0).choice(sorted(qrels), size=n, replace=False).tolist())
    return {q: qrels[q] for q in keep}


def first_stage(spec: str, query_texts, corpus_texts, *, rows, depth: int, mesh, rules) -> dict:
    """Candidates ``{query_index: doc_index}``: ``"bm25"`` or ``"dense:<pretrained>"`` (zero-shot mean-pooled
    bi-encoder, exact top-k), e.g. ``"dense:minilm"``."""
    if spec == "bm25":
        top, _ = data_lib.BM25().index(corpus_texts).search(query_texts, k=depth)
        return data_lib.candidates_from_search(rows, top)
    kind, _, pretrained = spec.partition(":")
    if kind != "dense" or not pretrained:
        raise ValueError(f"config.data.candidates={spec!r} is unknown; use 'bm25' or "
                         "'dense:<pretrained dir or minilm>'")
    from ranking_jax.models import bi_encoder
    model = bi_encoder(pretrained=pretrained, pooling="mean", similarity="cosine")
    tok = data_lib.TextTokenizer(query_length=64, doc_length=256)  # cut to each batch's longest text
    q = evaluate.encode_tokens(evaluate.encode_queries, model, tok.encode_queries(query_texts), mesh=mesh, rules=rules)
    d = evaluate.encode_tokens(evaluate.encode_docs, model, tok.encode_docs(corpus_texts), mesh=mesh, rules=rules)
    _, top = evaluate.exact_topk(jnp.asarray(q), jnp.asarray(d), depth)
    return data_lib.candidates_from_search(rows, top)


@dataclasses.dataclass
class _Collection:
    """A BEIR collection's splits, ids, texts, token tables and (cached) first-stage candidates."""
    src: Any
    doc_ids: list
    corpus_texts: list
    query_ids: list
    query_texts: list
    corpus: Any
    query_table: Any
    candidates: dict


def _collection(config, collection: str, qrels_by_split: Callable, tokenizer, mesh, rules, *, splits: Sequence[str],
                depth: int) -> tuple[_Collection, dict]:
    """Loads ``collection`` (its ``splits`` must exist), the judged queries ``qrels_by_split(src) -> {split:
    qrels}`` and the first stage's top ``depth`` for all of them (config.data.candidates, cached)."""
    d = config.data
    source = _beir_source(config, collection)
    builder = data_lib.prepare(data_lib.Beir, config="custom", data_dir=data_cache(config, str(source.resolve())),
                               manual_dir=source)
    src = builder.as_data_source()
    for split in splits:
        if split not in src:
            raise ValueError(f"config.data: split {split!r} is not in {source} (has {sorted(src)})")
    qrels = qrels_by_split(src)
    doc_ids, corpus_texts = data_lib.ids_and_texts(src["corpus"], "doc_id")
    query_ids, query_texts = data_lib.ids_and_texts(src["queries"], "query_id")
    rows = sorted(set().union(*qrels.values()))
    cache = data_cache(config, f"{source.resolve()}|{d.candidates}|{depth}|{rows}") / "candidates.npz"
    if cache.exists():
        stored = np.load(cache)
        candidates = {int(q): stored[q] for q in stored.files}
    else:
        candidates = first_stage(d.candidates, [query_texts[r] for r in rows], corpus_texts, rows=rows, depth=depth,
                                 mesh=mesh, rules=rules)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **{str(q): c for q, c in candidates.items()})
    corpus = data_lib.TokenTable(tokenizer, corpus_texts, max_tokens=d.doc_length)
    query_table = data_lib.TokenTable(tokenizer, query_texts, max_tokens=d.query_length)
    return _Collection(src, doc_ids, corpus_texts, query_ids, query_texts, corpus, query_table, candidates), qrels


def _evaluators(config, c: _Collection, eval_qrels: dict, tokenizer, workdir: pathlib.Path, mesh, rules, *,
                prefix: str = "") -> dict:
    """Re-ranking of the first stage's top ``eval_depth`` (and, for bi-encoders, dense retrieval) on the judged
    queries ``eval_qrels``; evaluator names and run files start with ``prefix``. A bi-encoder re-ranks from
    embeddings (:class:`ranking_jax.evaluate.DenseRerankEvaluator`: each query and candidate encoded once)."""
    d, family = config.data, config.model.name
    qrels = {c.query_ids[q]: {c.doc_ids[int(doc)]: int(lab) for doc, lab in zip(*judged)}
             for q, judged in eval_qrels.items()}
    eval_cands = {q: cands[:d.eval_depth] for q, cands in c.candidates.items() if q in eval_qrels}
    common = dict(qrels=qrels, measures=config.evals.measures, mesh=mesh, rules=rules)
    name = prefix.replace("/", "_")
    if family != "bi_encoder":
        eval_records = data_lib.eval_lists(eval_qrels, eval_cands, list_size=d.eval_list_size)
        eval_pipeline = data_lib.text_pipeline(eval_records, family=family, queries=c.query_table, corpus=c.corpus,
                                               batch_size=d.eval_batch_size, list_size=d.eval_list_size,
                                               train=False, tokenizer=tokenizer)
        return {f"{prefix}rerank": evaluate.RerankEvaluator(
            eval_pipeline, query_ids=c.query_ids, doc_id=lambda q, doc: c.doc_ids[doc],
            run_path=workdir / f"{name}rerank.run", **common)}
    eval_rows = sorted(eval_qrels)
    doc_rows = np.unique(np.concatenate([np.zeros(0, np.int64), *eval_cands.values()]))
    dense = dict(query_tokens=tokenizer.encode_queries(c.query_table.ragged(eval_rows)), query_rows=eval_rows,
                 query_ids=c.query_ids, doc_ids=c.doc_ids, batch_size=d.eval_batch_size * d.eval_list_size,
                 **common)
    evaluators = {f"{prefix}rerank": evaluate.DenseRerankEvaluator(
        doc_tokens=tokenizer.encode_docs(c.corpus.ragged(doc_rows)), doc_rows=doc_rows, candidates=eval_cands,
        run_path=workdir / f"{name}rerank.run", **dense)}
    if config.evals.retrieval:
        evaluators[f"{prefix}retrieval"] = evaluate.RetrievalEvaluator(
            doc_tokens=tokenizer.encode_docs(c.corpus.ragged(np.arange(len(c.corpus)))),
            k=config.evals.retrieval_depth, run_path=workdir / f"{name}retrieval.run", **dense)
    return evaluators


def distillation_records(config, c: _Collection, train_qrels: dict, workdir: pathlib.Path, mesh, rules
                         ) -> list[dict]:
    """Training triples scored by the teachers ``config.data.teacher`` (comma-separated dirs of models other runs
    exported; several are averaged, the paper's T2 mean ensemble): per training query ``data.teacher_per_query``
    (positive, hard negative from the first stage's top ``train_depth``) triples, the same for every seed. The
    scores are cached and written to ``workdir/teacher.tsv`` in the paper's format."""
    d = config.data
    triples = data_lib.hard_negative_triples(train_qrels, c.candidates, per_query=d.teacher_per_query,
                                             depth=d.train_depth, seed=0)

    def scores_of(teacher: pathlib.Path) -> np.ndarray:  # cached per teacher, so ensembles reuse them
        if not (teacher / "config.json").is_file():
            raise FileNotFoundError(f"config.data.teacher: {teacher} holds no exported model (config.json); train "
                                    "the teacher with config.export_dir set and name that folder")
        stamp = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in teacher.iterdir())
        digest = hashlib.sha1(repr((str(teacher.resolve()), stamp, triples, d.query_length, d.doc_length)).encode())
        path = data_cache(config, f"teacher-scores|{digest.hexdigest()}") / "scores.npy"
        if path.exists():
            return np.load(path)
        model, family = load_exported(teacher)
        tokenizer = data_lib.TextTokenizer(query_length=d.query_length, doc_length=d.doc_length,
                                           colbert=family == "colbert")
        scores = evaluate.score_triples(model, triples, family=family, queries=c.query_table, corpus=c.corpus,
                                        tokenizer=tokenizer, batch_size=8 * d.eval_batch_size, mesh=mesh, rules=rules)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scores)
        return scores

    scores = np.mean([scores_of(pathlib.Path(t)) for t in d.teacher.split(",") if t], axis=0)
    data_lib.write_teacher_triples(workdir / "teacher.tsv", triples, scores, query_ids=c.query_ids, doc_ids=c.doc_ids)
    return data_lib.teacher_lists((q, p, n, sp, sn) for (q, p, n), (sp, sn) in zip(triples, scores))


def text_ranking_task(config, workdir: pathlib.Path, mesh, rules) -> Task:
    """A BEIR-format collection: first-stage candidates, sampled training lists, re-ranking (and, for
    bi-encoders, dense retrieval) on the held-out split's judged queries (with ``data.teacher``, teacher-scored
    triples instead of sampled lists: :func:`distillation_records`); the same evaluations zero-shot on each
    collection of ``config.evals.zero_shot`` (comma-separated BEIR folders; their ``data.eval_split``; evaluators
    ``<folder name>/rerank`` ...)."""
    d = config.data
    family = config.model.name
    if family not in TEXT_FAMILIES:
        raise ValueError(f"config.model.name={family!r} is not a text ranking family {sorted(TEXT_FAMILIES)}")
    tokenizer = data_lib.TextTokenizer(query_length=d.query_length, doc_length=d.doc_length,
                                       colbert=family == "colbert")

    def own_qrels(src):
        return {"train": data_lib.qrels_from_split(src[d.train_split]),
                "eval": _limit(data_lib.qrels_from_split(src[d.eval_split]), d.max_eval_queries)}

    c, qrels = _collection(config, d.collection, own_qrels, tokenizer, mesh, rules,
                           splits=(d.train_split, d.eval_split), depth=max(d.train_depth, d.eval_depth))
    if d.teacher:
        train_records = distillation_records(config, c, qrels["train"], workdir, mesh, rules)
    else:
        train_records = data_lib.train_lists(qrels["train"], c.candidates, depth=d.train_depth)
    train_data = data_lib.text_pipeline(
        train_records, family=family, queries=c.query_table, corpus=c.corpus, batch_size=d.batch_size,
        list_size=d.list_size, train=True, seed=config.seed, max_positives=d.max_positives,
        tokenizer=tokenizer).iterator()
    evaluators = _evaluators(config, c, qrels["eval"], tokenizer, workdir, mesh, rules)

    def target_qrels(src):
        return {"eval": _limit(data_lib.qrels_from_split(src[d.eval_split]), d.max_eval_queries)}

    for collection in filter(None, config.evals.get("zero_shot", "").split(",")):
        name = pathlib.Path(collection).name
        if f"{name}/rerank" in evaluators:
            raise ValueError(f"config.evals.zero_shot names two collections {name!r}; give distinct folders")
        target, target_q = _collection(config, collection, target_qrels, tokenizer, mesh, rules,
                                       splits=(d.eval_split,), depth=d.eval_depth)
        evaluators.update(_evaluators(config, target, target_q["eval"], tokenizer, workdir, mesh, rules,
                                      prefix=f"{name}/"))
    return Task(train_data, evaluators)


# ------------------------------------------------------------------------------------------- LETOR
def letor_task(config, workdir: pathlib.Path, mesh, rules) -> Task:
    """SVMlight learning-to-rank data (``letor`` builder): per-query normalized features, an MLP ranker."""
    d = config.data
    builder = data_lib.prepare(data_lib.Letor, config=d.letor_config,
                               data_dir=data_cache(config, f"letor-{d.letor_config}-{d.manual_dir}"),
                               manual_dir=d.manual_dir or None)
    src = builder.as_data_source()
    train_records = data_lib.letor_records(src[d.train_split], list_size=d.list_size, train=True,
                                           normalization=d.normalization)
    eval_records = data_lib.letor_records(src[d.eval_split], list_size=d.eval_list_size, train=False,
                                          normalization=d.normalization)
    train_data = data_lib.letor_pipeline(train_records, batch_size=d.batch_size, list_size=d.list_size,
                                         train=True, seed=config.seed).iterator()
    eval_pipeline = data_lib.letor_pipeline(eval_records, batch_size=d.eval_batch_size,
                                            list_size=d.eval_list_size, train=False)
    n_queries = len(src[d.eval_split])
    query_ids = [str(q) for q in range(n_queries)]
    qrels = {}
    for r in eval_records:
        for doc, lab in zip(r["doc_index"].tolist(), r["labels"].tolist()):
            qrels.setdefault(str(r["query_index"]), {})[f"{r['query_index']}-{doc}"] = int(lab)
    evaluators = {"rerank": evaluate.RerankEvaluator(
        eval_pipeline, query_ids=query_ids, doc_id=lambda q, doc: f"{q}-{doc}", qrels=qrels,
        measures=config.evals.measures, mesh=mesh, rules=rules,
        run_path=workdir / "rerank.run")}
    return Task(train_data, evaluators, model_kwargs={"num_features": int(train_records[0]["features"].shape[-1])})


# ------------------------------------------------------------------------ tasks with their own objective
def metric_learning_objective(loss: Callable, *, tcm: Mapping[str, float] | None = None) -> Callable:
    """``loss(embeddings, class_labels, where=mask) + weight * tcm_regularizer(...)``: Zhang et al. (ICLR 2024)
    add TCM to any base loss, ``L = L_base + L_TCM`` (``weight`` 1; ``lambda_pos``/``lambda_neg``, ``m_pos``/
    ``m_neg`` are the regularizer's own keywords). ``tcm=None`` or ``weight`` 0: the base loss alone."""
    from ranking_jax.losses import tcm_regularizer

    options = dict(tcm or {})
    weight = float(options.pop("weight", 0.0))

    def objective(embeddings, batch):
        labels, mask = batch["class_labels"], batch["mask"]
        value = loss(embeddings, labels, where=mask)
        if weight:
            value = value + weight * tcm_regularizer(embeddings, labels, where=mask, **options)
        return value

    return objective


def metric_learning_task(config, workdir: pathlib.Path, mesh, rules) -> Task:
    """Deep metric learning with an open-world class split (``image_classes`` builder): m-per-class training
    batches, a base loss (+ TCM), Recall@k / OPIS / eps-OPIS over the images of the held-out classes (all, or a
    seeded sample of ``config.data.max_eval_images``: both metrics are O(N^2) in memory)."""
    d = config.data
    if config.optimizer.name == "tram":
        raise ValueError("config.optimizer.name='tram' needs per-example logits [B, C]; the metric_learning task's "
                         "model outputs embeddings [B, D]. Use adamw, sam or asam.")
    builder = data_lib.prepare(data_lib.ImageClasses, config=d.dataset,
                               data_dir=data_cache(config, f"image_classes-{d.dataset}-{d.manual_dir}"),
                               manual_dir=d.manual_dir or None)
    src = builder.as_data_source()
    max_value = float(builder.info.metadata["max_value"])
    train_data = data_lib.image_pipeline(src[d.train_split], batch_size=d.batch_size, train=True, seed=config.seed,
                                         max_value=max_value, classes_per_batch=d.classes_per_batch or None)
    eval_source = src[d.eval_split]
    if d.max_eval_images and d.max_eval_images < len(eval_source):
        keep = np.random.default_rng(config.seed).choice(len(eval_source), d.max_eval_images, replace=False)
        eval_source = [eval_source[int(i)] for i in np.sort(keep)]
    eval_pipeline = data_lib.image_pipeline(eval_source, batch_size=d.eval_batch_size, train=False,
                                            max_value=max_value)
    evaluators = {"embedding": evaluate.EmbeddingEvaluator(
        eval_pipeline, mesh=mesh, rules=rules,
        ks=tuple(config.evals.recall_at), out_path=workdir / "embeddings.npz")}
    tcm = config.get("tcm")
    objective = metric_learning_objective(registry.lookup(config.loss), tcm=tcm.to_dict() if tcm else None)
    num_features = int(np.prod(builder.info.features["image"].shape))
    return Task(train_data.iterator(), evaluators, model_kwargs={"num_features": num_features}, objective=objective)


PREFERENCE_OBJECTIVES = ("ranking", "dpo")


def preference_objective(loss: Callable, *, objective: str, loss_inputs: Mapping[str, str] = ()) -> Callable:
    """The preference task's loss of ``scores [B, 2]`` (column 0 chosen, 1 rejected) given the batch.

    ``"ranking"``: any ranking loss on the list of two, ``loss(scores, labels, where=mask)``
    (``pairwise_logistic_loss`` is the Bradley-Terry reward model). ``"dpo"``: a DPO-family loss with the scores
    as the policy's log-likelihoods and ``batch["reference_scores"]`` (the initial model's) as the reference's,
    ``loss(s_c, s_r, ref_c, ref_r, where=real untied pairs)``. ``loss_inputs`` maps further loss keywords to
    batch keys (e.g. MADPO's ``chosen_rewards: chosen_score``).
    """
    if objective not in PREFERENCE_OBJECTIVES:
        raise ValueError(f"config.preference.objective={objective!r} is unknown; use one of {PREFERENCE_OBJECTIVES}")
    inputs = dict(loss_inputs)
    if objective == "ranking":
        return train.ranking_objective(loss, loss_inputs=inputs)

    def fn(scores, batch):
        extra = {name: batch[key] for name, key in inputs.items()}
        ref = batch["reference_scores"]
        pairs = batch["mask"][:, 0] & ~batch["tie"]  # a tie states no preference
        return loss(scores[:, 0], scores[:, 1], ref[:, 0], ref[:, 1], where=pairs, **extra)

    return fn


def sentence_encoder(pretrained: str):
    """The frozen mean-pooled, L2-normalized sentence encoder ``pretrained`` (``"minilm"`` or a directory)."""
    from ranking_jax.encode import TextEncoder
    from ranking_jax.models._common import resolve_pretrained
    return TextEncoder(resolve_pretrained(pretrained), pooling="mean", normalize=True, max_length=128)


def similarity_reward(pretrained: str, *, scale: float = 20.0) -> Callable[[list, list], np.ndarray]:
    """A frozen reward model ``(prompts, responses) -> scale * cos(e(prompt), e(response))`` with the zero-shot
    mean-pooled sentence encoder ``pretrained`` (``"minilm"``: all-MiniLM-L6-v2, trained with a contrastive loss at
    scale 20, so reward differences are that loss's logits)."""
    encoder = sentence_encoder(pretrained)

    def reward(prompts, responses):
        texts = sorted(set(prompts) | set(responses))
        row = {t: i for i, t in enumerate(texts)}
        v = encoder.encode(texts)
        return scale * np.sum(v[[row[t] for t in prompts]] * v[[row[t] for t in responses]], axis=-1)

    return reward


def response_scorer(prompts: Sequence[str], responses: Sequence[str], *, pipeline: Callable, mesh, rules
                    ) -> Callable[[nnx.Module], np.ndarray]:
    """``model -> [N]`` preference-model scores of (prompt_i, response_i); consecutive responses to one prompt
    share a row of the pair batches (``pipeline(rows)``), so each is scored once."""
    nan = float("nan")
    rows, slots, i = [], [], 0
    while i < len(responses):
        j = i + 1 if i + 1 < len(responses) and prompts[i + 1] == prompts[i] else i
        rows.append({"prompt": prompts[i], "chosen": responses[i], "rejected": responses[j], "chosen_score": nan,
                     "rejected_score": nan, "tie": False})
        slots += [(len(rows) - 1, 0)] + ([(len(rows) - 1, 1)] if j != i else [])
        i = j + 1
    scorer = evaluate.PreferenceEvaluator(pipeline(rows), mesh=mesh, rules=rules)
    row, column = np.asarray(slots).T
    return lambda model: scorer.scores(model)[0][row, column]


def load_exported(directory: str | pathlib.Path) -> tuple[nnx.Module, str]:
    """``(model, family)`` a run exported to ``directory`` (its ``export_dir``): a cross-encoder in Hugging Face
    layout (``model.safetensors``) or any model as ``params.npz`` + ``config.json``
    (:func:`checkpoint.export_params`), whose ``model.name`` is the family."""
    directory = pathlib.Path(directory)
    if (directory / "model.safetensors").exists():
        return registry.lookup("models.cross_encoder")(pretrained=directory), "cross_encoder"
    if not (directory / checkpoint.PARAMS_FILE).exists():
        raise FileNotFoundError(f"{directory} holds no exported model (model.safetensors or "
                                f"{checkpoint.PARAMS_FILE}); set config.export_dir in the run that trains it")
    from ml_collections import ConfigDict
    config = ConfigDict(json.loads((directory / "config.json").read_text()))
    split, params = train.split_model(build_model(config, pretrained=False))
    return split.merge(checkpoint.import_params(params, directory)), config.model.name


def trained_reward(model_dir: str, *, pipeline: Callable, mesh, rules) -> Callable[[list, list], np.ndarray]:
    """A frozen reward model ``(prompts, responses) -> scores`` that another run trained and exported (e.g. a
    Bradley-Terry run's ``export_dir``, :func:`load_exported`); ``pipeline(rows)`` batches its inputs as the
    policy's are."""
    model, _ = load_exported(model_dir)
    return lambda prompts, responses: response_scorer(prompts, responses, pipeline=pipeline, mesh=mesh,
                                                      rules=rules)(model)


def sentence_features(config, rows: Sequence[Mapping[str, str]]) -> np.ndarray:
    """``[N, 2, 3D]`` features ``[e(x), e(y), e(x) * e(y)]`` of (prompt, chosen) and (prompt, rejected), ``e`` the
    frozen sentence encoder ``config.data.features`` (mean-pooled, L2-normalized; ``"minilm"``:
    all-MiniLM-L6-v2). Embeddings are cached under :func:`data_cache` per set of texts."""
    texts = sorted({r[k] for r in rows for k in ("prompt", "chosen", "rejected")})
    digest = hashlib.sha1("\n".join(texts).encode()).hexdigest()
    path = data_cache(config, f"sentence-features|{config.data.features}|{digest}") / "embeddings.npy"
    if path.exists():
        emb = np.load(path)
    else:
        emb = sentence_encoder(config.data.features).encode(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, emb)
    row = {t: i for i, t in enumerate(texts)}
    prompt = emb[[row[r["prompt"]] for r in rows]]
    sides = [emb[[row[r[side]] for r in rows]] for side in ("chosen", "rejected")]
    return np.stack([np.concatenate([prompt, y, prompt * y], -1) for y in sides], 1).astype(np.float32)


def _scored_copy(source: pathlib.Path, reward: Callable, out: pathlib.Path) -> pathlib.Path:
    """``source``'s ``{train,dev,test}.jsonl`` with ``chosen_score``/``rejected_score`` from ``reward``."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.jsonl")):
        if path.stem not in ("train", "dev", "test"):
            continue
        rows = [obj for _, obj in data_lib.read_jsonl(path, required=("prompt", "chosen", "rejected"))]
        scores = np.asarray(reward([r["prompt"] for r in rows for _ in "cr"],
                                   [r[side] for r in rows for side in ("chosen", "rejected")])).reshape(-1, 2)
        chosen, rejected = scores[:, 0], scores[:, 1]
        with open(out / path.name, "w", encoding="utf-8") as f:
            for r, c, n in zip(rows, chosen, rejected):
                f.write(json.dumps(dict(r, chosen_score=float(c), rejected_score=float(n)), ensure_ascii=False) + "\n")
    return out


def preference_task(config, workdir: pathlib.Path, mesh, rules) -> Task:
    """Pairwise preferences (``preference`` builder) scored by a cross-encoder as a list of two
    ``[CLS] prompt [SEP] response [SEP]``; a ranking (reward-model) or DPO-family objective; preference accuracy,
    margin and loss on the held-out split.

    Data: ``config.data.manual_dir`` (``train.jsonl``/``test.jsonl``) or, when empty, the ChatterBot synthetic
    preference set (:func:`ranking_jax.data.chatterbot.write_preferences`). ``config.data.reward_model`` adds
    reward-model scores (``chosen_score``/``rejected_score``, e.g. for MADPO): ``"minilm"`` (zero-shot
    similarity, :func:`similarity_reward`) or the ``export_dir`` of a run that trained one (:func:`trained_reward`).
    With ``config.data.features`` the model is an MLP over frozen sentence features (:func:`sentence_features`)
    instead of a cross-encoder. A ``candidates_<eval split>.jsonl`` in ``manual_dir`` (``{prompt,
    responses, rewards}`` lines) adds the ``policy`` evaluator (:class:`ranking_jax.evaluate.PolicyEvaluator`).
    DPO's reference is the initial model (``build_model(config)``), scored once over both splits before training
    and carried in the batches as ``reference_scores`` ``[B, 2]``.
    """
    d, p = config.data, config.preference
    features = d.get("features", "")
    if config.model.name != ("mlp_ranker" if features else "cross_encoder"):
        raise ValueError(f"config.model.name={config.model.name!r}: the preference task scores "
                         "[CLS] prompt [SEP] response [SEP] pairs with 'cross_encoder', or frozen sentence features "
                         "(config.data.features) with 'mlp_ranker'")
    tokenizer = data_lib.TextTokenizer()
    split_features: dict[str, np.ndarray] = {}

    def features_of(split_or_rows) -> np.ndarray:
        """:func:`sentence_features` of a split (computed once per split) or of rows."""
        if isinstance(split_or_rows, str) and split_or_rows in split_features:
            return split_features[split_or_rows]
        rows = src[split_or_rows] if isinstance(split_or_rows, str) else split_or_rows
        decoded = [{k: v.decode() if isinstance(v, bytes) else v for k, v in rows[i].items()} for i in range(len(rows))]
        out = sentence_features(config, decoded)
        if isinstance(split_or_rows, str):
            split_features[split_or_rows] = out
        return out

    def pipeline(split_or_rows, *, train: bool = False, extra=None):
        rows = src[split_or_rows] if isinstance(split_or_rows, str) else split_or_rows
        if features:  # the MLP reads only the features: no token arrays
            extra = dict(extra or {}, features=features_of(split_or_rows))
        return data_lib.preference_pipeline(
            rows, batch_size=d.batch_size if train else d.eval_batch_size, train=train, seed=config.seed,
            prompt_length=d.prompt_length, response_length=d.response_length, tokenizer=tokenizer, pairs=True,
            text=not features, extra=extra)

    reward, version = None, ""
    if d.reward_model == "minilm":
        reward = similarity_reward(d.reward_model)
    elif d.reward_model:
        exported = [pathlib.Path(d.reward_model) / f for f in ("model.safetensors", checkpoint.PARAMS_FILE)]
        if not any(f.exists() for f in exported):
            raise FileNotFoundError(f"config.data.reward_model={d.reward_model!r}: neither 'minilm' nor the "
                                    "export_dir of a run (model.safetensors or params.npz)")
        version = str(max(f.stat().st_mtime_ns for f in exported if f.exists()))  # a retrained model is rescored
        reward = trained_reward(d.reward_model, pipeline=pipeline, mesh=mesh, rules=rules)
    if d.manual_dir:
        source = pathlib.Path(d.manual_dir)
        if reward is not None:
            key = f"scored|{source.resolve()}|{d.reward_model}|{version}"
            source = _scored_copy(source, reward, data_cache(config, key))
    else:
        from ranking_jax.data import chatterbot
        source = chatterbot.write_preferences(data_cache(config, f"chatterbot-preferences|{d.reward_model}"),
                                              reward_fn=reward)
    builder = data_lib.prepare(data_lib.Preference, config="jsonl",
                               data_dir=data_cache(config, f"preference|{source.resolve()}"), manual_dir=source)
    src = builder.as_data_source()
    for split in (d.train_split, d.eval_split):
        if split not in src:
            raise ValueError(f"config.data: split {split!r} is not in {source} (has {sorted(src)})")
    extra = {d.train_split: None, d.eval_split: None}
    if features:  # the MLP's input width, before the reference model is built
        with config.unlocked():
            config.model.num_features = int(features_of(d.train_split).shape[-1])
    if p.objective == "dpo":
        reference = build_model(config)  # the initial model: same pretrained weights and seed as the policy's
        for split in extra:
            scorer = evaluate.PreferenceEvaluator(pipeline(split, train=False), mesh=mesh, rules=rules)
            extra[split] = {"reference_scores": scorer.scores(reference)[0]}
        del reference
    objective = preference_objective(registry.lookup(config.loss), objective=p.objective,
                                     loss_inputs=dict(config.get("loss_inputs", {})))
    train_pipeline = pipeline(d.train_split, train=True, extra=extra[d.train_split])
    missing = sorted(set(dict(config.get("loss_inputs", {})).values()) - set(train_pipeline[0]))
    if missing:
        raise ValueError(f"config.loss_inputs reads batch keys {missing} that the preference batches lack (they "
                         f"have {sorted(train_pipeline[0])}); chosen_score/rejected_score need scored data: set "
                         "config.data.reward_model or give them in the JSONL")
    eval_pipeline = pipeline(d.eval_split, train=False, extra=extra[d.eval_split])
    evaluators = {"preference": evaluate.PreferenceEvaluator(eval_pipeline, mesh=mesh, rules=rules,
                                                             objective=objective)}
    candidates = pathlib.Path(d.manual_dir) / f"candidates_{d.eval_split}.jsonl" if d.manual_dir else None
    if candidates is not None and candidates.exists():
        sets = [obj for _, obj in data_lib.read_jsonl(candidates, required=("prompt", "responses", "rewards"))]
        for n, obj in enumerate(sets, 1):
            if len(obj["responses"]) != len(obj["rewards"]) or not obj["responses"]:
                raise data_lib.DataFormatError(candidates, n, "as many rewards as (at least one) responses",
                                               str(obj))
        prompts = [obj["prompt"] for obj in sets for _ in obj["responses"]]
        responses = [y for obj in sets for y in obj["responses"]]
        evaluators["policy"] = evaluate.PolicyEvaluator(
            response_scorer(prompts, responses, pipeline=pipeline, mesh=mesh, rules=rules),
            run_path=workdir / "policy.run", prompt_index=[i for i, obj in enumerate(sets) for _ in obj["responses"]],
            rewards=[float(r) for obj in sets for r in obj["rewards"]])
    return Task(train_pipeline.iterator(), evaluators, objective=objective)


TASKS: dict[str, Callable[..., Task]] = {"text_ranking": text_ranking_task, "letor": letor_task,
                                         "metric_learning": metric_learning_task, "preference": preference_task}


# --------------------------------------------------------------------------------------------- run
def tram_logits_fn(split, config) -> Callable:
    """TRAM's reference outputs ``(params, batch, key) -> scores`` (dropout off): at the given params, and for
    TRAM-x (``optimizer.tram.target="noise"``) on noised input embeddings (``optim.perturb_inputs``)."""
    c = optim.resolve_config(config)
    t = c.tram
    if c.name != "tram" or t.target != "noise":
        return lambda p, b, key: split.merge(p)(b, deterministic=True)
    return lambda p, b, key: split.merge(optim.perturb_inputs(p, key, t.sigma, t.inputs))(b, deterministic=True)


def run_one(config, workdir: pathlib.Path, *, progress: bool = True) -> dict:
    if config.task not in TASKS:
        raise ValueError(f"config.task={config.task!r} is unknown; valid: {sorted(TASKS)}")
    t0 = time.perf_counter()
    mesh = sharding.make_mesh(config.mesh)
    rules = rules_from(config)
    task = TASKS[config.task](config, workdir, mesh, rules)
    t_data = time.perf_counter() - t0
    resuming = checkpoint.resolve_start(workdir, resume=config.resume).source != "scratch"
    if task.model_kwargs:
        with config.unlocked():
            for k, v in task.model_kwargs.items():
                config.model[k] = v
    model = build_model(config, pretrained=not resuming)
    split, params = train.split_model(model)
    tx = optim.make(config)
    objective = task.objective or train.ranking_objective(registry.lookup(config.loss), labels=config.loss_labels,
                                                          loss_inputs=dict(config.get("loss_inputs", {})))
    loss_fn = train.objective_loss_fn(split, objective)
    t = config.train
    early = train.EarlyStopping(metric=config.early_stopping.metric, patience=config.early_stopping.patience,
                                mode=config.early_stopping.mode)
    logits_fn = tram_logits_fn(split, config)
    t_model = time.perf_counter() - t0 - t_data
    with jax.set_mesh(mesh), sharding.axis_rules(rules):
        summary = train.train_and_evaluate(
            workdir=workdir, model=split, params=params, tx=tx, loss_fn=loss_fn, train_data=task.train_data,
            mesh=mesh, rules=rules, num_steps=t.num_steps, seed=config.seed, accum_steps=t.accum_steps,
            log_every=t.log_every, eval_every=t.eval_every, checkpoint_every=t.checkpoint_every,
            keep_checkpoints=t.keep_checkpoints, evaluators=task.evaluators, early_stopping=early,
            resume=config.resume, lr_fn=optim.learning_rate_fn(config), logits_fn=logits_fn, progress=progress,
            eval_before=t.eval_before)
    params = summary.pop("params")
    summary["timing"].update(data_s=round(t_data, 2), model_s=round(t_model, 2),
                             total_s=round(time.perf_counter() - t0, 2))
    if config.get("export_dir"):
        module = split.merge(params)
        if hasattr(module, "save_pretrained"):
            module.save_pretrained(workdir / config.export_dir, source=config.model.get("pretrained"))
        else:
            checkpoint.export_params(params, workdir / config.export_dir, config=config)
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def _table(summaries: Mapping[str, dict]) -> str:
    lines = ["| run | metric | before | after |", "|---|---|---|---|"]
    for name, s in summaries.items():
        before, after = s.get("eval_before", {}), s.get("eval_after", {})
        for k in sorted(after):
            b = f"{before[k]:.4f}" if k in before else "-"
            lines.append(f"| {name} | {k} | {b} | {after[k]:.4f} |")
    return "\n".join(lines)


def run(config, workdir: str | pathlib.Path) -> dict:
    """Runs ``config`` (or each of ``config.runs``) in ``workdir``; prints and returns the summaries."""
    workdir = pathlib.Path(workdir)
    if "runs" in config:
        summaries = {name: run_one(sub, workdir / name) for name, sub in config.runs.items()}
    else:
        summaries = {config.get("name", "run"): run_one(config, workdir)}
    table = _table(summaries)
    (workdir / "summary.md").write_text(table + "\n")
    print(table, flush=True)
    return summaries
