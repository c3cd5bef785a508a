"""TRAM, Trust Region Aware Minimization (Sherborne, Saphra, Dasigi, Peng; ICLR 2024, arXiv 2310.03646).

ASAM whose radius ρ is replaced by a trust-region distance ``d`` measured in function space (Eq. 7)::

    ε = d · T² ∇L(θ_t) / ‖T ∇L(θ_t)‖₂,   T = |θ_t| + η,   θ_{t+1} = base_update(∇L(θ_t + ε))
    d = E_x KL(p(·|x; target) ‖ p(·|x; θ_t))        (not differentiated)

Targets (paper Table 2): ``"prev"`` — the previous step's params θ_{t−1} (Eq. 4; d = 0 on the first
step), ``"init"`` — the params at ``init`` (the pre-trained model θ₀), ``"noise"`` — the current params
on noise-perturbed input embeddings x + z, z ~ N(0, σ²) (Eq. 5, TRAM-x).

This follows Eq. 7, not the released code (tomsherborne/tram_optimizer), whose perturbation omits the
gradient (ε = scale · θ²), drops η, and whose KL is averaged over batch × vocabulary and divided by
the batch again. Here ``d`` is the mean over distributions (rows of the last axis) of the KL summed
over the last axis, times ``scale``, optionally clipped to ``max_d`` (d ≤ ρ_ASAM keeps ASAM's bound).

``update(grads, state, params, *, grad_fn, outputs, outputs_fn=None, target_outputs=None, outputs_mask=None,
key=None)`` (the optax extra arguments every train step passes): ``grads = ∇L(θ_t)`` and ``outputs``
(``[..., C]`` logits, e.g. a ranker's scores over its list) come from the caller's first forward/backward pass;
``grad_fn(θ)`` gives ∇L at the perturbed point; the target logits are ``target_outputs`` when given, else
``outputs_fn(θ_{t−1})`` / ``outputs_fn(θ₀)`` for ``prev``/``init`` and, for ``noise``, ``outputs_fn`` at θ_t with
noise z ~ N(0, σ²) drawn with ``key`` added to the input-embedding tables (the params matching ``noise_inputs``).
``outputs_mask`` (bool, same shape) masks padded entries; fully masked rows do not count.
Cost: 3 forward / 2 backward passes. ``prev`` and ``init`` keep one copy of the params in the state.

TRAM-Fisher (Eq. 8) is not implemented: without a damping term its ellipsoid ``F̂⁻¹∇L/√(∇Lᵀ F̂⁻¹ ∇L)``
is unbounded along coordinates with zero Fisher information.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ranking_jax.optim.sam import sharpness_step

TARGETS = ("prev", "init", "noise")
DIVERGENCES = ("forward", "reverse", "symmetric")


class TRAMState(NamedTuple):
    count: jax.Array  # int32: steps taken, skipped ones excluded
    base_state: optax.OptState
    reference: Any  # θ_{t−1} ("prev"), θ₀ ("init") or None ("noise")
    divergence: jax.Array  # float32: the radius d used by the last step (for logging)
    notfinite_count: jax.Array  # int32: steps skipped because the perturbed gradient was not finite
    history: jax.Array  # float32 [max(calibrate, 1)]: the unscaled divergences of the first steps (calibration)
    scale: jax.Array  # float32: the scale in use (``scale``, or the calibrated one)

    def diagnostics(self) -> dict[str, jax.Array]:
        """What a train step logs: the trust-region distance ``d`` of the last step and the scale in use."""
        return {"tram_d": self.divergence, "tram_scale": self.scale}


def perturb_inputs(params: Any, key: jax.Array, sigma: float, pattern: str = r"(^|/)embeddings/word$", *,
                   relative: bool = False) -> Any:
    """TRAM-x's noised inputs x + z, z ~ N(0, σ²) (Eq. 5, R3F-style): adds z to every input-embedding table
    (the parameters whose '/'-joined path matches ``pattern``; BERT's word embeddings). z is drawn per table row,
    so a token repeated within a batch gets the same z; a pattern matching no parameter is an error. With
    ``relative``, σ is a fraction of the table's root-mean-square entry (so z's norm is about σ times a row's,
    whatever the model's embedding scale)."""
    from ranking_jax.optim.paths import path_of
    rx = re.compile(pattern)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    hits = [bool(rx.search(path_of(path))) for path, _ in leaves]
    if not any(hits):
        raise ValueError(f"config.optimizer.tram.inputs={pattern!r} matches no parameter; TRAM-x (target 'noise') "
                         "needs the input embedding table's path, e.g. '(^|/)embeddings/word$'")
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [
        x + _std(x, sigma, relative) * jax.random.normal(k, x.shape, x.dtype) if hit else x
        for (_, x), hit, k in zip(leaves, hits, keys)])


