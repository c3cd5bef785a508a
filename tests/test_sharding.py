"""ranking_jax.sharding: the 8-device CPU mesh, mesh specs and their errors, logical-axis rules, and shardings derived
from logical names that give the single-device forward and gradient on a (data, model) mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn
from flax import nnx
from jax.sharding import PartitionSpec as P

from ranking_jax import sharding


def test_eight_devices():
    assert jax.device_count() == 8


@pytest.mark.parametrize("spec, shape", [
    ([("data", -1), ("model", 2)], {"data": 4, "model": 2}),
    ([("data", -1)], {"data": 8}),
    ([("data", 2), ("model", -1)], {"data": 2, "model": 4}),
    ([("data", 8), ("model", 1)], {"data": 8, "model": 1}),
])
def test_make_mesh(spec, shape):
    mesh = sharding.make_mesh(spec)
    assert dict(mesh.shape) == shape
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


@pytest.mark.parametrize("spec, message", [
    ([("data", -1), ("model", -1)], "at most one -1"),
    ([("data", 3)], "needs 3 devices"),
    ([("data", -1), ("model", 3)], "not divisible"),
    ([("data", 4), ("data", 2)], "repeats"),
    (["data"], "pairs"),
])
def test_make_mesh_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        sharding.make_mesh(spec)


def test_logical_to_spec_rules():
    rules = sharding.DEFAULT_RULES
    assert sharding.logical_to_spec(("embed", "mlp"), rules) == P(None, "model")
    assert sharding.logical_to_spec(("batch", "length", "embed"), rules) == P("data")
    # a mesh axis is used once per array; FSDP adds the embed dimension on data
    assert sharding.logical_to_spec(("mlp", "heads"), rules) == P("model")
    assert sharding.logical_to_spec(("embed", "mlp"), sharding.FSDP_RULES) == P("data", "model")
    mesh = sharding.make_mesh([("data", -1), ("model", 2)])
    assert sharding.logical_to_spec(("vocab", "embed"), rules, mesh, (101, 8)) == P()  # 101 % 2: replicated


# ------------------------------------------------------------------------------------ derived shardings
class _Mlp(nnx.Module):
    def __init__(self, *, rngs):
        init = nnx.initializers.lecun_normal()
        self.embed = nnx.Embed(64, 16, embedding_init=nnx.with_partitioning(nnx.initializers.normal(1.0),
                                                                          ("vocab", "embed")), rngs=rngs)
        self.up = nnx.Linear(16, 32, kernel_init=nnx.with_partitioning(init, ("embed", "mlp")),
                             bias_init=nnx.with_partitioning(nnx.initializers.normal(0.1), ("mlp",)), rngs=rngs)
        self.down = nnx.Linear(32, 1, kernel_init=nnx.with_partitioning(init, ("mlp", "embed")), rngs=rngs)

    def __call__(self, ids):
        h = nn.with_logical_constraint(self.embed(ids), ("batch", "length", "embed"))
        h = nn.with_logical_constraint(jax.nn.gelu(self.up(h)), ("batch", "length", "mlp"))
        return self.down(h)[..., 0].mean(-1)


def test_derived_shardings_match_single_device():
    with nnx.use_eager_sharding(False):
        model = _Mlp(rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    ids = np.random.default_rng(0).integers(0, 64, (16, 12))
    labels = jnp.asarray(np.random.default_rng(1).normal(size=16), jnp.float32)

    def loss(s, x):
        return jnp.mean((nnx.merge(graphdef, s)(x) - labels) ** 2)

    ref_out = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, ids)
    ref_grad = jax.jit(jax.grad(loss))(state, ids)

    mesh = sharding.make_mesh([("data", 4), ("model", 2)])
    shardings = sharding.param_shardings(state, mesh, sharding.DEFAULT_RULES)
    specs = jax.tree.map(lambda s: s.spec, shardings)
    assert specs["up"]["kernel"] == P(None, "model")
    assert specs["embed"]["embedding"] == P("model")
    assert specs["down"]["bias"] == P()
    sharded_state = jax.device_put(state, shardings)
    x = sharding.shard_batch(ids, mesh)
    assert x.sharding.spec == P("data")
    with jax.set_mesh(mesh), sharding.axis_rules(sharding.DEFAULT_RULES):
        out = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x), out_shardings=sharding.batch_sharding(mesh))(
            sharded_state, x)
        grad = jax.jit(jax.grad(loss), out_shardings=shardings)(sharded_state, x)
    assert out.sharding.spec == P("data")
    assert grad["up"]["kernel"][...].sharding.spec == P(None, "model")
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref_out), atol=1e-6)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
