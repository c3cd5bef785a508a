"""Preference-optimization and reward-model losses as pure functions of log-probabilities or rewards.

Pairwise policy losses take the summed (or length-normalized: the caller decides) sequence log-probabilities
``log π_θ(y|x)`` and ``log π_ref(y|x)`` of the chosen and rejected responses, each ``[...]`` (one entry per
preference pair), and use the DPO implicit-reward margin

    δ = (log π_θ(y_c|x) - log π_ref(y_c|x)) - (log π_θ(y_r|x) - log π_ref(y_r|x)).

``where``/``weights`` are per pair ``[...]``; ``reduce_fn=None`` returns ``[...]`` (masked entries 0). Reference
log-probabilities and reward-model outputs are constants (``stop_gradient``). Listwise (IRPO) and in-batch
(QuRating) losses take ``[..., list_size]`` arrays like Rax's losses.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ranking_jax.ops import (apply_weights, as_mask, masked_logsumexp, pair_mask, pairs, restrict,
                                       safe_reduce, sanitize)
from ranking_jax.registry import register

Array = jax.Array
ReduceFn = Optional[Callable[..., Array]]

__all__ = ["dpo_loss", "ipo_loss", "hinge_dpo_loss", "robust_dpo_loss", "beta_dpo_loss", "madpo_weight", "madpo_loss",
           "mapo_loss",
           "irpo_loss", "bradley_terry_loss", "soft_bradley_terry_loss"]


def _margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
            where: Optional[Array]) -> Array:
    ref = jax.lax.stop_gradient(sanitize(reference_chosen_logps, where) - sanitize(reference_rejected_logps, where))
    return sanitize(policy_chosen_logps, where) - sanitize(policy_rejected_logps, where) - ref


def _finish(losses: Array, where: Optional[Array], weights: Optional[Array], reduce_fn: ReduceFn) -> Array:
    return safe_reduce(apply_weights(losses, weights, where), where=where, reduce_fn=reduce_fn)


def _check_smoothing(fn: str, label_smoothing) -> None:
    if isinstance(label_smoothing, (int, float)) and not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 0.5), got {label_smoothing}")


@register("losses.dpo_loss", view="pairs")
def dpo_loss(policy_chosen_logps: Array, policy_rejected_logps: Array, reference_chosen_logps: Array,
             reference_rejected_logps: Array, *, beta: float = 0.1, label_smoothing: float = 0.0,
             where: Optional[Array] = None, weights: Optional[Array] = None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""DPO (Rafailov et al., NeurIPS 2023, arXiv 2305.18290); conservative DPO when ``label_smoothing > 0``.

    .. math::
        \ell = -(1 - \varepsilon)\log\sigma(\beta\delta) - \varepsilon\log\sigma(-\beta\delta)

    ``ε = label_smoothing`` is the assumed label-flip rate of cDPO (Mitchell 2023; TRL ``loss_type="sigmoid"``).
    """
    _check_smoothing("dpo_loss", label_smoothing)
    where = as_mask(where)
    z = beta * _margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                       reference_rejected_logps, where)
    losses = (1.0 - label_smoothing) * jax.nn.softplus(-z) + label_smoothing * jax.nn.softplus(z)
    return _finish(losses, where, weights, reduce_fn)


@register("losses.ipo_loss", view="pairs")
def ipo_loss(policy_chosen_logps: Array, policy_rejected_logps: Array, reference_chosen_logps: Array,
             reference_rejected_logps: Array, *, beta: float = 0.1, where: Optional[Array] = None,
             weights: Optional[Array] = None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""IPO (Azar et al., AISTATS 2024, arXiv 2310.12036): :math:`\ell = (\delta - \frac{1}{2\beta})^2`.

    TRL feeds per-token-averaged log-probabilities; MADPO's baseline feeds sums. Pass whichever you mean.
    """
    where = as_mask(where)
    delta = _margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                    where)
    return _finish(jnp.square(delta - 1.0 / (2.0 * beta)), where, weights, reduce_fn)


@register("losses.hinge_dpo_loss", view="pairs")
def hinge_dpo_loss(policy_chosen_logps: Array, policy_rejected_logps: Array, reference_chosen_logps: Array,
                   reference_rejected_logps: Array, *, beta: float = 0.1, where: Optional[Array] = None,
                   weights: Optional[Array] = None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Hinge / SLiC-style preference loss (Zhao et al. 2023, arXiv 2305.10425; TRL ``loss_type="hinge"``).

    .. math::  \ell = \max(0,\ 1 - \beta\delta)
    """
    where = as_mask(where)
    delta = _margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                    where)
    return _finish(jax.nn.relu(1.0 - beta * delta), where, weights, reduce_fn)


