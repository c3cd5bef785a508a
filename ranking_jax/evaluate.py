"""Evaluators (re-ranking, dense retrieval) and ``python -m ranking_jax.evaluate``.

Command line (trec_eval semantics, see :mod:`ranking_jax.metrics.trec`)::

    python -m ranking_jax.evaluate --qrels QRELS --run RUN --metrics "nDCG@10 RR@10 AP R@100 P@5" [--per-query]

prints a JSON object of means over the judged queries (with ``--per-query``: ``{"mean": ..., "per_query":
{query_id: ...}}``). Judged queries missing from the run score 0 and run queries without judgments are skipped;
how many of each is reported on stderr.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import logging
import pathlib
import sys
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ranking_jax import sharding
from ranking_jax.data.pipeline import text_pipeline, trim_padding
from ranking_jax.metrics import trec

__all__ = ["RerankEvaluator", "DenseRerankEvaluator", "RetrievalEvaluator", "EmbeddingEvaluator",
           "PreferenceEvaluator", "PolicyEvaluator", "exact_topk", "score_triples", "main"]


# ----------------------------------------------------------------------------------------- evaluators
log = logging.getLogger(__name__)
Batches = Sequence[Mapping[str, np.ndarray]]  # e.g. a data.Pipeline: len() and [i]


def _jitted(fn: Callable) -> Callable:
    """``call(model, batch)``: ``fn(merged model, batch)`` jitted once per model graph."""
    cache: dict[Any, Callable] = {}

    def call(model, batch):
        graphdef, state = nnx.split(model)
        if graphdef not in cache:
            cache[graphdef] = jax.jit(lambda s, b: fn(nnx.merge(graphdef, s), b))
        return cache[graphdef](state, batch)

    return call


def _is_input(key: str) -> bool:
    """Model inputs (token arrays, images, features), as opposed to list fields such as ``query_index``."""
    return key in ("images", "features") or key.endswith(("_ids", "_mask"))


def _collect(fn: Callable, model, batches: Batches, rows: Callable, mesh, rules
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``fn(model, batch)`` over ``batches`` (padding trimmed, sharded on the batch axis): the outputs and the
    batches' other fields except the model inputs (tokens, images), concatenated over the rows that
    ``rows(batch)`` (bool ``[B]``) keeps."""
    outputs, fields = [], collections.defaultdict(list)
    with jax.set_mesh(mesh), sharding.axis_rules(rules):
        for i in range(len(batches)):
            batch = batches[i]
            keep = rows(batch)
            out = np.asarray(jax.device_get(fn(model, sharding.shard_batch(trim_padding(dict(batch)), mesh, rules))))
            outputs.append(out[keep])
            for k, v in batch.items():
                if not _is_input(k):
                    fields[k].append(np.asarray(v)[keep])
    if not outputs:
        raise ValueError("the evaluation split yielded no batches")
    return np.concatenate(outputs), {k: np.concatenate(v) for k, v in fields.items()}


def score_triples(model, triples: Sequence[tuple[int, int, int]], *, family: str, queries, corpus,
                  tokenizer=None, batch_size: int = 32, mesh=None, rules=sharding.DEFAULT_RULES) -> np.ndarray:
    """A teacher's scores ``[n, 2]`` (d+, d-) of ``(query_index, pos_index, neg_index)`` triples, in order
    (dropout off; ``queries``/``corpus`` as :func:`ranking_jax.data.text_pipeline` takes them; one device
    unless ``mesh`` is given)."""
    records = [{"query_index": q, "doc_index": np.array([p, n], np.int32), "labels": np.array([1, 0], np.float32)}
               for q, p, n in triples]
    batches = text_pipeline(records, family=family, queries=queries, corpus=corpus, batch_size=batch_size,
                            list_size=2, train=False, tokenizer=tokenizer, shard=(0, 1))
    mesh = mesh or sharding.make_mesh([("data", 1)], devices=jax.devices()[:1])
    scores, _ = _collect(_jitted(lambda m, b: m(b, deterministic=True)), model, batches,
                         lambda b: b["query_index"] >= 0, mesh, rules)
    return scores


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
        run = self.run(model)
        per_query = trec.evaluate_per_query(self.qrels, run, self.measures)
        return _finish_run(self.run_path, run, per_query, tag=self.tag)


def per_query_path(run_path: Union[str, pathlib.Path]) -> pathlib.Path:
    """Where a run evaluator writes ``{query_id: {measure: value}}`` beside its run file."""
    return pathlib.Path(f"{run_path}.per_query.json")


