"""Ranking metrics with Rax's names, signatures and values (rax 0.4.0), plus a few options Rax lacks.

Every metric takes ``scores`` and ``labels`` of shape ``[..., list_size]`` and keyword-only options, exactly as
:mod:`rax` does (``where``, ``segments``, ``weights``, ``topn``, ``key``, ``gain_fn``, ``discount_fn``, ``rank_fn``,
``cutoff_fn``, ``reduce_fn``), so a Rax user switches by changing the import. Conventions (Rax's):

* Ranks sort scores descending; ties keep array order (the first item wins) unless a PRNG ``key`` breaks them at
  random. Valid items with score ``-inf`` are *not retrieved*: they never count as ranked, but relevant ones still
  count in recall/AP denominators and in the ideal DCG.
* ``where`` marks valid items. A list with no valid item yields 0 and is left out of the mean
  (``reduce_fn=None`` returns per-list values, 0 for such lists). Masked items may hold ``±inf``/``NaN`` scores,
  labels or weights: they are replaced before any arithmetic, so values and gradients stay finite.
* ``segments`` packs several lists into one row; the per-segment value sits on the segment's first valid item.

Beyond Rax:

* ``rel_threshold`` (binary metrics): an item is relevant iff ``label >= rel_threshold`` (Rax fixes 1).
* ``no_relevant``: the value of a list without any relevant item (binary metrics) or with ideal DCG 0 (NDCG);
  Rax's choice, 0, is the default.
* ``precision_metric(denominator=...)``: ``"retrieved"`` (Rax: the items retrieved within the cut-off) or
  ``"topn"`` (trec_eval's ``P@k``: always ``k``).
* Several cut-offs in one call: ``topn=(1, 5, 10)`` returns ``out`` with a new *leading* axis of size 3,
  ``out[i] == metric(..., topn=topn[i])`` (shape ``[3]`` reduced, ``[3, ...]`` unreduced); ranks are computed once.

Speed: with the default ``rank_fn``/``cutoff_fn`` and no ``segments``, a metric computes one ``top_k`` (a full
sort only when a cut-off is ``None`` or a ``key`` is given) and works in ranked order, O(n log n), where Rax sorts
several times and computes AP in O(n^2). Custom ``rank_fn``/``cutoff_fn`` (e.g. the approximate ranks injected by
``approx_t12n``) and ``segments`` follow Rax's per-item formulas, so gradients flow through soft ranks.
"""

from __future__ import annotations

import operator
from typing import Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from ranking_jax.ops import (apply_weights, cutoff, default_discount_fn, default_gain_fn, list_mask, list_sum,
                             pair_mask, pairs, ranks, restrict, safe_reduce, sanitize, segment_max, sort_by)
from ranking_jax.registry import register

Array = jax.Array
TopN = Union[None, int, Sequence[Optional[int]]]

__all__ = ["ap_metric", "dcg_metric", "mrr_metric", "ndcg_metric", "opa_metric", "precision_metric", "recall_metric"]


# ----------------------------------------------------------------------------------------------------------------
# Shared machinery: a "view" of the ranked list, either in ranked order (fast path) or per item (Rax's formulas).


def _cutoffs(topn: TopN) -> tuple[tuple[Optional[int], ...], bool]:
    """``(cut-offs, several)`` from ``topn``; validates each cut-off."""
    several = isinstance(topn, (tuple, list))
    values = tuple(topn) if several else (topn,)
    if several and not values:
        raise ValueError("topn=() is empty: pass None, an int, or a non-empty sequence of them")
    for n in values:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ValueError(f"topn must be None, an int >= 0 or a sequence of them, got {topn!r}")
    return values, several


class _View(NamedTuple):
    """Items as the metric formulas see them.

    ``ranks`` are 1-based; ``cutoffs[i]`` is 1 for items retrieved (valid, score > -inf) within ``topn[i]``;
    ``payloads`` are aligned with ``ranks``. In ranked order (``ranked=True``) position ``p`` holds the item of rank
    ``p`` and only the first ``max(topn)`` positions are kept.
    """

    ranks: Array
    cutoffs: tuple[Array, ...]
    payloads: tuple[Array, ...]
    where: Optional[Array]
    segments: Optional[Array]
    ranked: bool

    def total(self, x: Array) -> Array:
        """Per-list (or per-segment, on every item) sum over valid items."""
        return list_sum(x, self.where, self.segments)

    def maximum(self, x: Array) -> Array:
        """Per-list (or per-segment) maximum over valid items, at least 0."""
        if self.segments is not None:
            return segment_max(x, self.segments, where=self.where, initial=0.0)
        return jnp.max(x, axis=-1, where=self.where, initial=0.0)

    def count_at_or_above(self, x: Array) -> Array:
        """``sum_j x_j [rank_j <= rank_i]`` for every item ``i`` (same segment)."""
        if self.ranked:
            return jnp.cumsum(x, axis=-1)
        above = restrict(pairs(self.ranks, operator.ge), pair_mask(None, self.segments))  # [i, j]: r_i >= r_j
        return jnp.sum(jnp.where(above, jnp.expand_dims(x, -2), 0.0), axis=-1)