@register("losses.robust_dpo_loss", view="pairs")
def robust_dpo_loss(policy_chosen_logps: Array, policy_rejected_logps: Array, reference_chosen_logps: Array,
                    reference_rejected_logps: Array, *, beta: float = 0.1, label_smoothing: float = 0.1,
                    where: Optional[Array] = None, weights: Optional[Array] = None,
                    reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Robust DPO (Chowdhury et al., ICML 2024, arXiv 2403.00409; TRL ``loss_type="robust"``).

    .. math::
        \ell = \frac{-(1-\varepsilon)\log\sigma(\beta\delta) + \varepsilon\log\sigma(-\beta\delta)}{1 - 2\varepsilon}

    An unbiased estimate of the clean DPO loss when labels flip with probability ``ε = label_smoothing``.
    """
    _check_smoothing("robust_dpo_loss", label_smoothing)
    where = as_mask(where)
    z = beta * _margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                       reference_rejected_logps, where)
    losses = ((1.0 - label_smoothing) * jax.nn.softplus(-z) - label_smoothing * jax.nn.softplus(z)) / (
        1.0 - 2.0 * label_smoothing)
    return _finish(losses, where, weights, reduce_fn)


@register("losses.beta_dpo_loss", view="pairs")
def beta_dpo_loss(policy_chosen_logps: Array, policy_rejected_logps: Array, reference_chosen_logps: Array,
                  reference_rejected_logps: Array, *, beta: float = 0.1, alpha: float = 0.6, keep: float = 0.8,
                  gap_mean: Optional[Array] = None, gap_std: Optional[Array] = None, where: Optional[Array] = None,
                  weights: Optional[Array] = None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""β-DPO-style loss (Wu et al., NeurIPS 2024, arXiv 2407.08639; official ``trainers.py::preference_loss``):
    β-guided filtering and a batch-level β.

    With the margins δ_i, their reference mean and std ``M0, σ0`` (``gap_mean``/``gap_std``; None: the batch's
    own, as the official EMA with momentum 0), the ``keep`` fraction of valid pairs with the largest
    :math:`\exp(-\tfrac12((\delta_i - M_0)/\sigma_0)^2)` is kept (the official code samples them
    multinomially with those weights) and

    .. math::  \beta' = \max(\beta\,(1 + \alpha(\bar\delta_{kept} - M_0)),\ 10^{-3}),\qquad
               \ell_i = -\log\sigma(\mathrm{sg}(\beta')\,\delta_i)\ \text{on kept pairs (0 elsewhere)}.

    ``reduce_fn=jnp.mean`` averages over the kept pairs.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"beta_dpo_loss: keep must be in (0, 1], got {keep}")
    where = as_mask(where)
    delta = _margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                    where)
    valid = jnp.ones(delta.shape, bool) if where is None else jnp.broadcast_to(where, delta.shape)
    gap = jax.lax.stop_gradient(delta)
    n = jnp.maximum(jnp.sum(valid), 1)
    mean = jnp.sum(jnp.where(valid, gap, 0.0)) / n if gap_mean is None else gap_mean
    std = (jnp.sqrt(jnp.sum(jnp.where(valid, (gap - mean) ** 2, 0.0)) / jnp.maximum(n - 1, 1))
           if gap_std is None else gap_std)
    closeness = jnp.where(valid, -jnp.abs(gap - mean) / jnp.maximum(std, 1e-12), -jnp.inf)
    rank = jnp.argsort(jnp.argsort(-closeness.reshape(-1), stable=True))  # 0 = closest to M0
    kept = valid & (rank.reshape(gap.shape) < jnp.ceil(keep * n))
    kept_mean = jnp.sum(jnp.where(kept, gap, 0.0)) / jnp.maximum(jnp.sum(kept), 1)
    beta_used = jax.lax.stop_gradient(jnp.maximum(beta * (1.0 + alpha * (kept_mean - mean)), 1e-3))
    return _finish(jax.nn.softplus(-beta_used * delta), kept, weights, reduce_fn)


def madpo_weight(chosen_rewards: Array, rejected_rewards: Array, *, c_max: float = 2.0, c_min: float = 0.5,
                 lam: float = 1.0, tau: float = math.log(999.0)) -> Array:
    r"""MADPO's per-pair weight from reward-model margins (Rho 2025, arXiv 2510.05342; official
    ``utils/loss_functions.py::MADPOLoss``). With ``m = r(y_c) - r(y_r)``:

    .. math::
        c(x) = c_{min} + \frac{c_{max} - c_{min}}{1 + \frac{c_{max} - 1}{1 - c_{min}} e^{\lambda (x - \tau)}},
        \qquad
        w(m) = \begin{cases} \sigma(c(|m|)\,m) / \sigma(m) & m > -\tau \\ 1 & m \le -\tau \end{cases}

    ``c(τ) = 1``; ``c`` falls from about ``c_max`` at 0 to ``c_min`` at ∞. Returns ``[...]``, no gradient.
    """
    if isinstance(c_min, (int, float)) and isinstance(c_max, (int, float)) and not c_min < 1.0 < c_max:
        raise ValueError(f"madpo_weight: needs c_min < 1 < c_max, got c_min={c_min}, c_max={c_max}")
    m = jax.lax.stop_gradient(jnp.asarray(chosen_rewards) - jnp.asarray(rejected_rewards))
    c = c_min + (c_max - c_min) / (1.0 + (c_max - 1.0) / (1.0 - c_min) * jnp.exp(lam * (jnp.abs(m) - tau)))
    w = jnp.exp(jax.nn.log_sigmoid(c * m) - jax.nn.log_sigmoid(m))
    return jnp.where(m > -tau, w, 1.0)


@register("losses.madpo_loss", view="rewarded_pairs")
def madpo_loss(policy_chosen_logps: Array, policy_rejected_logps: Array, reference_chosen_logps: Array,
               reference_rejected_logps: Array, chosen_rewards: Array, rejected_rewards: Array, *,
               beta: float = 0.1, c_max: float = 2.0, c_min: float = 0.5, lam: float = 1.0,
               tau: float = math.log(999.0), where: Optional[Array] = None, weights: Optional[Array] = None,
               reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Margin-Adaptive DPO (Rho 2025, arXiv 2510.05342): DPO with the reward-model weight of
    :func:`madpo_weight`.

    .. math::  \ell = w(m)\,\big(-\log\sigma(\beta\delta)\big),\qquad m = r_\phi(x, y_c) - r_\phi(x, y_r)

    Defaults are the official notebook's (β = 0.1, c_max = 2, c_min = 0.5, λ = 1, τ = ln 999). The minimiser of
    the expected weighted loss is the amplified target margin ``βδ* = c(|m|)·m`` (for ``|m| < τ``).
    ``chosen_rewards``/``rejected_rewards`` ``[...]`` are the frozen reward model's scores.
    """
    where = as_mask(where)
    z = beta * _margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                       reference_rejected_logps, where)
    w = madpo_weight(sanitize(chosen_rewards, where), sanitize(rejected_rewards, where), c_max=c_max, c_min=c_min,
                     lam=lam, tau=tau)
    return _finish(w * jax.nn.softplus(-z), where, weights, reduce_fn)