def _finish_run(run_path, run, per_query: Mapping[str, Mapping[str, float]], *, tag: str) -> dict[str, float]:
    """Writes ``run`` and ``per_query`` (when ``run_path`` is set) and returns the means over queries."""
    if run_path is not None:
        trec.write_run(run_path, run, tag=tag)
        per_query_path(run_path).write_text(json.dumps(per_query, indent=1) + "\n")
    return trec.aggregate(per_query)


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
        self._score = _jitted(lambda m, b: m(b, deterministic=True))

    def run(self, model) -> dict[str, dict[str, float]]:
        scores, fields = _collect(self._score, model, self.batches, lambda b: b["query_index"] >= 0, self.mesh,
                                  self.rules)
        run: dict[str, dict[str, float]] = collections.defaultdict(dict)
        for q, docs, mask, row in zip(fields["query_index"], fields["doc_index"], fields["mask"], scores):
            ranked = run[self.query_ids[q]]
            for slot in np.flatnonzero(mask):
                ranked[self.doc_id(int(q), int(docs[slot]))] = float(row[slot])
        return dict(run)


def exact_topk(queries: jax.Array, docs: jax.Array, k: int, *, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of ``queries @ docs.T`` scanning ``chunk`` documents at a time: memory O(Q·(chunk + k)).

    Ties keep the lower document row (``lax.top_k`` is stable over the running [best | chunk] candidates).
    """
    n = docs.shape[0]
    k = min(k, n)
    size = min(chunk, n)
    padded = jnp.pad(docs, ((0, -n % size), (0, 0)))

    @jax.jit
    def search(q, d):
        def body(carry, start):
            best_s, best_i = carry
            block = jax.lax.dynamic_slice_in_dim(d, start, size)
            s = q @ block.T
            rows = start + jnp.arange(size)
            s = jnp.where(rows[None, :] < n, s, -jnp.inf)
            cand_s = jnp.concatenate([best_s, s], axis=1)
            cand_i = jnp.concatenate([best_i, jnp.broadcast_to(rows, s.shape)], axis=1)
            top_s, pos = jax.lax.top_k(cand_s, k)
            return (top_s, jnp.take_along_axis(cand_i, pos, axis=1)), None

        init = (jnp.full((q.shape[0], k), -jnp.inf, q.dtype), jnp.full((q.shape[0], k), n, jnp.int32))
        (s, i), _ = jax.lax.scan(body, init, jnp.arange(0, d.shape[0], size))
        return s, i

    s, i = search(queries, padded)
    return np.asarray(s), np.asarray(i)


def encode_queries(model, batch):
    return model.encode_queries(batch["ids"], batch["mask"])


def encode_docs(model, batch):
    return model.encode_docs(batch["ids"], batch["mask"])


_ENCODERS: dict[Callable, Callable] = {}  # encode function -> its jitted form


def encode_tokens(encode: Callable, model, tokens: Mapping[str, np.ndarray], *, mesh, rules=sharding.DEFAULT_RULES,
                  batch_size: int = 256) -> np.ndarray:
    """``encode(model, {"ids", "mask"}) -> [B, D]`` over every row of ``tokens`` (``[N, T]`` arrays), returned
    ``[N, D]`` in row order. Rows are sorted by length and each batch is cut to a length bucket (a few compiled
    shapes), padded to a multiple of the mesh size and sharded on the batch axis. ``encode`` is jitted once per
    model graph (pass a module-level function, e.g. :func:`encode_docs`, to share that cache)."""
    if encode not in _ENCODERS:
        _ENCODERS[encode] = _jitted(encode)
    fn = _ENCODERS[encode]
    n = len(tokens["ids"])
    size = max(batch_size - batch_size % mesh.size, mesh.size)
    order = np.argsort(-tokens["mask"].sum(-1), kind="stable")
    out = None
    with jax.set_mesh(mesh), sharding.axis_rules(rules):
        for start in range(0, n, size):
            rows = order[start:start + size]
            chunk = {f"doc_{k}": np.pad(tokens[k][rows], ((0, size - len(rows)), (0, 0))) for k in ("ids", "mask")}
            chunk = {k[4:]: v for k, v in trim_padding(chunk).items()}
            emb = np.asarray(jax.device_get(fn(model, sharding.shard_batch(chunk, mesh, rules))))
            if out is None:
                out = np.empty((n,) + emb.shape[1:], emb.dtype)
            out[rows] = emb[:len(rows)]
    return out


class _DenseEvaluator(_RunEvaluator):
    """A run from bi-encoder embeddings of the queries ``query_rows`` and the documents ``doc_tokens`` holds
    (:func:`encode_tokens`; each text encoded once, in length-sorted batches of ``batch_size``)."""

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
        encode = functools.partial(encode_tokens, model=model, mesh=self.mesh, rules=self.rules,
                                   batch_size=self.batch_size)
        return encode(encode_queries, tokens=self.query_tokens), encode(encode_docs, tokens=self.doc_tokens)


class RetrievalEvaluator(_DenseEvaluator):
    """Dense retrieval with a bi-encoder: the judged queries and the whole corpus (``doc_tokens``: every row)
    are encoded, then :func:`exact_topk` (top ``k``, ``chunk`` documents at a time); evaluates the run."""

    def __init__(self, *, k: int = 100, chunk: int = 8192, **kw):
        super().__init__(**kw)
        self.k, self.chunk = k, chunk

    def run(self, model) -> dict[str, dict[str, float]]:
        q, d = self.embeddings(model)
        scores, index = exact_topk(jnp.asarray(q), jnp.asarray(d), self.k, chunk=self.chunk)
        return {self.query_ids[row]: {self.doc_ids[j]: float(s) for s, j in zip(scores[i], index[i])}
                for i, row in enumerate(self.query_rows)}


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
        self._embed = _jitted(lambda m, b: m(b, deterministic=True))

    def embed(self, model) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings [N, D], class labels [N])`` of the real rows, in split order."""
        emb, fields = _collect(self._embed, model, self.batches, lambda b: np.asarray(b["mask"], bool), self.mesh,
                               self.rules)
        return emb.astype(np.float32), fields["class_labels"]

    def __call__(self, model) -> dict[str, float]:
        from ranking_jax.metrics import metric_learning as ml

        emb, labels = self.embed(model)
        if self.out_path is not None:
            np.savez(self.out_path, embeddings=emb, class_labels=labels)
        recalls = ml.recall_at_k(emb, labels, k=list(self.ks), distance=self.distance)
        out = {f"R@{k}": float(r) for k, r in zip(self.ks, recalls)}
        out["opis"] = float(ml.opis(emb, labels, distance=self.distance))
        out["eps_opis"] = float(ml.eps_opis(emb, labels, epsilon=self.epsilon, distance=self.distance))
        return out


class PreferenceEvaluator:
    """Preference pairs scored as a list of two, ``model(batch) -> [B, 2]`` (column 0 chosen, 1 rejected):
    ``accuracy`` = share of non-tied pairs with ``s_chosen >= s_rejected`` (:func:`ranking_jax.metrics.
    ranking_accuracy`), ``margin`` = mean ``s_chosen - s_rejected``, and ``loss`` = ``objective(scores, batch)``
    (the training objective) over all pairs at once, when given.

    ``batches`` are preference batches with pair fields (``data.preference_pipeline(pairs=True)``).
    """

    def __init__(self, batches: Batches, *, mesh, rules=sharding.DEFAULT_RULES, objective: Optional[Callable] = None):
        self.batches, self.mesh, self.rules, self.objective = batches, mesh, rules, objective
        self._score = _jitted(lambda m, b: m(b, deterministic=True))

    def scores(self, model) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(scores [N, 2], other batch fields [N, ...])`` of the real pairs, in split order."""
        scores, fields = _collect(self._score, model, self.batches, lambda b: np.asarray(b["mask"])[:, 0],
                                  self.mesh, self.rules)
        return scores.astype(np.float32), fields

    def __call__(self, model) -> dict[str, float]:
        from ranking_jax.metrics import ranking_accuracy

        scores, fields = self.scores(model)
        untied = ~fields["tie"]
        out = {"accuracy": float(ranking_accuracy(scores[:, 0], scores[:, 1], where=untied)),
               "margin": float(np.mean(scores[:, 0] - scores[:, 1]))}
        if self.objective is not None:
            batch = {k: jnp.asarray(v) for k, v in fields.items() if not k.startswith("pair_")}
            out["loss"] = float(self.objective(jnp.asarray(scores), batch))
        return out


class PolicyEvaluator:
    """A softmax policy over each prompt's candidate responses, ``π(y|x) = softmax_y s(x, y)``: ``expected_reward``
    = mean over prompts of ``Σ_y π(y|x) r*(x, y)`` (the policy's choice sampled, in exact expectation) and
    ``greedy_reward`` = mean of ``r*(x, argmax_y s)`` (ties: the first candidate). ``run_path`` gets the scores as
    a TREC run (prompt ``p<i>``, candidate ``c<j>``) and the per-prompt values beside it (:func:`per_query_path`).

    ``score(model) -> [N]`` scores the candidates (e.g. ``experiment.response_scorer``); ``prompt_index`` [N]
    groups them by prompt and ``rewards`` [N] are the ground truth.
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Evaluates a TREC run against qrels and prints JSON; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m ranking_jax.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--qrels", required=True, help="qrels file: 'QUERY_ID ITERATION DOC_ID RELEVANCE' lines")
    parser.add_argument("--run", required=True, help="run file: 'QUERY_ID Q0 DOC_ID RANK SCORE TAG' lines")
    parser.add_argument("--metrics", default="nDCG@10 RR@10 AP R@100 P@5",
                        help="ir-measures names separated by spaces or commas (default: %(default)s)")
    parser.add_argument("--per-query", action="store_true", help="also print each judged query's values")
    args = parser.parse_args(argv)
    try:
        measures = trec.parse_measures(args.metrics)
        qrels, run = trec.read_qrels(args.qrels), trec.read_run(args.run)
        per_query = trec.evaluate_per_query(qrels, run, measures)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    means = trec.aggregate(per_query)
    missing, unjudged = sorted(set(qrels) - set(run)), sorted(set(run) - set(qrels))
    print(f"evaluated {len(qrels)} judged queries; {len(missing)} judged queries absent from the run count as 0 "
          f"(ir-measures default); {len(unjudged)} run queries without judgments skipped", file=sys.stderr)
    print(json.dumps({"mean": means, "per_query": per_query} if args.per_query else means, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