def _view(scores: Array, payloads: Sequence[Array], *, where: Optional[Array], segments: Optional[Array],
          key: Optional[Array], topns: Sequence[Optional[int]], rank_fn: Callable[..., Array],
          cutoff_fn: Callable[..., Array], ordered: bool = True) -> _View:
    """Ranks ``scores`` once and returns the view every metric formula reads.

    ``ordered=False`` (metrics that only count retrieved items): without cut-offs nothing needs ranking.
    """
    retrieved = ~jnp.isneginf(scores)
    if where is not None:
        retrieved &= where
    if not ordered and cutoff_fn is cutoff and all(n is None for n in topns):
        every = retrieved.astype(jnp.float32)
        return _View(jnp.ones(scores.shape, jnp.int32), (every,) * len(topns), tuple(payloads), where, segments,
                     ranked=False)
    if segments is None and rank_fn is ranks and cutoff_fn is cutoff:
        return _ranked_view(scores, payloads, where=where, key=key, topns=topns, retrieved=retrieved)
    item_ranks = rank_fn(scores, where=where, segments=segments, key=key)
    cutoffs = tuple(retrieved.astype(jnp.float32) * cutoff_fn(-item_ranks, segments=segments, n=n) for n in topns)
    return _View(item_ranks, cutoffs, tuple(payloads), where, segments, ranked=False)


def _ranked_view(scores: Array, payloads: Sequence[Array], *, where: Optional[Array], key: Optional[Array],
                 topns: Sequence[Optional[int]], retrieved: Array) -> _View:
    """The first ``max(topn)`` items in ranked order, by one ``top_k`` (or a keyed sort for random tie breaks).

    ``top_k`` keeps ties in array order like Rax's stable sort. Masked items go to the bottom as ``-inf``; they may
    then interleave with valid ``-inf`` items, but neither kind is retrieved, so no value changes.
    """
    size = scores.shape[-1]
    k = size if None in topns else min(size, max(topns))
    scores = jax.lax.stop_gradient(scores)
    if key is None:
        order_scores = scores if where is None else jnp.where(where, scores, -jnp.inf)
        _, order = jax.lax.top_k(order_scores, k)
        take = lambda a: jnp.take_along_axis(a, order, axis=-1)  # noqa: E731
        retrieved, payloads = take(retrieved), tuple(take(p) for p in payloads)
    else:
        retrieved, *payloads = (a[..., :k] for a in sort_by(scores, [retrieved, *payloads], where=where, key=key))
    positions = jnp.broadcast_to(jnp.arange(1, k + 1, dtype=jnp.int32), retrieved.shape)
    cutoffs = tuple((retrieved if n is None else retrieved & (positions <= n)).astype(jnp.float32) for n in topns)
    return _View(positions, cutoffs, tuple(payloads), None, None, ranked=True)


def _relevant(labels: Array, where: Optional[Array], rel_threshold: float) -> Array:
    relevant = labels >= rel_threshold
    if where is not None:
        relevant &= where
    return relevant.astype(jnp.float32)


def _binary_view(scores: Array, labels: Array, *, where, segments, key, topn: TopN, rank_fn, cutoff_fn,
                 rel_threshold: float, ordered: bool = True):
    """Shared start of the binary metrics: ``(view, relevant, where, topns, several)``, the view's one payload
    being ``relevant`` (valid items with ``label >= rel_threshold``, as 0/1)."""
    scores, labels, where = _prepare(scores, labels, where)
    topns, several = _cutoffs(topn)
    relevant = _relevant(labels, where, rel_threshold)
    view = _view(scores, (relevant,), where=where, segments=segments, key=key, topns=topns, rank_fn=rank_fn,
                 cutoff_fn=cutoff_fn, ordered=ordered)
    return view, relevant, where, topns, several


def _per_relevant(view: _View, x: Array, relevant: Array, where, segments, no_relevant) -> list[Array]:
    """Per cut-off, ``sum_i x_i [i within the cut-off]`` over the number of valid relevant items (retrieved or
    not); ``no_relevant`` for a list without any."""
    n_relevant = list_sum(relevant, where, segments)
    safe_n = jnp.where(n_relevant == 0, 1.0, n_relevant)
    return [jnp.where(n_relevant == 0, no_relevant, view.total(x * c) / safe_n) for c in view.cutoffs]


