"""Evaluators: ``evaluator(model) -> {metric: value}``, run on every process (the forward passes are collectives
over the global batch); only process 0 writes run files.

Re-ranking (a list model, or a bi-encoder from embeddings), dense retrieval, metric-learning embeddings,
preference pairs and a softmax policy over candidate responses. Run evaluators write a TREC run and its per-query
values (:func:`per_query_path`) for paired tests and return trec_eval-semantics means
(:mod:`ranking_jax.metrics.trec`). ``python -m ranking_jax.evaluate`` evaluates run files.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import pathlib
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ranking_jax import runtime, scoring, sharding
from ranking_jax.data import formats
from ranking_jax.data.encoding import encode_docs, encode_queries, encode_rows, global_batch, jitted
from ranking_jax.data.pipeline import text_pipeline
from ranking_jax.metrics import trec
from ranking_jax.registry import register

__all__ = ["RerankEvaluator", "DenseRerankEvaluator", "RetrievalEvaluator", "EmbeddingEvaluator",
           "PreferenceEvaluator", "PolicyEvaluator", "evaluate_baselines", "evaluate_run", "per_query_path",
           "score_lists", "score_triples"]

log = logging.getLogger(__name__)
Batches = Sequence[Mapping[str, np.ndarray]]  # e.g. a data.Pipeline: len() and [i]


def _is_input(key: str) -> bool:
    """Model inputs (token arrays, images, features), as opposed to list fields such as ``query_index``."""
    return key in ("images", "features") or key.endswith(("_ids", "_mask"))


def _forward(model, batch):
    return model(batch, deterministic=True)


_WITH_FIELDS: dict[Callable, Callable] = {}


def _with_fields(fn: Callable) -> Callable:
    """``fn`` returning also the batch's non-input fields, so they come back in the outputs' (global) row order."""
    if fn not in _WITH_FIELDS:
        _WITH_FIELDS[fn] = lambda m, b: (fn(m, b), {k: v for k, v in b.items() if not _is_input(k)})
    return _WITH_FIELDS[fn]


def _collect(fn: Callable, model, batches: Batches, rows: Callable, mesh, rules
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``fn(model, batch)`` over ``batches`` (this process's rows; padding trimmed, sharded on the batch axis): the
    global outputs and the batches' other fields except the model inputs, concatenated over the rows that
    ``rows(fields)`` (bool ``[B]``) keeps. Every process gets all of them."""
    outputs, fields = [], collections.defaultdict(list)
    with jax.set_mesh(mesh), sharding.axis_rules(rules):
        for i in range(len(batches)):
            out, f = jitted(_with_fields(fn), model, global_batch(batches[i], mesh, rules), mesh=mesh)
            f = {k: np.asarray(v) for k, v in f.items()}
            keep = rows(f)
            outputs.append(np.asarray(out)[keep])
            for k, v in f.items():
                fields[k].append(v[keep])
    if not outputs:
        raise ValueError("the evaluation split yielded no batches")
    return np.concatenate(outputs), {k: np.concatenate(v) for k, v in fields.items()}


def score_lists(model, lists: Sequence[tuple[int, Sequence[int]]], *, family: str, queries, corpus,
                tokenizer=None, batch_size: int = 32, mesh=None, rules=sharding.DEFAULT_RULES) -> np.ndarray:
    """A model's scores ``[n, L]`` of ``(query_index, doc_indices)`` lists of one length ``L``, in order (dropout
    off; ``queries``/``corpus`` as :func:`ranking_jax.data.text_pipeline` takes them; one device unless ``mesh``
    is given)."""
    size = len(lists[0][1]) if lists else 0
    if any(len(docs) != size for _, docs in lists):
        raise ValueError("score_lists: the lists must have one length")
    records = [{"query_index": q, "doc_index": np.asarray(docs, np.int32), "labels": np.zeros(size, np.float32)}
               for q, docs in lists]
    mesh = mesh or sharding.make_mesh([("data", 1)], devices=jax.devices()[:1])
    shard = None if mesh.size > 1 or jax.process_count() > 1 else (0, 1)
    batches = text_pipeline(records, family=family, queries=queries, corpus=corpus, batch_size=batch_size,
                            list_size=size, train=False, tokenizer=tokenizer, shard=shard)
    scores, _ = _collect(_forward, model, batches, lambda f: f["query_index"] >= 0, mesh, rules)
    return scores


