"""SAM and ASAM as one-call optax transformations: one ``update`` is one full sharpness-aware step.

SAM (Foret et al., ICLR 2021), first-order solution of ``min_w max_{‖ε‖₂≤ρ} L(w + ε)``::

    ε = ρ · g / ‖g‖₂,                 g = ∇L(w)
    w ← base_update(∇L(w + ε))

ASAM (Kwon et al., ICML 2021) rescales the neighbourhood by ``T_w = |w| + η`` (elementwise)::

    ε = ρ · T_w² g / ‖T_w g‖₂

``update(grads, state, params, *, grad_fn)`` takes ``grads = ∇L(w)`` and calls ``grad_fn(w + ε)`` once
(the whole step is traced into the caller's jitted train step; cost: two forward/backward passes).
``grad_fn`` takes the params only (``optax.contrib.sam``'s takes ``(params, i)``). T_w applies to every
parameter (the official ASAM code restricts it to tensors named "weight").
The base optimizer sees the gradient at the perturbed point and the *clean* ``params`` (weight decay),
and its step count advances once per call. Unlike ``optax.contrib.sam`` the norm carries an ``eps``
(a zero gradient gives ε = 0, not NaN), the state holds no copy of the params, and branches are
selected with ``jnp.where``: a non-finite clean gradient gives ε = 0, and a non-finite gradient at the
perturbed point skips the step (zero update, base state kept, ``notfinite_count`` incremented).

m-sharpness (``groups=m``): the batch is split into ``m`` groups, each group perturbs with its own
gradient and the perturbed gradients are averaged (google-research/sam's unsynchronised default)::

    ε_k = ρ · g_k / ‖g_k‖₂,           g = (1/m) Σ_k ∇L_k(w + ε_k)

Then ``grads`` carries a leading group axis (``g_k`` stacked), ``grad_fn`` maps stacked perturbed
params ``[m, ...]`` to stacked per-group gradients ``[m, ...]``, typically
``lambda ps: jax.vmap(jax.grad(loss))(ps, split_groups(batch, m))``. Under a mesh the group axis
follows the batch sharding, so each data shard perturbs with its own gradient.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

ScalarOrSchedule = float | Callable[[jax.Array], jax.Array]


class SAMState(NamedTuple):
    count: jax.Array  # int32: steps taken, skipped ones excluded (like the base optimizer's count)
    base_state: optax.OptState
    notfinite_count: jax.Array  # int32: steps skipped because the perturbed gradient was not finite


def split_groups(tree: Any, groups: int) -> Any:
    """Reshapes every leaf's leading (batch) axis ``[B, ...]`` to ``[groups, B // groups, ...]``."""
    from ranking_jax.grads import split_batch
    return split_batch(tree, groups, f"groups={groups} (m-sharpness)")


def all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.array(True)


def perturbation(grads: Any, params: Any, scale: jax.Array, *, adaptive: bool = False, eta: float = 0.01,
                 eps: float = 1e-12) -> Any:
    """``ε = scale · T² g / (‖T g‖₂ + eps)`` with ``T = |w| + η`` (adaptive) or ``T = 1`` (SAM).

    Returns zeros when ``g``, the norm or ``scale`` is not finite (selected, never blended).
    """
    if adaptive:
        t = jax.tree.map(lambda w: jnp.abs(w) + eta, params)
        tg = jax.tree.map(jnp.multiply, t, grads)
    else:
        t, tg = None, grads
    norm = optax.tree.norm(tg)
    factor = scale / (norm + eps)
    ok = jnp.isfinite(norm) & jnp.isfinite(factor)
    factor = jnp.where(ok, factor, 0.0)
    if adaptive:
        return jax.tree.map(lambda ti, tgi: jnp.where(ok, factor * ti * tgi, 0.0).astype(tgi.dtype), t, tg)
    return jax.tree.map(lambda gi: jnp.where(ok, factor * gi, 0.0).astype(gi.dtype), grads)


