"""ranking_jax.optim.make(config): every optimizer name builds and steps, per-group learning rates, the weight-decay
mask and clipping against NumPy first steps, schedules (learning_rate_fn) by hand formula and advanced once per
update, frozen parameters never perturbed or moved, the registry; the built optimizers on an 8-device mesh equal one
device, and their state round-trips through orbax. Config errors naming the key and the fix:
tests/faults/test_bad_config.py."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from _optim_problems import allclose, nnx_problem, quadratic, run
from ranking_jax import optim, registry, sharding
from ranking_jax.optim.sam import split_groups

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------------------- sharded
class _MLP(nnx.Module):
    def __init__(self, rngs):
        init = nnx.initializers.lecun_normal()
        self.hidden = nnx.Linear(16, 32, rngs=rngs, kernel_init=nnx.with_partitioning(init, ("embed", "mlp")),
                                 bias_init=nnx.with_partitioning(nnx.initializers.normal(0.1), ("mlp",)))
        self.out = nnx.Linear(32, 4, rngs=rngs, kernel_init=nnx.with_partitioning(init, ("mlp", "embed")))

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def _mlp(seed):
    with nnx.use_eager_sharding(False):  # models are built without a mesh (DESIGN.md)
        return _MLP(nnx.Rngs(seed))


def test_sharded_update_equals_single_device():
    assert jax.device_count() == 8
    mesh = sharding.make_mesh([("data", 4), ("model", 2)])
    model = _mlp(0)
    graphdef, params = nnx.split(model, nnx.Param)
    r = np.random.default_rng(11)
    batch = {"x": r.normal(size=(32, 16)).astype(np.float32), "y": r.integers(0, 4, 32).astype(np.int32)}

    def loss(p, b):
        logits = nnx.merge(graphdef, p)(b["x"])
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), b["y"][:, None], -1))

    def outputs(name):
        if name == "sam_m4":
            return optim.sam(optax.adamw(0.01, weight_decay=0.1), 0.05, groups=4)
        cfg = optim.default_config()
        cfg.name, cfg.learning_rate, cfg.weight_decay, cfg.grad_clip_norm = name, 0.01, 0.1, 1.0
        return optim.make(cfg)

    def two_steps(tx, grouped):
        def step(carry, b):
            p, s = carry
            if grouped:
                split = split_groups(b, 4)
                g = jax.vmap(jax.grad(loss), in_axes=(None, 0))(p, split)
                grad_fn = lambda ps: jax.vmap(jax.grad(loss))(ps, split)  # noqa: E731
            else:
                g, grad_fn = jax.grad(loss)(p, b), lambda q: jax.grad(loss)(q, b)
            u, s = tx.update(g, s, p, grad_fn=grad_fn, outputs=nnx.merge(graphdef, p)(b["x"]),
                             outputs_fn=lambda q: nnx.merge(graphdef, q)(b["x"]))
            return (optax.apply_updates(p, u), s), None
        # Two optimizer steps in one compiled program (each step is one tx.update call).
        return jax.jit(lambda p, b: jax.lax.scan(step, (p, tx.init(p)), jax.tree.map(lambda x: jnp.stack([x, x]),
                                                                                    b))[0])

    shardings = sharding.param_shardings(params, mesh, sharding.DEFAULT_RULES)
    sharded = jax.device_put(params, shardings)
    assert sharded["hidden"]["kernel"][...].sharding.spec == jax.sharding.PartitionSpec(None, "model")
    sbatch = sharding.shard_batch(batch, mesh)
    one_device = jax.device_put(params, jax.devices()[0])
    for name in ("asam", "tram", "sam_m4"):
        tx = outputs(name)
        p1, s1 = two_steps(tx, name == "sam_m4")(one_device, batch)
        with jax.set_mesh(mesh):
            p8, s8 = two_steps(tx, name == "sam_m4")(sharded, sbatch)
        assert len(p8["hidden"]["kernel"][...].sharding.device_set) == 8
        allclose(p8, p1, rtol=1e-5, atol=1e-6)
        allclose(s8, s1, rtol=1e-5, atol=1e-6)
        assert float(jnp.abs(p1["out"]["kernel"][...] - params["out"]["kernel"][...]).max()) > 1e-3


# -------------------------------------------------------------------------------------- checkpoint
def test_optimizer_state_round_trips_through_orbax(tmp_path):
    model = _mlp(1)
    graphdef, params = nnx.split(model, nnx.Param)
    x = jnp.asarray(RNG.normal(size=(8, 16)), jnp.float32)
    loss = lambda p: jnp.mean(nnx.merge(graphdef, p)(x) ** 2)  # noqa: E731
    cfg = optim.default_config()
    cfg.name, cfg.base, cfg.freeze, cfg.lr_groups = "tram", "adam", ("out/bias",), (("hidden", 1e-4),)
    cfg.learning_rate, cfg.schedule, cfg.warmup_steps = 1e-3, "constant", 2
    tx = optim.make(cfg)

    @jax.jit
    def step(p, s):
        logits_fn = lambda q: nnx.merge(graphdef, q)(x)  # noqa: E731
        u, s = tx.update(jax.grad(loss)(p), s, p, grad_fn=jax.grad(loss), outputs=logits_fn(p), outputs_fn=logits_fn)
        return optax.apply_updates(p, u), s

    p, s = params, tx.init(params)
    for _ in range(2):
        p, s = step(p, s)
    state = {"params": p, "opt_state": s}
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(2, args=ocp.args.StandardSave(state))
        mngr.wait_until_finished()
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        restored = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore(target))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    allclose(restored, state, rtol=0, atol=0)
    allclose(step(restored["params"], restored["opt_state"]), step(p, s), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------- make(config)
@pytest.mark.parametrize("name", optim.NAMES)
def test_make_builds_and_steps_every_name(name):
    params, loss, logits_fn = nnx_problem()
    cfg = ml_collections.ConfigDict({"optimizer": {"name": name, "learning_rate": 1e-2, "weight_decay": 0.01,
                                                   "freeze": ("dense/bias",), "lr_groups": (("kernels/", 1e-3),),
                                                   "grad_clip_norm": 1.0, "schedule": "cosine",
                                                   "warmup_steps": 1, "total_steps": 10}})
    tx = optim.make(cfg)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)

    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p, grad_fn=jax.grad(loss), outputs=logits_fn(p), outputs_fn=logits_fn)
        return optax.apply_updates(p, u), s

    p, s = params, tx.init(params)
    losses = [float(loss(p))]
    for _ in range(4):
        p, s = step(p, s)
        losses.append(float(loss(p)))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    np.testing.assert_array_equal(p["dense"]["bias"][...], params["dense"]["bias"][...])  # frozen
    assert float(jnp.abs(p["dense"]["kernel"][...] - params["dense"]["kernel"][...]).max()) > 0


def first_update(tx, grads, params):
    return jax.jit(lambda g, p: tx.update(g, tx.init(p), p)[0])(grads, params)


def test_make_per_group_lr_decay_mask_and_clip_equal_numpy():
    """adamw's first step is −lr(g/(|g|+eps) + wd·w·decay) with decay off for biases and LayerNorm;
    sgd with clipping is −lr_group · g · min(1, c/‖g‖)."""
    params, loss, _ = nnx_problem()
    grads = jax.grad(loss)(params)
    names = jax.tree.leaves(optim.path_map(lambda p: p, params))
    g_leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(grads)]
    w_leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]

    cfg = optim.default_config()
    cfg.name, cfg.learning_rate, cfg.weight_decay, cfg.lr_groups = "adamw", 0.1, 0.5, (("^kernels/", 0.01),)
    u = first_update(optim.make(cfg), grads, params)
    # optax's bias corrections 1 − β^t run in float32 (1 − f32(0.999) = 0.00099998713), its moments in float64.
    bc1, bc2 = 1 - float(np.float32(0.9)), 1 - float(np.float32(0.999))
    for path, ui, g, w in zip(names, jax.tree.leaves(u), g_leaves, w_leaves, strict=True):
        lr = 0.01 if path.startswith("kernels/") else 0.1
        decay = 0.0 if path.endswith("bias") or path.startswith("layer_norm/") else 0.5
        adam = (0.1 * g / bc1) / (np.sqrt(0.001 * g ** 2 / bc2) + 1e-8)
        np.testing.assert_allclose(np.asarray(ui), -lr * (adam + decay * w), rtol=1e-6, atol=1e-9, err_msg=path)

    cfg = optim.default_config()
    cfg.name, cfg.learning_rate, cfg.grad_clip_norm, cfg.lr_groups = "sgd", 0.1, 0.01, (("layer_norm", 0.3),)
    u = first_update(optim.make(cfg), grads, params)
    factor = min(1.0, 0.01 / np.sqrt(sum((g ** 2).sum() for g in g_leaves)))
    assert factor < 1.0
    for path, ui, g in zip(names, jax.tree.leaves(u), g_leaves, strict=True):
        lr = 0.3 if "layer_norm" in path else 0.1
        np.testing.assert_allclose(np.asarray(ui), -lr * g * factor, rtol=1e-5, err_msg=path)


def test_one_update_advances_schedules_once():
    """make(name=sam, base=sgd): warm-up 3 then linear decay to 0 at step 9, rho ∝ lr; NumPy by hand."""
    loss, grad_np, params = quadratic(dim=4, seed=2)
    cfg = optim.default_config()
    cfg.name, cfg.base, cfg.learning_rate = "sam", "sgd", 0.2
    cfg.schedule, cfg.warmup_steps, cfg.total_steps, cfg.rho_schedule = "linear", 3, 9, "lr"
    cfg.sam.rho = 0.1
    ours, state = run(optim.make(cfg), loss, params, 8)
    lr_hand = lambda t: 0.2 * t / 3 if t < 3 else 0.2 * (1 - (t - 3) / 6)  # noqa: E731
    w = np.asarray(params["w"], np.float64)
    for t in range(8):
        g = grad_np(w)
        eps = 0.1 * lr_hand(t) / 0.2 * g / np.linalg.norm(g)
        w = w - lr_hand(t) * grad_np(w + eps)
        np.testing.assert_allclose(np.asarray(ours[t]["w"]), w, rtol=1e-5, atol=1e-6)
    assert int(state.count) == 8
    counts = [int(x) for path, x in jax.tree_util.tree_leaves_with_path(state.base_state) if "count" in str(path)]
    assert counts == [8]  # the base optimizer's schedule counter advanced once per update too


def test_make_sam_never_perturbs_or_moves_frozen_params():
    """L = ½ zᵀAz + bᵀz, z = (w, f), f frozen: ε = ρ g_w/‖g_w‖ on w only, update −lr ∇_w L(w + ε, f)."""
    r = np.random.default_rng(4)
    m = r.normal(size=(5, 5))
    a, b = m @ m.T / 5 + np.eye(5), r.normal(size=5)
    aj, bj = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    loss = lambda p: 0.5 * jnp.concatenate([p["w"], p["f"]]) @ aj @ jnp.concatenate([p["w"], p["f"]]) + bj @ (  # noqa
        jnp.concatenate([p["w"], p["f"]]))
    params = {"w": jnp.asarray(r.normal(size=3), jnp.float32), "f": jnp.asarray(r.normal(size=2), jnp.float32)}
    cfg = optim.default_config()
    cfg.name, cfg.base, cfg.learning_rate, cfg.freeze, cfg.sam.rho = "sam", "sgd", 0.1, ("^f$",), 0.2
    (p1,), _ = run(optim.make(cfg), loss, params, 1)
    z = np.concatenate([params["w"], params["f"]]).astype(np.float64)
    g = a @ z + b
    g[3:] = 0.0
    adv = a @ (z + 0.2 * g / np.linalg.norm(g)) + b
    np.testing.assert_allclose(np.asarray(p1["w"]), z[:3] - 0.1 * adv[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(p1["f"]), np.asarray(params["f"]))


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine"])
def test_learning_rate_fn_equals_hand_formula(kind):
    cfg = ml_collections.ConfigDict({"optimizer": {"learning_rate": 1e-3, "schedule": kind, "warmup_steps": 4,
                                                   "total_steps": 14, "end_lr_factor": 0.1}})
    fn = optim.learning_rate_fn(cfg)
    for t in [0, 2, 4, 7, 9, 14, 20]:
        if t < 4:
            want = 1e-3 * t / 4
        elif kind == "constant":
            want = 1e-3
        else:
            frac = min(t - 4, 10) / 10
            shape = 1 - frac if kind == "linear" else 0.5 * (1 + math.cos(math.pi * frac))
            want = 1e-4 + (1e-3 - 1e-4) * shape
        assert float(fn(t)) == pytest.approx(want, rel=1e-5), t


def test_every_optimizer_name_is_a_registered_builder():
    assert sorted(n.split(".", 1)[1] for n in registry.names("optimizers")) == sorted(optim.NAMES)
    for name in optim.NAMES:
        assert isinstance(optim.make({"name": name}), optax.GradientTransformationExtraArgs)
