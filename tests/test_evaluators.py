"""ranking_jax.evaluators: re-ranking and dense retrieval runs and their metrics against ir-measures (pytrec_eval)."""

import ir_measures
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _models import TINY, tiny_inputs
from ranking_jax import evaluators, sharding
from ranking_jax.data import formats

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
    ev = evaluators.RerankEvaluator(list(batches()), query_ids=[f"q{q}" for q in range(12)],
                                    doc_id=lambda q, d: f"d{d}", qrels=qrels, measures=MEASURES, mesh=mesh,
                                    run_path=tmp_path / "rr.run")
    result = ev(model)
    # the same run computed directly, outside the evaluator
    scores = np.asarray(model._embed(jnp.asarray(doc_ids), jnp.asarray(doc_mask)) @ model.w[...])
    run = {f"q{q}": {f"d{d}": float(scores[d]) for d in docs} for q, docs in lists.items()}
    assert formats.read_run(tmp_path / "rr.run").keys() == run.keys()
    expected = _ir_measures(qrels, run)
    for name in MEASURES.split():
        assert result[name] == pytest.approx(expected[name], abs=1e-5), name


def _lists(rng, queries=12, docs=40):
    lists = {q: rng.choice(docs, rng.integers(3, 15), replace=False) for q in range(queries)}
    lists[5] = np.zeros(0, np.int64)  # a judged query without candidates: in the run, with no documents
    return lists


def _list_batches(lists, q_tokens, d_tokens, size=8):
    """RerankEvaluator batches of a bi-encoder: 8 lists of ``size`` candidates (longer lists in chunks)."""
    rows = [(q, docs[start:start + size]) for q, docs in lists.items() for start in range(0, max(len(docs), 1), size)]
    out = []
    for start in range(0, len(rows), 8):
        b = {"query_index": np.full(8, -1, np.int32), "doc_index": np.full((8, size), -1, np.int32),
             "mask": np.zeros((8, size), bool), "query_ids": np.zeros((8, q_tokens["ids"].shape[1]), np.int32),
             "query_mask": np.zeros((8, q_tokens["ids"].shape[1]), np.int32),
             "doc_ids": np.zeros((8, size, d_tokens["ids"].shape[1]), np.int32),
             "doc_mask": np.zeros((8, size, d_tokens["ids"].shape[1]), np.int32)}
        for i, (q, docs) in enumerate(rows[start:start + 8]):
            b["query_index"][i], b["doc_index"][i, :len(docs)], b["mask"][i, :len(docs)] = q, docs, True
            b["query_ids"][i], b["query_mask"][i] = q_tokens["ids"][q], q_tokens["mask"][q]
            b["doc_ids"][i, :len(docs)], b["doc_mask"][i, :len(docs)] = d_tokens["ids"][docs], d_tokens["mask"][docs]
        out.append(b)
    return out