def score_triples(model, triples: Sequence[tuple[int, int, int]], **kw) -> np.ndarray:
    """A teacher's scores ``[n, 2]`` (d+, d-) of ``(query_index, pos_index, neg_index)`` triples
    (:func:`score_lists`)."""
    return score_lists(model, [(q, (p, n)) for q, p, n in triples], **kw)


def per_query_path(run_path: Union[str, pathlib.Path]) -> pathlib.Path:
    """Where a run evaluator writes ``{query_id: {measure: value}}`` beside its run file."""
    return pathlib.Path(f"{run_path}.per_query.json")


def _finish_run(run_path, run, per_query: Mapping[str, Mapping[str, float]], *, tag: str) -> dict[str, float]:
    """Writes ``run`` and ``per_query`` (process 0, when ``run_path`` is set); returns the means over queries."""
    if run_path is not None and runtime.is_writer():
        formats.write_run(run_path, run, tag=tag)
        per_query_path(run_path).write_text(json.dumps(per_query, indent=1) + "\n")
    return trec.aggregate(per_query)


def evaluate_run(run: Mapping[str, Mapping[str, float]], *, qrels: Mapping[str, Mapping[str, int]],
                 measures: Union[str, Sequence[str]], run_path: Union[str, pathlib.Path, None] = None,
                 tag: str = "ranking_jax") -> dict[str, float]:
    """Means of ``measures`` over the judged queries of a fixed run (e.g. a first stage's), written like the
    evaluators' runs."""
    return _finish_run(run_path, run, trec.evaluate_per_query(qrels, run, measures), tag=tag)


def evaluate_baselines(candidates: Mapping[str, Mapping[str, float]], *, qrels: Mapping[str, Mapping[str, int]],
                       measures: Union[str, Sequence[str]], seed: int, directory: Union[str, pathlib.Path],
                       prefix: str = "", first_stage: bool = True) -> dict[str, dict[str, float]]:
    """The runs that bracket a re-ranker of ``candidates`` ``{query: {doc: first-stage score}}``, each evaluated
    and written to ``directory/[PREFIX_]KIND.run``: ``first_stage`` (its own order; when ``first_stage``),
    ``random`` (a uniform permutation of each list, drawn from ``seed``) and ``oracle`` (the best possible
    re-order: by judged relevance, ties in first-stage order)."""
    rng = np.random.default_rng(seed)
    runs: dict[str, dict] = {"first_stage": {}, "random": {}, "oracle": {}}
    for qid in sorted(candidates):
        docs = formats.ranked(candidates[qid])
        n, judged = len(docs), qrels.get(qid, {})
        runs["first_stage"][qid] = dict(candidates[qid])
        runs["random"][qid] = dict(zip(docs, map(float, rng.permutation(n))))
        runs["oracle"][qid] = {d: float(max(judged.get(d, 0), 0) * (n + 1) + n - i) for i, d in enumerate(docs)}
    if not first_stage:
        del runs["first_stage"]
    name = prefix.replace("/", "_")
    return {f"{prefix}{kind}": evaluate_run(run, qrels=qrels, measures=measures, tag=kind,
                                            run_path=pathlib.Path(directory) / f"{name}{kind}.run")
            for kind, run in runs.items()}


class _RunEvaluator:
    """Builds a run ``{query_id: {doc_id: score}}`` (``self.run(model)``), writes it to ``run_path`` as a TREC
    run file and its per-query values to ``run_path`` + ``.per_query.json`` (for paired significance tests),
    and returns trec_eval-semantics means (:func:`ranking_jax.metrics.trec.evaluate`)."""

    def __init__(self, *, qrels: Mapping[str, Mapping[str, int]], measures: Union[str, Sequence[str]], mesh,
                 rules, run_path: Union[str, pathlib.Path, None], tag: str):
        self.qrels, self.measures, self.mesh, self.rules, self.run_path, self.tag = \
            qrels, measures, mesh, rules, run_path, tag

    def run(self, model) -> dict[str, dict[str, float]]:
        raise NotImplementedError

    def __call__(self, model) -> dict[str, float]:
        return evaluate_run(self.run(model), qrels=self.qrels, measures=self.measures, run_path=self.run_path,
                            tag=self.tag)