def _no_relevant(values: Array, relevant: Array, where, segments, no_relevant) -> Array:
    """``values`` with ``no_relevant`` for lists without relevant items (skipped when it is Rax's 0, which the
    formulas already give)."""
    if isinstance(no_relevant, (int, float)) and no_relevant == 0:
        return values
    return jnp.where(list_sum(relevant, where, segments) > 0, values, no_relevant)


def _reduce(values: Sequence[Array], *, several: bool, where: Optional[Array], segments: Optional[Array],
            reduce_fn: Optional[Callable[..., Array]]) -> Array:
    """Reduces each cut-off's per-list values (all-masked lists left out); stacks cut-offs on a leading axis."""
    mask = list_mask(where, segments)
    out = [safe_reduce(v, where=mask, reduce_fn=reduce_fn) for v in values]
    return jnp.stack(out) if several else out[0]


def _prepare(scores: Array, labels: Array, where: Optional[Array]) -> tuple[Array, Array, Optional[Array]]:
    scores, labels = jnp.asarray(scores), jnp.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels must have the same shape [..., list_size], got {scores.shape} and "
                         f"{labels.shape}")
    if where is not None:
        where = jnp.broadcast_to(jnp.asarray(where).astype(bool), scores.shape)
    # First "where" of the double-where pattern: masked garbage never reaches the arithmetic.
    return sanitize(scores, where), sanitize(labels, where), where


# ----------------------------------------------------------------------------------------------------------------
# Binary-relevance metrics.


@register("metrics.mrr_metric")
def mrr_metric(scores: Array, labels: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
               topn: TopN = None, key: Optional[Array] = None, rank_fn: Callable[..., Array] = ranks,
               cutoff_fn: Callable[..., Array] = cutoff, reduce_fn: Optional[Callable[..., Array]] = jnp.mean,
               rel_threshold: float = 1.0, no_relevant: float = 0.0) -> Array:
    r"""Mean reciprocal rank, :math:`\max_i \mathbb{1}[y_i \ge t] / \operatorname{rank}(s_i)` within the cut-off.

    Args:
      scores: ``[..., list_size]`` scores; ``-inf`` marks items that are not retrieved.
      labels: ``[..., list_size]`` relevance labels; relevant iff ``label >= rel_threshold``.
      where: optional ``[..., list_size]`` bool mask of valid items.
      segments: optional ``[..., list_size]`` segment ids (several lists per row).
      topn: ``None`` (no cut-off), an int, or a sequence of them (adds a leading axis, one entry per cut-off).
      key: optional PRNG key to break score ties at random (default: array order).
      rank_fn: scores -> 1-based ranks (Rax's ``RankFn``).
      cutoff_fn: ``(a, n, segments) -> [0, 1]`` top-n indicator (Rax's ``CutoffFn``).
      reduce_fn: ``jnp.mean`` (over lists with a valid item), ``jnp.sum``, or ``None`` for per-list values.
      rel_threshold: relevance threshold ``t``.
      no_relevant: value of a list without relevant items.

    Returns:
      The reduced metric, or per-list values ``[...]`` (``[..., list_size]`` with segments) if ``reduce_fn=None``.
    """
    view, relevant, where, topns, several = _binary_view(scores, labels, where=where, segments=segments, key=key,
                                                         topn=topn, rank_fn=rank_fn, cutoff_fn=cutoff_fn,
                                                         rel_threshold=rel_threshold)
    (rel,) = view.payloads
    r = view.ranks.astype(jnp.float32)
    reciprocal = jnp.where(r == 0, 0.0, 1.0 / jnp.where(r == 0, 1.0, r))
    values = [_no_relevant(view.maximum(rel * c * reciprocal), relevant, where, segments, no_relevant)
              for c in view.cutoffs]
    return _reduce(values, several=several, where=where, segments=segments, reduce_fn=reduce_fn)