def test_dense_rerank_evaluator_matches_ir_measures(tmp_path):
    rng, doc_ids, doc_mask, qrels = _collection(seed=2)
    q_ids = rng.integers(1, 50, (12, 5)).astype(np.int32)
    q_mask = (np.arange(5) < rng.integers(1, 6, 12)[:, None]).astype(np.int32)
    lists = _lists(rng)
    doc_rows = np.unique(np.concatenate(list(lists.values())))
    model = Linear()
    ev = evaluators.DenseRerankEvaluator(
        query_tokens={"ids": q_ids, "mask": q_mask}, query_rows=list(range(12)),
        doc_tokens={"ids": doc_ids[doc_rows], "mask": doc_mask[doc_rows]}, doc_rows=doc_rows, candidates=lists,
        query_ids=[f"q{i}" for i in range(12)], doc_ids=[f"d{i}" for i in range(40)], qrels=qrels,
        measures=MEASURES, mesh=sharding.make_mesh([("data", -1)]), batch_size=16, run_path=tmp_path / "dr.run")
    result = ev(model)
    qe = np.asarray(model._embed(jnp.asarray(q_ids), jnp.asarray(q_mask)))
    de = np.asarray(model._embed(jnp.asarray(doc_ids), jnp.asarray(doc_mask)))
    run = {f"q{q}": {f"d{d}": float(qe[q] @ de[d]) for d in docs} for q, docs in lists.items()}
    written = formats.read_run(tmp_path / "dr.run")
    assert written.keys() == {f"q{q}" for q, docs in lists.items() if len(docs)}
    assert {q: sorted(docs) for q, docs in written.items()} == \
        {q: sorted(docs) for q, docs in run.items() if docs}
    expected = _ir_measures(qrels, run)
    for name in MEASURES.split():
        assert result[name] == pytest.approx(expected[name], abs=1e-5), name
    with pytest.raises(ValueError, match="candidates name corpus rows"):
        evaluators.DenseRerankEvaluator(
            query_tokens={"ids": q_ids, "mask": q_mask}, query_rows=list(range(12)),
            doc_tokens={"ids": doc_ids[doc_rows[1:]], "mask": doc_mask[doc_rows[1:]]}, doc_rows=doc_rows[1:],
            candidates=lists, query_ids=[f"q{i}" for i in range(12)], doc_ids=[f"d{i}" for i in range(40)],
            qrels=qrels, measures=MEASURES, mesh=sharding.make_mesh([("data", -1)]))


def test_dense_rerank_equals_list_rerank_of_a_bi_encoder(tmp_path):
    """A BiEncoder's re-ranking from embeddings (each text once) gives the scores of its own forward over the
    candidate lists (RerankEvaluator), so switching evaluators changes no number."""
    from ranking_jax.models import bi_encoder
    config = {f: getattr(TINY, f) for f in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                            "intermediate_size", "max_position_embeddings")}
    model = bi_encoder(config=config, pooling="mean", seed=3)
    q_ids, q_mask, _ = tiny_inputs(12, 9, seed=4)
    d_ids, d_mask, _ = tiny_inputs(40, 17, seed=5)
    lists = _lists(np.random.default_rng(6))
    doc_rows = np.unique(np.concatenate(list(lists.values())))
    qrels = _collection(seed=7)[3]
    mesh = sharding.make_mesh([("data", 4), ("model", 2)])
    common = dict(query_ids=[f"q{i}" for i in range(12)], qrels=qrels, measures=MEASURES, mesh=mesh)
    listwise = evaluators.RerankEvaluator(_list_batches(lists, {"ids": q_ids, "mask": q_mask},
                                                      {"ids": d_ids, "mask": d_mask}),
                                        doc_id=lambda q, d: f"d{d}", **common).run(model)
    dense = evaluators.DenseRerankEvaluator(
        query_tokens={"ids": q_ids, "mask": q_mask}, query_rows=list(range(12)),
        doc_tokens={"ids": d_ids[doc_rows], "mask": d_mask[doc_rows]}, doc_rows=doc_rows, candidates=lists,
        doc_ids=[f"d{i}" for i in range(40)], batch_size=8, **common).run(model)
    assert dense.keys() == listwise.keys() and dense["q5"] == listwise["q5"] == {}
    for q, docs in listwise.items():
        assert dense[q].keys() == docs.keys()
        np.testing.assert_allclose([dense[q][d] for d in docs], list(docs.values()), rtol=1e-5, atol=1e-5)


def test_retrieval_evaluator_matches_brute_force(tmp_path):
    rng, doc_ids, doc_mask, qrels = _collection(seed=1)
    q_ids = rng.integers(1, 50, (12, 5)).astype(np.int32)
    q_mask = (np.arange(5) < rng.integers(1, 6, 12)[:, None]).astype(np.int32)
    model = Linear()
    mesh = sharding.make_mesh([("data", -1)])
    ev = evaluators.RetrievalEvaluator(
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
