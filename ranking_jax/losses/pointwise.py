"""Pointwise ranking losses (Rax-compatible): each item is scored against its own label.

Unreduced output is ``[..., n]``; ``jnp.mean`` averages over valid items. ``segments`` is accepted and ignored.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from ranking_jax.losses._utils import Array, ReduceFn, as_mask, check_shapes, safe_reduce, sanitize

__all__ = ["pointwise_mse_loss", "pointwise_sigmoid_loss"]


def pointwise_mse_loss(scores: Array, labels: Array, *, where: Optional[Array] = None,
                       segments: Optional[Array] = None, weights: Optional[Array] = None,
                       reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Mean squared error :math:`\ell(s, y) = \sum_i w_i (y_i - s_i)^2`.

    Args:
      scores: ``[..., n]`` scores.
      labels: ``[..., n]`` relevance labels.
      where: optional ``[..., n]`` bool mask of valid items (masked items may hold inf/NaN).
      segments: accepted for signature compatibility; unused by pointwise losses.
      weights: optional ``[..., n]`` per-item weights.
      reduce_fn: ``jnp.mean`` (over valid items), ``jnp.sum`` or ``None`` (``[..., n]``, masked entries 0).

    Returns:
      The loss.
    """
    check_shapes("pointwise_mse_loss", scores, labels=labels, where=where, weights=weights, segments=segments)
    del segments
    where = as_mask(where)
    scores, labels, weights = (sanitize(a, where) for a in (scores, labels, weights))
    loss = jnp.square(scores - labels)
    if weights is not None:
        loss = loss * weights
    return safe_reduce(loss, where=where, reduce_fn=reduce_fn)


def pointwise_sigmoid_loss(scores: Array, labels: Array, *, where: Optional[Array] = None,
                           segments: Optional[Array] = None, weights: Optional[Array] = None,
                           reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Sigmoid cross-entropy :math:`\ell(s, y) = -\sum_i w_i [y_i \log\sigma(s_i) + (1 - y_i)\log(1 - \sigma(s_i))]`.

    Labels are clipped to ``[0, 1]``. Computed in the stable form
    :math:`\max(s, 0) - s y + \log(1 + e^{-|s|})`.

    Args:
      scores: ``[..., n]`` logits.
      labels: ``[..., n]`` labels (clipped to ``[0, 1]``).
      where: optional ``[..., n]`` bool mask of valid items (masked items may hold inf/NaN).
      segments: accepted for signature compatibility; unused by pointwise losses.
      weights: optional ``[..., n]`` per-item weights.
      reduce_fn: ``jnp.mean`` (over valid items), ``jnp.sum`` or ``None`` (``[..., n]``, masked entries 0).

    Returns:
      The loss.
    """
    check_shapes("pointwise_sigmoid_loss", scores, labels=labels, where=where, weights=weights, segments=segments)
    del segments
    where = as_mask(where)
    scores, labels, weights = (sanitize(a, where) for a in (scores, labels, weights))
    labels = jnp.clip(labels, 0.0, 1.0)
    # log(1 + x), as Rax: log1p is several times slower on XLA:CPU, and the two differ by < 1e-7 absolute.
    loss = jax.nn.relu(scores) - scores * labels + jnp.log(1.0 + jnp.exp(-jnp.abs(scores)))
    if weights is not None:
        loss = loss * weights
    return safe_reduce(loss, where=where, reduce_fn=reduce_fn)
