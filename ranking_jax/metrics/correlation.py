"""Rank correlation between scores and labels."""

from __future__ import annotations

import operator
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ranking_jax.ops import pair_mask, pairs, safe_reduce, sanitize

Array = jax.Array

__all__ = ["kendall_tau"]


def kendall_tau(scores: Array, labels: Array, *, where: Optional[Array] = None,
                reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""Kendall's :math:`\tau_b` between scores and labels per list (ties handled as in ``scipy.stats.kendalltau``).

    .. math::
        \tau_b = \frac{n_c - n_d}{\sqrt{(n_0 - n_1)(n_0 - n_2)}}

    over the valid pairs: :math:`n_c`/:math:`n_d` concordant/discordant pairs, :math:`n_0` all pairs,
    :math:`n_1`/:math:`n_2` pairs tied in scores/labels. :math:`\tau_b` is undefined when all valid scores or all
    valid labels are equal (scipy returns NaN): such a list gets 0 and, like an all-masked list, is left out of the
    mean.

    Args:
      scores: ``[..., list_size]`` scores.
      labels: ``[..., list_size]`` labels (any real values; only their order matters).
      where: optional ``[..., list_size]`` bool mask of valid items.
      reduce_fn: ``jnp.mean`` (over lists where tau is defined), ``jnp.sum`` or ``None`` (per-list values
        ``[...]``).

    Returns:
      The reduced tau, or per-list values.
    """
    scores, labels = jnp.asarray(scores), jnp.asarray(labels)
    if where is not None:
        where = jnp.broadcast_to(jnp.asarray(where).astype(bool), scores.shape)
    scores, labels = sanitize(scores, where), sanitize(labels, where)

    def sign(a):
        return pairs(a, operator.gt).astype(jnp.int32) - pairs(a, operator.lt).astype(jnp.int32)

    valid = pair_mask(where)
    sign_s, sign_y = sanitize(sign(scores), valid), sanitize(sign(labels), valid)
    # Ordered pairs count every unordered pair twice, in the numerator and in both factors alike.
    numerator = jnp.sum(sign_s * sign_y, axis=(-2, -1)).astype(jnp.float32)
    untied_s = jnp.sum(sign_s != 0, axis=(-2, -1)).astype(jnp.float32)
    untied_y = jnp.sum(sign_y != 0, axis=(-2, -1)).astype(jnp.float32)
    denominator = jnp.sqrt(untied_s) * jnp.sqrt(untied_y)
    defined = denominator > 0
    values = numerator / jnp.where(defined, denominator, 1.0)
    return safe_reduce(values, where=defined, reduce_fn=reduce_fn)