@register("metrics.recall_metric")
def recall_metric(scores: Array, labels: Array, *, where: Optional[Array] = None,
                  segments: Optional[Array] = None, topn: TopN = None, key: Optional[Array] = None,
                  rank_fn: Callable[..., Array] = ranks, cutoff_fn: Callable[..., Array] = cutoff,
                  reduce_fn: Optional[Callable[..., Array]] = jnp.mean, rel_threshold: float = 1.0,
                  no_relevant: float = 0.0) -> Array:
    r"""Recall, :math:`\sum_i \mathbb{1}[y_i \ge t]\,\mathbb{1}[\operatorname{rank}(s_i) \le n] / \sum_i
    \mathbb{1}[y_i \ge t]`.

    The denominator counts every valid relevant item, retrieved or not (score ``-inf``). Arguments as in
    :func:`mrr_metric`; ``no_relevant`` is the value of a list without relevant items.
    """
    view, relevant, where, topns, several = _binary_view(scores, labels, where=where, segments=segments, key=key,
                                                         topn=topn, rank_fn=rank_fn, cutoff_fn=cutoff_fn,
                                                         rel_threshold=rel_threshold, ordered=False)
    (rel,) = view.payloads
    values = _per_relevant(view, rel, relevant, where, segments, no_relevant)
    return _reduce(values, several=several, where=where, segments=segments, reduce_fn=reduce_fn)


@register("metrics.precision_metric")
def precision_metric(scores: Array, labels: Array, *, where: Optional[Array] = None,
                     segments: Optional[Array] = None, topn: TopN = None, key: Optional[Array] = None,
                     rank_fn: Callable[..., Array] = ranks, cutoff_fn: Callable[..., Array] = cutoff,
                     reduce_fn: Optional[Callable[..., Array]] = jnp.mean, rel_threshold: float = 1.0,
                     no_relevant: float = 0.0, denominator: str = "retrieved") -> Array:
    r"""Precision, :math:`\sum_i \mathbb{1}[y_i \ge t]\,\mathbb{1}[\operatorname{rank}(s_i) \le n] / D`.

    ``denominator="retrieved"`` (Rax): :math:`D` = number of retrieved items within the cut-off, so a list with 3
    retrieved items has ``P@10 = relevant / 3``. ``denominator="topn"`` (trec_eval ``P_k``): :math:`D = n`, needs
    integer cut-offs. Other arguments as in :func:`mrr_metric`.
    """
    if denominator not in ("retrieved", "topn"):
        raise ValueError(f"precision_metric: denominator must be 'retrieved' or 'topn', got {denominator!r}")
    view, relevant, where, topns, several = _binary_view(scores, labels, where=where, segments=segments, key=key,
                                                         topn=topn, rank_fn=rank_fn, cutoff_fn=cutoff_fn,
                                                         rel_threshold=rel_threshold, ordered=False)
    if denominator == "topn" and (None in topns or 0 in topns):
        raise ValueError(f"precision_metric(denominator='topn') needs cut-offs >= 1, got topn={topn!r}")
    (rel,) = view.payloads
    values = []
    for n, c in zip(topns, view.cutoffs):
        if denominator == "topn":
            d = jnp.float32(n)
        else:
            d = view.total(c)
            d = jnp.where(d == 0, 1.0, d)
        values.append(_no_relevant(view.total(rel * c) / d, relevant, where, segments, no_relevant))
    return _reduce(values, several=several, where=where, segments=segments, reduce_fn=reduce_fn)


@register("metrics.ap_metric")
def ap_metric(scores: Array, labels: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
              topn: TopN = None, key: Optional[Array] = None, rank_fn: Callable[..., Array] = ranks,
              cutoff_fn: Callable[..., Array] = cutoff, reduce_fn: Optional[Callable[..., Array]] = jnp.mean,
              rel_threshold: float = 1.0, no_relevant: float = 0.0) -> Array:
    r"""Average precision, :math:`\frac{1}{R} \sum_{i\ \mathrm{relevant}} \mathbb{1}[\operatorname{rank}(s_i) \le n]
    \, \operatorname{precision@rank}(s_i)`, with :math:`R` = all valid relevant items (trec_eval's ``map_cut_n``).

    Arguments as in :func:`mrr_metric`.
    """
    view, relevant, where, topns, several = _binary_view(scores, labels, where=where, segments=segments, key=key,
                                                         topn=topn, rank_fn=rank_fn, cutoff_fn=cutoff_fn,
                                                         rel_threshold=rel_threshold)
    (rel,) = view.payloads
    precision_at_rank = rel * view.count_at_or_above(rel) / view.ranks.astype(jnp.float32)
    values = _per_relevant(view, precision_at_rank, relevant, where, segments, no_relevant)
    return _reduce(values, several=several, where=where, segments=segments, reduce_fn=reduce_fn)


# ----------------------------------------------------------------------------------------------------------------
# Graded metrics.


def _weighted_gains(labels: Array, weights: Optional[Array], where: Optional[Array],
                    gain_fn: Callable[[Array], Array]) -> Array:
    return sanitize(apply_weights(gain_fn(labels), weights, where), where)


