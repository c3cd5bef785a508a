"""Evaluators: re-ranking and dense retrieval runs and their metrics against ir-measures (pytrec_eval)."""

import ir_measures
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ranking_jax import evaluate, sharding
from ranking_jax.metrics import trec

MEASURES = "nDCG@10 RR AP R@5 P@3"  # RR: trec_eval recip_rank (ir-measures computes RR@k with its msmarco provider)
IRM = [ir_measures.parse_measure(m) for m in MEASURES.split()]


class Linear(nnx.Module):
    """Scores list items from token ids: w · mean-embedding; encodes texts the same way (a tiny bi-encoder)."""

    def __init__(self, vocab=50, dim=6):
        self.table = nnx.Param(jax.random.normal(jax.random.key(0), (vocab, dim)))
        self.w = nnx.Param(jax.random.normal(jax.random.key(1), (dim,)))

    def _embed(self, ids, mask):
        m = mask[..., None].astype(jnp.float32)
        return (self.table[...][ids] * m).sum(-2) / jnp.maximum(m.sum(-2), 1.0)

    def __call__(self, batch, *, deterministic=True, rngs=None):
        return self._embed(batch["doc_ids"], batch["doc_mask"]) @ self.w[...]

    def encode_queries(self, ids, mask):
        return self._embed(ids, mask)

    def encode_docs(self, ids, mask):
        return self._embed(ids, mask)


def _collection(seed=0, queries=12, docs=40, length=7):
    rng = np.random.default_rng(seed)
    doc_ids = rng.integers(1, 50, (docs, length)).astype(np.int32)
    doc_mask = (np.arange(length) < rng.integers(1, length + 1, docs)[:, None]).astype(np.int32)
    qrels = {f"q{q}": {f"d{d}": int(rng.integers(0, 3)) for d in rng.choice(docs, 6, replace=False)}
             for q in range(queries)}
    return rng, doc_ids, doc_mask, qrels


def _ir_measures(qrels, run):
    qrels_l = [ir_measures.Qrel(q, d, r) for q, ds in qrels.items() for d, r in ds.items()]
    run_l = [ir_measures.ScoredDoc(q, d, s) for q, ds in run.items() for d, s in ds.items()]
    return {str(k): v for k, v in ir_measures.calc_aggregate(IRM, qrels_l, run_l).items()}


def test_rerank_evaluator_matches_ir_measures(tmp_path):
    rng, doc_ids, doc_mask, qrels = _collection()
    model = Linear()
    lists = {q: rng.choice(len(doc_ids), rng.integers(3, 15), replace=False) for q in range(12)}
    size, rows = 8, []
    for q, docs in lists.items():  # lists longer than `size` are chunks sharing the query_index
        for start in range(0, len(docs), size):
            rows.append((q, docs[start:start + size]))

    def batches():
        for start in range(0, len(rows), 8):
            chunk = rows[start:start + 8]
            b = {"query_index": np.full(8, -1, np.int32), "doc_index": np.full((8, size), -1, np.int32),
                 "mask": np.zeros((8, size), bool), "doc_ids": np.zeros((8, size, 7), np.int32),
                 "doc_mask": np.zeros((8, size, 7), np.int32)}
            for i, (q, docs) in enumerate(chunk):
                b["query_index"][i], b["doc_index"][i, :len(docs)], b["mask"][i, :len(docs)] = q, docs, True
                b["doc_ids"][i, :len(docs)], b["doc_mask"][i, :len(docs)] = doc_ids[docs], doc_mask[docs]
            yield b

    mesh = sharding.make_mesh([("data", -1)])
    ev = evaluate.RerankEvaluator(list(batches()), query_ids=[f"q{q}" for q in range(12)], doc_id=lambda q, d: f"d{d}",
                                  qrels=qrels, measures=MEASURES, mesh=mesh, run_path=tmp_path / "rr.run")
    result = ev(model)
    # the same run computed directly, outside the evaluator
    scores = np.asarray(model._embed(jnp.asarray(doc_ids), jnp.asarray(doc_mask)) @ model.w[...])
    run = {f"q{q}": {f"d{d}": float(scores[d]) for d in docs} for q, docs in lists.items()}
    assert trec.read_run(tmp_path / "rr.run").keys() == run.keys()
    expected = _ir_measures(qrels, run)
    for name in MEASURES.split():
        assert result[name] == pytest.approx(expected[name], abs=1e-5), name


def test_exact_topk_chunked_equals_full_sort():
    rng = np.random.default_rng(3)
    q, d = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(103, 8)).astype(np.float32)
    s, i = evaluate.exact_topk(jnp.asarray(q), jnp.asarray(d), 10, chunk=16)
    full = q @ d.T
    np.testing.assert_array_equal(i, np.argsort(-full, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(s, np.take_along_axis(full, i, 1), rtol=1e-5)


def test_retrieval_evaluator_matches_brute_force(tmp_path):
    rng, doc_ids, doc_mask, qrels = _collection(seed=1)
    q_ids = rng.integers(1, 50, (12, 5)).astype(np.int32)
    q_mask = (np.arange(5) < rng.integers(1, 6, 12)[:, None]).astype(np.int32)
    model = Linear()
    mesh = sharding.make_mesh([("data", -1)])
    ev = evaluate.RetrievalEvaluator(
        query_tokens={"ids": q_ids, "mask": q_mask}, query_rows=list(range(12)),
        doc_tokens={"ids": doc_ids, "mask": doc_mask}, query_ids=[f"q{i}" for i in range(12)],
        doc_ids=[f"d{i}" for i in range(40)], qrels=qrels, measures=MEASURES, mesh=mesh, k=10, batch_size=16,
        chunk=16, run_path=tmp_path / "ret.run")
    result = ev(model)
    qe = np.asarray(model._embed(jnp.asarray(q_ids), jnp.asarray(q_mask)))
    de = np.asarray(model._embed(jnp.asarray(doc_ids), jnp.asarray(doc_mask)))
    full = qe @ de.T
    top = np.argsort(-full, axis=1, kind="stable")[:, :10]
    run = {f"q{i}": {f"d{j}": float(full[i, j]) for j in top[i]} for i in range(12)}
    expected = _ir_measures(qrels, run)
    for name in MEASURES.split():
        assert result[name] == pytest.approx(expected[name], abs=1e-5), name
