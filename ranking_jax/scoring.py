"""Score functions shared by the model families: dot, cosine, MaxSim (chunked), RBF kernel pooling, exact top-k.

Shapes follow the batch contract: a query representation ``[B, ...]`` against ``L`` candidates per
query ``[B, L, ...]`` gives scores ``[B, L]``; the ``*_matrix`` variants score every query against
every document (in-batch negatives).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["l2_normalize", "dot", "cosine", "dot_matrix", "cosine_matrix", "maxsim", "maxsim_matrix",
           "rbf_kernels", "kernel_pooling", "exact_topk", "TK_KERNEL_MUS"]

# TK / KNRM kernel centres (Hofstaetter et al. 2020; Xiong et al. 2017): 1.0 (exact match), then 0.9 to -0.9.
TK_KERNEL_MUS = (1.0, 0.9, 0.7, 0.5, 0.3, 0.1, -0.1, -0.3, -0.5, -0.7, -0.9)


def l2_normalize(x: jax.Array, *, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """``x / max(||x||_2, eps)`` (torch ``F.normalize``); a zero vector stays zero with finite gradients."""
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def dot(q: jax.Array, d: jax.Array) -> jax.Array:
    """``s_{bl} = <q_b, d_{bl}>``: q ``[..., D]``, d ``[..., L, D]`` -> ``[..., L]`` (BERT_DOT)."""
    return jnp.einsum("...d,...ld->...l", q, d)


def cosine(q: jax.Array, d: jax.Array, *, eps: float = 1e-12) -> jax.Array:
    """Cosine similarity ``<q, d> / (|q| |d|)`` with the shapes of :func:`dot`."""
    return dot(l2_normalize(q, eps=eps), l2_normalize(d, eps=eps))


def dot_matrix(q: jax.Array, d: jax.Array) -> jax.Array:
    """All pairs: q ``[Nq, D]``, d ``[Nd, D]`` -> ``[Nq, Nd]``."""
    return jnp.einsum("qd,nd->qn", q, d)


def cosine_matrix(q: jax.Array, d: jax.Array, *, eps: float = 1e-12) -> jax.Array:
    return dot_matrix(l2_normalize(q, eps=eps), l2_normalize(d, eps=eps))


def _maxsim_block(q, d, q_mask, d_mask):
    """q [B, Tq, E], d [B, C, Td, E] (B may be 1 for broadcasting) -> [B, C]."""
    if d.shape[0] == 1 and q.shape[0] != 1:  # every query against the same documents
        sim = jnp.einsum("bqe,cte->bcqt", q, d[0])
    else:
        sim = jnp.einsum("bqe,bcte->bcqt", q, d)
    sim = jnp.where(d_mask[:, :, None, :], sim, jnp.finfo(sim.dtype).min)
    best = jnp.max(sim, axis=-1)  # [B, C, Tq]
    valid = q_mask[:, None, :] & jnp.any(d_mask, axis=-1)[:, :, None]
    return jnp.sum(jnp.where(valid, best, 0.0), axis=-1)


def maxsim(q: jax.Array, d: jax.Array, q_mask: jax.Array, d_mask: jax.Array, *,
           chunk_size: int | None = 16) -> jax.Array:
    """ColBERT late interaction ``s_{bl} = sum_{i: q_mask} max_{j: d_mask} <q_{bi}, d_{blj}>``.

    q ``[B, Tq, E]``, d ``[B, L, Td, E]``, masks bool ``[B, Tq]`` / ``[B, L, Td]`` -> ``[B, L]``.
    A document without real tokens scores 0. Candidates are processed ``chunk_size`` at a time
    (``lax.map`` over rematerialized blocks), so forward and backward hold one ``[B, chunk, Tq, Td]``
    similarity block instead of the whole ``[B, L, Tq, Td]`` tensor. ``chunk_size=None``: one block.
    """
    q_mask, d_mask = q_mask.astype(bool), d_mask.astype(bool)
    n = d.shape[1]
    if chunk_size is None or chunk_size >= n:
        return _maxsim_block(q, d, q_mask, d_mask)
    n_chunks = -(-n // chunk_size)
    pad = n_chunks * chunk_size - n
    d = jnp.pad(d, ((0, 0), (0, pad), (0, 0), (0, 0)))
    d_mask = jnp.pad(d_mask, ((0, 0), (0, pad), (0, 0)))
    bd = d.shape[0]
    d_chunks = jnp.moveaxis(d.reshape(bd, n_chunks, chunk_size, *d.shape[2:]), 1, 0)
    m_chunks = jnp.moveaxis(d_mask.reshape(bd, n_chunks, chunk_size, d_mask.shape[-1]), 1, 0)
    block = jax.checkpoint(lambda dc, mc: _maxsim_block(q, dc, q_mask, mc))
    out = jax.lax.map(lambda xs: block(*xs), (d_chunks, m_chunks))  # [n_chunks, B, chunk]
    out = jnp.moveaxis(out, 0, 1).reshape(out.shape[1], n_chunks * chunk_size)
    return out[:, :n]


def maxsim_matrix(q: jax.Array, d: jax.Array, q_mask: jax.Array, d_mask: jax.Array, *,
                  chunk_size: int | None = 16) -> jax.Array:
    """MaxSim of every query against every document: q ``[Nq, Tq, E]``, d ``[Nd, Td, E]`` -> ``[Nq, Nd]``."""
    return maxsim(q, d[None], q_mask, d_mask[None], chunk_size=chunk_size)


def rbf_kernels(sim: jax.Array, mus: Sequence[float], sigmas: Sequence[float]) -> jax.Array:
    """``K_k(s) = exp(-(s - mu_k)^2 / (2 sigma_k^2))``: ``[...]`` -> ``[..., K]``."""
    mus, sigmas = jnp.asarray(mus, sim.dtype), jnp.asarray(sigmas, sim.dtype)
    return jnp.exp(-jnp.square(sim[..., None] - mus) / (2.0 * jnp.square(sigmas)))


def kernel_pooling(sim: jax.Array, q_mask: jax.Array, d_mask: jax.Array, *, mus: Sequence[float],
                   sigmas: Sequence[float], scale: jax.Array | None = None, floor: float = 1e-10) -> jax.Array:
    """KNRM/TK soft-match features ``phi_k = sum_{i: q_mask} log(max(a_k sum_{j: d_mask} K_k(s_ij), floor))``.

    ``sim`` ``[..., Tq, Td]`` (cosine match matrix), masks ``[..., Tq]`` / ``[..., Td]`` -> ``[..., K]``;
    ``scale`` is TK's per-kernel ``a_k`` (default 1). Xiong et al. 2017 (KNRM), Hofstaetter et al. 2020 (TK).
    """
    k = rbf_kernels(sim, mus, sigmas) * d_mask.astype(sim.dtype)[..., None, :, None]
    per_query_token = jnp.sum(k, axis=-2)  # [..., Tq, K]
    if scale is not None:
        per_query_token = per_query_token * scale
    logs = jnp.log(jnp.maximum(per_query_token, floor)) * q_mask.astype(sim.dtype)[..., None]
    return jnp.sum(logs, axis=-2)


def exact_topk(queries: jax.Array, docs: jax.Array, k: int, *, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of ``queries @ docs.T`` scanning ``chunk`` documents at a time: memory O(Q·(chunk + k)).

    Ties keep the lower document row (``lax.top_k`` is stable over the running [best | chunk] candidates).
    """
    n = docs.shape[0]
    k = min(k, n)
    size = min(chunk, n)
    padded = jnp.pad(docs, ((0, -n % size), (0, 0)))

    @jax.jit
    def search(q, d):
        def body(carry, start):
            best_s, best_i = carry
            block = jax.lax.dynamic_slice_in_dim(d, start, size)
            s = q @ block.T
            rows = start + jnp.arange(size)
            s = jnp.where(rows[None, :] < n, s, -jnp.inf)
            cand_s = jnp.concatenate([best_s, s], axis=1)
            cand_i = jnp.concatenate([best_i, jnp.broadcast_to(rows, s.shape)], axis=1)
            top_s, pos = jax.lax.top_k(cand_s, k)
            return (top_s, jnp.take_along_axis(cand_i, pos, axis=1)), None

        init = (jnp.full((q.shape[0], k), -jnp.inf, q.dtype), jnp.full((q.shape[0], k), n, jnp.int32))
        (s, i), _ = jax.lax.scan(body, init, jnp.arange(0, d.shape[0], size))
        return s, i

    s, i = search(queries, padded)
    return np.asarray(s), np.asarray(i)
