"""Lambdaweights: per-pair weights ``lambda_ij`` for the pairwise losses' ``lambdaweight_fn=`` (Rax-compatible).

Each function maps ``(scores, labels)`` of shape ``[..., n]`` to ``[..., n * n]`` pair weights in Rax's
``compute_pairs`` layout (pair ``(i, j)`` at ``i * n + j``). Pairs that touch a masked item or cross segments
get weight 0. Weights depend on scores only through (non-differentiable) ranks.

Example: ``pairwise_logistic_loss(scores, labels, lambdaweight_fn=dcg_lambdaweight)`` is LambdaRank.
"""

from __future__ import annotations

import operator
from typing import Callable, Optional

import jax.numpy as jnp

from ranking_jax.losses._utils import (Array, as_mask, check_shapes, default_discount_fn, default_gain_fn, ideal_dcg,
                                       pair_mask, pairs, ranks, sanitize)

__all__ = ["labeldiff_lambdaweight", "dcg_lambdaweight", "dcg2_lambdaweight"]


def _flatten_pairs(a: Array) -> Array:
    return jnp.reshape(a, a.shape[:-2] + (a.shape[-2] * a.shape[-1],))


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
    results = jnp.abs(pairs(labels, operator.sub))
    mask = pair_mask(where, segments)
    if mask is not None:
        results = jnp.where(mask, results, 0.0)
    return _flatten_pairs(results)


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
        idcg = ideal_dcg(gains, where=where, segments=segments, topn=topn, discount_fn=discount_fn)
        idcg = jnp.where(idcg == 0.0, 1.0, idcg)
        gains = gains / (idcg if segments is not None else jnp.expand_dims(idcg, -1))
    results = jnp.abs(pairs(gains, operator.sub)) * rank_pair_discount_fn(r)
    mask = pair_mask(where, segments)
    if mask is not None:
        results = jnp.where(mask, results, 0.0)
    # Scale by the (static) list size so that the weights are not vanishingly small (as Rax).
    return _flatten_pairs(results) * scores.shape[-1]


def dcg_lambdaweight(scores: Array, labels: Array, *, where: Optional[Array] = None,
                     segments: Optional[Array] = None, weights: Optional[Array] = None, topn: Optional[int] = None,
                     normalize: bool = False, gain_fn: Callable[[Array], Array] = default_gain_fn,
                     discount_fn: Callable[[Array], Array] = default_discount_fn) -> Array:
    r"""DCG (LambdaRank) lambdaweights (Burges et al. 2006, "Learning to rank with nonsmooth cost functions").

    .. math::
        \lambda_{ij} = n \cdot |\op{gain}(y_i) - \op{gain}(y_j)| \cdot
                       |\op{discount}(\op{rank}(s_i)) - \op{discount}(\op{rank}(s_j))|

    with discounts set to 0 beyond ``topn``; ``normalize`` divides gains by the ideal DCG (NDCG).

    Args:
      scores: ``[..., n]`` scores (used through their ranks only).
      labels: ``[..., n]`` relevance labels.
      where: optional ``[..., n]`` bool mask of valid items.
      segments: optional ``[..., n]`` segment ids.
      weights: optional ``[..., n]`` per-item weights multiplying the gains.
      topn: optional rank cutoff.
      normalize: use NDCG (gains divided by the ideal DCG) instead of DCG.
      gain_fn: maps labels to gains (default ``2^y - 1``).
      discount_fn: maps 1-based ranks to discounts (default ``1 / log2(r + 1)``).

    Returns:
      ``[..., n * n]`` lambdaweights.
    """
    check_shapes("dcg_lambdaweight", scores, labels=labels, where=where, segments=segments, weights=weights)

    def rank_pair_discount(r):
        discounts = discount_fn(r.astype(jnp.float32))
        if topn is not None:
            discounts = jnp.where(r <= topn, discounts, 0.0)
        return jnp.abs(pairs(discounts, operator.sub))

    return _dcg_lambdaweight(scores, labels, rank_pair_discount, where=where, segments=segments, weights=weights,
                             topn=topn, normalize=normalize, gain_fn=gain_fn, discount_fn=discount_fn)


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

    Args:
      scores: ``[..., n]`` scores (used through their ranks only).
      labels: ``[..., n]`` relevance labels.
      where: optional ``[..., n]`` bool mask of valid items.
      segments: optional ``[..., n]`` segment ids.
      weights: optional ``[..., n]`` per-item weights multiplying the gains.
      topn: optional rank cutoff.
      normalize: use NDCG (gains divided by the ideal DCG) instead of DCG.
      gain_fn: maps labels to gains (default ``2^y - 1``).
      discount_fn: maps 1-based ranks to discounts (default ``1 / log2(r + 1)``).
      light_discount: use the lighter discount above.

    Returns:
      ``[..., n * n]`` lambdaweights.
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
