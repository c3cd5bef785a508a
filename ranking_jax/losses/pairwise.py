"""Pairwise ranking losses: Rax's pairwise family, RankNet, LambdaLoss and RankList.

Pairs ``(i, j)`` are formed within each list (and segment); a pair touching a masked item is dropped. Unreduced
output is ``[..., n * n]`` (pair ``(i, j)`` at ``i * n + j``, as Rax); ``jnp.mean`` averages over the valid pairs
of the whole batch (so lists weigh by their number of valid pairs, as in Rax).

Shared arguments: ``scores``, ``labels`` ``[..., n]``; ``where`` optional ``[..., n]`` bool mask of valid items
(masked items may hold inf/NaN); ``segments`` optional ``[..., n]`` segment ids (only same-segment pairs count);
``weights`` optional ``[..., n]`` item weights, pair ``(i, j)`` weighted by ``weights[i]``; ``lambdaweight_fn``
optional ``LambdaweightFn`` (e.g. :func:`dcg_lambdaweight`) scaling each pair; ``reduce_fn`` ``jnp.mean`` (over
valid pairs), ``jnp.sum`` or ``None`` (``[..., n * n]``).
"""

from __future__ import annotations

import math
import operator
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ranking_jax.ops import (Array, LambdaweightFn, ReduceFn, default_discount_fn, default_gain_fn,
                                       flatten_pairs, list_sum, masked_logsumexp, normalize_by_ideal_dcg, pair_mask,
                                       pairs, prepare, ranks, reduce_lists, restrict, safe_reduce, sanitize)
from ranking_jax.registry import register

__all__ = ["pairwise_loss", "pairwise_hinge_loss", "pairwise_logistic_loss", "pairwise_mse_loss",
           "pairwise_qr_loss", "pairwise_soft_zero_one_loss", "ranknet_loss", "lambdaloss", "ranklist_loss"]

LAMBDALOSS_SCHEMES = ("rank_net", "ndcg_loss1", "ndcg_loss2", "lambda_rank", "ndcg_loss2pp")