def _bounded_likelihood(x: Array) -> Array:
    """``x / (exp(x) - 1)`` (1 at x = 0), NaN-free in value and gradient."""
    small = jnp.abs(x) < 1e-4
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 - x / 2.0 + x * x / 12.0, safe / jnp.expm1(safe))


@register("losses.mapo_loss", view="pair_nll")
def mapo_loss(chosen_losses: Array, rejected_losses: Array, *, beta: float = 0.1, gamma: float = 0.5,
              scale: float = 1000.0, where: Optional[Array] = None, weights: Optional[Array] = None,
              reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""MaPO, reference-free margin-aware preference optimization (Hong et al. 2024, arXiv 2406.06424;
    official ``mapo-t2i/mapo`` ``train.py``).

    With per-sample losses ``L_w``, ``L_l`` (denoising MSE for diffusion, or ``-log π(y|x)`` per token for a
    language model) standing in for negative log-likelihoods and ``s(L) = γL / (e^{γL} - 1)``:

    .. math::  \ell = L_w - \beta \log\sigma\big(T\,(s(L_w) - s(L_l))\big)

    Defaults: β = ``beta_mapo`` = 0.1, γ = ``snr_value`` = 0.5, ``T = scale`` = 1000 diffusion timesteps. Winner
    and loser must share noise and timestep in the diffusion setting. Inputs ``[...]``.
    """
    where = as_mask(where)
    lw, ll = sanitize(chosen_losses, where), sanitize(rejected_losses, where)
    log_odds = _bounded_likelihood(gamma * lw) - _bounded_likelihood(gamma * ll)
    return _finish(lw + beta * jax.nn.softplus(-scale * log_odds), where, weights, reduce_fn)


_IRPO_WEIGHTINGS = ("dcg", "log_discount", "rank_discount")


@register("losses.irpo_loss", view="groups")
def irpo_loss(policy_logps: Array, reference_logps: Array, labels: Array, *, ranks: Optional[Array] = None,
              beta: float = 1.0, weighting: str = "dcg", where: Optional[Array] = None,
              weights: Optional[Array] = None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""In-context Ranking Preference Optimization (Wu et al., COLM 2025, arXiv 2504.15477; official
    ``trainers.py::rdpo_loss``): DCG-weighted "item i beats the others" preferences over a list.

    With implicit rewards ``r_i = log π_θ(y_i|x) - log π_ref(y_i|x)`` over the ``N`` valid items:

    .. math::
        \mathrm{LSE}_i = \log \sum_{j \ne i} e^{\beta (r_j - r_i)} - \log(N - 1),\qquad
        \ell = \frac{1}{N} \sum_i w_i \log\big(1 + e^{\mathrm{LSE}_i}\big)

    ``weighting``: ``"dcg"`` ``w_i = (2^{y_i} - 1) / \log_2(1 + k_i)`` (paper), ablations ``"log_discount"``
    ``1 / \log_2(1 + k_i)`` and ``"rank_discount"`` ``(2^{y_i} - 1) / k_i``; ``k_i`` is the 1-based position of
    item ``i`` in the feedback list (``ranks``; default: its position among the valid items of the array).

    Args:
      policy_logps, reference_logps, labels: ``[..., list_size]``; labels are graded relevance ``y``.
      weights: optional ``[..., list_size]``, multiply ``w_i``.
      reduce_fn: ``jnp.mean`` over lists with ≥ 2 valid items, ``jnp.sum`` (IRPO's code sums over the batch)
        or None (``[...]``).
    """
    if weighting not in _IRPO_WEIGHTINGS:
        raise ValueError(f"irpo_loss: weighting must be one of {_IRPO_WEIGHTINGS}, got {weighting!r}")
    where = as_mask(where)
    valid = jnp.ones(jnp.shape(policy_logps), dtype=bool) if where is None else where
    r = sanitize(policy_logps, where) - jax.lax.stop_gradient(sanitize(reference_logps, where))
    y = sanitize(labels, where).astype(r.dtype)
    k = jnp.cumsum(valid, axis=-1) if ranks is None else sanitize(ranks, where, fill=1)
    k = jnp.maximum(k, 1).astype(r.dtype)
    gain = jnp.power(2.0, y) - 1.0
    w = {"dcg": gain / jnp.log2(1.0 + k), "log_discount": 1.0 / jnp.log2(1.0 + k),
         "rank_discount": gain / k}[weighting]
    w = apply_weights(w, weights, where)
    others = pairs(valid, jnp.logical_and) & ~jnp.eye(valid.shape[-1], dtype=bool)
    n = jnp.sum(valid, axis=-1).astype(r.dtype)
    lse = masked_logsumexp(beta * pairs(r, lambda r_i, r_j: r_j - r_i), others, axis=-1)
    lse = lse - jnp.log(jnp.maximum(n - 1.0, 1.0))[..., None]
    items = sanitize(w * jax.nn.softplus(lse), valid)
    losses = jnp.sum(items, axis=-1) / jnp.maximum(n, 1.0)
    return safe_reduce(losses, where=n >= 2, reduce_fn=reduce_fn)


@register("losses.bradley_terry_loss", view="reward_pairs")
def bradley_terry_loss(chosen_rewards: Array, rejected_rewards: Array, *, ties: Optional[Array] = None,
                       margin: float = 0.0, tie_weight: float = 1.0, label_smoothing: float = 0.0,
                       where: Optional[Array] = None, weights: Optional[Array] = None,
                       reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Bradley-Terry reward-model loss with margin, label smoothing and ties (SoliReward, Lian et al. 2025,
    arXiv 2512.22170; official ``solireward/trainer/loss.py``). With ``d = r_c - r_r``:

    .. math::
        \ell_{BT} = -(1-\varepsilon)\log\sigma(d - m) - \varepsilon\log\sigma(-d - m),\qquad
        \ell_{BTT} = -\log\sigma(d - m) - \log\sigma(-d - m)

    ``ℓ = ℓ_BT`` for ordinary pairs and ``tie_weight · ℓ_BTT`` for tied pairs (``ties`` True: both responses
    have the same quality label; "BT with wide ties" keeps both within the margin). ``margin=0, ties=None`` is the
    plain BT loss ``-log σ(r_c - r_r)``; SoliReward's recipe uses ``margin=3``.
    """
    _check_smoothing("bradley_terry_loss", label_smoothing)
    where = as_mask(where)
    d = sanitize(chosen_rewards, where) - sanitize(rejected_rewards, where)
    bt = (1.0 - label_smoothing) * jax.nn.softplus(margin - d) + label_smoothing * jax.nn.softplus(margin + d)
    if ties is not None:
        btt = jax.nn.softplus(margin - d) + jax.nn.softplus(margin + d)
        bt = jnp.where(jnp.asarray(ties, bool), tie_weight * btt, bt)
    return _finish(bt, where, weights, reduce_fn)


@register("losses.soft_bradley_terry_loss", view="soft_pairs")
def soft_bradley_terry_loss(scores: Array, pair_labels: Array, *, confidence: float = 0.5,
                            label_temperature: float = 1.0, pair_where: Optional[Array] = None,
                            where: Optional[Array] = None, weights: Optional[Array] = None,
                            reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Bradley-Terry with soft pairwise labels over all in-batch pairs (QuRating, Wettig et al., ICML 2024,
    arXiv 2402.09739; official ``training/train_preference_model.py``).

    ``pair_labels[..., i, j]`` is the judged probability that item ``i`` is preferred over item ``j``:

    .. math::
        \ell_{ij} = -\tilde p_{ij} \log\sigma(s_i - s_j) - (1 - \tilde p_{ij}) \log\sigma(s_j - s_i),\qquad
        \tilde p = \sigma(\operatorname{logit}(p) / T_{label})

    over ordered pairs ``i ≠ j`` of valid items with ``|p_ij - 0.5| ≥ confidence / 2`` (QuRating's training
    script: ``confidence=0.5``, ``T_label=1``). QuRating stores the transposed matrix (``P(j ≻ i)`` at
    ``[i, j]``); the loss is the same.

    Args:
      scores: ``[..., list_size]`` ratings. pair_labels: ``[..., list_size, list_size]`` in [0, 1].
      pair_where: optional ``[..., list_size, list_size]`` mask of judged pairs. where: item mask.
      weights: optional ``[..., list_size]``; pair ``(i, j)`` weighted by ``weights_i``.
      reduce_fn: ``jnp.mean`` over kept pairs of the batch, ``jnp.sum`` or None (``[..., list_size, list_size]``).
    """
    if isinstance(label_temperature, (int, float)) and label_temperature <= 0:
        raise ValueError(f"soft_bradley_terry_loss: label_temperature must be > 0, got {label_temperature}")
    where = as_mask(where)
    s = sanitize(scores, where)
    n = s.shape[-1]
    mask = restrict(~jnp.eye(n, dtype=bool), pair_mask(where))
    if pair_where is not None:
        mask = mask & as_mask(pair_where)
    p = jnp.clip(sanitize(jax.lax.stop_gradient(pair_labels), mask, fill=0.5), 0.0, 1.0)
    mask = mask & (jnp.abs(p - 0.5) >= confidence / 2.0)
    if not (isinstance(label_temperature, (int, float)) and label_temperature == 1.0):
        p = jax.nn.sigmoid((jnp.log(p) - jnp.log1p(-p)) / label_temperature)
    d = pairs(s, jnp.subtract)
    losses = p * jax.nn.softplus(-d) + (1.0 - p) * jax.nn.softplus(d)
    if weights is not None:
        losses = losses * sanitize(jnp.asarray(weights, losses.dtype), where)[..., :, None]
    return safe_reduce(losses, where=mask, reduce_fn=reduce_fn)