def _dcg(view: _View, discount_fn: Callable[[Array], Array]) -> list[Array]:
    (gains,) = view.payloads
    discounts = discount_fn(view.ranks)
    return [view.total(c * gains * discounts) for c in view.cutoffs]


@register("metrics.dcg_metric")
def dcg_metric(scores: Array, labels: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
               topn: TopN = None, weights: Optional[Array] = None, key: Optional[Array] = None,
               gain_fn: Callable[[Array], Array] = default_gain_fn,
               discount_fn: Callable[[Array], Array] = default_discount_fn, rank_fn: Callable[..., Array] = ranks,
               cutoff_fn: Callable[..., Array] = cutoff,
               reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""Discounted cumulative gain (Järvelin & Kekäläinen 2002),
    :math:`\sum_i w_i\,\operatorname{gain}(y_i)\,\operatorname{discount}(\operatorname{rank}(s_i))` over retrieved
    items within the cut-off; default gain :math:`2^y - 1`, discount :math:`1/\log_2(r + 1)`.

    ``weights`` (``[..., list_size]``) multiply the gains. Use ``gain_fn=lambda y: y`` for trec_eval's linear gain.
    Other arguments as in :func:`mrr_metric`.
    """
    scores, labels, where = _prepare(scores, labels, where)
    topns, several = _cutoffs(topn)
    gains = _weighted_gains(labels, weights, where, gain_fn)
    view = _view(scores, (gains,), where=where, segments=segments, key=key, topns=topns, rank_fn=rank_fn,
                 cutoff_fn=cutoff_fn)
    return _reduce(_dcg(view, discount_fn), several=several, where=where, segments=segments, reduce_fn=reduce_fn)


@register("metrics.ndcg_metric")
def ndcg_metric(scores: Array, labels: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
                topn: TopN = None, weights: Optional[Array] = None, key: Optional[Array] = None,
                gain_fn: Callable[[Array], Array] = default_gain_fn,
                discount_fn: Callable[[Array], Array] = default_discount_fn, rank_fn: Callable[..., Array] = ranks,
                cutoff_fn: Callable[..., Array] = cutoff, reduce_fn: Optional[Callable[..., Array]] = jnp.mean,
                no_relevant: float = 0.0) -> Array:
    r"""Normalized DCG, :math:`\operatorname{dcg}(s, y) / \operatorname{dcg}(y, y)`.

    The ideal DCG ranks all valid items (retrieved or not) by their weighted gains with exact ranks, cut at the
    same ``topn``. A list whose ideal DCG is 0 (no positive gain) gets ``no_relevant`` (Rax: 0). Other arguments as
    in :func:`dcg_metric`.
    """
    scores, labels, where = _prepare(scores, labels, where)
    topns, several = _cutoffs(topn)
    gains = _weighted_gains(labels, weights, where, gain_fn)
    view = _view(scores, (gains,), where=where, segments=segments, key=key, topns=topns, rank_fn=rank_fn,
                 cutoff_fn=cutoff_fn)
    ideal_view = _view(gains, (gains,), where=where, segments=segments, key=None, topns=topns, rank_fn=ranks,
                       cutoff_fn=cutoff)
    values = []
    for dcg, ideal in zip(_dcg(view, discount_fn), _dcg(ideal_view, discount_fn)):
        values.append(jnp.where(ideal == 0, no_relevant, dcg / jnp.where(ideal == 0, 1.0, ideal)))
    return _reduce(values, several=several, where=where, segments=segments, reduce_fn=reduce_fn)


# ----------------------------------------------------------------------------------------------------------------
# Pairwise.


@register("metrics.opa_metric")
def opa_metric(scores: Array, labels: Array, *, where: Optional[Array] = None,
               reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""Ordered pair accuracy, :math:`\sum_{i,j} \mathbb{1}[s_i > s_j]\mathbb{1}[y_i > y_j] / \sum_{i,j}
    \mathbb{1}[y_i > y_j]` over valid pairs.

    Pairs with equal labels are ignored; pairs with equal scores count as wrongly ordered; a list without a
    label-ordered pair gets 0 (Rax).
    """
    scores, labels, where = _prepare(scores, labels, where)
    ordered = restrict(pairs(labels, operator.gt), pair_mask(where))
    correct = ordered & pairs(scores, operator.gt)
    n_pairs = jnp.sum(ordered, axis=(-2, -1), dtype=jnp.float32)
    values = jnp.sum(correct, axis=(-2, -1), dtype=jnp.float32) / jnp.where(n_pairs == 0, 1.0, n_pairs)
    return safe_reduce(values, where=list_mask(where), reduce_fn=reduce_fn)