@register("evaluators.rerank")
class RerankEvaluator(_RunEvaluator):
    """Re-ranks every judged query's candidate list with ``model(batch) -> scores [B, L]`` and evaluates the run.

    ``batches`` are evaluation batches: full candidate lists, where chunks of one long list share a
    ``query_index`` and padding has ``mask`` False / ``query_index`` -1. ``doc_id(query_index, doc_index)``
    names a candidate in the run.
    """

    def __init__(self, batches: Batches, *, query_ids: Sequence[str], doc_id: Callable[[int, int], str],
                 qrels: Mapping[str, Mapping[str, int]], measures: Union[str, Sequence[str]], mesh,
                 rules=sharding.DEFAULT_RULES, run_path: Union[str, pathlib.Path, None] = None,
                 tag: str = "ranking_jax"):
        super().__init__(qrels=qrels, measures=measures, mesh=mesh, rules=rules, run_path=run_path, tag=tag)
        self.batches, self.query_ids, self.doc_id = batches, query_ids, doc_id

    def run(self, model) -> dict[str, dict[str, float]]:
        scores, fields = _collect(_forward, model, self.batches, lambda f: f["query_index"] >= 0, self.mesh,
                                  self.rules)
        run: dict[str, dict[str, float]] = collections.defaultdict(dict)
        for q, docs, mask, row in zip(fields["query_index"], fields["doc_index"], fields["mask"], scores):
            ranked = run[self.query_ids[q]]
            for slot in np.flatnonzero(mask):
                ranked[self.doc_id(int(q), int(docs[slot]))] = float(row[slot])
        return dict(run)


class _DenseEvaluator(_RunEvaluator):
    """A run from bi-encoder embeddings of the queries ``query_rows`` and the documents ``doc_tokens`` holds
    (:func:`ranking_jax.data.encoding.encode_rows`; each text encoded once, in length-sorted batches of
    ``batch_size``)."""

    def __init__(self, *, query_tokens: Mapping[str, np.ndarray], query_rows: Sequence[int],
                 doc_tokens: Mapping[str, np.ndarray], query_ids: Sequence[str], doc_ids: Sequence[str],
                 qrels: Mapping[str, Mapping[str, int]], measures: Union[str, Sequence[str]], mesh,
                 rules=sharding.DEFAULT_RULES, batch_size: int = 256, run_path: Union[str, pathlib.Path, None] = None,
                 tag: str = "ranking_jax"):
        super().__init__(qrels=qrels, measures=measures, mesh=mesh, rules=rules, run_path=run_path, tag=tag)
        self.query_tokens, self.query_rows, self.doc_tokens = query_tokens, list(query_rows), doc_tokens
        self.query_ids, self.doc_ids, self.batch_size = query_ids, doc_ids, batch_size

    def embeddings(self, model) -> tuple[np.ndarray, np.ndarray]:
        """``(queries [Q, D], documents [N, D])`` in the rows' order."""
        encode = functools.partial(encode_rows, model=model, mesh=self.mesh, rules=self.rules,
                                   batch_size=self.batch_size)
        return encode(encode_queries, tokens=self.query_tokens), encode(encode_docs, tokens=self.doc_tokens)


