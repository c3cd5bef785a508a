"""Ranking accuracy of preference-tuned models (Chen et al. 2024, "Preference Learning Algorithms Do Not Learn
Preference Rankings", arXiv 2405.19534).

Inputs are per-pair sequence log-probabilities ``log pi(y|x)`` of the chosen (preferred, ``y_w``) and rejected
(``y_l``) responses, any shape ``[...]``; ``where`` masks padding pairs.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ranking_jax.ops import safe_reduce, sanitize

Array = jax.Array

__all__ = ["dpo_flip_threshold", "idealized_ranking_accuracy", "ranking_accuracy"]


def _mask(where: Optional[Array], shape) -> Optional[Array]:
    return None if where is None else jnp.broadcast_to(jnp.asarray(where).astype(bool), shape)


def ranking_accuracy(policy_chosen_logps: Array, policy_rejected_logps: Array, *,
                     chosen_lengths: Optional[Array] = None, rejected_lengths: Optional[Array] = None,
                     where: Optional[Array] = None, reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""Ranking accuracy :math:`R = \mathbb{1}[\pi(y_w|x) \ge \pi(y_l|x)]` (Chen et al. 2024, Eq. 1), averaged.

    With ``chosen_lengths``/``rejected_lengths`` (token counts) it is the length-normalised
    :math:`\tilde R = \mathbb{1}[\log\pi(y_w|x)/|y_w| \ge \log\pi(y_l|x)/|y_l|]`.

    Args:
      policy_chosen_logps, policy_rejected_logps: ``[...]`` sequence log-probabilities under the model.
      chosen_lengths, rejected_lengths: optional ``[...]`` lengths; give both or neither.
      where: optional ``[...]`` bool mask of valid pairs.
      reduce_fn: ``jnp.mean`` (over valid pairs), ``jnp.sum`` or ``None`` (per-pair 0/1, 0 where masked).
    """
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ValueError("ranking_accuracy: pass both chosen_lengths and rejected_lengths, or neither")
    chosen, rejected = jnp.asarray(policy_chosen_logps), jnp.asarray(policy_rejected_logps)
    where = _mask(where, jnp.broadcast_shapes(chosen.shape, rejected.shape))
    if chosen_lengths is not None:
        chosen = chosen / sanitize(jnp.asarray(chosen_lengths, jnp.float32), where, 1.0)
        rejected = rejected / sanitize(jnp.asarray(rejected_lengths, jnp.float32), where, 1.0)
    correct = (sanitize(chosen, where) >= sanitize(rejected, where)).astype(jnp.float32)
    return safe_reduce(correct, where=where, reduce_fn=reduce_fn)


def idealized_ranking_accuracy(reference_chosen_logps: Array, reference_rejected_logps: Array, *,
                               alpha: Array | float, beta: float, eps: float = 1e-3, where: Optional[Array] = None,
                               reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""Ranking accuracy of the DPO/RLHF optimum, given the reference model (Chen et al. 2024, Thm 3.1, Cor. 3.3).

    With :math:`\alpha = P(y_w \succ y_l)` the true share of raters preferring :math:`y_w` (Bradley-Terry), the
    optimum satisfies
    :math:`\pi^*(y_w)/\pi^*(y_l) = [\pi_{ref}(y_w)/\pi_{ref}(y_l)]\,(\alpha/(1-\alpha))^{1/\beta}`, so

    .. math::
        R^* = \mathbb{1}\Big[\log\pi_{ref}(y_w|x) - \log\pi_{ref}(y_l|x) + \tfrac{1}{\beta}
              \log\tfrac{\alpha}{1-\alpha} > 0\Big],

    with :math:`\alpha = 1` replaced by :math:`1 - \epsilon` (the paper's convention; otherwise the ratio is
    infinite).

    Args:
      reference_chosen_logps, reference_rejected_logps: ``[...]`` sequence log-probabilities under the reference
        model.
      alpha: scalar or ``[...]`` rater proportions in ``[0, 1]``.
      beta: the DPO/RLHF KL coefficient, > 0.
      eps: replaces ``alpha = 1`` by ``1 - eps``.
      where, reduce_fn: as in :func:`ranking_accuracy`.
    """
    if not beta > 0:
        raise ValueError(f"idealized_ranking_accuracy: beta must be > 0, got {beta}")
    chosen, rejected = jnp.asarray(reference_chosen_logps), jnp.asarray(reference_rejected_logps)
    where = _mask(where, jnp.broadcast_shapes(chosen.shape, rejected.shape))
    alpha = jnp.asarray(alpha, jnp.float32)
    alpha = jnp.where(alpha >= 1.0, 1.0 - eps, alpha)
    log_odds = jnp.log(alpha) - jnp.log1p(-alpha)
    margin = sanitize(chosen - rejected, where) + sanitize(jnp.broadcast_to(log_odds, chosen.shape), where) / beta
    return safe_reduce((margin > 0).astype(jnp.float32), where=where, reduce_fn=reduce_fn)


def dpo_flip_threshold(reference_chosen_logps: Array, reference_rejected_logps: Array, *, beta: float) -> Array:
    r"""Per-pair DPO loss below which the model ranks the pair correctly (Chen et al. 2024, Thm 4.1).

    With :math:`c = \log\pi_{ref}(y_l|x) - \log\pi_{ref}(y_w|x)`, the model satisfies
    :math:`\pi_\theta(y_w|x) \ge \pi_\theta(y_l|x)` iff
    :math:`\mathcal{L}_{DPO}(x, y_w, y_l) \le -\log\sigma(\beta c)`.
    Pairs that the reference already ranks wrongly (large :math:`c`) need a small loss to flip. Returns ``[...]``.
    """
    c = jnp.asarray(reference_rejected_logps) - jnp.asarray(reference_chosen_logps)
    return jax.nn.softplus(-beta * c)
