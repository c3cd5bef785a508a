"""Mesh, logical-axis rules and derived shardings: the only module that names mesh axes.

Models annotate parameters with *logical* axis names (``("embed", "mlp")``) through
``nnx.with_partitioning`` and activations through flax's ``with_logical_constraint``; the rules of the config
(:func:`rules`) map logical names to mesh axes, for parameters here and for activations through flax's
``logical_axis_rules`` (:func:`axis_rules`). The same config therefore runs on 1 CPU, 8 fake CPUs and a pod.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Iterator, Sequence

import jax
import numpy as np
import flax.linen
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

Rules = Sequence[tuple[str, Any]]

# Logical axis -> mesh axis (None: replicated). Data parallelism on ``data``; Megatron-style tensor
# parallelism on ``model`` (attention heads and MLP hidden units); vocabulary rows on ``model``.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", "data"),
    ("length", None),
    ("embed", None),
    ("heads", "model"),
    ("kv", None),
    ("mlp", "model"),
    ("vocab", "model"),
    ("kernels", None),
)
# FSDP: additionally shard the embedding dimension of every parameter over ``data``.
FSDP_RULES: tuple[tuple[str, Any], ...] = tuple(
    (name, "data") if name == "embed" else (name, axis) for name, axis in DEFAULT_RULES)

_log = logging.getLogger(__name__)


def make_mesh(spec: Sequence[Sequence[Any]], devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """Builds a mesh from ``[("data", -1), ("model", 2)]``; at most one size may be -1 (fills itself).

    Axes are ``AxisType.Auto`` (GSPMD): ``jax.make_mesh`` defaults to Explicit, under which
    ``nnx.Embed`` fails inside jit.
    """
    devices = list(devices if devices is not None else jax.devices())
    try:
        names = tuple(str(name) for name, _ in spec)
        sizes = [int(size) for _, size in spec]
    except (TypeError, ValueError):
        raise ValueError(f"config.mesh must be a list of (axis_name, size) pairs, got {spec!r}") from None
    if len(set(names)) != len(names):
        raise ValueError(f"config.mesh repeats an axis name: {names}")
    if sizes.count(-1) > 1:
        raise ValueError(f"config.mesh may have at most one -1 size, got {spec!r}")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"config.mesh sizes must be positive or -1, got {spec!r}")
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % fixed:
            raise ValueError(f"config.mesh {spec!r}: {len(devices)} devices are not divisible by the fixed "
                             f"axes' product {fixed}")
        sizes[sizes.index(-1)] = len(devices) // fixed
    if math.prod(sizes) != len(devices):
        raise ValueError(f"config.mesh {spec!r} needs {math.prod(sizes)} devices but {len(devices)} are "
                         "available; use -1 for one axis to fill the rest")
    return jax.make_mesh(tuple(sizes), names, axis_types=(AxisType.Auto,) * len(names), devices=devices)


def rules(spec: str | Rules = "default") -> tuple[tuple[str, Any], ...]:
    """``config.sharding_rules``: ``"default"``, ``"fsdp"`` or a list of ``(logical_name, mesh_axis)`` pairs."""
    if isinstance(spec, str):
        named = {"default": DEFAULT_RULES, "fsdp": FSDP_RULES}
        if spec not in named:
            raise ValueError(f"config.sharding_rules={spec!r} is unknown; use 'default', 'fsdp' or a list of "
                             "(logical_name, mesh_axis) pairs")
        return named[spec]
    return tuple((str(k), v) for k, v in spec)


@contextlib.contextmanager
def axis_rules(rules: Rules) -> Iterator[None]:
    """Makes ``rules`` flax's logical-axis rules (what models' ``with_logical_constraint`` maps through); mesh
    axes the current mesh (``jax.set_mesh``, entered first) lacks map to None, so one rule set serves every mesh."""
    mesh = jax.sharding.get_abstract_mesh()
    names = None if mesh is None or mesh.empty else set(mesh.axis_names)

    def present(axis):
        if names is None or axis is None:
            return axis
        if isinstance(axis, str):
            return axis if axis in names else None
        kept = tuple(a for a in axis if a in names)
        return kept or None

    with flax.linen.logical_axis_rules(tuple((str(k), present(v)) for k, v in rules)):
        yield


def logical_to_spec(names: Sequence[str | None] | None, rules: Rules, mesh: Any = None,
                    shape: Sequence[int] | None = None) -> P:
    """Maps logical axis names to a ``PartitionSpec``.

    A logical name absent from ``rules`` is replicated. A mesh axis is used at most once per array
    (later dimensions fall back to replication), and, when ``mesh`` and ``shape`` are given, a
    dimension that the mesh axis does not divide is replicated (logged), never padded.
    """
    if not names:
        return P()
    table = dict(rules)
    used: set[str] = set()
    out = []
    for i, name in enumerate(names):
        axis = table.get(name) if name is not None else None
        axes = () if axis is None else (axis,) if isinstance(axis, str) else tuple(axis)
        axes = tuple(a for a in axes if a not in used and (mesh is None or a in mesh.axis_names))
        if axes and mesh is not None and shape is not None:
            size = math.prod(mesh.shape[a] for a in axes)
            if shape[i] % size:
                _log.info("dimension %d (%s, size %d) is not divisible by mesh axes %s (size %d); replicated",
                          i, name, shape[i], axes, size)
                axes = ()
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    while out and out[-1] is None:
        out.pop()
    return P(*out)


def _logical_names(variable: nnx.Variable) -> tuple[str | None, ...] | None:
    meta = variable.get_metadata()
    return meta.get("out_sharding") or meta.get("sharding_names")


def param_specs(state: Any, rules: Rules, mesh: Any = None) -> Any:
    """PartitionSpecs for every leaf of an nnx ``State`` (concrete or abstract) from its logical names."""
    def spec(x):
        if isinstance(x, nnx.Variable):
            return logical_to_spec(_logical_names(x), rules, mesh, getattr(x, "shape", None))
        return P()
    return jax.tree.map(spec, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def param_shardings(state: Any, mesh: jax.sharding.Mesh, rules: Rules) -> Any:
    """``NamedSharding``s derived from the logical names of an nnx ``State``; never written by hand."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), param_specs(state, rules, mesh),
                        is_leaf=lambda x: isinstance(x, P))


