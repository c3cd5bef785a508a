"""Ranking lists from qrels and candidates: the records the pipelines batch.

A query is ``query_index`` (row of the ``queries`` split), a document ``doc_index`` (row of ``corpus``).
  qrels       ``{query_index: (doc_index int32[n], labels float32[n])}`` (:func:`qrels_from_split`)
  candidates  ``{query_index: doc_index int32[m]}`` in rank order (:func:`candidates_from_run`,
              :func:`candidates_from_search`, :func:`candidates_from_split`)
Records:
  eval        ``{"query_index", "doc_index", "labels"}``: the full candidate list, labels from qrels
              (unjudged = 0); lists longer than ``list_size`` are split into consecutive chunks with the same
              ``query_index`` (consumers merge by query_index).
  train       ``{"query_index", "positives", "positive_labels", "negatives"}``: judged documents with label >=
              ``min_relevance`` are positives; the negative pool is the top ``depth`` candidates that are not
              positives, plus judged documents below ``min_relevance``. :func:`sample_training_list` draws
              the list of one epoch.
  teacher     ``{"query_index", "doc_index": [pos, neg], "labels": [1, 0], "teacher_scores": [s+, s-]}``.
Queries left out (e.g. training queries without a positive) are counted and logged.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from ranking_jax.data import formats

__all__ = ["Texts", "texts", "qrels_from_split", "candidates_from_split", "candidates_from_run",
           "candidates_from_search", "eval_lists", "train_lists", "sample_training_list", "teacher_lists",
           "hard_negative_triples", "id_list", "ids_and_texts"]

log = logging.getLogger(__name__)
Qrels = Mapping[int, tuple[np.ndarray, np.ndarray]]
Candidates = Mapping[int, np.ndarray]


def _text(row: dict) -> str:
    title, text = row.get("title", b""), row["text"]
    title, text = (v.decode() if isinstance(v, bytes) else v for v in (title, text))
    return f"{title} {text}" if title else text


def _rows(source, chunk: int = 4096):
    """Every row of a split in order, read ``chunk`` rows at a time."""
    for start in range(0, len(source), chunk):
        yield from source.__getitems__(list(range(start, min(start + chunk, len(source)))))


def texts(source) -> list[str]:
    """All texts of a ``corpus`` or ``queries`` split in row order (``title + " " + text`` when titled)."""
    return [_text(r) for r in _rows(source)]


def ids_and_texts(source, field: str) -> tuple[list[str], list[str]]:
    """The ``doc_id``/``query_id`` (``field``) and text of every row of a ``corpus``/``queries`` split, in row
    order, read in one pass (deserializing a row costs more than anything done with it)."""
    ids, out = [], []
    for r in _rows(source):
        ids.append(r[field].decode())
        out.append(_text(r))
    return ids, out


def id_list(source, field: str) -> list[str]:
    """The ``doc_id``/``query_id`` of every row of a ``corpus``/``queries`` split, in row order."""
    return [r[field].decode() for r in _rows(source)]


class Texts:
    """Row -> text of a split; held in memory up to ``max_in_memory`` rows, else read on demand."""

    def __init__(self, source, *, max_in_memory: int = 2_000_000):
        self._source = source
        self._texts = texts(source) if len(source) <= max_in_memory else None

    def __len__(self) -> int:
        return len(self._source)

    @property
    def in_memory(self) -> bool:
        return self._texts is not None

    def __getitem__(self, rows: Sequence[int]) -> list[str]:
        if self._texts is not None:
            return [self._texts[r] for r in rows]
        return [_text(r) for r in self._source.__getitems__([int(r) for r in rows])]


def qrels_from_split(source) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{query_index: (doc_index, labels)}`` of a list-grouped qrels split (train/dev/test)."""
    return {int(r["query_index"]): (np.asarray(r["doc_index"], np.int32), np.asarray(r["labels"], np.float32))
            for r in _rows(source)}


def candidates_from_split(source) -> dict[int, np.ndarray]:
    """``{query_index: doc_index}`` of a list-grouped candidate split (e.g. msmarco ``bm25_dev``)."""
    return {int(r["query_index"]): np.asarray(r["doc_index"], np.int32) for r in _rows(source)}


def candidates_from_search(query_rows: Sequence[int], top: np.ndarray) -> dict[int, np.ndarray]:
    """``{query_index: doc_index}`` from :meth:`BM25.search` output (padding -1 removed)."""
    return {int(q): t[t >= 0].astype(np.int32) for q, t in zip(query_rows, top)}


