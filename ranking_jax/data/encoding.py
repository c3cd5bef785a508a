"""The one length-bucketing path: token arrays cut to power-of-two lengths, a model function jitted once per
model graph and mesh, and rows encoded in length-sorted buckets. Training, evaluation and the encode CLI all
use it, so a jitted consumer sees a few shapes and short texts cost what they are.

    bucket(37) == 64;  trim_padding(batch) cuts ``pair_*``/``query_*``/``doc_*``/``pseudo_*`` token arrays
    encode_rows(encode_docs, model, {"ids": [N, T], "mask": [N, T]}, mesh=mesh) -> [N, D] in row order
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import numpy as np
from flax import nnx

from ranking_jax import runtime, sharding

__all__ = ["TOKEN_PREFIXES", "bucket", "padding_lengths", "trim_padding", "global_batch", "jitted", "encode_rows",
           "encode_queries", "encode_docs"]

TOKEN_PREFIXES = ("pair", "query", "doc", "pseudo")


def bucket(length: int, *, smallest: int = 16, largest: int | None = None, multiple: int | None = None) -> int:
    """The padded length of a sequence of ``length`` tokens: the power of two ``>= length`` (at least
    ``smallest``), or with ``multiple`` the multiple of it ``>= length`` (at least ``multiple``); capped at
    ``largest``. Powers of two keep the shapes (compilations) few; multiples pad less."""
    if multiple:
        n = max(multiple, -(-length // multiple) * multiple)
    else:
        n = smallest
        while n < length:
            n *= 2
    return n if largest is None else min(n, largest)


def padding_lengths(batch: Mapping[str, np.ndarray]) -> dict[str, int]:
    """``{prefix: longest real sequence}`` of each token prefix in ``batch`` (1 when all padding)."""
    out = {}
    for prefix in TOKEN_PREFIXES:
        mask = batch.get(f"{prefix}_mask")
        if mask is not None:
            used = np.flatnonzero(np.asarray(mask).reshape(-1, mask.shape[-1]).any(axis=0))
            out[prefix] = int(used[-1]) + 1 if len(used) else 1
    return out


def trim_padding(batch: Mapping[str, np.ndarray], lengths: Mapping[str, int] | None = None, *,
                 smallest: int = 16) -> dict[str, np.ndarray]:
    """Cuts each prefix's ``*_ids``/``*_mask``/``*_type_ids`` to :func:`bucket` of its longest real sequence
    (``lengths``, e.g. the maximum over processes; default :func:`padding_lengths`). Only all-padding columns go,
    so values are unchanged."""
    out = dict(batch)
    for prefix, length in (padding_lengths(batch) if lengths is None else lengths).items():
        full = batch[f"{prefix}_mask"].shape[-1]
        size = bucket(length, smallest=smallest, largest=full)
        for name in ("ids", "mask", "type_ids"):
            key = f"{prefix}_{name}"
            if key in out:
                out[key] = out[key][..., :size]
    return out


def global_batch(host_batch: Mapping[str, np.ndarray], mesh, rules=sharding.DEFAULT_RULES, *,
                 trim: bool = True) -> Any:
    """This process's rows of a batch as global arrays sharded on the batch axis; token arrays cut to one bucket
    that every process agrees on (the longest over processes)."""
    batch = dict(host_batch)
    if trim:
        batch = trim_padding(batch, runtime.max_over_processes(padding_lengths(batch)))
    return sharding.shard_batch(batch, mesh, rules)


_JITTED: dict[tuple, Callable] = {}


def jitted(fn: Callable[[nnx.Module, Any], Any], model: nnx.Module, batch: Any, *, mesh=None) -> Any:
    """``fn(model, batch)`` under ``jax.jit``, compiled once per (``fn``, model graph, mesh); with ``mesh`` the
    result is replicated on it, so every process holds all of it. Pass module-level functions (e.g.
    :func:`encode_docs`) to share the cache."""
    graphdef, state = nnx.split(model)
    key = (fn, graphdef, mesh)
    if key not in _JITTED:
        out = None if mesh is None else sharding.replicated(mesh)
        _JITTED[key] = jax.jit(lambda s, b: fn(nnx.merge(graphdef, s), b), out_shardings=out)
    return _JITTED[key](state, batch)


def encode_queries(model, batch):
    return model.encode_queries(batch["ids"], batch["mask"])


def encode_docs(model, batch):
    return model.encode_docs(batch["ids"], batch["mask"])


def encode_rows(encode: Callable, model, tokens: Mapping[str, np.ndarray], *, mesh,
                rules=sharding.DEFAULT_RULES, batch_size: int = 256, progress: Callable[[int], Any] | None = None,
                multiple: int | None = None) -> np.ndarray:
    """``encode(model, {"ids", "mask"}) -> [B, ...]`` over every row of ``tokens`` (``[N, T]`` arrays, the same on
    every process), returned ``[N, ...]`` in row order. Rows are sorted by length (longest first), each batch of
    ``batch_size`` rows (a multiple of the mesh size) is cut to its :func:`bucket` (``multiple``: padded to a
    multiple of it, for a process whose compilations the persistent cache keeps) and sharded on the batch axis;
    ``progress(rows done)`` is called after each batch."""
    n = len(tokens["ids"])
    size = max(batch_size - batch_size % mesh.size, mesh.size)
    lengths = np.asarray(tokens["mask"]).sum(-1)
    order = np.argsort(-lengths, kind="stable")
    out = None
    with jax.set_mesh(mesh), sharding.axis_rules(rules):
        for start in range(0, n, size):
            rows = order[start:start + size]
            chunk = {k: np.pad(np.asarray(tokens[k])[rows], ((0, size - len(rows)), (0, 0))) for k in ("ids", "mask")}
            t = bucket(int(lengths[rows].max(initial=1)), largest=chunk["ids"].shape[1], multiple=multiple)
            chunk = {k: v[:, :t] for k, v in chunk.items()}
            emb = np.asarray(jitted(encode, model, sharding.put_global(chunk, mesh, rules), mesh=mesh))
            if out is None:
                out = np.empty((n,) + emb.shape[1:], emb.dtype)
            out[rows] = emb[:len(rows)]
            if progress is not None:
                progress(len(rows))
    return out