def batch_spec(ndim: int, rules: Rules = DEFAULT_RULES) -> P:
    """The batch layout: leading dimension on the ``batch`` rule's mesh axes, the rest replicated."""
    return logical_to_spec(("batch",) + (None,) * (ndim - 1), rules)


def batch_sharding(mesh: jax.sharding.Mesh, ndim: int = 1, rules: Rules = DEFAULT_RULES) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(ndim, rules))


def shard_batch(batch: Any, mesh: jax.sharding.Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """Turns this process's slice of a batch (a pytree of numpy arrays) into global ``jax.Array``s.

    With one process the slice is the whole batch; with several, each process passes its own rows
    (``per-process`` input sharding) and the global batch is their concatenation in process order.
    """
    first = batch_spec(1, rules)
    axes = first[0] if first else ()
    shards = math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes or ()))

    def put(x):
        x = np.asarray(x)
        sharding = batch_sharding(mesh, x.ndim, rules)
        if x.shape[0] * jax.process_count() % shards:
            raise ValueError(f"a batch of {x.shape[0] * jax.process_count()} rows cannot be split over the {shards} "
                             f"devices of the batch axis (mesh {dict(mesh.shape)}); set config.data.batch_size "
                             f"(and eval_batch_size) to a multiple of {shards}, or change config.mesh")
        global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
        return jax.make_array_from_process_local_data(sharding, x, global_shape)
    return jax.tree.map(put, batch)


def put_global(batch: Any, mesh: jax.sharding.Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """Global ``jax.Array``s, sharded on the batch axis, of a batch every process holds whole (e.g. texts to
    encode); each process transfers only the rows its devices hold."""
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, batch_sharding(mesh, x.ndim, rules), lambda index: x[index])
    return jax.tree.map(put, batch)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


__all__ = ["make_mesh", "rules", "axis_rules", "logical_to_spec", "param_specs", "param_shardings",
           "batch_spec", "batch_sharding", "shard_batch", "put_global", "replicated", "DEFAULT_RULES", "FSDP_RULES"]
