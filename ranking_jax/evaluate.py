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
import json
import pathlib
import sys
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ranking_jax import sharding
from ranking_jax.data.pipeline import trim_padding
from ranking_jax.metrics import trec

__all__ = ["RerankEvaluator", "RetrievalEvaluator", "EmbeddingEvaluator", "PreferenceEvaluator", "exact_topk", "main"]


# ----------------------------------------------------------------------------------------- evaluators
class RerankEvaluator:
    """Re-ranks every judged query's candidate list with ``model(batch) -> scores [B, L]`` and evaluates the run.

    ``batches()`` yields evaluation batches: full candidate lists, where chunks of one long list share a
    ``query_index`` and padding has ``mask`` False / ``query_index`` -1. ``doc_id(query_index, doc_index)``
    names a candidate in the run. Returns trec_eval-semantics means (:func:`ranking_jax.metrics.trec.evaluate`).
    """

    def __init__(self, batches: Callable[[], Iterable[Mapping[str, np.ndarray]]], *, query_ids: Sequence[str],
                 doc_id: Callable[[int, int], str], qrels: Mapping[str, Mapping[str, int]],
                 measures: Union[str, Sequence[str]], mesh, rules=sharding.DEFAULT_RULES,
                 run_path: Union[str, pathlib.Path, None] = None, tag: str = "ranking_jax"):
        self.batches, self.query_ids, self.doc_id, self.qrels = batches, query_ids, doc_id, qrels
        self.measures, self.mesh, self.rules, self.run_path, self.tag = measures, mesh, rules, run_path, tag
        self._score = _jitted(lambda m, b: m(b, deterministic=True))

    def run(self, model) -> dict[str, dict[str, float]]:
        run: dict[str, dict[str, float]] = collections.defaultdict(dict)
        with jax.set_mesh(self.mesh), sharding.axis_rules(self.rules):
            for batch in self.batches():
                device_batch = sharding.shard_batch(trim_padding(dict(batch)), self.mesh, self.rules)
                scores = np.asarray(jax.device_get(self._score(model, device_batch)), np.float64)
                q_index, d_index, mask = batch["query_index"], batch["doc_index"], batch["mask"]
                for b in np.flatnonzero(q_index >= 0):
                    docs = run[self.query_ids[q_index[b]]]
                    for slot in np.flatnonzero(mask[b]):
                        docs[self.doc_id(int(q_index[b]), int(d_index[b, slot]))] = float(scores[b, slot])
        return dict(run)

    def __call__(self, model) -> dict[str, float]:
        run = self.run(model)
        if self.run_path is not None:
            trec.write_run(self.run_path, run, tag=self.tag)
        return trec.evaluate(self.qrels, run, self.measures)


def _jitted(fn: Callable) -> Callable:
    """``call(model, batch)``: ``fn(merged model, batch)`` jitted once per model graph."""
    cache: dict[Any, Callable] = {}

    def call(model, batch):
        graphdef, state = nnx.split(model)
        if graphdef not in cache:
            cache[graphdef] = jax.jit(lambda s, b: fn(nnx.merge(graphdef, s), b))
        return cache[graphdef](state, batch)

    return call


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


