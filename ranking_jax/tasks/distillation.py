"""Distillation inputs: teachers, their scores of training triples, and their own re-ranking as a baseline.

``config.data.teacher`` names comma-separated teachers, each a folder another run exported (its ``export_dir``: a
cross-encoder, or any model as ``params.npz``), a pretrained sentence-transformers bi-encoder (``minilm``, ``mpnet``
or a folder with ``modules.json``), which scores by its own similarity from embeddings, each text encoded once,
documents cut to ``data.teacher_length`` tokens, or ``first_stage``: the first stage's own scores (a document it did
not retrieve gets the query's lowest), for hybrid ensembles. Every teacher scores ``data.teacher_per_query``
(positive, hard negative) triples per training query and the evaluation candidates, once per content (cached).
With ``data.teacher_norm = "zscore"`` each teacher's scores are standardized by the mean and standard deviation of
its training-triple scores before the ensemble's mean (Hofstätter et al.'s T2 averages raw scores: ``"none"``).
The ensemble's training scores are written to ``WORKDIR/teacher.tsv`` in the paper's format; its re-ranking of the
evaluation candidates is the run's ``teacher`` baseline, so a table can check that the teachers beat the first
stage before reading anything into the students.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np
from flax import nnx

from ranking_jax import checkpoint, models, registry, runtime
from ranking_jax import data as data_lib
from ranking_jax.data.encoding import encode_docs, encode_queries, encode_rows
from ranking_jax.evaluators import score_lists
from ranking_jax.models._common import resolve_pretrained
from ranking_jax.tasks import Context
from ranking_jax.tasks.cache import cached

NORMS = ("none", "zscore")


def load_exported(directory: str | pathlib.Path) -> tuple[nnx.Module, str]:
    """``(model, family)`` a run exported to ``directory`` (its ``export_dir``): a cross-encoder in Hugging Face
    layout (``model.safetensors``) or any model as ``params.npz`` + ``config.json``
    (:func:`ranking_jax.checkpoint.export_params`), whose ``model.name`` is the family."""
    from ml_collections import ConfigDict

    from ranking_jax import train
    directory = pathlib.Path(directory)
    if (directory / "model.safetensors").exists():
        return registry.lookup("models.cross_encoder")(pretrained=directory), "cross_encoder"
    if not (directory / checkpoint.PARAMS_FILE).exists():
        raise FileNotFoundError(f"{directory} holds no exported model (model.safetensors or "
                                f"{checkpoint.PARAMS_FILE}); set config.export_dir in the run that trains it")
    config = ConfigDict(json.loads((directory / "config.json").read_text()))
    split, params = train.split_model(models.from_config(config.model, seed=config.seed, pretrained=False))
    return split.merge(checkpoint.import_params(params, directory)), config.model.name


def _teacher(spec: str) -> pathlib.Path:
    path = resolve_pretrained(spec)
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise FileNotFoundError(f"config.data.teacher: {spec} is neither an exported model (config.json; train the "
                                "teacher with config.export_dir set and name that folder) nor a sentence-transformers "
                                "model (modules.json; or 'minilm', 'mpnet')")
    return path


def _is_bi_encoder(teacher: pathlib.Path) -> bool:
    """A sentence-transformers model (``modules.json``), unless ranking_jax exported it as another family (a
    cross-encoder export keeps its source's modules beside ``"ranking_jax_family"`` in ``config.json``)."""
    config = teacher / "config.json"
    family = json.loads(config.read_text()).get("ranking_jax_family") if config.is_file() else None
    return (teacher / "modules.json").is_file() and family in (None, "bi_encoder")


def _score_pairs(config, ctx: Context, c, teacher: pathlib.Path, pairs: np.ndarray) -> np.ndarray:
    """``teacher``'s scores ``[P]`` of ``(query row, document row)`` pairs ``[P, 2]``, cached by content."""
    d = config.data
    bi_encoder = _is_bi_encoder(teacher)

    def build(out):
        if bi_encoder:
            model = registry.lookup("models.bi_encoder")(pretrained=teacher)
            tokenizer = data_lib.TextTokenizer(teacher, query_length=d.query_length, doc_length=d.teacher_length)
            q_rows, d_rows = np.unique(pairs[:, 0]), np.unique(pairs[:, 1])
            encode = dict(model=model, mesh=ctx.mesh, rules=ctx.rules, batch_size=8 * d.eval_batch_size)
            q = encode_rows(encode_queries, tokens=tokenizer.encode_queries([c.query_texts[r] for r in q_rows]),
                            **encode)
            e = encode_rows(encode_docs, tokens=tokenizer.encode_docs([c.corpus_texts[r] for r in d_rows]), **encode)
            scores = np.sum(q[np.searchsorted(q_rows, pairs[:, 0])] * e[np.searchsorted(d_rows, pairs[:, 1])], -1)
        else:
            model, family = load_exported(teacher)
            own = teacher if (teacher / "tokenizer.json").is_file() else None  # else the default (MiniLM) vocabulary
            tokenizer = data_lib.TextTokenizer(own, query_length=d.query_length, doc_length=d.doc_length,
                                               colbert=family == "colbert")
            same = tokenizer.digest == c.query_table.digest  # else the tables' ids mean other words: use the texts
            queries = c.query_table if same else np.asarray(c.query_texts, dtype=object)
            corpus = c.corpus if same else np.asarray(c.corpus_texts, dtype=object)
            scores = score_lists(model, [(int(q), (int(doc),)) for q, doc in pairs], family=family,
                                 queries=queries, corpus=corpus, tokenizer=tokenizer,
                                 batch_size=8 * d.eval_batch_size, mesh=ctx.mesh, rules=ctx.rules)[:, 0]
        np.save(out / "scores.npy", np.asarray(scores, np.float32))

    lengths = (d.query_length, d.teacher_length) if bi_encoder else (d.query_length, d.doc_length)
    key = (teacher, c.source, hashlib.sha256(np.ascontiguousarray(pairs, np.int64).tobytes()).hexdigest(), lengths)
    return np.load(cached(config, "teacher-scores", key=key, build=build) / "scores.npy")


def teacher_scores(config, ctx: Context, c, triples, eval_candidates: dict) -> tuple[np.ndarray, dict]:
    """The ensemble's scores of ``triples`` ``[n, 2]`` and of the evaluation candidates ``{query row: [scores]}``
    (see the module docstring)."""
    d = config.data
    if d.teacher_norm not in NORMS:
        raise ValueError(f"config.data.teacher_norm={d.teacher_norm!r}: one of {NORMS}")
    train_pairs = np.asarray([(q, doc) for q, p, n in triples for doc in (p, n)], np.int64).reshape(-1, 2)
    eval_pairs = np.asarray([(q, int(doc)) for q in sorted(eval_candidates) for doc in eval_candidates[q]],
                            np.int64).reshape(-1, 2)
    pairs = np.concatenate([train_pairs, eval_pairs])
    members = []
    for spec in filter(None, (s.strip() for s in d.teacher.split(","))):
        if spec == "first_stage":
            scores = c.first_stage_scores(pairs[:, 0], pairs[:, 1]).astype(np.float64)
        else:
            scores = _score_pairs(config, ctx, c, _teacher(spec), pairs).astype(np.float64)
        if d.teacher_norm == "zscore":
            train = scores[:len(train_pairs)]
            scores = (scores - train.mean()) / max(train.std(), 1e-12)
        members.append(scores)
    mean = np.mean(members, axis=0)
    train, rest = mean[:len(train_pairs)].reshape(-1, 2), mean[len(train_pairs):]
    by_query, start = {}, 0
    for q in sorted(eval_candidates):
        by_query[q] = rest[start:start + len(eval_candidates[q])]
        start += len(eval_candidates[q])
    return train, by_query


def teacher_records(config, ctx: Context, c, train_qrels: dict, eval_rows) -> tuple[list[dict], dict]:
    """Training records of teacher-scored triples and the ensemble's run over the first stage's top
    ``eval_depth`` of the query rows ``eval_rows`` (the ``teacher`` baseline); ``c`` is the training collection
    (:class:`ranking_jax.tasks.text_ranking.Collection`)."""
    d = config.data
    triples = data_lib.hard_negative_triples(train_qrels, c.ranked(d.train_depth), per_query=d.teacher_per_query,
                                             depth=d.train_depth, seed=0)
    candidates = {q: rows for q, rows in c.ranked(d.eval_depth).items() if q in eval_rows}
    scores, eval_scores = teacher_scores(config, ctx, c, triples, candidates)
    if runtime.is_writer():
        data_lib.write_teacher_triples(ctx.workdir / "teacher.tsv", triples, scores, query_ids=c.query_ids,
                                       doc_ids=c.doc_ids)
    run = {c.query_ids[q]: {c.doc_ids[int(doc)]: float(s) for doc, s in zip(candidates[q], eval_scores[q])}
           for q in candidates}
    return data_lib.teacher_lists((q, p, n, sp, sn) for (q, p, n), (sp, sn) in zip(triples, scores)), run