def candidates_from_run(run: Mapping[str, Mapping[str, float]], *, queries: formats.IdIndex,
                        docs: formats.IdIndex, source: str = "run") -> dict[int, np.ndarray]:
    """``{query_index: doc_index}`` of a ``{qid: {docid: score}}`` run (:func:`formats.read_run`), documents in
    trec_eval's order (:func:`formats.ranked`); unknown ids are counted and logged."""
    skipped = formats.Skipped(source)
    out = {}
    for qid, scores in run.items():
        if qid not in queries:
            skipped.add("query id not in queries", qid)
            continue
        rows = []
        for did in formats.ranked(scores):
            if did in docs:
                rows.append(docs[did])
            else:
                skipped.add("doc id not in corpus", f"{qid} {did}")
        out[queries[qid]] = np.array(rows, np.int32)
    skipped.report()
    return out


def eval_lists(qrels: Qrels, candidates: Candidates, *, list_size: int) -> list[dict]:
    """Full candidate lists of the judged queries (qrels order), split into chunks of ``list_size``."""
    records, no_candidates = [], 0
    for q, (judged, labels) in qrels.items():
        grade = dict(zip(judged.tolist(), labels.tolist()))
        docs = np.asarray(candidates.get(q, np.zeros(0, np.int32)), np.int32)
        no_candidates += len(docs) == 0
        y = np.array([grade.get(d, 0.0) for d in docs.tolist()], np.float32)
        for start in range(0, max(len(docs), 1), list_size):  # a query without candidates stays, all masked
            records.append({"query_index": q, "doc_index": docs[start:start + list_size],
                            "labels": y[start:start + list_size]})
    if no_candidates:
        log.warning("eval lists: %d of %d judged queries have no candidates (kept as all-masked lists)",
                    no_candidates, len(qrels))
    return records


def train_lists(qrels: Qrels, candidates: Candidates, *, depth: int | None = None, min_relevance: float = 1.0
                ) -> list[dict]:
    """Training records: positives (label >= min_relevance) and a negative pool (see module docstring)."""
    records, skipped = [], formats.Skipped("train lists")
    for q, (judged, labels) in qrels.items():
        positive = labels >= min_relevance
        if not positive.any():
            skipped.add("query without a positive judgment", f"query_index {q}")
            continue
        pos = set(judged[positive].tolist())
        pool = [d for d in np.asarray(candidates.get(q, ()), np.int32)[:depth].tolist() if d not in pos]
        in_pool = set(pool)
        pool += [d for d in judged[~positive].tolist() if d not in in_pool]
        order = np.argsort(-labels[positive], kind="stable")
        records.append({"query_index": q, "positives": judged[positive][order].astype(np.int32),
                        "positive_labels": labels[positive][order].astype(np.float32),
                        "negatives": np.array(pool, np.int32)})
    skipped.report()
    return records


def sample_training_list(record: dict, rng: np.random.Generator, *, list_size: int, max_positives: int = 1) -> dict:
    """One epoch's list: up to ``max_positives`` positives drawn uniformly without replacement (then ordered by
    label, highest first), followed by negatives drawn uniformly without replacement from the pool. A list
    shorter than ``list_size`` is padded (masked) by the batcher."""
    pos, pos_labels, pool = record["positives"], record["positive_labels"], record["negatives"]
    take = min(len(pos), max_positives, list_size)
    chosen = np.sort(rng.choice(len(pos), size=take, replace=False))  # positives are stored label-descending
    n_neg = min(len(pool), list_size - take)
    negs = pool[rng.choice(len(pool), size=n_neg, replace=False)] if n_neg else np.zeros(0, np.int32)
    out = {"query_index": record["query_index"], "doc_index": np.concatenate([pos[chosen], negs]).astype(np.int32),
           "labels": np.concatenate([pos_labels[chosen], np.zeros(n_neg, np.float32)])}
    if "epoch" in record:
        out["epoch"] = record["epoch"]
    return out


def teacher_lists(rows) -> list[dict]:
    """Records of ``(query_index, pos_index, neg_index, pos_score, neg_score)`` teacher triples."""
    return [{"query_index": int(q), "doc_index": np.array([p, n], np.int32), "labels": np.array([1, 0], np.float32),
             "teacher_scores": np.array([sp, sn], np.float32)} for q, p, n, sp, sn in rows]


def hard_negative_triples(qrels: Qrels, candidates: Candidates, *, per_query: int, depth: int | None = None,
                          min_relevance: float = 1.0, seed: int = 0) -> list[tuple[int, int, int]]:
    """``(query_index, pos_index, neg_index)`` triples: per training query (:func:`train_lists`), ``per_query``
    (positive, hard negative) pairs, the positive uniform over the positives, the negative uniform without
    replacement over the negative pool (top ``depth`` candidates); fewer when the pool is smaller."""
    rng = np.random.default_rng(seed)
    triples = []
    for r in train_lists(qrels, candidates, depth=depth, min_relevance=min_relevance):
        negs = rng.choice(r["negatives"], size=min(per_query, len(r["negatives"])), replace=False)
        poss = rng.choice(r["positives"], size=len(negs), replace=True)
        triples.extend((r["query_index"], int(p), int(n)) for p, n in zip(poss, negs))
    return triples
