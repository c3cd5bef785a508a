"""Foundation: registry, mesh, derived shardings, config flags."""

import functools
import json
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn
from flax import nnx
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from ranking_jax import registry, sharding

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- registry
def test_registry_resolves_call_with_bound_kwargs_and_nested_specs():
    from ranking_jax import losses, metrics
    fn = registry.lookup("losses.softmax_loss(reduce_fn=None)")
    assert isinstance(fn, functools.partial) and fn.func is losses.softmax_loss and fn.keywords == {"reduce_fn": None}
    assert registry.lookup("losses.softmax_loss") is losses.softmax_loss
    nested = registry.lookup("losses.pairwise_logistic_loss(lambdaweight_fn=lambdaweights.dcg_lambdaweight)")
    assert nested.keywords["lambdaweight_fn"] is losses.dcg_lambdaweight
    made, entry = registry.resolve("losses.approx_t12n(metrics.ndcg_metric, temperature=0.5)")
    assert entry.factory and entry.meta["view"] == "list"
    scores, labels = jnp.array([[2.0, 1.0, 0.0]]), jnp.array([[0.0, 1.0, 2.0]])
    np.testing.assert_allclose(made(scores, labels), losses.approx_t12n(metrics.ndcg_metric, temperature=0.5)(
        scores, labels), rtol=1e-6)


def test_only_components_are_registered():
    """Registered names come from the components' own decorators; no helper, state class or loader is there."""
    names = registry.names()
    assert {n.split(".")[0] for n in names} >= {"losses", "metrics", "models", "optimizers", "evaluators", "tasks",
                                                "first_stages", "lambdaweights"}
    for helper in ("losses.popularity_propensity", "losses.madpo_weight", "models.load_tokenizer",
                   "optimizers.SAMState", "optimizers.make", "shardings.make_mesh"):
        assert helper not in names


def test_registry_register_and_positional_args():
    @registry.register("testing.affine")
    def affine(x, *, a=1.0, b=0.0):
        return a * x + b

    assert registry.lookup("testing.affine(a=2.0, b=1.0)")(3.0) == 7.0
    assert registry.lookup("testing.affine")(3.0) == 3.0
    with pytest.raises(ValueError, match="already registered"):
        registry.register("testing.affine", lambda x: x)


def test_registry_unknown_name_lists_closest():
    with pytest.raises(registry.RegistryError) as e:
        registry.lookup("losses.sofmax_loss")
    assert "losses.softmax_loss" in str(e.value) and "sofmax_loss" in str(e.value)
    with pytest.raises(registry.RegistryError, match="Closest registered names"):
        registry.lookup("nonsense.thing")


@pytest.mark.parametrize("spec, message", [
    ("losses.softmax_loss(", r"never closed at character 20"),
    ("softmax_loss", "must be 'namespace.name'"),
    ("losses.softmax_loss(reduce_fn=bar)", "Python literal .* or a registry spec"),
])
def test_registry_malformed_specs(spec, message):
    with pytest.raises(registry.RegistryError, match=message):
        registry.lookup(spec)


# ------------------------------------------------------------------------------------------------- mesh
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


# --------------------------------------------------------------------------------------------- configs
_CONFIG = textwrap.dedent('''
    from ml_collections import ConfigDict
    def get_config(arg=None):
        c = ConfigDict()
        c.seed = 0
        c.name = arg or "default"
        c.optimizer = ConfigDict({"name": "adam", "lr": 1e-3})
        return c
''')


def test_config_locking_typos_and_types():
    ns = {}
    exec(_CONFIG, ns)
    c = ns["get_config"]()
    c.lock()
    with pytest.raises(AttributeError, match='Did you mean "name"'):
        c.optimizer.nmae = "sam"
    with pytest.raises(TypeError, match="lr"):
        c.optimizer.lr = "fast"
    c.optimizer.lr = 1  # int -> float is allowed
    assert isinstance(c.optimizer.lr, float)


def _main(tmp_path, *flags):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(_CONFIG)
    return subprocess.run([sys.executable, "-m", "ranking_jax.main", f"--config={cfg}:small",
                           f"--workdir={tmp_path / 'wd'}", *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_main_rejects_typo_and_wrong_type(tmp_path):
    r = _main(tmp_path, "--config.optimizer.nmae=sam")
    assert r.returncode != 0
    assert 'Did you mean "name"' in r.stderr and "config error" in r.stderr
    r = _main(tmp_path, "--config.optimizer.lr=fast")
    assert r.returncode != 0 and "could not convert string to float: 'fast'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ranking_jax.main", f"--workdir={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--config" in r.stderr


def test_config_json_is_written_guarded_and_read_back(tmp_path):
    """``config.json`` holds the resolved config; a workdir refuses another config (naming the fields) unless
    told, keeping the old one; ``defaults.get_config`` reads it back as the same config (tuples stay tuples)."""
    from ranking_jax import defaults, run
    ns = {}
    exec(_CONFIG, ns)
    c = ns["get_config"]("small")
    c.optimizer.lr = 0.5
    with c.unlocked():
        c.shape = (2, 3)
    run.write_config(c, tmp_path)
    path = tmp_path / "config.json"
    assert json.loads(path.read_text()) == {"seed": 0, "name": "small", "optimizer": {"name": "adam", "lr": 0.5},
                                            "shape": [2, 3]}
    back = defaults.get_config(str(path))
    assert back.shape == (2, 3) and defaults.config_json(back) == path.read_text()
    run.write_config(back, tmp_path)  # the same config: accepted
    c.optimizer.lr = 0.1
    with pytest.raises(run.ConfigChangedError, match=r"optimizer.lr: 0.5 -> 0.1.*--allow_config_change"):
        run.write_config(c, tmp_path)
    run.write_config(c, tmp_path, allow_change=True)
    assert json.loads(path.read_text())["optimizer"]["lr"] == 0.1
    assert json.loads((tmp_path / "config.previous.json").read_text())["optimizer"]["lr"] == 0.5