def sharpness_step(base: optax.GradientTransformationExtraArgs, grads: Any, base_state: optax.OptState,
                   params: Any, scale: jax.Array, grad_fn: Callable[[Any], Any], *, adaptive: bool, eta: float,
                   eps: float, groups: int | None = None, **extra_args) -> tuple[Any, optax.OptState, jax.Array]:
    """Perturbs ``params`` by :func:`perturbation`, takes ``grad_fn`` there once, runs ``base`` on it.

    Returns ``(updates, base_state, finite)``; when the perturbed gradient is not finite the updates
    are zero and ``base_state`` is the input state.
    """
    if params is None:
        raise ValueError("sharpness-aware optimizers need params: call tx.update(grads, state, params, grad_fn=...)")
    if grad_fn is None:
        raise ValueError("sharpness-aware optimizers need grad_fn=: call tx.update(grads, state, params, "
                         "grad_fn=lambda p: jax.grad(loss)(p, batch))")
    if groups is None:
        e = perturbation(grads, params, scale, adaptive=adaptive, eta=eta, eps=eps)
        adv_grads = grad_fn(jax.tree.map(jnp.add, params, e))
    else:
        e = jax.vmap(lambda g: perturbation(g, params, scale, adaptive=adaptive, eta=eta, eps=eps))(grads)
        adv = jax.tree.map(lambda p, ek: p[None] + ek, params, e)
        stacked = grad_fn(adv)
        for leaf in jax.tree.leaves(stacked):
            if leaf.shape[:1] != (groups,):
                raise ValueError(f"m-sharpness: grad_fn must return per-group gradients with a leading axis of "
                                 f"size groups={groups}, got a leaf of shape {leaf.shape}")
        adv_grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), stacked)
    finite = all_finite(adv_grads)
    updates, new_state = base.update(adv_grads, base_state, params, **extra_args)
    updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, base_state)
    return updates, new_state, finite


def sam(base_tx: optax.GradientTransformation, rho: ScalarOrSchedule = 0.05, *, adaptive: bool = False,
        eta: float = 0.01, eps: float = 1e-12, groups: int | None = None) -> optax.GradientTransformationExtraArgs:
    """SAM (``adaptive=False``) or ASAM (``adaptive=True``, usual ``rho=0.5``) around ``base_tx``.

    ``rho`` may be a schedule of the step count. ``groups=m`` switches on m-sharpness (module docstring).
    Extra args other than ``grad_fn`` are passed on to ``base_tx``.
    """
    if groups is not None and groups < 1:
        raise ValueError(f"groups must be a positive int or None, got {groups}")
    base = optax.with_extra_args_support(base_tx)
    rho_fn = rho if callable(rho) else (lambda count: jnp.asarray(rho, jnp.float32))

    def init_fn(params):
        return SAMState(count=jnp.zeros([], jnp.int32), base_state=base.init(params),
                        notfinite_count=jnp.zeros([], jnp.int32))

    def update_fn(grads, state, params=None, *, grad_fn=None, **extra_args):
        if groups is not None:
            for leaf in jax.tree.leaves(grads):
                if leaf.shape[:1] != (groups,):
                    raise ValueError(f"m-sharpness (groups={groups}): grads must be stacked per-group gradients "
                                     f"with a leading axis of size {groups}, got a leaf of shape {leaf.shape}")
        updates, base_state, finite = sharpness_step(
            base, grads, state.base_state, params, rho_fn(state.count), grad_fn, adaptive=adaptive, eta=eta,
            eps=eps, groups=groups, **extra_args)
        skipped = (~finite).astype(jnp.int32)
        return updates, SAMState(count=state.count + 1 - skipped, base_state=base_state,
                                 notfinite_count=state.notfinite_count + skipped)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


__all__ = ["sam", "SAMState", "perturbation", "sharpness_step", "split_groups"]
