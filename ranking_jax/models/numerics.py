"""Numerics the encoders share: bf16-input matmuls with float32 accumulation, and a fast counter-based dropout."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["mixed_einsum", "dropout"]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bf16_einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.einsum(spec, a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)


def _bf16_einsum_fwd(spec, a, b):
    a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    out = jnp.einsum(spec, a16, b16, preferred_element_type=jnp.float32)
    return out, (a16, b16, jnp.zeros((), a.dtype), jnp.zeros((), b.dtype))


def _bf16_einsum_bwd(spec, res, g):
    a16, b16, a_like, b_like = res
    ins, out = spec.split("->")
    sa, sb = ins.split(",")
    g16 = g.astype(jnp.bfloat16)
    # Valid because every index of one operand also appears in the other operand or in the output.
    da = jnp.einsum(f"{out},{sb}->{sa}", g16, b16, preferred_element_type=jnp.float32)
    db = jnp.einsum(f"{sa},{out}->{sb}", a16, g16, preferred_element_type=jnp.float32)
    return da.astype(a_like.dtype), db.astype(b_like.dtype)


_bf16_einsum.defvjp(_bf16_einsum_fwd, _bf16_einsum_bwd)


def mixed_einsum(spec: str, a: jax.Array, b: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """``einsum(spec, a, b)`` in float32, or with bfloat16 inputs and float32 accumulation.

    For ``dtype=bfloat16`` the two backward matmuls also take bfloat16 inputs (the cotangent is
    rounded), so the whole train step runs at the CPU's/accelerator's bf16 matmul rate. The result and
    the gradients are float32. ``spec`` is a two-operand einsum without repeated or summed-out-alone
    indices.
    """
    if jnp.dtype(dtype) == jnp.float32:
        return jnp.einsum(spec, a, b)
    if jnp.dtype(dtype) != jnp.bfloat16:
        raise ValueError(f"compute dtype must be float32 or bfloat16, got {dtype}")
    return _bf16_einsum(spec, a, b)


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: a bijection with full avalanche."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _fast_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint16 bits ``fmix32(fmix32(i * phi ^ s0) ^ s1)`` of the element index ``i`` and the key's words.

    A counter-based hash, elementwise and partitionable: XLA fuses it into the consumer, where threefry
    costs ~30 ns per 32-bit word on CPU (as much as the matmuls of a train step).
    """
    if math.prod(shape) >= 2 ** 32:
        raise ValueError(f"dropout on {math.prod(shape)} elements exceeds the 2^32 counter; split the array")
    words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    i = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    h = _fmix32((i * jnp.uint32(0x9E3779B1)) ^ words[0])
    h = _fmix32(h ^ words[-1])
    return (h >> 16).astype(jnp.uint16)


def dropout(x: jax.Array, rate: float, rngs: nnx.Rngs | None, deterministic: bool) -> jax.Array:
    """Inverted dropout; a no-op when ``deterministic`` or without ``rngs`` (the model family contract of
    :mod:`ranking_jax.models`).

    Keeps an element when 16 random bits are >= ``round(rate * 2^16)`` and rescales by the exact keep
    probability, so it is unbiased. The bits are a counter-based hash of the element index and the key
    (:func:`_fast_bits`); threefry bits for every attention probability cost as much as the matmuls on CPU.
    """
    if deterministic or rngs is None or rate == 0.0:
        return x
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    threshold = int(round(rate * 65536))
    keep = _fast_bits(rngs.dropout(), x.shape) >= threshold
    return jnp.where(keep, x * (65536.0 / (65536 - threshold)), 0.0).astype(x.dtype)
