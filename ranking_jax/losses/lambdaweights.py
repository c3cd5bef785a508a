"""Lambdaweights: per-pair weights ``lambda_ij`` for the pairwise losses' ``lambdaweight_fn=`` (Rax-compatible).

Each function maps ``(scores, labels)`` of shape ``[..., n]`` to ``[..., n * n]`` pair weights in Rax's
``compute_pairs`` layout (pair ``(i, j)`` at ``i * n + j``). Pairs that touch a masked item or cross segments
get weight 0. Weights depend on scores only through (non-differentiable) ranks.

The DCG lambdaweights also take ``weights`` (``[..., n]``, multiplying the gains), ``topn`` (rank cutoff),
``normalize`` (NDCG: gains divided by the ideal DCG), ``gain_fn`` (default ``2^y - 1``) and ``discount_fn``
(1-based ranks to discounts, default ``1 / log2(r + 1)``).

Example: ``pairwise_logistic_loss(scores, labels, lambdaweight_fn=dcg_lambdaweight)`` is LambdaRank.
"""

from __future__ import annotations

import operator
from typing import Callable, Optional

import jax.numpy as jnp

from ranking_jax.ops import (Array, as_mask, check_shapes, default_discount_fn, default_gain_fn,
                                       flatten_pairs, normalize_by_ideal_dcg, pair_mask, pairs, ranks, sanitize)
from ranking_jax.registry import register

__all__ = ["labeldiff_lambdaweight", "dcg_lambdaweight", "dcg2_lambdaweight"]


@register("lambdaweights.labeldiff_lambdaweight")
def labeldiff_lambdaweight(scores: Array, labels: Array, *, where: Optional[Array] = None,
                           segments: Optional[Array] = None, weights: Optional[Array] = None) -> Array:
    r"""Absolute label difference lambdaweights :math:`\lambda_{ij} = |y_i - y_j|`.

    Differs from Rax 0.4 only on pairs of two *masked* items, which Rax weights by ``|y_i - y_j|`` and which
    are 0 here (no pairwise loss uses them).

    Args:
      scores: ``[..., n]`` scores (unused).
      labels: ``[..., n]`` relevance labels.
      where: optional ``[..., n]`` bool mask of valid items.
      segments: optional ``[..., n]`` segment ids; cross-segment pairs get 0.
      weights: unused (kept for the ``LambdaweightFn`` signature).

    Returns:
      ``[..., n * n]`` lambdaweights.
    """
    check_shapes("labeldiff_lambdaweight", scores, labels=labels, where=where, segments=segments, weights=weights)
    del scores, weights
    where = as_mask(where)
    labels = sanitize(labels, where)
    return flatten_pairs(sanitize(jnp.abs(pairs(labels, operator.sub)), pair_mask(where, segments)))


def _dcg_lambdaweight(scores, labels, rank_pair_discount_fn, *, where, segments, weights, topn, normalize, gain_fn,
                      discount_fn) -> Array:
    """Shared part of the DCG lambdaweights: ``|gain_i - gain_j| * rank_pair_discount_fn(ranks)``."""
    where = as_mask(where)
    labels = sanitize(labels, where)
    weights = sanitize(weights, where)
    r = ranks(scores, where=where, segments=segments)
    gains = gain_fn(labels)
    if weights is not None:
        gains = gains * weights
    if normalize:
        gains = normalize_by_ideal_dcg(gains, where=where, segments=segments, topn=topn, discount_fn=discount_fn)
    results = sanitize(jnp.abs(pairs(gains, operator.sub)) * rank_pair_discount_fn(r), pair_mask(where, segments))
    # Scale by the (static) list size so that the weights are not vanishingly small (as Rax).
    return flatten_pairs(results) * scores.shape[-1]