def _std(table: jax.Array, sigma: float, relative: bool) -> jax.Array:
    return sigma * jnp.sqrt(jnp.mean(jnp.square(jax.lax.stop_gradient(table)))) if relative else sigma


def kl_divergence(target_logits: jax.Array, logits: jax.Array, *, where: jax.Array | None = None,
                  kind: str = "forward") -> jax.Array:
    """Mean over rows of ``Σ_c p(c) (log p(c) − log q(c))``, ``p = softmax(target)``, ``q = softmax(logits)``.

    ``kind``: ``"forward"`` KL(p‖q), ``"reverse"`` KL(q‖p), ``"symmetric"`` their sum. Entries masked by
    ``where`` (or at −inf in both) contribute nothing; rows with no valid entry are left out of the mean.
    """
    if kind not in DIVERGENCES:
        raise ValueError(f"unknown divergence {kind!r}; valid: {', '.join(DIVERGENCES)}")
    target_logits = jnp.asarray(target_logits, jnp.float32)
    logits = jnp.asarray(logits, jnp.float32)
    if target_logits.shape != logits.shape:
        raise ValueError(f"TRAM: target logits {target_logits.shape} and logits {logits.shape} differ in shape")
    if where is None:
        where = jnp.ones(logits.shape, bool)
    log_p = jax.nn.log_softmax(jnp.where(where, target_logits, -jnp.inf), axis=-1)
    log_q = jax.nn.log_softmax(jnp.where(where, logits, -jnp.inf), axis=-1)

    def kl(log_a, log_b):
        a = jnp.exp(log_a)
        terms = jnp.where(where & (a > 0), a * (log_a - log_b), 0.0)
        return jnp.sum(terms, axis=-1)

    rows = {"forward": kl(log_p, log_q), "reverse": kl(log_q, log_p)}
    per_row = rows[kind] if kind != "symmetric" else rows["forward"] + rows["reverse"]
    valid = jnp.any(where, axis=-1)
    return jnp.sum(jnp.where(valid, per_row, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def _calibrated(raw: jax.Array, state: "TRAMState", calibrate: int, target_d: float, *, first_is_zero: bool
                ) -> tuple[jax.Array, jax.Array]:
    """``(history, scale)``: during the first ``calibrate`` steps the unscaled divergence is recorded and the scale is
    ``target_d / median(recorded positive divergences)`` (0 while none is positive); afterwards it stays fixed.
    With ``first_is_zero`` (targets θ_{t−1} and θ₀, equal to θ at the first step) the first step records 0, not
    float32 rounding noise, which the ratio would blow up."""
    slot = jnp.arange(calibrate)
    calibrating = state.count < calibrate
    if first_is_zero:
        raw = jnp.where(state.count == 0, 0.0, raw)
    history = jnp.where(calibrating & (slot == state.count), raw, state.history)
    seen = (slot <= state.count) & (history > 0)
    median = jnp.nanmedian(jnp.where(seen, history, jnp.nan))
    fresh = jnp.where(jnp.any(seen), target_d / median, 0.0)
    return history, jnp.where(calibrating, fresh, state.scale).astype(jnp.float32)


def tram(base_tx: optax.GradientTransformation, *, target: str = "prev", eta: float = 0.01, eps: float = 1e-12,
         divergence: str = "forward", scale: float = 1.0, max_d: float | None = None, noise_sigma: float = 0.1,
         noise_inputs: str = r"(^|/)embeddings/word$", noise_relative: bool = False, calibrate: int = 0,
         target_d: float | None = None) -> optax.GradientTransformationExtraArgs:
    """TRAM around ``base_tx`` (the paper uses Adam); see the module docstring for ``update``'s arguments.

    ``calibrate`` > 0 replaces ``scale`` by one rule for every target: over the first ``calibrate`` steps, scale =
    ``target_d`` / median of the unscaled divergences so far, then fixed, so that each variant's typical radius is
    ``target_d`` (e.g. half ASAM's ρ) whatever the scale of its KL."""
    if calibrate and not (target_d and target_d > 0):
        raise ValueError(f"calibrate={calibrate} needs target_d > 0 (the median radius to calibrate to)")
    if calibrate < 0:
        raise ValueError(f"calibrate must be >= 0 steps, got {calibrate}")
    if target not in TARGETS:
        raise ValueError(f"unknown TRAM target {target!r}; valid: {', '.join(TARGETS)}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown TRAM divergence {divergence!r}; valid: {', '.join(DIVERGENCES)}")
    base = optax.with_extra_args_support(base_tx)

    def init_fn(params):
        # A real copy: a train step donates params and state together, and a buffer can be donated once.
        reference = None if target == "noise" else jax.tree.map(lambda x: jnp.array(x, copy=True), params)
        return TRAMState(count=jnp.zeros([], jnp.int32), base_state=base.init(params), reference=reference,
                         divergence=jnp.zeros([], jnp.float32), notfinite_count=jnp.zeros([], jnp.int32),
                         history=jnp.zeros([max(calibrate, 1)], jnp.float32),  # orbax saves no empty array
                         scale=jnp.asarray(scale, jnp.float32))

    def update_fn(grads, state, params=None, *, grad_fn=None, outputs=None,
                  outputs_fn: Callable[[Any], jax.Array] | None = None, target_outputs=None, outputs_mask=None,
                  key=None, **extra_args):
        if outputs is None:
            raise ValueError("TRAM needs outputs=: the logits at the current params on this batch "
                             "(e.g. the list scores of the forward pass that produced grads)")
        if target_outputs is None:
            if outputs_fn is None:
                raise ValueError(f"TRAM target={target!r} needs outputs_fn=(params -> logits) or target_outputs=")
            if target == "noise":
                if key is None:
                    raise ValueError("TRAM-x (target 'noise') needs key= for its input noise")
                target_outputs = outputs_fn(perturb_inputs(params, key, noise_sigma, noise_inputs,
                                                           relative=noise_relative))
            else:
                target_outputs = outputs_fn(state.reference)
        raw = kl_divergence(jax.lax.stop_gradient(target_outputs), jax.lax.stop_gradient(outputs),
                            where=outputs_mask, kind=divergence)
        history, step_scale = (_calibrated(raw, state, calibrate, target_d, first_is_zero=target != "noise")
                               if calibrate else (state.history, state.scale))
        d = raw * step_scale
        if max_d is not None:
            d = jnp.minimum(d, max_d)
        updates, base_state, finite = sharpness_step(base, grads, state.base_state, params, d, grad_fn,
                                                     adaptive=True, eta=eta, eps=eps, **extra_args)
        reference = state.reference
        if target == "prev":
            reference = jax.tree.map(lambda new, old: jnp.where(finite, new, old), params, reference)
        skipped = (~finite).astype(jnp.int32)
        return updates, TRAMState(count=state.count + 1 - skipped, base_state=base_state, reference=reference,
                                  divergence=d, notfinite_count=state.notfinite_count + skipped, history=history,
                                  scale=step_scale)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


__all__ = ["tram", "TRAMState", "kl_divergence", "perturb_inputs"]
