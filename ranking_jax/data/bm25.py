"""BM25 first-stage retrieval (Robertson & Zaragoza, 2009) on scipy.sparse: candidate lists, TREC runs.

Lucene's variant (as in Anserini and bm25s ``method="lucene"``), with ``dl`` the analyzed document
length and ``avgdl`` its corpus mean:

    score(q, d) = sum_{t in q} idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * dl / avgdl)),
    idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5)).

A repeated query term counts once per occurrence. Only matching documents (score > 0) are
returned; shorter candidate lists are padded with index -1 and score -inf. Ties are broken by corpus row.
Analyzer: lowercase, possessive "'s" removed, ``\\w+`` tokens, Lucene's English stopwords, Porter
stemming (PyStemmer).

    python scripts/prepare_bm25_run.py --data_dir D --config cranfield --manual_dir ../shared/data \\
        --split test --k 1000 --out runs/cranfield.bm25.trec
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["BM25", "LUCENE_STOPWORDS", "analyzer"]

# Lucene's EnglishAnalyzer default stop set (also Anserini's).
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split())
_TOKEN = re.compile(r"\w+")
_POSSESSIVE = re.compile(r"['\u2019]s\b")  # Lucene's EnglishPossessiveFilter


def analyzer(*, stemmer: str | None = "porter", stopwords: frozenset[str] = LUCENE_STOPWORDS
             ) -> Callable[[str], list[str]]:
    """text -> analyzed terms: lowercase, "'s" dropped, ``\\w+`` tokens, stopwords removed, stemmed (PyStemmer)."""
    stem = None
    if stemmer is not None:
        try:
            import Stemmer
        except ImportError:
            raise ImportError("BM25 stemming needs PyStemmer: pip install pystemmer==3.1.0 (or pass stemmer=None)"
                              ) from None
        stem = Stemmer.Stemmer(stemmer).stemWords

    def analyze(text: str) -> list[str]:
        terms = [t for t in _TOKEN.findall(_POSSESSIVE.sub("", text.lower())) if t not in stopwords]
        return [t for t in stem(terms) if t] if stem else terms

    return analyze


class BM25:
    """In-memory BM25 index: ``BM25().index(doc_texts).search(query_texts, k=1000)``."""

    def __init__(self, *, k1: float = 0.9, b: float = 0.4, analyze: Callable[[str], list[str]] | None = None):
        self.k1, self.b = k1, b
        self.analyze = analyze or analyzer()
        self.vocab: dict[str, int] = {}
        self._weights: sp.csr_matrix | None = None  # [vocab, docs]

    def index(self, texts: Sequence[str]) -> "BM25":
        rows, cols = [], []
        for d, text in enumerate(texts):
            for term in self.analyze(text):
                rows.append(self.vocab.setdefault(term, len(self.vocab)))
                cols.append(d)
        n_docs = len(texts)
        tf = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(self.vocab), n_docs))
        tf.sum_duplicates()  # csr construction sums repeated (term, doc) entries into term frequencies
        dl = np.bincount(np.asarray(cols, np.int64), minlength=n_docs).astype(np.float64)
        df = np.diff(tf.indptr).astype(np.float64)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        norm = self.k1 * (1 - self.b + self.b * dl / max(dl.mean(), 1e-9))
        t = tf.data.astype(np.float64)
        term_of_entry = np.repeat(np.arange(len(self.vocab)), np.diff(tf.indptr))
        tf.data = (idf[term_of_entry] * t / (t + norm[tf.indices])).astype(np.float32)
        self._weights = tf
        self.num_docs = n_docs
        return self

    def query_matrix(self, queries: Sequence[str]) -> sp.csr_matrix:
        """[n_queries, vocab] term counts of the analyzed queries (terms absent from the corpus dropped)."""
        rows, cols = [], []
        for i, q in enumerate(queries):
            for term in self.analyze(q):
                if term in self.vocab:
                    rows.append(i)
                    cols.append(self.vocab[term])
        return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(queries), len(self.vocab)))

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Dense [n_queries, n_docs] BM25 scores (for small corpora and tests)."""
        return (self.query_matrix(queries) @ self._weights).toarray()

    def search(self, queries: Sequence[str], *, k: int = 1000, budget: int = 1 << 25
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` corpus rows [n_queries, k] int32 (-1 = padding) and scores float32 (-inf = padding).

        Queries are scored in chunks whose posting-list lengths sum to at most ``budget`` (bounds memory).
        """
        if self._weights is None:
            raise RuntimeError("BM25.search called before BM25.index(texts)")
        q = self.query_matrix(queries)
        postings = q.astype(bool) @ np.diff(self._weights.indptr)  # an upper bound of each query's matches
        n = len(queries)
        top = np.full((n, k), -1, np.int32)
        top_scores = np.full((n, k), -np.inf, np.float32)
        for start, stop in _chunks(postings, budget):
            hits = q[start:stop] @ self._weights  # csr [chunk, docs]; the entries are the matching docs
            for i in range(hits.shape[0]):
                docs, s = hits.indices[hits.indptr[i]:hits.indptr[i + 1]], hits.data[hits.indptr[i]:hits.indptr[i + 1]]
                if len(s) > k:  # keep every doc tied with the k-th score; the sort below breaks ties by row
                    kth = s[np.argpartition(-s, k - 1)[k - 1]]
                    docs, s = docs[s >= kth], s[s >= kth]
                order = np.lexsort((docs, -s))[:k]
                top[start + i, :len(order)] = docs[order]
                top_scores[start + i, :len(order)] = s[order]
        return top, top_scores


def _chunks(costs: np.ndarray, budget: int):
    """Consecutive (start, stop) ranges whose costs sum to at most ``budget`` (at least one item each)."""
    start, total = 0, 0
    for i, c in enumerate(costs.tolist()):
        if total + c > budget and i > start:
            yield start, i
            start, total = i, 0
        total += c
    if start < len(costs):
        yield start, len(costs)