@register("lambdaweights.dcg_lambdaweight")
def dcg_lambdaweight(scores: Array, labels: Array, *, where: Optional[Array] = None,
                     segments: Optional[Array] = None, weights: Optional[Array] = None, topn: Optional[int] = None,
                     normalize: bool = False, gain_fn: Callable[[Array], Array] = default_gain_fn,
                     discount_fn: Callable[[Array], Array] = default_discount_fn) -> Array:
    r"""DCG (LambdaRank) lambdaweights (Burges et al. 2006, "Learning to rank with nonsmooth cost functions").

    .. math::
        \lambda_{ij} = n \cdot |\op{gain}(y_i) - \op{gain}(y_j)| \cdot
                       |\op{discount}(\op{rank}(s_i)) - \op{discount}(\op{rank}(s_j))|

    with discounts set to 0 beyond ``topn``; ``normalize`` divides gains by the ideal DCG (NDCG).
    """
    check_shapes("dcg_lambdaweight", scores, labels=labels, where=where, segments=segments, weights=weights)

    def rank_pair_discount(r):
        discounts = discount_fn(r.astype(jnp.float32))
        if topn is not None:
            discounts = jnp.where(r <= topn, discounts, 0.0)
        return jnp.abs(pairs(discounts, operator.sub))

    return _dcg_lambdaweight(scores, labels, rank_pair_discount, where=where, segments=segments, weights=weights,
                             topn=topn, normalize=normalize, gain_fn=gain_fn, discount_fn=discount_fn)


@register("lambdaweights.dcg2_lambdaweight")
def dcg2_lambdaweight(scores: Array, labels: Array, *, where: Optional[Array] = None,
                      segments: Optional[Array] = None, weights: Optional[Array] = None, topn: Optional[int] = None,
                      normalize: bool = False, gain_fn: Callable[[Array], Array] = default_gain_fn,
                      discount_fn: Callable[[Array], Array] = default_discount_fn,
                      light_discount: bool = False) -> Array:
    r"""DCG v2 ("NDCG-Loss2") lambdaweights (Wang et al. 2018, "The LambdaLoss Framework for Ranking Metric
    Optimization").

    .. math::
        \lambda_{ij} = n \cdot |\op{gain}(y_i) - \op{gain}(y_j)| \cdot
                       |\op{discount}(|r_i - r_j|) - \op{discount}(|r_i - r_j| + 1)|

    (``light_discount``: :math:`|\op{discount}(|r_i - r_j|)|`). With ``topn``, pairs whose lower rank
    :math:`\max(r_i, r_j)` exceeds ``topn`` are scaled by :math:`1 / (1 - \op{discount}(\max(r_i, r_j)))`
    (Jagerman et al. 2022, "On Optimizing Top-K Metrics for Neural Ranking Models").
    """
    check_shapes("dcg2_lambdaweight", scores, labels=labels, where=where, segments=segments, weights=weights)

    def rank_pair_discount(r):
        r = r.astype(jnp.float32)
        rank_diffs = jnp.abs(pairs(r, operator.sub))
        rank_max = pairs(r, jnp.maximum)
        # A rank difference of 0 (i == j) has no discount; keep discount_fn away from 0 to avoid 1/log2(1).
        safe_diffs = jnp.where(rank_diffs != 0, rank_diffs, 1.0)
        if light_discount:
            discounts = jnp.abs(discount_fn(safe_diffs))
        else:
            discounts = jnp.abs(discount_fn(safe_diffs) - discount_fn(safe_diffs + 1.0))
        discounts = jnp.where(rank_diffs != 0, discounts, 0.0)
        if topn is not None:
            beyond = rank_max > topn
            scale = 1.0 / (1.0 - discount_fn(jnp.where(beyond, rank_max, 2.0)))
            discounts = discounts * jnp.where(beyond, scale, 1.0)
        return discounts

    return _dcg_lambdaweight(scores, labels, rank_pair_discount, where=where, segments=segments, weights=weights,
                             topn=topn, normalize=normalize, gain_fn=gain_fn, discount_fn=discount_fn)