@register("evaluators.retrieval")
class RetrievalEvaluator(_DenseEvaluator):
    """Dense retrieval with a bi-encoder: the judged queries and the whole corpus (``doc_tokens``: every row)
    are encoded, then :func:`ranking_jax.scoring.exact_topk` (top ``k``, ``chunk`` documents at a time); evaluates
    the run."""

    def __init__(self, *, k: int = 100, chunk: int = 8192, **kw):
        super().__init__(**kw)
        self.k, self.chunk = k, chunk

    def run(self, model) -> dict[str, dict[str, float]]:
        q, d = self.embeddings(model)
        scores, index = scoring.exact_topk(jnp.asarray(q), jnp.asarray(d), self.k, chunk=self.chunk)
        return {self.query_ids[row]: {self.doc_ids[j]: float(s) for s, j in zip(scores[i], index[i])}
                for i, row in enumerate(self.query_rows)}


@register("evaluators.dense_rerank")
class DenseRerankEvaluator(_DenseEvaluator):
    """Re-ranking with a bi-encoder from embeddings: ``candidates`` ``{query row: corpus rows}`` scored by the dot
    product of the query's and each candidate's embedding, the score ``BiEncoder.__call__`` gives, with each
    distinct query and document encoded once (:class:`RerankEvaluator` encodes a document once per list it is
    in). ``doc_tokens`` holds the corpus rows ``doc_rows``, which must cover every candidate."""

    def __init__(self, *, doc_rows: Sequence[int], candidates: Mapping[int, Sequence[int]], **kw):
        super().__init__(**kw)
        self.position = {int(r): i for i, r in enumerate(doc_rows)}
        if len(self.position) != len(self.doc_tokens["ids"]):
            raise ValueError(f"doc_rows: {len(self.position)} distinct rows for {len(self.doc_tokens['ids'])} "
                             "rows of doc_tokens; give one row per tokenized document")
        self.candidates = {q: np.asarray(candidates.get(q, ()), np.int64) for q in self.query_rows}
        missing = sorted({int(r) for c in self.candidates.values() for r in c} - self.position.keys())
        if missing:
            raise ValueError(f"candidates name corpus rows {missing[:5]} that doc_rows lacks; tokenize them too")
        if empty := sum(len(c) == 0 for c in self.candidates.values()):
            log.warning("dense re-ranking: %d of %d judged queries have no candidates (they score 0)", empty,
                        len(self.candidates))

    def run(self, model) -> dict[str, dict[str, float]]:
        q, d = self.embeddings(model)
        run = {}
        for i, row in enumerate(self.query_rows):
            docs = self.candidates[row]
            scores = d[[self.position[int(r)] for r in docs]] @ q[i] if len(docs) else ()
            run[self.query_ids[row]] = {self.doc_ids[int(r)]: float(s) for r, s in zip(docs, scores)}
        return run