def _softplus(x: Array) -> Array:
    """``log(1 + e^x)`` in the stable form ``max(x, 0) + log1p(e^{-|x|})``."""
    return jax.nn.relu(x) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def pairwise_loss(scores: Array, labels: Array, *, pair_loss_fn: Callable[[Array, Array], tuple[Array, Array]],
                  lambdaweight_fn: Optional[LambdaweightFn] = None, where: Optional[Array] = None,
                  segments: Optional[Array] = None, weights: Optional[Array] = None,
                  reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Generic pairwise loss :math:`\sum_{(i,j)\ \mathrm{valid}} w_i \lambda_{ij}\, \ell(s_i - s_j, y_i - y_j)`.

    Args:
      pair_loss_fn: maps ``(scores_diff, labels_diff)`` (``[..., n, n]``, entry ``(i, j)`` = ``a_i - a_j``) to
        ``(pair_losses, valid_pairs)``.
    """
    return _pairwise("pairwise_loss", scores, labels, pair_loss_fn, lambdaweight_fn=lambdaweight_fn, where=where,
                     segments=segments, weights=weights, reduce_fn=reduce_fn)


def _pairwise(fn, scores, labels, pair_loss_fn, *, lambdaweight_fn, where, segments, weights, reduce_fn):
    """:func:`pairwise_loss`, with shape errors naming ``fn``."""
    scores, labels, weights, where = prepare(fn, scores, labels, where=where, segments=segments, weights=weights)
    pair_losses, valid_pairs = pair_loss_fn(pairs(scores, operator.sub), pairs(labels, operator.sub))
    pair_losses = jnp.broadcast_to(pair_losses, scores.shape + scores.shape[-1:])
    valid_pairs = restrict(valid_pairs, pair_mask(where, segments))
    if weights is not None:
        pair_losses = pair_losses * jnp.expand_dims(weights, -1)
    if lambdaweight_fn is not None:
        lambdaweights = lambdaweight_fn(scores, labels, where=where, segments=segments, weights=weights)
        pair_losses = pair_losses * jnp.reshape(lambdaweights, pair_losses.shape)
    return safe_reduce(flatten_pairs(pair_losses), where=flatten_pairs(jnp.broadcast_to(valid_pairs,
                                                                                         pair_losses.shape)),
                       reduce_fn=reduce_fn)


@register("losses.pairwise_hinge_loss", view="list")
def pairwise_hinge_loss(scores: Array, labels: Array, *, where: Optional[Array] = None,
                        segments: Optional[Array] = None, weights: Optional[Array] = None,
                        lambdaweight_fn: Optional[LambdaweightFn] = None,
                        reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Pairwise hinge loss :math:`\sum_{y_i > y_j} \max(0, 1 - (s_i - s_j))` (RankSVM, Joachims 2002)."""
    return _pairwise("pairwise_hinge_loss", scores, labels, lambda ds, dy: (jax.nn.relu(1.0 - ds), dy > 0),
                     where=where, segments=segments, weights=weights,
                     lambdaweight_fn=lambdaweight_fn, reduce_fn=reduce_fn)


@register("losses.pairwise_logistic_loss", view="list")
def pairwise_logistic_loss(scores: Array, labels: Array, *, where: Optional[Array] = None,
                           segments: Optional[Array] = None, weights: Optional[Array] = None,
                           lambdaweight_fn: Optional[LambdaweightFn] = None,
                           reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Pairwise logistic loss :math:`\sum_{y_i > y_j} \log(1 + e^{-(s_i - s_j)})` (RankNet, Burges et al. 2005,
    "Learning to rank using gradient descent")."""
    return _pairwise("pairwise_logistic_loss", scores, labels, lambda ds, dy: (_softplus(-ds), dy > 0),
                     where=where, segments=segments, weights=weights,
                     lambdaweight_fn=lambdaweight_fn, reduce_fn=reduce_fn)


@register("losses.pairwise_soft_zero_one_loss", view="list")
def pairwise_soft_zero_one_loss(scores: Array, labels: Array, *, where: Optional[Array] = None,
                                segments: Optional[Array] = None, weights: Optional[Array] = None,
                                lambdaweight_fn: Optional[LambdaweightFn] = None,
                                reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Pairwise soft zero-one loss :math:`\sum_{y_i > y_j} \sigma(-(s_i - s_j))`."""
    return _pairwise("pairwise_soft_zero_one_loss", scores, labels, lambda ds, dy: (jax.nn.sigmoid(-ds), dy > 0),
                     where=where, segments=segments, weights=weights,
                     lambdaweight_fn=lambdaweight_fn, reduce_fn=reduce_fn)


@register("losses.pairwise_mse_loss", view="list")
def pairwise_mse_loss(scores: Array, labels: Array, *, where: Optional[Array] = None,
                      segments: Optional[Array] = None, weights: Optional[Array] = None,
                      lambdaweight_fn: Optional[LambdaweightFn] = None,
                      reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Pairwise squared error :math:`\sum_{i,j} ((y_i - y_j) - (s_i - s_j))^2` over *all* valid pairs
    (equal labels and ``i = j`` included, as Rax)."""
    return _pairwise("pairwise_mse_loss", scores, labels,
                     lambda ds, dy: (jnp.square(ds - dy), jnp.ones(ds.shape, dtype=bool)),
                     where=where, segments=segments, weights=weights,
                     lambdaweight_fn=lambdaweight_fn, reduce_fn=reduce_fn)


@register("losses.pairwise_qr_loss", view="list")
def pairwise_qr_loss(scores: Array, labels: Array, *, where: Optional[Array] = None,
                     segments: Optional[Array] = None, weights: Optional[Array] = None, tau: float = 0.5,
                     squared: bool = False, lambdaweight_fn: Optional[LambdaweightFn] = None,
                     reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Pairwise quantile-regression loss over pairs with :math:`y_i > y_j`:

    .. math::
        \ell_{ij} = \tau \max(0, \Delta y - \Delta s) + (1 - \tau) \max(0, \Delta s - \Delta y),\quad
        \Delta y = y_i - y_j,\ \Delta s = s_i - s_j

    (each hinge squared if ``squared``); ``tau`` in ``(0, 1]`` is the quantile (0.5: median regression).

    Args:
      tau: the quantile, in ``(0, 1]``.
      squared: square each hinge.
    """
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"pairwise_qr_loss: tau must be in (0, 1], got tau={tau}")

    def qr(ds, dy):
        under, over = jax.nn.relu(dy - ds), jax.nn.relu(ds - dy)
        if squared:
            under, over = jnp.square(under), jnp.square(over)
        return tau * under + (1.0 - tau) * over, dy > 0

    return _pairwise("pairwise_qr_loss", scores, labels, qr, where=where, segments=segments, weights=weights,
                     lambdaweight_fn=lambdaweight_fn, reduce_fn=reduce_fn)


@register("losses.ranknet_loss", view="list")
def ranknet_loss(scores: Array, labels: Array, *, sigma: float = 1.0, where: Optional[Array] = None,
                 segments: Optional[Array] = None, weights: Optional[Array] = None,
                 lambdaweight_fn: Optional[LambdaweightFn] = None,
                 reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""RankNet (Burges et al. 2005, "Learning to rank using gradient descent"):

    .. math::
        \ell(s, y) = \sum_{y_i > y_j} -\log \sigma(\sigma_0 (s_i - s_j)) = \sum_{y_i > y_j}
        \log(1 + e^{-\sigma_0 (s_i - s_j)})

    i.e. binary cross-entropy on score differences with target 1. With ``reduce_fn=jnp.mean`` this is allRank's
    ``rankNet`` (mean over the valid pairs of the batch); ``lambdaweight_fn=labeldiff_lambdaweight`` gives its
    ``weight_by_diff=True`` variant.

    Args:
      sigma: the score-difference scale :math:`\sigma_0`.
    """
    return _pairwise("ranknet_loss", scores, labels, lambda ds, dy: (_softplus(-sigma * ds), dy > 0),
                     where=where, segments=segments, weights=weights,
                     lambdaweight_fn=lambdaweight_fn, reduce_fn=reduce_fn)


@register("losses.lambdaloss", view="list")
def lambdaloss(scores: Array, labels: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
               weights: Optional[Array] = None, weighting_scheme: str = "ndcg_loss2pp", topn: Optional[int] = None,
               sigma: float = 1.0, mu: float = 10.0, log_base: float = 2.0,
               gain_fn: Callable[[Array], Array] = default_gain_fn,
               discount_fn: Callable[[Array], Array] = default_discount_fn,
               reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""LambdaLoss (Wang, Li, Golbandi, Bendersky, Najork 2018, "The LambdaLoss Framework for Ranking Metric
    Optimization"), with allRank's weighting schemes.

    .. math::
        \ell(s, y) = -\sum_{(i, j)} w_{ij} \log_b \sigma(\sigma_0 (s_i - s_j))

    over pairs with :math:`y_i > y_j` (all valid pairs, ``i = j`` included, for ``ndcg_loss1``). With
    :math:`r_i` the rank of item i by score, :math:`G_i = \op{gain}(y_i) / \mathrm{IDCG@k}` and
    :math:`d(r) = \op{discount}(r)` (default :math:`1/\log_2(1 + r)`):

    * ``rank_net``: :math:`w_{ij} = 1`;
    * ``ndcg_loss1``: :math:`w_{ij} = G_i\, d(r_i)`;
    * ``ndcg_loss2``: :math:`w_{ij} = |d(|r_i - r_j|) - d(|r_i - r_j| + 1)|\, |G_i - G_j|` (0 if ``i = j``);
    * ``lambda_rank``: :math:`w_{ij} = |d(r_i) - d(r_j)|\, |G_i - G_j|`;
    * ``ndcg_loss2pp`` (NDCG-Loss2++): :math:`\mu\, w^{\mathrm{ndcg\_loss2}}_{ij} + w^{\mathrm{lambda\_rank}}_{ij}`.

    ``topn`` (allRank's ``k``) keeps only pairs whose two items both rank within ``topn`` and truncates the IDCG.
    Weights are constants (no gradient flows through ranks or gains). Same values as allRank's ``lambdaLoss``
    except that allRank clamps :math:`\sigma(\cdot)` and :math:`\sigma^{w}` at ``1e-10`` (which only matters for
    pairs with :math:`\sigma(\sigma_0 \Delta s) < 10^{-10}`, where allRank's gradient vanishes and ours does not);
    ``reduce_fn=jnp.sum`` is allRank's default ``reduction="sum"``, ``jnp.mean`` its ``"mean"``.

    Args:
      segments: optional ``[..., n]`` segment ids; ranks, IDCG and pairs are per segment.
      weighting_scheme: one of ``rank_net``, ``ndcg_loss1``, ``ndcg_loss2``, ``lambda_rank``, ``ndcg_loss2pp``.
      topn: optional rank cutoff ``k``.
      sigma: score-difference scale :math:`\sigma_0`.
      mu: weight of NDCG-Loss2 in ``ndcg_loss2pp``.
      log_base: base ``b`` of the logarithm (allRank ``reduction_log``: 2 = "binary", ``math.e`` = "natural").
      gain_fn: maps labels to gains (default ``2^y - 1``).
      discount_fn: maps 1-based ranks to discounts (default ``1 / log2(r + 1)``).
    """
    if weighting_scheme not in LAMBDALOSS_SCHEMES:
        raise ValueError(f"lambdaloss: weighting_scheme={weighting_scheme!r} is unknown; use one of "
                         f"{', '.join(LAMBDALOSS_SCHEMES)}")
    scores, labels, weights, where = prepare("lambdaloss", scores, labels, where=where, segments=segments,
                                             weights=weights)
    r = ranks(scores, where=where, segments=segments).astype(scores.dtype)
    gains = gain_fn(labels)
    g = sanitize(normalize_by_ideal_dcg(gains, where=where, segments=segments, topn=topn, discount_fn=discount_fn),
                 where)
    d = discount_fn(r)

    def ndcg_loss2():
        rank_diffs = jnp.abs(pairs(r, operator.sub))
        safe = jnp.where(rank_diffs > 0, rank_diffs, 1.0)
        delta = jnp.where(rank_diffs > 0, jnp.abs(discount_fn(safe) - discount_fn(safe + 1.0)), 0.0)
        return delta * jnp.abs(pairs(g, operator.sub))

    def lambda_rank():
        return jnp.abs(pairs(d, operator.sub)) * jnp.abs(pairs(g, operator.sub))

    if weighting_scheme == "rank_net":
        w = jnp.ones((), scores.dtype)
    elif weighting_scheme == "ndcg_loss1":
        w = jnp.expand_dims(g * d, -1)
    elif weighting_scheme == "ndcg_loss2":
        w = ndcg_loss2()
    elif weighting_scheme == "lambda_rank":
        w = lambda_rank()
    else:
        w = mu * ndcg_loss2() + lambda_rank()
    w = jax.lax.stop_gradient(w)

    pair_losses = w * _softplus(-sigma * pairs(scores, operator.sub)) / math.log(log_base)
    pair_losses = jnp.broadcast_to(pair_losses, scores.shape + scores.shape[-1:])
    if weights is not None:
        pair_losses = pair_losses * jnp.expand_dims(weights, -1)
    valid = jnp.ones(pair_losses.shape, dtype=bool)
    if weighting_scheme != "ndcg_loss1":
        valid = pairs(labels, operator.gt)
    valid = restrict(valid, pair_mask(where, segments))
    if topn is not None:
        valid = valid & pairs(r <= topn, operator.and_)
    return safe_reduce(flatten_pairs(pair_losses), where=flatten_pairs(valid), reduce_fn=reduce_fn)


@register("losses.ranklist_loss", view="list")
def ranklist_loss(scores: Array, labels: Array, *, max_skip: Optional[int] = None, temperature: float = 1.0,
                  key: Optional[Array] = None, where: Optional[Array] = None, segments: Optional[Array] = None,
                  weights: Optional[Array] = None, reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""RankList: listwise RankNet with skip-wise comparisons and a log-sum-exp approximation.

    .. warning::
        Built from the *abstract* of Naini, Diaz, Busso 2025, "A Listwise Preference Learning Framework for
        Predicting Subjective Preferences" (arXiv 2508.09826); the paper's full text and code were not available,
        so this is our reading of it, not a verified reproduction. The abstract says RankList generalises RankNet
        to list-level supervision, models local (adjacent) and non-local (skip-wise) ranking constraints, and uses a
        log-sum-exp approximation for efficiency.

    Our reading: sort the list by label (ties broken like :func:`listmle_loss`) to get target positions
    :math:`p_i`. Item i must beat every strictly less relevant item within ``max_skip`` positions below it,
    :math:`C_i = \{j : y_j < y_i,\ 0 < p_j - p_i \le J\}`. Like RankNet, the probability that it does is a sigmoid
    of its score against the best competitor, with the max replaced by a temperature-:math:`\tau` log-sum-exp:

    .. math::
        \ell(s, y) = \sum_{i : C_i \neq \emptyset} w_i\, \log\Big(1 + \exp\big(\tau \log \sum_{j \in C_i}
        e^{s_j / \tau} - s_i\big)\Big)

    ``max_skip=1`` is RankNet on adjacent items (local constraints); growing ``max_skip`` adds skip-wise
    comparisons (grow it over training for the "progressive exposure" curriculum); ``max_skip=None`` (all
    positions) with :math:`\tau = 1` and untied labels equals ListMLE.

    Args:
      labels: ``[..., n]`` relevance labels (higher = preferred).
      max_skip: ``J``, the largest position gap compared (``None``: the whole list).
      temperature: :math:`\tau` of the log-sum-exp (``-> 0``: hard max).
      key: optional PRNG key to break label ties at random when sorting.
      segments: optional ``[..., n]`` segment ids; each segment is a list.
      weights: optional ``[..., n]`` item weights :math:`w_i`.
      reduce_fn: ``jnp.mean`` (over lists), ``jnp.sum`` or ``None`` (``[...]``; ``[..., n]`` with segments).
    """
    if max_skip is not None and max_skip < 1:
        raise ValueError(f"ranklist_loss: max_skip must be >= 1 or None, got {max_skip}")
    scores, labels, weights, where = prepare("ranklist_loss", scores, labels, where=where, segments=segments,
                                             weights=weights)
    p = ranks(labels, where=where, segments=segments, key=key)
    gap = pairs(p, lambda p_i, p_j: p_j - p_i)
    compete = (gap > 0) & pairs(labels, operator.gt)
    if max_skip is not None:
        compete = compete & (gap <= max_skip)
    compete = restrict(compete, pair_mask(where, segments))
    has_competitor = jnp.any(compete, axis=-1)
    lse = temperature * masked_logsumexp(jnp.broadcast_to(jnp.expand_dims(scores, -2), compete.shape) / temperature,
                                         compete)
    item_losses = sanitize(_softplus(sanitize(lse - scores, has_competitor)), has_competitor)
    if weights is not None:
        item_losses = item_losses * weights
    return reduce_lists(list_sum(item_losses, where, segments), where, segments, reduce_fn)
