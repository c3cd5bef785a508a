"""ranking_jax.data.bm25: scores against the formula computed by hand in NumPy, and cranfield retrieval against bm25s
(independent implementation, same analyzed tokens and parameters) evaluated with ir-measures."""

import collections
import math

import ir_measures
import numpy as np
import pytest
import tensorflow_datasets as tfds
from ir_measures import nDCG

from ranking_jax import data

tfds.disable_progress_bar()


def test_scores_match_hand_formula():
    docs = ["a b c a", "b d", "a a a e f g", "c"]
    queries = ["a c", "b b", "z", "a d e"]
    k1, b = 1.2, 0.75
    bm25 = data.BM25(k1=k1, b=b, analyze=str.split).index(docs)
    toks = [d.split() for d in docs]
    n, avgdl = len(docs), np.mean([len(t) for t in toks])
    expected = np.zeros((len(queries), n))
    for qi, q in enumerate(queries):
        for term in q.split():
            df = sum(term in t for t in toks)
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            for di, t in enumerate(toks):
                tf = t.count(term)
                expected[qi, di] += idf * tf / (tf + k1 * (1 - b + b * len(t) / avgdl))
    np.testing.assert_allclose(bm25.scores(queries), expected, rtol=1e-6, atol=1e-7)
    top, scores = bm25.search(queries, k=3)
    # query "a c": docs 0, 2, 3 match; ties broken by row; "z" matches nothing -> all padding
    for qi in range(len(queries)):
        matching = np.flatnonzero(expected[qi] > 0)
        ranked = sorted(matching, key=lambda d: (-expected[qi, d], d))[:3]
        np.testing.assert_array_equal(top[qi, :len(ranked)], ranked)
        assert (top[qi, len(ranked):] == -1).all() and np.isneginf(scores[qi, len(ranked):]).all()
        np.testing.assert_allclose(scores[qi, :len(ranked)], expected[qi, ranked], rtol=1e-6)


def test_search_chunking_is_exact():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(30)]
    docs = [" ".join(rng.choice(vocab, size=rng.integers(1, 20))) for _ in range(200)]
    queries = [" ".join(rng.choice(vocab, size=3)) for _ in range(40)]
    bm25 = data.BM25(analyze=str.split).index(docs)
    whole = bm25.search(queries, k=50)
    chunked = bm25.search(queries, k=50, budget=100)  # many small chunks
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])


def test_analyzer():
    analyze = data.analyzer()
    assert analyze("The Running dogs, and a cat's toys!") == ["run", "dog", "cat", "toi"]
    assert data.analyzer(stemmer=None)("The Running dogs") == ["running", "dogs"]


@pytest.fixture(scope="module")
def cranfield(shared_dir, tmp_path_factory):
    builder = data.prepare(data.Beir, config="cranfield", data_dir=tmp_path_factory.mktemp("tfds"),
                           manual_dir=shared_dir / "data")
    return builder.as_data_source()


def test_cranfield_ndcg_matches_bm25s(cranfield, shared_dir, tmp_path):
    import bm25s

    corpus, queries = cranfield["corpus"], cranfield["queries"]
    doc_texts, query_texts = data.texts(corpus), data.texts(queries)
    doc_ids = [corpus[i]["doc_id"].decode() for i in range(len(corpus))]
    qids = [queries[i]["query_id"].decode() for i in range(len(queries))]
    analyze = data.analyzer()
    top, scores = data.BM25(k1=0.9, b=0.4, analyze=analyze).index(doc_texts).search(query_texts, k=100)
    path = data.write_run(tmp_path / "bm25.trec", {q: {doc_ids[d]: float(v) for d, v in zip(t[t >= 0], s[t >= 0])}
                                                   for q, t, s in zip(qids, top, scores)})

    oracle = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    oracle.index([analyze(t) for t in doc_texts], show_progress=False)
    o_docs, o_scores = oracle.retrieve([analyze(q) for q in query_texts], k=100, show_progress=False)
    o_run = [ir_measures.ScoredDoc(qids[i], doc_ids[d], float(s))
             for i in range(len(qids)) for d, s in zip(o_docs[i], o_scores[i]) if s > 0]
    qrels = list(ir_measures.read_trec_qrels(_trec_qrels(shared_dir, tmp_path)))
    ours = ir_measures.calc_aggregate([nDCG @ 10], qrels, ir_measures.read_trec_run(str(path)))[nDCG @ 10]
    theirs = ir_measures.calc_aggregate([nDCG @ 10], qrels, o_run)[nDCG @ 10]
    assert abs(ours - theirs) < 0.01, (ours, theirs)
    # stronger: the same top-10 scores query by query (the run file keeps 6 decimals)
    np.testing.assert_allclose(scores[:, :10], o_scores[:, :10], rtol=1e-5)
    # the run file reads back into the candidate lists the pipelines use
    cands = data.candidates_from_run(data.read_run(path), queries=data.IdIndex(qids), docs=data.IdIndex(doc_ids))
    np.testing.assert_array_equal(cands[0], top[0][top[0] >= 0])


def _trec_qrels(shared_dir, tmp_path):
    path = tmp_path / "qrels.txt"
    rows = data.read_qrels_lines(shared_dir / "data" / "cranfield" / "qrels" / "test.tsv")
    path.write_text("".join(f"{q} 0 {d} {r}\n" for _, q, d, r in rows))
    return str(path)


def test_training_lists_from_bm25_candidates(cranfield):
    """Hard negatives: the negative pool is the BM25 candidates minus the positives, plus judged negatives."""
    corpus, queries = cranfield["corpus"], cranfield["queries"]
    qrels = data.qrels_from_split(cranfield["test"])
    rows = list(qrels)
    top, _ = data.BM25().index(data.texts(corpus)).search(data.Texts(queries)[rows], k=20)
    cands = data.candidates_from_search(rows, top)
    records = data.train_lists(qrels, cands, depth=10)
    by_query = {r["query_index"]: r for r in records}
    q = rows[0]
    judged, labels = qrels[q]
    r = by_query[q]
    assert set(r["positives"].tolist()) == set(judged[labels >= 1].tolist())
    expected_pool = [d for d in top[0][:10].tolist() if d not in set(judged[labels >= 1].tolist())]
    assert r["negatives"][:len(expected_pool)].tolist() == expected_pool
    assert set(r["negatives"][len(expected_pool):].tolist()) == set(judged[labels < 1].tolist()) - set(expected_pool)
    triples = data.hard_negative_triples(qrels, cands, per_query=3, depth=10, seed=0)
    assert collections.Counter(t[0] for t in triples)[q] == 3
    for qi, p, n in triples:
        assert p in by_query[qi]["positives"] and n in by_query[qi]["negatives"]
