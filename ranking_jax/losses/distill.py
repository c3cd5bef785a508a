"""Knowledge-distillation losses: a student's scores learn from a teacher's scores of the same items.

Every function takes ``scores`` (student) and ``teacher_scores`` of shape ``[..., list_size]``; the teacher is
treated as a constant (``stop_gradient``). A triple ``(q, d+, d-)`` is a list of size 2 (``[s+, s-]``); a
"1 positive + n negatives" batch is a list of size ``1 + n``. Padding is masked with ``where=``.

The comparison set of Hofstätter et al. 2020 (arXiv 2010.02666, official ``matchmaker/losses``): Margin-MSE,
pointwise MSE, teacher-weighted RankNet; plus listwise KL distillation (Hinton et al. 2015, arXiv 1503.02531).
"""

from __future__ import annotations

import operator
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ranking_jax.ops import (Array, apply_weights, as_mask, compute_pairs, flatten_pairs, list_mask,
                                       log_softmax, pair_mask, restrict, safe_reduce, sanitize)
from ranking_jax.registry import register

__all__ = ["margin_mse_loss", "margin_mse_triple_loss", "mse_distill_loss", "weighted_ranknet_distill_loss",
           "kl_distill_loss"]


def _pair_losses(pair_loss: Array, select: Array, weights: Optional[Array], where: Optional[Array],
                 reduce_fn) -> Array:
    """Reduces ``[..., n * n]`` ``pair_loss`` over the pairs selected by ``select`` (``[..., n, n]``) whose two
    items are valid; pair ``(i, j)`` is weighted by ``weights[..., i]`` (Rax's convention)."""
    mask = flatten_pairs(restrict(jnp.broadcast_to(select, pair_loss.shape[:-1] + select.shape[-2:]),
                                  pair_mask(where)))
    if weights is not None:
        weights = sanitize(jnp.asarray(weights), where)
        pair_loss = pair_loss * compute_pairs(weights, lambda w_i, w_j: w_i * jnp.ones_like(w_j))
    return safe_reduce(pair_loss, where=mask, reduce_fn=reduce_fn)


