"""Masking, pairing, ranking and reduction helpers shared by losses and metrics (Rax's ``utils`` role).

Every helper takes ``[..., list_size]`` arrays and optional ``where`` (bool, True = valid item) and
``segments`` (items with equal ids form one list inside a row) masks, with Rax's semantics.

NaN safety: ``jnp.where(mask, f(x), 0)`` hides a bad ``f(x)`` in the forward pass but not in the backward pass
(``0 * f'(x)`` is NaN when ``f'(x)`` is inf or NaN). So inputs are sanitized *before* any arithmetic
(:func:`sanitize`, the first ``where`` of the "double-where" pattern) and the result is masked again after
(the second ``where``). Denominators that may be 0 for a fully masked list are replaced by 1 the same way.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array
ReduceFn = Callable[..., Array]
LambdaweightFn = Callable[..., Array]


# Masks and sanitizing.
def sanitize(x: Optional[Array], where: Optional[Array], fill: Any = 0.0) -> Optional[Array]:
    """``x`` with masked entries replaced by ``fill`` (gradient to masked entries is exactly 0)."""
    if x is None or where is None:
        return x
    return jnp.where(where, x, jnp.asarray(fill, dtype=jnp.result_type(x)))


def check_shapes(fn: str, scores: Array, **arrays: Optional[Array]) -> None:
    """Raises a ValueError naming ``fn`` if any of ``arrays`` (labels, where, weights, ...) differs in shape from
    ``scores``; every per-item input of a ranking loss is ``[..., list_size]``."""
    shape = jnp.shape(scores)
    if len(shape) < 1:
        raise ValueError(f"{fn}: scores must be [..., list_size], got a scalar")
    for name, a in arrays.items():
        if a is not None and jnp.shape(a) != shape:
            raise ValueError(f"{fn}: {name} has shape {jnp.shape(a)} but scores has shape {shape}; every per-item "
                             f"input must be [..., list_size] with the same shape as scores")


def as_mask(where: Optional[Array]) -> Optional[Array]:
    """``where`` cast to bool (non-bool masks are accepted and treated as ``where != 0``)."""
    return None if where is None else jnp.asarray(where).astype(bool)


def prepare(fn: str, scores: Array, labels: Array, *, where: Optional[Array] = None,
            segments: Optional[Array] = None, weights: Optional[Array] = None):
    """Prologue of a ``(scores, labels)`` ranking loss: :func:`check_shapes`, ``where`` as bool, and masked
    scores, labels and weights zeroed. Returns ``(scores, labels, weights, where)``."""
    check_shapes(fn, scores, labels=labels, where=where, segments=segments, weights=weights)
    where = as_mask(where)
    scores, labels, weights = (sanitize(a, where) for a in (scores, labels, weights))
    return scores, labels, weights, where


def same_segment_mask(segments: Array) -> Array:
    """``[..., n, n]`` mask: True where items i and j share a segment."""
    return jnp.expand_dims(segments, -1) == jnp.expand_dims(segments, -2)


def pairs(a: Array, op: Callable[[Array, Array], Array]) -> Array:
    """``[..., n, n]`` array ``op(a[..., i], a[..., j])``."""
    a_i, a_j = jnp.expand_dims(a, -1), jnp.expand_dims(a, -2)
    return jnp.broadcast_to(op(a_i, a_j), jnp.broadcast_shapes(a_i.shape, a_j.shape))


def flatten_pairs(a: Array) -> Array:
    """``[..., n, n]`` -> ``[..., n * n]`` (pair ``(i, j)`` at ``i * n + j``, Rax's layout)."""
    return jnp.reshape(a, a.shape[:-2] + (a.shape[-2] * a.shape[-1],))


def compute_pairs(a: Array, op: Callable[[Array, Array], Array]) -> Array:
    """Rax's ``utils.compute_pairs``: :func:`pairs` flattened to ``[..., n * n]``."""
    return flatten_pairs(pairs(a, op))


def pair_mask(where: Optional[Array] = None, segments: Optional[Array] = None) -> Optional[Array]:
    """``[..., n, n]`` mask of pairs whose two items are valid and share a segment (None if neither given)."""
    mask = None
    if where is not None:
        mask = pairs(where, operator.and_)
    if segments is not None:
        same = same_segment_mask(segments)
        mask = same if mask is None else mask & same
    return mask


def restrict(mask: Array, other: Optional[Array]) -> Array:
    """``mask & other``, where ``other=None`` (no mask) keeps ``mask``."""
    return mask if other is None else mask & other


def list_mask(where: Optional[Array] = None, segments: Optional[Array] = None) -> Optional[Array]:
    """Mask passed to ``reduce_fn`` for per-list values.

    Without segments: ``[...]``, True for lists with at least one valid item (all-masked lists are left out of
    the mean). With segments: ``[..., n]``, True on the first valid item of each segment (the per-list value
    lives there).
    """
    if segments is not None:
        return first_item_segment_mask(segments, where=where)
    if where is not None:
        return jnp.any(where, axis=-1)
    return None


# Weighting and reduction.
def apply_weights(values: Array, weights: Optional[Array], where: Optional[Array] = None) -> Array:
    """``values * weights`` (weights broadcast to ``values``, masked ones 0 so NaN/inf cannot leak); ``values``
    unchanged if ``weights`` is None."""
    if weights is None:
        return values
    return values * sanitize(jnp.broadcast_to(jnp.asarray(weights, values.dtype), values.shape), where)


def list_sum(values: Array, where: Optional[Array] = None, segments: Optional[Array] = None) -> Array:
    """Sum of per-item values over the valid items of each list (``[...]``) or segment (``[..., n]``, the
    segment's sum on each of its items)."""
    if segments is None:
        return jnp.sum(sanitize(values, where), axis=-1)
    return segment_sum(values, segments, where=where)


def reduce_lists(loss: Array, where: Optional[Array], segments: Optional[Array],
                 reduce_fn: Optional[ReduceFn]) -> Array:
    """Reduces per-list values (:func:`list_sum`'s layout) over the lists that have a valid item."""
    return safe_reduce(loss, where=list_mask(where, segments), reduce_fn=reduce_fn)


def safe_reduce(a: Array, where: Optional[Array] = None, reduce_fn: Optional[ReduceFn] = None) -> Array:
    """Reduces ``a`` over the entries selected by ``where`` (Rax's ``safe_reduce`` semantics, NaN-safe):
    ``reduce_fn=None`` zeroes masked entries (``sum(f(reduce_fn=None)) == f(reduce_fn=jnp.sum)``); ``jnp.mean`` over
    nothing is 0 with zero gradients; masked NaN/inf never reach the value or gradient (valid ones propagate).
    """
    if where is not None:
        where = jnp.broadcast_to(where, a.shape)
        a = jnp.where(where, a, jnp.zeros((), a.dtype))
    if reduce_fn is None:
        return a
    if reduce_fn is jnp.mean:
        if a.size == 0:  # e.g. lists of size 0: 0, not jnp.mean's NaN
            return jnp.zeros((), a.dtype)
        if where is None:
            return jnp.mean(a)
        count = jnp.sum(where, dtype=a.dtype)
        return jnp.sum(a) / jnp.maximum(count, 1)
    if reduce_fn is jnp.sum:
        return jnp.sum(a)
    return reduce_fn(a, where=where)


# Segment helpers (O(n^2) pairwise masks, as in Rax's segment_utils).
def segment_sum(a: Array, segments: Array, where: Optional[Array] = None) -> Array:
    """For each item, the sum of ``a`` over the valid items of its segment (0 for a masked item)."""
    mask = pair_mask(where, segments)
    return jnp.sum(jnp.where(mask, jnp.expand_dims(a, -2), jnp.zeros((), a.dtype)), axis=-1)


def segment_max(a: Array, segments: Array, where: Optional[Array] = None, initial: float = -jnp.inf) -> Array:
    """For each item, the max of ``a`` over the valid items of its segment (``initial`` if none)."""
    mask = pair_mask(where, segments)
    return jnp.max(jnp.broadcast_to(jnp.expand_dims(a, -2), mask.shape), axis=-1, where=mask, initial=initial)


def first_item_segment_mask(segments: Array, where: Optional[Array] = None) -> Array:
    """``[..., n]`` mask selecting the first valid item of each segment."""
    mask = pair_mask(where, segments)
    mask = mask & (jnp.cumsum(mask, axis=-1) == 1)
    return jnp.any(mask, axis=-2)


def in_segment_indices(segments: Array) -> Array:
    """0-based position of each item inside its segment, e.g. ``[0,0,0,1,2,2] -> [0,1,2,0,0,1]``."""
    same = same_segment_mask(segments).astype(jnp.int32)
    return jnp.sum(jnp.tril(same), axis=-1) - 1


# Softmax family, NaN-safe under masks.
def masked_logsumexp(x: Array, where: Optional[Array] = None, *, axis: int = -1, keepdims: bool = False) -> Array:
    """``log sum_{valid} exp(x)``; ``-inf`` for a list with no valid item, with zero (not NaN) gradients."""
    x = sanitize(x, where)
    m = jnp.max(x, axis=axis, keepdims=True, where=where, initial=-jnp.inf)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    e = jnp.exp(x - m)
    if where is not None:
        e = jnp.where(where, e, 0.0)
    total = jnp.sum(e, axis=axis, keepdims=True)
    safe_total = jnp.where(total > 0, total, 1.0)
    out = jnp.where(total > 0, jnp.log(safe_total) + m, -jnp.inf)
    return out if keepdims else jnp.squeeze(out, axis=axis)


def log_softmax(x: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
                axis: int = -1) -> Array:
    """Log-softmax over the valid items of each list (or segment); masked entries are 0 (finite)."""
    x = sanitize(x, where)
    if segments is None:
        out = x - masked_logsumexp(x, where, axis=axis, keepdims=True)
    else:
        m = segment_max(x, segments, where=where)
        m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
        total = segment_sum(jnp.exp(x - m), segments, where=where)
        out = x - m - jnp.log(jnp.where(total > 0, total, 1.0))
    return sanitize(out, where)


def softmax(x: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None, axis: int = -1) -> Array:
    """Softmax over the valid items of each list (or segment); masked entries are 0."""
    return sanitize(jnp.exp(log_softmax(x, where=where, segments=segments, axis=axis)), where)


def normalize_probabilities(unscaled_probabilities: Array, *, where: Optional[Array] = None,
                            segments: Optional[Array] = None, axis: int = -1) -> Array:
    """Rax's ``utils.normalize_probabilities``: valid entries scaled to sum to 1 per list (or segment).

    A list whose valid entries are all 0 becomes uniform over its valid entries; an all-masked list becomes
    uniform over all its entries (as in Rax).
    """
    p = jnp.swapaxes(unscaled_probabilities, axis, -1)
    where = None if where is None else jnp.swapaxes(where, axis, -1)
    segments = None if segments is None else jnp.swapaxes(segments, axis, -1)
    valid = jnp.ones_like(p, dtype=bool) if where is None else where
    p = sanitize(p, where)
    if segments is None:
        total = jnp.sum(p, axis=-1, keepdims=True)
        count = jnp.sum(valid, axis=-1, keepdims=True)
        count = jnp.where(count == 0, p.shape[-1], count)
    else:
        total = segment_sum(p, segments, where=valid)
        count = segment_sum(valid.astype(p.dtype), segments)
        count = jnp.where(count == 0, segment_sum(jnp.ones_like(p), segments), count)
    out = jnp.where(total != 0, p / jnp.where(total != 0, total, 1.0), 1.0 / count.astype(p.dtype))
    return jnp.swapaxes(out, axis, -1)


def logcumsumexp(x: Array, *, axis: int = -1, where: Optional[Array] = None, reverse: bool = False) -> Array:
    """Cumulative ``log sum exp`` along ``axis`` over valid entries (NaN-safe; ``log(tiny)`` floor, never -inf).

    Uses a running maximum shift (as Rax) so that no partial sum overflows or underflows to 0, computed with
    a parallel associative scan instead of Rax's sequential ``lax.scan``.
    """
    x = jnp.moveaxis(x, axis, -1)
    valid = jnp.ones_like(x, dtype=bool) if where is None else jnp.moveaxis(where, axis, -1)
    if reverse:
        x, valid = jnp.flip(x, -1), jnp.flip(valid, -1)
    x = sanitize(x, valid)
    # Running max over valid entries; before the first valid entry use the list's max (0 if none is valid).
    m = jax.lax.cummax(jnp.where(valid, x, -jnp.inf), axis=x.ndim - 1)
    first = jnp.max(jnp.where(valid, x, -jnp.inf), axis=-1, keepdims=True, initial=-jnp.inf)
    m = jnp.where(jnp.isfinite(m), m, jnp.where(jnp.isfinite(first), first, 0.0))
    m = jax.lax.stop_gradient(m)

    # Pairs (a, m) represent sum a * exp(m); combining rescales to the larger shift.
    def combine(left, right):
        (a1, m1), (a2, m2) = left, right
        mm = jnp.maximum(m1, m2)
        return a1 * jnp.exp(m1 - mm) + a2 * jnp.exp(m2 - mm), mm

    e = jnp.where(valid, jnp.exp(x - m), 0.0)
    s, mm = jax.lax.associative_scan(combine, (e, m), axis=x.ndim - 1)
    tiny = jnp.finfo(x.dtype).tiny
    out = jnp.log(s + tiny) + mm
    if reverse:
        out = jnp.flip(out, -1)
    return jnp.moveaxis(out, -1, axis)


# Sorting, ranks and cutoffs (Rax's utils semantics: stable sort, masked items last, ties in array order unless
# a PRNG ``key`` breaks them at random).
def sort_by(scores: Array, tensors_to_sort: Sequence[Array], axis: int = -1, where: Optional[Array] = None,
            segments: Optional[Array] = None, key: Optional[Array] = None) -> tuple[Array, ...]:
    """Sorts ``tensors_to_sort`` by descending ``scores`` (within segments; masked items last)."""
    operands = []
    if segments is not None:
        operands.append(segments)
    if where is not None:
        operands.append(jnp.logical_not(where))
    operands.append(-scores)
    if key is not None:
        operands.append(jax.random.uniform(key, scores.shape))
    num_keys = len(operands)
    operands.extend(tensors_to_sort)
    dimension = axis % scores.ndim
    sorted_values = tuple(jax.lax.sort(operands, dimension=dimension, num_keys=num_keys)[num_keys:])
    if segments is not None:
        # Put each segment's sorted block back at the positions that segment occupies.
        segment_indices = jnp.argsort(jnp.argsort(segments, axis=axis, stable=True), axis=axis, stable=True)
        sorted_values = tuple(jnp.take_along_axis(v, segment_indices, axis=axis) for v in sorted_values)
    return sorted_values


def _inverse_permutation(perm: Array, axis: int) -> Array:
    iota = jax.lax.broadcasted_iota(jnp.int32, perm.shape, axis % perm.ndim)
    return jax.lax.sort((perm, iota), dimension=axis % perm.ndim, num_keys=1)[1]


def ranks(scores: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None, axis: int = -1,
          key: Optional[Array] = None) -> Array:
    """1-based ranks by descending score (masked items ranked after valid ones; not differentiable)."""
    iota = jax.lax.broadcasted_iota(jnp.int32, scores.shape, axis % scores.ndim)
    if segments is not None:
        if axis not in (-1, scores.ndim - 1):
            raise ValueError(f"ranks: only axis=-1 is supported with segments, got axis={axis}")
        sorted_segments, sorted_indices = sort_by(scores, [segments, iota], where=where, key=key)
        sorted_ranks = in_segment_indices(sorted_segments) + 1
        return jax.lax.sort((sorted_indices, sorted_ranks), dimension=scores.ndim - 1, num_keys=1)[1]
    perm = sort_by(scores, [iota], axis=axis, where=where, key=key)[0]
    return _inverse_permutation(perm, axis) + 1


def approx_ranks(scores: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
                 key: Optional[Array] = None, step_fn: Callable[[Array], Array] = jax.nn.sigmoid) -> Array:
    """Differentiable ranks ``1 + sum_{j != i} step_fn(s_j - s_i)`` over valid same-segment items (Qin et al.
    2010, "A general approximation framework for direct optimization of information retrieval measures")."""
    del key  # deterministic
    scores = sanitize(scores, where)
    steps = step_fn(pairs(scores, lambda s_i, s_j: s_j - s_i))
    mask = pair_mask(where, segments)
    total = jnp.sum(steps if mask is None else jnp.where(mask, steps, 0.0), axis=-1)
    # The sum included j == i (for valid i); removing step_fn(0) afterwards is cheaper than masking the diagonal.
    self_step = step_fn(jnp.zeros((), scores.dtype))
    return 1.0 + total - (self_step if where is None else jnp.where(where, self_step, 0.0))


def cutoff(a: Array, n: Optional[int] = None, where: Optional[Array] = None,
           segments: Optional[Array] = None) -> Array:
    """1.0 for the ``n`` largest valid values of ``a`` per list (or segment), else 0.0 (all ones if ``n=None``)."""
    if n is None:
        return jnp.ones_like(a, dtype=jnp.float32)
    results = ranks(a, where=where, segments=segments) <= n
    if where is not None:
        results &= where
    return results.astype(jnp.float32)


def approx_cutoff(a: Array, n: Optional[int] = None, *, where: Optional[Array] = None,
                  segments: Optional[Array] = None,
                  step_fn: Callable[[Array], Array] = jax.nn.sigmoid) -> Array:
    """Soft top-``n`` indicator ``step_fn(a - t)``, ``t`` halfway between the n-th and (n+1)-th valid value."""
    if n is None:
        return jnp.ones_like(a)
    if n == 0:
        return jnp.zeros_like(a)
    a = sanitize(a, where)
    a_ranks = ranks(a, where=where, segments=segments)
    at_boundary = jnp.where((a_ranks == n) | (a_ranks == n + 1), a, 0.0)
    valid = jnp.ones_like(a, dtype=jnp.int32) if where is None else where.astype(jnp.int32)
    if segments is None:
        threshold = jnp.sum(at_boundary, axis=-1, keepdims=True) / 2.0
        num_valid = jnp.sum(valid, axis=-1, keepdims=True)
    else:
        threshold = segment_sum(at_boundary, segments) / 2.0
        num_valid = segment_sum(valid, segments)
    cutoffs = step_fn(a - jax.lax.stop_gradient(threshold))
    cutoffs = jnp.where(num_valid > n, cutoffs, jnp.ones_like(cutoffs))
    return sanitize(cutoffs, where)


# Gains, discounts, DCG primitives.
def default_gain_fn(label: Array) -> Array:
    """Rax's default gain ``2^y - 1``."""
    return jnp.power(2.0, label) - 1.0


def default_discount_fn(rank: Array) -> Array:
    """Rax's default discount ``1 / log2(rank + 1)``."""
    return 1.0 / jnp.log2(rank + 1.0)


def ideal_dcg(gains: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
              topn: Optional[int] = None, discount_fn: Callable[[Array], Array] = default_discount_fn) -> Array:
    """Ideal DCG ``sum_i g_(i) * discount(i) * [i <= topn]`` with gains sorted descending over valid items.

    Returns ``[...]`` (or ``[..., n]``, the segment's value on every item, when ``segments`` is given).
    """
    gains = sanitize(gains, where)
    r = ranks(gains, where=where, segments=segments)
    values = gains * discount_fn(r.astype(gains.dtype))
    if topn is not None:
        values = jnp.where(r <= topn, values, 0.0)
    values = sanitize(values, where)
    if segments is None:
        return jnp.sum(values, axis=-1)
    return segment_sum(values, segments, where=where)


def normalize_by_ideal_dcg(gains: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
                           topn: Optional[int] = None,
                           discount_fn: Callable[[Array], Array] = default_discount_fn) -> Array:
    """``[..., n]`` gains divided by their list's (or segment's) :func:`ideal_dcg` (by 1 where that is 0)."""
    idcg = ideal_dcg(gains, where=where, segments=segments, topn=topn, discount_fn=discount_fn)
    idcg = jnp.where(idcg == 0.0, 1.0, idcg)
    return gains / (idcg if segments is not None else jnp.expand_dims(idcg, -1))
