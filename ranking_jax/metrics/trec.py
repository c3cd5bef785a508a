"""TREC-style evaluation: qrels and run dicts in, trec_eval's numbers out, computed with :mod:`ranking_jax.metrics`.

Inputs are ``{query_id: {doc_id: relevance}}`` qrels and ``{query_id: {doc_id: score}}`` runs; the files are read
and written by :mod:`ranking_jax.data.formats` (``read_qrels``, ``read_run``, ``write_run``).

Semantics are trec_eval's (as run by ``ir-measures`` over ``pytrec_eval``):

* A query's documents are ranked by score descending, ties broken by DOC_ID descending (string order). The order
  is fixed on the host in float64, then handed to the JAX metrics as exact ranks, so float32 cannot merge scores.
* Unjudged retrieved documents are non-relevant; judged documents that were not retrieved stay in the arrays with
  score ``-inf`` so that recall/AP denominators and the ideal DCG see them.
* nDCG uses the relevance value as gain, negative values counting as 0; the binary measures call a document
  relevant iff ``relevance >= rel`` (default 1). ``P@k`` divides by ``k``; ``AP@k`` by all relevant documents.
* Queries: the evaluated set is the judged queries. A judged query missing from the run scores 0 on every measure
  (ir-measures' default; trec_eval without ``-c`` would skip it). A run query without judgments is skipped.
* ``RR@k`` (not a trec_eval measure) is ``recip_rank`` on the run cut at ``k`` in the order above. ir-measures
  computes ``RR@k`` with its ``msmarco`` provider instead, which breaks ties by DOC_ID *ascending*; the two agree
  whenever no scores tie.

Measures use ir-measures names: ``nDCG``, ``nDCG@k``, ``RR``, ``RR@k``, ``AP``, ``AP@k``, ``P@k``, ``R@k``, the
binary ones optionally with a relevance level, e.g. ``P(rel=2)@5``; aliases ``NDCG``, ``MRR``, ``MAP``,
``Precision``, ``Recall`` are accepted.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Mapping, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ranking_jax.metrics import ranking

__all__ = ["Measure", "aggregate", "evaluate", "evaluate_per_query", "parse_measures"]

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


# ----------------------------------------------------------------------------------------------------------------
# Measures.


class Measure(NamedTuple):
    """A parsed measure: ``name`` in {nDCG, RR, AP, P, R}, optional ``cutoff``, relevance level ``rel``."""

    name: str
    cutoff: Optional[int]
    rel: int = 1

    def __str__(self) -> str:
        params = f"(rel={self.rel})" if self.rel != 1 else ""
        return f"{self.name}{params}" + (f"@{self.cutoff}" if self.cutoff is not None else "")


_ALIASES = {"nDCG": "nDCG", "NDCG": "nDCG", "RR": "RR", "MRR": "RR", "AP": "AP", "MAP": "AP", "P": "P",
            "Precision": "P", "R": "R", "Recall": "R"}
_MEASURE_RE = re.compile(r"^(?P<name>[A-Za-z]+)(?:\((?P<params>[^()]*)\))?(?:@(?P<cutoff>\d+))?$")
_SUPPORTED = "nDCG, nDCG@k, RR, RR@k, AP, AP@k, P@k, R@k (binary ones also as e.g. P(rel=2)@5)"


def parse_measures(measures: Union[str, Iterable[Union[str, Measure]]]) -> list[Measure]:
    """Parses ir-measures names (a whitespace/comma separated string or a sequence) into :class:`Measure` s."""
    tokens = [t for t in re.split(r"[\s,]+", measures) if t] if isinstance(measures, str) else list(measures)
    parsed = []
    for token in tokens:
        if isinstance(token, Measure):
            parsed.append(token)
            continue
        match = _MEASURE_RE.match(token)
        name = _ALIASES.get(match.group("name")) if match else None
        if name is None:
            raise ValueError(f"unknown measure {token!r}; supported: {_SUPPORTED}")
        cutoff = None if match.group("cutoff") is None else int(match.group("cutoff"))
        rel = 1
        for param in filter(None, (match.group("params") or "").split(",")):
            key, _, value = param.partition("=")
            if key.strip() != "rel" or name == "nDCG" or not re.fullmatch(r"\s*-?\d+\s*", value):
                raise ValueError(f"unsupported parameter {param!r} in measure {token!r}; only the binary measures "
                                 "take one, rel=INT (e.g. P(rel=2)@5)")
            rel = int(value)
        if name in ("P", "R") and cutoff is None:
            raise ValueError(f"measure {token!r} needs a cut-off, e.g. {name}@10")
        if cutoff == 0:
            raise ValueError(f"measure {token!r}: the cut-off must be >= 1")
        parsed.append(Measure(name, cutoff, rel))
    if not parsed:
        raise ValueError(f"no measures given; supported: {_SUPPORTED}")
    return parsed


# ----------------------------------------------------------------------------------------------------------------
# Evaluation.


def _trec_order(docs: Mapping[str, float]) -> list[str]:
    """Document ids ranked as trec_eval does: score descending, then doc id descending (the same order as
    :func:`ranking_jax.data.formats.ranked`, kept here so that evaluation imports nothing from the data package)."""
    by_docno = sorted(docs, reverse=True)
    return sorted(by_docno, key=lambda d: -docs[d])  # stable: keeps doc-id-descending order within ties


def _bucket(n: int) -> int:
    """A list length rounded up to 64 or to one of 2^k x {1, 1.25, 1.5, 1.75} (at most 25% padding), so that
    evaluations of similar runs reuse a few compilations."""
    if n <= 64:
        return 64
    step = 1 << (n.bit_length() - 3)  # a quarter of the power of two at or below n
    return -(-n // step) * step


def _chunks(lengths: Sequence[int], cells: int) -> list[tuple[list[int], int, int]]:
    """Query positions grouped by :func:`_bucket` of their list length, split so that each group's padded
    ``[rows, width]`` arrays hold at most ``cells`` entries (one query alone may exceed it): ``(positions, rows,
    width)`` with ``rows`` a power of two. Memory is thus bounded by the run's size, not queries x longest list."""
    groups: dict[int, list[int]] = {}
    for position in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        groups.setdefault(_bucket(lengths[position]), []).append(position)
    out = []
    for width, positions in groups.items():
        cap = 1 << max(0, (cells // width).bit_length() - 1)  # the largest power of two with cap * width <= cells
        for start in range(0, len(positions), cap):
            part = positions[start:start + cap]
            out.append((part, min(cap, 1 << (len(part) - 1).bit_length()), width))
    return out


def _columns(qrels: Qrels, run: Run, qid: str) -> tuple[list[str], list[str]]:
    """A query's retrieved documents in trec_eval order and its judged documents that were not retrieved."""
    docs = run.get(qid, {})
    ranked = _trec_order(docs)
    if len(ranked) >= 2 ** 24:
        raise ValueError(f"query {qid!r} retrieves {len(ranked)} documents, more than 2^24; ranks would not be exact "
                         "in float32")
    return ranked, [d for d in qrels[qid] if d not in docs]


def _dense(qrels: Qrels, run: Run, qids: Sequence[str], rows: int, width: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[rows, width]`` scores (exact trec_eval ranks as descending floats, ``-inf`` = judged but not retrieved),
    labels and validity mask of ``qids``; rows beyond ``len(qids)`` are padding."""
    scores = np.full((rows, width), -np.inf, np.float32)
    labels = np.zeros((rows, width), np.float32)
    where = np.zeros((rows, width), bool)
    for q, qid in enumerate(qids):
        ranked, unretrieved = _columns(qrels, run, qid)
        judged, n = qrels[qid], len(ranked)
        scores[q, :n] = np.arange(n, 0, -1, dtype=np.float32)
        labels[q, : n + len(unretrieved)] = [judged.get(d, 0) for d in ranked] + [judged[d] for d in unretrieved]
        where[q, : n + len(unretrieved)] = True
    return scores, labels, where


def _per_query_values(scores, labels, where, measures: Sequence[Measure]) -> list[jax.Array]:
    """``[Q]`` values of each measure; measures sharing a name and relevance level share one call (one ranking,
    several cut-offs)."""
    groups: dict[tuple[str, int], list[Measure]] = {}
    for m in measures:
        groups.setdefault((m.name, m.rel), []).append(m)
    out = {}
    for (name, rel), members in groups.items():
        topn = tuple(m.cutoff for m in members)
        common = dict(where=where, topn=topn, reduce_fn=None)
        if name == "nDCG":
            values = ranking.ndcg_metric(scores, labels, gain_fn=lambda y: jnp.maximum(y, 0.0), **common)
        elif name == "P":
            values = ranking.precision_metric(scores, labels, rel_threshold=rel, denominator="topn", **common)
        else:
            fn = {"RR": ranking.mrr_metric, "AP": ranking.ap_metric, "R": ranking.recall_metric}[name]
            values = fn(scores, labels, rel_threshold=rel, **common)
        out.update(zip(members, values))
    return [out[m] for m in measures]


_jitted_values = jax.jit(_per_query_values, static_argnums=3)


def evaluate_per_query(qrels: Qrels, run: Run, measures: Union[str, Iterable[str]], *, cells: int = 2 ** 21
                       ) -> dict[str, dict[str, float]]:
    """``{query_id: {measure: value}}`` over the judged queries (sorted by id), trec_eval semantics (module
    docstring): a judged query missing from the run scores 0; a run query without judgments is skipped. Queries
    are evaluated in groups of similar list length holding at most ``cells`` padded entries each."""
    parsed = parse_measures(measures)
    qids = sorted(qrels)
    if not qids:
        raise ValueError("evaluate: the qrels hold no judged query")
    lengths = [len(run.get(q, ())) + sum(d not in run.get(q, ()) for d in qrels[q]) for q in qids]
    values = np.zeros((len(parsed), len(qids)), np.float64)
    for positions, rows, width in _chunks(lengths, cells):
        arrays = _dense(qrels, run, [qids[i] for i in positions], rows, width)
        chunk = np.asarray(_jitted_values(*arrays, tuple(parsed)), np.float64)  # [measures, rows]
        values[:, positions] = chunk[:, :len(positions)]
    return {qid: {str(m): float(v) for m, v in zip(parsed, values[:, q])} for q, qid in enumerate(qids)}


def aggregate(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{measure: mean over queries}`` of :func:`evaluate_per_query`'s output."""
    names = next(iter(per_query.values()), {}).keys()
    return {name: math.fsum(v[name] for v in per_query.values()) / len(per_query) for name in names}


def evaluate(qrels: Qrels, run: Run, measures: Union[str, Iterable[str]]) -> dict[str, float]:
    """``{measure: mean over the judged queries}`` (see :func:`evaluate_per_query`)."""
    return aggregate(evaluate_per_query(qrels, run, measures))