@register("evaluators.embedding")
class EmbeddingEvaluator:
    """Metric learning on held-out (open-world) classes: embeds every item with ``model(batch) -> [B, D]`` and
    returns leave-one-out Recall@k (``R@k``), OPIS and epsilon-OPIS (:mod:`ranking_jax.metrics.metric_learning`).

    ``batches`` are ``{images, class_labels, mask [B]}`` (padding rows masked); ``out_path`` (``.npz``)
    keeps the last embeddings and labels.
    """

    def __init__(self, batches: Batches, *, mesh, rules=sharding.DEFAULT_RULES, ks: Sequence[int] = (1, 2, 4, 8),
                 distance: str = "cosine", epsilon: float = 0.05, out_path: Union[str, pathlib.Path, None] = None):
        self.batches, self.mesh, self.rules, self.ks = batches, mesh, rules, tuple(ks)
        self.distance, self.epsilon, self.out_path = distance, epsilon, out_path

    def embed(self, model) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings [N, D], class labels [N])`` of the real rows, in split order."""
        emb, fields = _collect(_forward, model, self.batches, lambda f: f["mask"].astype(bool), self.mesh,
                               self.rules)
        return emb.astype(np.float32), fields["class_labels"]

    def __call__(self, model) -> dict[str, float]:
        from ranking_jax.metrics import metric_learning as ml

        emb, labels = self.embed(model)
        if self.out_path is not None and runtime.is_writer():
            np.savez(self.out_path, embeddings=emb, class_labels=labels)
        recalls = ml.recall_at_k(emb, labels, k=list(self.ks), distance=self.distance)
        out = {f"R@{k}": float(r) for k, r in zip(self.ks, recalls)}
        out["opis"] = float(ml.opis(emb, labels, distance=self.distance))
        out["eps_opis"] = float(ml.eps_opis(emb, labels, epsilon=self.epsilon, distance=self.distance))
        return out


@register("evaluators.preference")
class PreferenceEvaluator:
    """Preference pairs scored as a list of two, ``model(batch) -> [B, 2]`` (column 0 chosen, 1 rejected):
    ``accuracy`` = share of non-tied pairs with ``s_chosen >= s_rejected`` (:func:`ranking_jax.metrics.
    ranking_accuracy`), ``margin`` = mean ``s_chosen - s_rejected``, and ``loss`` = the training objective
    (:class:`ranking_jax.objectives.Objective` of the scores) over all pairs at once, when given.

    ``batches`` are preference batches with pair fields (``data.preference_pipeline(pairs=True)``).
    """

    def __init__(self, batches: Batches, *, mesh, rules=sharding.DEFAULT_RULES, objective: Optional[Callable] = None):
        self.batches, self.mesh, self.rules, self.objective = batches, mesh, rules, objective

    def scores(self, model) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(scores [N, 2], other batch fields [N, ...])`` of the real pairs, in split order."""
        scores, fields = _collect(_forward, model, self.batches, lambda f: f["mask"][:, 0], self.mesh,
                                  self.rules)
        return scores.astype(np.float32), fields

    def __call__(self, model) -> dict[str, float]:
        from ranking_jax.metrics import ranking_accuracy

        scores, fields = self.scores(model)
        untied = ~fields["tie"]
        out = {"accuracy": float(ranking_accuracy(scores[:, 0], scores[:, 1], where=untied)),
               "margin": float(np.mean(scores[:, 0] - scores[:, 1]))}
        if self.objective is not None:
            batch = {k: jnp.asarray(v) for k, v in fields.items() if not k.startswith("pair_")}
            total, _ = self.objective({"scores": jnp.asarray(scores)}, batch, jax.random.key(0))
            out["loss"] = float(total)
        return out


@register("evaluators.policy")
class PolicyEvaluator:
    """A softmax policy over each prompt's candidate responses, ``π(y|x) = softmax_y s(x, y)``: ``expected_reward``
    = mean over prompts of ``Σ_y π(y|x) r*(x, y)`` (the policy's choice sampled, in exact expectation) and
    ``greedy_reward`` = mean of ``r*(x, argmax_y s)`` (ties: the first candidate). ``run_path`` gets the scores as
    a TREC run (prompt ``p<i>``, candidate ``c<j>``) and the per-prompt values beside it (:func:`per_query_path`).

    ``score(model) -> [N]`` scores the candidates (e.g. ``ranking_jax.tasks.rewards.response_scorer``);
    ``prompt_index`` [N] groups them by prompt and ``rewards`` [N] are the ground truth.
    """

    def __init__(self, score: Callable[[Any], np.ndarray], *, prompt_index: Sequence[int], rewards: Sequence[float],
                 run_path: Union[str, pathlib.Path, None] = None):
        self.score, self.run_path = score, run_path
        self.prompt_index, self.rewards = np.asarray(prompt_index), np.asarray(rewards, np.float64)

    def __call__(self, model) -> dict[str, float]:
        scores = np.asarray(self.score(model), np.float64)
        if len(scores) != len(self.rewards):
            raise ValueError(f"PolicyEvaluator: {len(scores)} scored rows for {len(self.rewards)} rewards")
        per_prompt, run = {}, {}
        for p in np.unique(self.prompt_index):
            rows = np.flatnonzero(self.prompt_index == p)
            s, r = scores[rows], self.rewards[rows]
            pi = np.exp(s - s.max())
            pi /= pi.sum()
            per_prompt[f"p{p}"] = {"expected_reward": float(pi @ r), "greedy_reward": float(r[np.argmax(s)])}
            run[f"p{p}"] = {f"c{j}": float(v) for j, v in enumerate(s)}
        return _finish_run(self.run_path, run, per_prompt, tag="policy")