class RetrievalEvaluator:
    """Dense retrieval with a bi-encoder: the corpus and the judged queries are encoded in batches sharded on
    the mesh's batch axis, then :func:`exact_topk` over the whole corpus; evaluates the run."""

    def __init__(self, *, query_tokens: Mapping[str, np.ndarray], query_rows: Sequence[int],
                 doc_tokens: Mapping[str, np.ndarray], query_ids: Sequence[str], doc_ids: Sequence[str],
                 qrels: Mapping[str, Mapping[str, int]], measures: Union[str, Sequence[str]], mesh,
                 rules=sharding.DEFAULT_RULES, k: int = 100, batch_size: int = 256, chunk: int = 8192,
                 run_path: Union[str, pathlib.Path, None] = None, tag: str = "ranking_jax"):
        self.query_tokens, self.query_rows, self.doc_tokens = query_tokens, list(query_rows), doc_tokens
        self.query_ids, self.doc_ids, self.qrels, self.measures = query_ids, doc_ids, qrels, measures
        self.mesh, self.rules, self.k, self.batch_size, self.chunk = mesh, rules, k, batch_size, chunk
        self.run_path, self.tag = run_path, tag
        self._queries = _jitted(lambda m, b: m.encode_queries(b["ids"], b["mask"]))
        self._docs = _jitted(lambda m, b: m.encode_docs(b["ids"], b["mask"]))

    def _encode(self, encode, model, tokens) -> jax.Array:
        """Rows sorted by length, batches cut to a length bucket (few shapes), sharded on the batch axis."""
        n = len(tokens["ids"])
        size = max(self.batch_size - self.batch_size % self.mesh.size, self.mesh.size)
        order = np.argsort(-tokens["mask"].sum(-1), kind="stable")
        out = np.zeros((n,), object)
        with jax.set_mesh(self.mesh), sharding.axis_rules(self.rules):
            for start in range(0, n, size):
                rows = order[start:start + size]
                chunk = {f"doc_{k}": np.pad(tokens[k][rows], ((0, size - len(rows)), (0, 0))) for k in ("ids", "mask")}
                chunk = {k[4:]: v for k, v in trim_padding(chunk).items()}
                emb = np.asarray(jax.device_get(encode(model, sharding.shard_batch(chunk, self.mesh, self.rules))))
                out[rows] = list(emb[:len(rows)])
        return jnp.asarray(np.stack(out))

    def run(self, model) -> dict[str, dict[str, float]]:
        q = self._encode(self._queries, model, self.query_tokens)
        d = self._encode(self._docs, model, self.doc_tokens)
        scores, index = exact_topk(q, d, self.k, chunk=self.chunk)
        return {self.query_ids[row]: {self.doc_ids[j]: float(s) for s, j in zip(scores[i], index[i])}
                for i, row in enumerate(self.query_rows)}

    def __call__(self, model) -> dict[str, float]:
        run = self.run(model)
        if self.run_path is not None:
            trec.write_run(self.run_path, run, tag=self.tag)
        return trec.evaluate(self.qrels, run, self.measures)


_INPUTS = ("pair_", "query_", "doc_", "prompt_", "chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask",
           "images", "features")


def _collect(fn: Callable, model, batches: Iterable[Mapping[str, np.ndarray]], rows: Callable, mesh, rules
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``fn(model, batch)`` over ``batches`` (sharded on the batch axis): the outputs and the batches' other
    fields except the model inputs (tokens, images), concatenated over the rows that ``rows(batch)`` (bool
    ``[B]``) keeps."""
    outputs, fields = [], collections.defaultdict(list)
    with jax.set_mesh(mesh), sharding.axis_rules(rules):
        for batch in batches:
            keep = rows(batch)
            out = np.asarray(jax.device_get(fn(model, sharding.shard_batch(trim_padding(dict(batch)), mesh, rules))))
            outputs.append(out[keep])
            for k, v in batch.items():
                if not k.startswith(_INPUTS):
                    fields[k].append(np.asarray(v)[keep])
    if not outputs:
        raise ValueError("the evaluation split yielded no batches")
    return np.concatenate(outputs), {k: np.concatenate(v) for k, v in fields.items()}


class EmbeddingEvaluator:
    """Metric learning on held-out (open-world) classes: embeds every item with ``model(batch) -> [B, D]`` and
    returns leave-one-out Recall@k (``R@k``), OPIS and epsilon-OPIS (:mod:`ranking_jax.metrics.metric_learning`).

    ``batches()`` yields ``{images, class_labels, mask [B]}`` (padding rows masked); ``out_path`` (``.npz``)
    keeps the last embeddings and labels.
    """

    def __init__(self, batches: Callable[[], Iterable[Mapping[str, np.ndarray]]], *, mesh,
                 rules=sharding.DEFAULT_RULES, ks: Sequence[int] = (1, 2, 4, 8), distance: str = "cosine",
                 epsilon: float = 0.05, out_path: Union[str, pathlib.Path, None] = None):
        self.batches, self.mesh, self.rules, self.ks = batches, mesh, rules, tuple(ks)
        self.distance, self.epsilon, self.out_path = distance, epsilon, out_path
        self._embed = _jitted(lambda m, b: m(b, deterministic=True))

    def embed(self, model) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings [N, D], class labels [N])`` of the real rows, in split order."""
        emb, fields = _collect(self._embed, model, self.batches(), lambda b: np.asarray(b["mask"], bool), self.mesh,
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

    ``batches()`` yields preference batches with pair fields (``data.preference_pipeline(pairs=True)``).
    """

    def __init__(self, batches: Callable[[], Iterable[Mapping[str, np.ndarray]]], *, mesh,
                 rules=sharding.DEFAULT_RULES, objective: Optional[Callable] = None):
        self.batches, self.mesh, self.rules, self.objective = batches, mesh, rules, objective
        self._score = _jitted(lambda m, b: m(b, deterministic=True))

    def scores(self, model) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(scores [N, 2], other batch fields [N, ...])`` of the real pairs, in split order."""
        scores, fields = _collect(self._score, model, self.batches(), lambda b: np.asarray(b["mask"])[:, 0],
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
