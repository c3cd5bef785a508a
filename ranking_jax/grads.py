"""The loss and its gradient for one train step: whole batch, micro-batches (accumulation) or GradCache.

The model splits at ``represent`` (the parameters' work, per row) and ``outputs`` (no parameters, e.g. the
in-batch score matrix from query and document vectors; :class:`ranking_jax.models._common.Scorer`), so

    loss(params) = objective(outputs(represent(params, batch), batch), batch)

GradCache (Gao, Zhang, Han, Callan 2021, arXiv 2101.06983) makes the batch of a contrastive loss independent of
activation memory: (1) represent the batch chunk by chunk without keeping activations, (2) the loss and its
gradient with respect to the representations ``∂L/∂r`` on the whole batch, (3) per chunk, re-run ``represent``
and back-propagate ``∂L/∂r`` of its rows (a vector-Jacobian product); the parameter gradients add up to the
whole-batch gradient. Each chunk uses the same dropout key in both passes; dropout masks therefore differ from a
whole-batch step's (dropout off, the gradients are equal).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ranking_jax.objectives import Objective

# value_and_grad(params, batch, rng) -> ((loss, aux), grads); aux = {"terms": {name: value}, "scores": [B, L]|None}
ValueAndGrad = Callable[..., tuple[tuple[jax.Array, dict], Any]]


def split_batch(batch: Any, parts: int, what: str) -> Any:
    """Every leaf's leading (batch) axis ``[B, ...]`` as ``[parts, B // parts, ...]``; ``what`` (e.g.
    ``"config.train.accum_steps=4"``) names ``parts`` in the error when it does not divide ``B``."""
    def split(x):
        if x.shape[0] % parts:
            raise ValueError(f"a batch of {x.shape[0]} rows is not divisible by {what}; set config.data.batch_size "
                             "to a multiple")
        return x.reshape((parts, x.shape[0] // parts) + x.shape[1:])
    return jax.tree.map(split, batch)


def _merge(x: jax.Array) -> jax.Array:
    return x.reshape((-1,) + x.shape[2:])


def make_value_and_grad(model: Any, objective: Objective, *, accum_steps: int = 1,
                        grad_cache_chunk: int = 0) -> ValueAndGrad:
    """``model`` is the split model (``model.merge(params)`` gives the module); see the module docstring."""
    if accum_steps > 1 and grad_cache_chunk:
        raise ValueError("config.train.accum_steps and config.train.grad_cache_chunk are two ways to bound memory; "
                         "set one of them")
    kinds = objective.outputs

    def represent(params, batch, rng):
        return model.merge(params).represent(batch, deterministic=False, rngs=nnx.Rngs(dropout=rng))

    def head(params, reps, batch, rng):
        outputs = model.merge(params).outputs(reps, batch, kinds)
        total, terms = objective(outputs, batch, jax.random.fold_in(rng, 1))
        scores = outputs.get("scores")
        return total, {"terms": terms, "scores": None if scores is None else scores.astype(jnp.float32)}

    def loss_fn(params, batch, rng):
        return head(params, represent(params, batch, rng), batch, rng)

    plain = jax.value_and_grad(loss_fn, has_aux=True)
    if grad_cache_chunk:
        return _grad_cache(represent, head, grad_cache_chunk)
    if accum_steps <= 1:
        return plain

    def accumulated(params, batch, rng):
        def body(carry, xs):
            i, mb = xs
            (value, aux), grads = plain(params, mb, jax.random.fold_in(rng, i))
            return jax.tree.map(jnp.add, carry, (value, aux["terms"], grads)), aux["scores"]

        micro = split_batch(batch, accum_steps, f"config.train.accum_steps={accum_steps}")
        zero = jax.eval_shape(lambda: plain(params, jax.tree.map(lambda x: x[0], micro), rng))
        zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (zero[0][0], zero[0][1]["terms"], zero[1]))
        (value, terms, grads), scores = jax.lax.scan(body, zero, (jnp.arange(accum_steps), micro))
        value, terms, grads = jax.tree.map(lambda x: x / accum_steps, (value, terms, grads))
        return (value, {"terms": terms, "scores": None if scores is None else _merge(scores)}), grads

    return accumulated


def _grad_cache(represent: Callable, head: Callable, chunk: int) -> ValueAndGrad:
    def value_and_grad(params, batch, rng):
        rows = jax.tree.leaves(batch)[0].shape[0]
        if rows % chunk:
            raise ValueError(f"a batch of {rows} rows cannot be split into GradCache chunks of {chunk} "
                             "(config.train.grad_cache_chunk); use a divisor of config.data.batch_size")
        parts = rows // chunk
        micro = split_batch(batch, parts, f"{parts} GradCache chunks")
        keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(parts))
        frozen = jax.lax.stop_gradient(params)
        reps = jax.lax.map(lambda xs: represent(frozen, xs[0], xs[1]), (micro, keys))
        reps = jax.tree.map(_merge, reps)
        (value, aux), (head_grads, rep_grads) = jax.value_and_grad(head, argnums=(0, 1), has_aux=True)(
            params, reps, batch, rng)
        rep_grads = split_batch(rep_grads, parts, f"{parts} GradCache chunks")

        def body(grads, xs):
            mb, key, cotangent = xs
            _, vjp = jax.vjp(lambda p: represent(p, mb, key), params)
            return jax.tree.map(jnp.add, grads, vjp(cotangent)[0]), None

        grads, _ = jax.lax.scan(body, head_grads, (micro, keys, rep_grads))
        return (value, aux), grads

    return value_and_grad