@register("losses.margin_mse_loss", view="teacher")
def margin_mse_loss(scores: Array, teacher_scores: Array, *, labels: Optional[Array] = None,
                    where: Optional[Array] = None, weights: Optional[Array] = None,
                    reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""Margin-MSE (Hofstätter et al. 2020, arXiv 2010.02666) over every pair of a list.

    .. math::
        \ell = \operatorname{mean}_{(i, j) \in P} \big[(s_i - s_j) - (t_i - t_j)\big]^2

    with ``P = {(i, j): labels_i > labels_j}`` (every positive against every negative; matchmaker's
    ``MarginMSE_InterPassageLoss``) when ``labels`` is given, else ``P = {(i, j): i < j}`` (all pairs; the
    square makes the order irrelevant). For a triple list ``[s+, s-]`` both give the paper's loss
    ``((s+ - s-) - (t+ - t-))^2``. Invariant to adding a constant to a list's student (or teacher) scores.

    Args:
      scores: ``[..., list_size]`` student scores.
      teacher_scores: ``[..., list_size]`` teacher scores (no gradient flows into them).
      labels: optional ``[..., list_size]`` relevance labels selecting the pairs (higher = more relevant).
      where: optional ``[..., list_size]`` bool mask of valid items.
      weights: optional ``[..., list_size]`` item weights; pair ``(i, j)`` is weighted by ``weights_i`` (Rax).
      reduce_fn: ``jnp.mean`` (over valid pairs of the whole batch, as Rax's pairwise losses), ``jnp.sum`` or
        None (unreduced ``[..., list_size * list_size]``, invalid pairs 0).
    """
    where = as_mask(where)
    s = sanitize(scores, where)
    t = sanitize(jax.lax.stop_gradient(teacher_scores), where)
    n = s.shape[-1]
    if labels is None:
        select = jnp.triu(jnp.ones((n, n), dtype=bool), k=1)
    else:
        y = sanitize(labels, where)
        select = jnp.expand_dims(y, -1) > jnp.expand_dims(y, -2)
    losses = jnp.square(compute_pairs(s, operator.sub) - compute_pairs(t, operator.sub))
    return _pair_losses(losses, select, weights, where, reduce_fn)


@register("losses.margin_mse_triple_loss", view="triples")
def margin_mse_triple_loss(positive_scores: Array, negative_scores: Array, teacher_positive_scores: Array,
                           teacher_negative_scores: Array, *, where: Optional[Array] = None,
                           weights: Optional[Array] = None,
                           reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""Margin-MSE on ``(q, d+, d-)`` triples (Hofstätter et al. 2020, arXiv 2010.02666; ``MSMarginLoss``).

    .. math::
        \ell_b = \big[(s^+_b - s^-_b) - (t^+_b - t^-_b)\big]^2

    All inputs are ``[...]`` (one entry per triple); ``where``/``weights`` are per triple. ``reduce_fn=None``
    returns ``[...]`` with masked triples 0.
    """
    where = as_mask(where)
    margin = sanitize(positive_scores, where) - sanitize(negative_scores, where)
    teacher_margin = jax.lax.stop_gradient(
        sanitize(teacher_positive_scores, where) - sanitize(teacher_negative_scores, where))
    losses = apply_weights(jnp.square(margin - teacher_margin), weights, where)
    return safe_reduce(losses, where=where, reduce_fn=reduce_fn)


@register("losses.mse_distill_loss", view="teacher")
def mse_distill_loss(scores: Array, teacher_scores: Array, *, where: Optional[Array] = None,
                     weights: Optional[Array] = None,
                     reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""Pointwise MSE distillation (matchmaker ``MSETeacherPointwise``).

    .. math::
        \ell = \operatorname{mean}_{i\ \mathrm{valid}} (s_i - t_i)^2

    For triple lists ``[s+, s-]`` this is ``½[mean(s+ - t+)^2 + mean(s- - t-)^2]``, the paper's baseline. Not
    invariant to a per-list offset: the student has to match the teacher's score range.

    Args:
      scores, teacher_scores: ``[..., list_size]``.
      where: optional ``[..., list_size]`` valid-item mask.
      weights: optional ``[..., list_size]`` per-item weights (multiply the squared errors).
      reduce_fn: ``jnp.mean`` over valid items, ``jnp.sum`` or None (``[..., list_size]``).
    """
    where = as_mask(where)
    losses = jnp.square(sanitize(scores, where) - sanitize(jax.lax.stop_gradient(teacher_scores), where))
    return safe_reduce(apply_weights(losses, weights, where), where=where, reduce_fn=reduce_fn)


@register("losses.weighted_ranknet_distill_loss", view="teacher")
def weighted_ranknet_distill_loss(scores: Array, teacher_scores: Array, *, where: Optional[Array] = None,
                                  weights: Optional[Array] = None,
                                  reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""RankNet on the teacher's pairwise order, weighted by the teacher's margin (matchmaker ``RankNetTeacher``).

    .. math::
        \ell = \operatorname{mean}_{(i, j): t_i > t_j} (t_i - t_j)\,\log\big(1 + e^{-(s_i - s_j)}\big)

    The mean runs over every pair the teacher orders (``t_i > t_j``), so for triples ``[s+, s-]`` with
    ``t+ > t-`` it equals matchmaker's ``BCEWithLogits(s+ - s-, 1, weight=t+ - t-)``. Where matchmaker feeds a
    negative weight (teacher disagrees with the label), which makes its loss unbounded below, this loss uses
    the teacher's order instead (same gradient direction, bounded).

    Args:
      scores, teacher_scores: ``[..., list_size]``.
      where: optional ``[..., list_size]`` valid-item mask.
      weights: optional ``[..., list_size]``; pair ``(i, j)`` additionally weighted by ``weights_i``.
      reduce_fn: ``jnp.mean`` over teacher-ordered valid pairs, ``jnp.sum`` or None
        (``[..., list_size * list_size]``).
    """
    where = as_mask(where)
    s = sanitize(scores, where)
    t = sanitize(jax.lax.stop_gradient(teacher_scores), where)
    select = jnp.expand_dims(t, -1) > jnp.expand_dims(t, -2)
    losses = compute_pairs(t, operator.sub) * jax.nn.softplus(-compute_pairs(s, operator.sub))
    return _pair_losses(losses, select, weights, where, reduce_fn)


@register("losses.kl_distill_loss", view="teacher")
def kl_distill_loss(scores: Array, teacher_scores: Array, *, temperature: float = 1.0,
                    where: Optional[Array] = None, weights: Optional[Array] = None,
                    reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""Listwise KL distillation: the teacher's softmax is the target distribution (Hinton et al. 2015).

    .. math::
        \ell = T^2 \sum_i p_i\,\big(\log p_i - \log q_i\big),\quad
        p = \operatorname{softmax}(t / T),\ q = \operatorname{softmax}(s / T)

    over the valid items of each list (sentence-transformers ``DistillKLDivLoss``; the ``T^2`` factor keeps
    gradient magnitudes comparable across temperatures). Invariant to per-list offsets of either score set.

    Args:
      scores, teacher_scores: ``[..., list_size]``.
      temperature: ``T`` (> 0), shared by student and teacher.
      where: optional ``[..., list_size]`` valid-item mask.
      weights: optional ``[..., list_size]``; multiplies item ``i``'s term ``p_i (log p_i - log q_i)``.
      reduce_fn: ``jnp.mean`` over lists with a valid item, ``jnp.sum`` or None (``[...]``).
    """
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"kl_distill_loss: temperature must be > 0, got {temperature}")
    where = as_mask(where)
    t = jax.lax.stop_gradient(teacher_scores)
    log_q = log_softmax(sanitize(scores, where) / temperature, where=where)
    log_p = log_softmax(sanitize(t, where) / temperature, where=where)
    p = sanitize(jnp.exp(log_p), where)
    terms = apply_weights(sanitize(p * (log_p - log_q), where), weights, where)
    losses = temperature ** 2 * jnp.sum(terms, axis=-1)
    return safe_reduce(losses, where=list_mask(where), reduce_fn=reduce_fn)
