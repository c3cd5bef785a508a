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


def _round_up(n: int, multiple: int = 64) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def _dense(qrels: Qrels, run: Run, qids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[Q', L]`` scores (exact trec_eval ranks as descending floats, ``-inf`` = judged but not retrieved),
    labels and validity mask; rows beyond ``len(qids)`` are padding."""
    columns = []
    for qid in qids:
        docs = run.get(qid, {})
        ranked = _trec_order(docs)
        judged = qrels[qid]
        unretrieved = [d for d in judged if d not in docs]
        columns.append((ranked, unretrieved))
    if max((len(r) for r, _ in columns), default=0) >= 2 ** 24:
        raise ValueError("a query retrieves more than 2^24 documents; ranks would not be exact in float32")
    # Shapes rounded up to multiples of 64 (padding is masked) so repeated evaluations reuse one compilation.
    size = _round_up(max(len(r) + len(u) for r, u in columns))
    shape = (_round_up(len(qids)), size)
    scores = np.full(shape, -np.inf, np.float32)
    labels = np.zeros(shape, np.float32)
    where = np.zeros(shape, bool)
    for q, (qid, (ranked, unretrieved)) in enumerate(zip(qids, columns)):
        judged = qrels[qid]
        n = len(ranked)
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


def evaluate_per_query(qrels: Qrels, run: Run, measures: Union[str, Iterable[str]]) -> dict[str, dict[str, float]]:
    """``{query_id: {measure: value}}`` over the judged queries (sorted by id), trec_eval semantics (module
    docstring): a judged query missing from the run scores 0; a run query without judgments is skipped."""
    parsed = parse_measures(measures)
    qids = sorted(qrels)
    if not qids:
        raise ValueError("evaluate: the qrels hold no judged query")
    scores, labels, where = _dense(qrels, run, qids)
    values = jax.jit(_per_query_values, static_argnums=3)(scores, labels, where, tuple(parsed))
    values = np.asarray(values, np.float64)  # [measures, Q]
    return {qid: {str(m): float(v) for m, v in zip(parsed, values[:, q])} for q, qid in enumerate(qids)}


def aggregate(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{measure: mean over queries}`` of :func:`evaluate_per_query`'s output."""
    names = next(iter(per_query.values()), {}).keys()
    return {name: math.fsum(v[name] for v in per_query.values()) / len(per_query) for name in names}


def evaluate(qrels: Qrels, run: Run, measures: Union[str, Iterable[str]]) -> dict[str, float]:
    """``{measure: mean over the judged queries}`` (see :func:`evaluate_per_query`)."""
    return aggregate(evaluate_per_query(qrels, run, measures))
