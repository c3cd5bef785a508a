"""ranking_jax.optim: SAM/ASAM/TRAM against optax.contrib.sam and NumPy steps derived by hand; make(config)."""

import math
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
import scipy.stats
from flax import nnx

from ranking_jax import optim, registry, sharding
from ranking_jax.optim.sam import split_groups

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------------------------- problems
def quadratic(dim=5, seed=0):
    """L(w) = ½ wᵀAw + bᵀw with A SPD; its NumPy gradient is the oracle."""
    r = np.random.default_rng(seed)
    m = r.normal(size=(dim, dim))
    a = m @ m.T / dim + np.eye(dim)
    b = r.normal(size=dim)
    loss = lambda p: 0.5 * p["w"] @ jnp.asarray(a, jnp.float32) @ p["w"] + jnp.asarray(b, jnp.float32) @ p["w"]
    grad_np = lambda w: a @ w + b
    return loss, grad_np, {"w": jnp.asarray(r.normal(size=dim), jnp.float32)}


def mlp_problem(seed=0):
    r = np.random.default_rng(seed)
    x = jnp.asarray(r.normal(size=(16, 4)), jnp.float32)
    y = jnp.asarray(r.normal(size=16), jnp.float32)
    params = {"w1": jnp.asarray(r.normal(size=(4, 8)) / 2, jnp.float32), "b1": jnp.zeros(8, jnp.float32),
              "w2": jnp.asarray(r.normal(size=(8, 1)) / 3, jnp.float32)}

    def loss(p):
        return jnp.mean((jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] - y[:, None]) ** 2)
    return loss, params


def run(tx, loss, params, steps, **extra):
    """Jitted steps of ``tx`` with ``grad_fn=jax.grad(loss)``; returns the params after every step."""
    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p, grad_fn=jax.grad(loss), **extra)
        return optax.apply_updates(p, u), s
    state, out = tx.init(params), []
    for _ in range(steps):
        params, state = step(params, state)
        out.append(params)
    return out, state


def allclose(a, b, rtol=1e-6, atol=1e-7):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# -------------------------------------------------------------------------------- SAM vs optax.contrib.sam
@pytest.mark.parametrize("problem", ["quadratic", "mlp"])
@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_sam_equals_optax_contrib_sam_opaque(problem, base):
    loss, params = mlp_problem() if problem == "mlp" else quadratic()[::2]
    make_base = lambda: optax.sgd(0.1, momentum=0.9) if base == "sgd" else optax.adam(0.01)  # noqa: E731
    rho = 0.05
    peer = optax.contrib.sam(make_base(), optax.chain(optax.contrib.normalize(), optax.sgd(rho)),
                             sync_period=2, opaque_mode=True)

    @jax.jit
    def peer_step(p, s):
        u, s = peer.update(jax.grad(loss)(p), s, p, grad_fn=lambda q, _: jax.grad(loss)(q))
        return optax.apply_updates(p, u), s

    ours, _ = run(optim.sam(make_base(), rho), loss, params, 10)
    p, s = params, peer.init(params)
    for step in range(10):
        p, s = peer_step(p, s)
        allclose(ours[step], p)
    moved = max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(ours[-1]), jax.tree.leaves(params)))
    assert moved > 1e-3


# --------------------------------------------------------------------------------- ASAM / m-sharpness in NumPy
def test_asam_with_rho_schedule_equals_numpy_steps():
    loss, grad_np, params = quadratic(dim=6, seed=1)
    lr, mom, eta = 0.05, 0.9, 0.01
    rho_fn = lambda count: 0.5 / (1.0 + count)  # noqa: E731  (a schedule of the step count)
    ours, state = run(optim.sam(optax.sgd(lr, momentum=mom), rho_fn, adaptive=True, eta=eta), loss, params, 5)
    w, trace = np.asarray(params["w"], np.float64), 0.0
    for t in range(5):
        g = grad_np(w)
        tw = np.abs(w) + eta
        eps = (0.5 / (1 + t)) * tw ** 2 * g / np.linalg.norm(tw * g)
        trace = grad_np(w + eps) + mom * trace
        w = w - lr * trace
        np.testing.assert_allclose(np.asarray(ours[t]["w"]), w, rtol=2e-5, atol=1e-6)
    assert int(state.count) == 5


def test_m_sharpness_groups_equal_numpy():
    """8 examples in 4 groups of 2: ε_k = ρ g_k/‖g_k‖ per group, update −lr · mean_k ∇L_k(w + ε_k)."""
    r = np.random.default_rng(3)
    groups, n, dim, rho, lr = 4, 8, 3, 0.1, 0.2
    a = np.stack([np.diag(r.uniform(0.5, 3.0, dim)) for _ in range(n)])
    b = r.normal(size=(n, dim))
    batch = {"a": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
    group_loss = lambda p, bt: jnp.mean(jax.vmap(lambda ai, bi: 0.5 * p["w"] @ ai @ p["w"] + bi @ p["w"])(  # noqa
        bt["a"], bt["b"]))
    split = split_groups(batch, groups)
    params = {"w": jnp.asarray(r.normal(size=dim), jnp.float32)}
    tx = optim.sam(optax.sgd(lr), rho, groups=groups)
    grads = jax.vmap(jax.grad(group_loss), in_axes=(None, 0))(params, split)
    u, _ = jax.jit(lambda g, p: tx.update(g, tx.init(p), p, grad_fn=lambda ps: jax.vmap(jax.grad(group_loss))(
        ps, split)))(grads, params)
    w = np.asarray(params["w"], np.float64)
    grad_k = lambda k, v: np.mean([a[i] @ v + b[i] for i in (2 * k, 2 * k + 1)], axis=0)  # noqa: E731
    adv = [grad_k(k, w + rho * grad_k(k, w) / np.linalg.norm(grad_k(k, w))) for k in range(groups)]
    np.testing.assert_allclose(np.asarray(u["w"]), -lr * np.mean(adv, axis=0), rtol=1e-5, atol=1e-7)
    # One group is plain SAM on the whole batch.
    g_all = jax.grad(group_loss)(params, batch)
    one = optim.sam(optax.sgd(lr), rho, groups=1)
    u1, _ = jax.jit(lambda g, p: one.update(g, one.init(p), p, grad_fn=lambda ps: jax.vmap(jax.grad(group_loss))(
        ps, split_groups(batch, 1))))(jax.tree.map(lambda x: x[None], g_all), params)
    plain = optim.sam(optax.sgd(lr), rho)
    u0, _ = jax.jit(lambda g, p: plain.update(g, plain.init(p), p, grad_fn=lambda q: jax.grad(group_loss)(
        q, batch)))(g_all, params)
    allclose(u1, u0)
    with pytest.raises(ValueError, match="not divisible by groups=3"):
        split_groups(batch, 3)
    with pytest.raises(ValueError, match="leading axis of size 4"):
        tx.update(g_all, tx.init(params), params, grad_fn=lambda ps: ps)


# ------------------------------------------------------------------------------------------ TRAM in NumPy
def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("target,scale,max_d", [("prev", 1.0, None), ("init", 3.0, 0.05), ("noise", 1.0, None)])
def test_tram_equals_numpy_eq7(target, scale, max_d):
    r = np.random.default_rng(5)
    n, dim, classes, lr, eta, steps = 6, 4, 3, 0.5, 0.01, 4
    x = r.normal(size=(n, dim))
    z = 0.3 * r.normal(size=(n, dim))
    labels = r.integers(0, classes, n)
    onehot = np.eye(classes)[labels]
    w0 = r.normal(size=(dim, classes))
    xj, zj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(z, jnp.float32), jnp.asarray(onehot, jnp.float32)

    def loss(p):
        return -jnp.mean(jnp.sum(yj * jax.nn.log_softmax(xj @ p["w"]), -1))

    tx = optim.tram(optax.sgd(lr), target=target, eta=eta, scale=scale, max_d=max_d)

    @jax.jit
    def step(p, s):  # TRAM-x's noised inputs given as target_outputs (its own noise is tested below)
        noised = {"target_outputs": (xj + zj) @ p["w"]} if target == "noise" else {}
        u, s = tx.update(jax.grad(loss)(p), s, p, grad_fn=jax.grad(loss), outputs=xj @ p["w"],
                         outputs_fn=lambda q: xj @ q["w"], **noised)
        return optax.apply_updates(p, u), s

    grad_np = lambda w: x.T @ (_softmax(x @ w) - onehot) / n  # noqa: E731
    p, s = {"w": jnp.asarray(w0, jnp.float32)}, tx.init({"w": jnp.asarray(w0, jnp.float32)})
    w, ref = w0.copy(), w0.copy()
    for t in range(steps):
        p, s = step(p, s)
        target_logits = {"prev": x @ ref, "init": x @ w0, "noise": (x + z) @ w}[target]
        d = scale * np.mean(scipy.stats.entropy(_softmax(target_logits), _softmax(x @ w), axis=-1))
        d = min(d, max_d) if max_d else d
        g = grad_np(w)
        tw = np.abs(w) + eta
        eps = d * tw ** 2 * g / np.linalg.norm(tw * g)
        ref = w.copy()
        w = w - lr * grad_np(w + eps)
        np.testing.assert_allclose(float(s.divergence), d, rtol=1e-4, atol=1e-8)
        np.testing.assert_allclose(np.asarray(p["w"]), w, rtol=1e-5, atol=1e-6)
        if target != "noise" and t == 0:
            assert d == 0.0  # the target is θ_0 itself: the first step is a plain base step
        else:
            assert d > 1e-4  # the perturbation is really exercised
    if max_d:
        assert float(s.divergence) == pytest.approx(max_d)


def test_perturb_inputs_adds_gaussian_noise_to_the_embedding_table_only():
    """TRAM-x's x + z: z ~ N(0, σ²) on the word-embedding table (an nnx model's params), nothing else moves."""
    from ranking_jax.models import cross_encoder
    model = cross_encoder(config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                  "intermediate_size": 64, "vocab_size": 500})
    _, params = nnx.split(model, nnx.Param)
    noisy = optim.perturb_inputs(params, jax.random.key(0), 0.3)
    flat, flat_noisy = nnx.to_flat_state(params), dict(nnx.to_flat_state(noisy))
    moved = []
    for path, var in flat:
        diff = np.asarray(flat_noisy[path][...]) - np.asarray(var[...])
        if np.any(diff):
            moved.append("/".join(map(str, path)))
            assert diff.shape == (500, 32)
            assert diff.mean() == pytest.approx(0.0, abs=0.01) and diff.std() == pytest.approx(0.3, rel=0.02)
            assert scipy.stats.kstest(diff.ravel() / 0.3, "norm").pvalue > 1e-3
    assert moved == ["encoder/embeddings/word"]
    again = optim.perturb_inputs(params, jax.random.key(0), 0.3)  # same key, same noise; another key differs
    assert np.array_equal(again["encoder"]["embeddings"]["word"][...], noisy["encoder"]["embeddings"]["word"][...])
    other = optim.perturb_inputs(params, jax.random.key(1), 0.3)
    assert not np.array_equal(other["encoder"]["embeddings"]["word"][...], noisy["encoder"]["embeddings"]["word"][...])
    with pytest.raises(ValueError, match=r"tram.inputs='nope' matches no parameter"):
        optim.perturb_inputs(params, jax.random.key(0), 0.3, "nope")


def test_tram_x_reference_is_the_model_on_noised_embeddings():
    """TRAM-x (target 'noise') draws z with the step's ``key`` on the word embeddings (exactly ``perturb_inputs``)
    and measures d = KL(p(x + z) || p(x)) against the step's outputs; prev/init need no key; d is what the
    optimizer's diagnostics report (``tram_d``)."""
    from ranking_jax import defaults, train
    from ranking_jax.models import cross_encoder
    model = cross_encoder(config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                  "intermediate_size": 64, "vocab_size": 500})
    split, params = train.split_model(model)
    r = np.random.default_rng(0)
    batch = {"pair_ids": jnp.asarray(r.integers(0, 500, (2, 3, 7)), jnp.int32), "pair_mask": jnp.ones((2, 3, 7)),
             "pair_type_ids": jnp.zeros((2, 3, 7), jnp.int32)}
    outputs_fn = lambda p: split.merge(p)(batch, deterministic=True)  # noqa: E731
    clean = outputs_fn(params)
    config = defaults.base("text_ranking")
    config.optimizer.update({"name": "tram", "learning_rate": 1e-3})
    config.optimizer.tram.update({"target": "noise", "sigma": 0.5})
    tx = optim.make(config)
    key = jax.random.key(3)
    grads = jax.tree.map(jnp.ones_like, params)
    _, state = tx.update(grads, tx.init(params), params, grad_fn=lambda p: grads, outputs=clean,
                         outputs_fn=outputs_fn, key=key)
    noised = np.asarray(outputs_fn(optim.perturb_inputs(params, key, 0.5)), np.float64)
    p, q = _softmax(noised), _softmax(np.asarray(clean, np.float64))
    expected = np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))
    assert float(optim.diagnostics(state)["tram_d"]) == pytest.approx(expected, rel=1e-4)
    assert expected > 1e-4 and optim.diagnostics(optax.adam(1e-3).init(params)) == {}
    with pytest.raises(ValueError, match="needs key="):
        tx.update(grads, tx.init(params), params, grad_fn=lambda p: grads, outputs=clean, outputs_fn=outputs_fn)

def test_kl_divergence_matches_scipy_with_masks():
    r = np.random.default_rng(7)
    p_logits, q_logits = r.normal(size=(4, 5)), r.normal(size=(4, 5))
    mask = np.ones((4, 5), bool)
    mask[0, 3:] = False
    mask[2, :] = False  # a fully padded list: left out of the mean
    p_in, q_in = p_logits.copy(), q_logits.copy()
    p_in[0, 3], q_in[0, 4], p_in[2, 1] = np.nan, np.inf, -np.inf  # garbage in padded slots
    want = {}
    for kind in ("forward", "reverse", "symmetric"):
        rows = []
        for i in (0, 1, 3):
            pp, qq = _softmax(p_logits[i][mask[i]]), _softmax(q_logits[i][mask[i]])
            f, rv = scipy.stats.entropy(pp, qq), scipy.stats.entropy(qq, pp)
            rows.append({"forward": f, "reverse": rv, "symmetric": f + rv}[kind])
        want[kind] = np.mean(rows)
        got = optim.kl_divergence(jnp.asarray(p_in, jnp.float32), jnp.asarray(q_in, jnp.float32),
                                  where=jnp.asarray(mask), kind=kind)
        np.testing.assert_allclose(float(got), want[kind], rtol=1e-5)
    assert want["forward"] != pytest.approx(want["reverse"])
    with pytest.raises(ValueError, match="valid: forward, reverse, symmetric"):
        optim.kl_divergence(jnp.zeros(3), jnp.zeros(3), kind="js")


# ------------------------------------------------------------------------------------- flat vs sharp basin
def test_sam_reaches_the_flat_basin_where_sgd_reaches_the_sharp_one():
    """L(x, y) = 0.1 (x²/4 − 1)² + ½ h(x) y², h(x) = 4 e^{−x}: two minima with L = 0 at (±2, 0), Hessian
    diag(0.2, h(x)) there: top eigenvalue 4e² = 29.6 at x = −2 (sharp), 4e⁻² = 0.54 at x = +2 (flat)."""
    h = lambda x: 4.0 * jnp.exp(-x)  # noqa: E731
    loss = lambda p: 0.1 * (p["w"][0] ** 2 / 4 - 1) ** 2 + 0.5 * h(p["w"][0]) * p["w"][1] ** 2  # noqa: E731

    def final(tx):
        def body(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(loss)(p), s, p, grad_fn=jax.grad(loss))
            return (optax.apply_updates(p, u), s), None
        p0 = {"w": jnp.array([-1.2, 0.5], jnp.float32)}
        (p, _), _ = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), None, length=4000))(p0)
        return np.asarray(p["w"])

    sgd, sam_w = final(optax.sgd(0.02)), final(optim.sam(optax.sgd(0.02), 0.3))
    np.testing.assert_allclose(sgd, [-2.0, 0.0], atol=1e-2)
    np.testing.assert_allclose(sam_w, [2.0, 0.0], atol=2e-2)
    hessian = jax.hessian(loss)
    top = lambda w: float(np.linalg.eigvalsh(np.asarray(hessian({"w": jnp.asarray(w)})["w"]["w"])).max())  # noqa
    assert top(sgd) == pytest.approx(4 * math.e ** 2, rel=2e-2) and top(sam_w) == pytest.approx(4 * math.e ** -2,
                                                                                                 rel=5e-2)


# ----------------------------------------------------------------------------------- zero / non-finite
def _wrappers():
    return {"sam": optim.sam(optax.adamw(0.01, weight_decay=0.1), 0.05),
            "asam": optim.sam(optax.adamw(0.01, weight_decay=0.1), 0.5, adaptive=True),
            "tram": optim.tram(optax.adamw(0.01, weight_decay=0.1), target="noise")}


@pytest.mark.parametrize("name", ["sam", "asam", "tram"])
def test_zero_and_nonfinite_gradients_keep_params_finite(name):
    tx = _wrappers()[name]
    params = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5])}
    zeros = jax.tree.map(jnp.zeros_like, params)
    nan = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), params)
    inf = {"w": jnp.array([1.0, jnp.inf, 0.0]), "b": jnp.array([1.0])}
    extra = {"outputs": jnp.array([[1.0, 2.0]]), "target_outputs": jnp.array([[1.5, 0.5]])} if name == "tram" else {}
    base = optax.adamw(0.01, weight_decay=0.1)
    state0 = tx.init(params)

    def update(grads, grad_fn, **kw):
        return jax.jit(lambda g, s, p: tx.update(g, s, p, grad_fn=grad_fn, **{**extra, **kw}))(grads, state0, params)

    # A zero gradient: ε = 0 (no 0/0) and the base optimizer sees the zero gradient (weight decay only).
    u, s = update(zeros, lambda p: zeros)
    want, _ = base.update(zeros, base.init(params), params)
    allclose(u, want)
    assert int(s.count) == 1 and int(s.notfinite_count) == 0
    # A non-finite clean gradient (or TRAM distance): ε = 0, so the step uses the gradient at params.
    for bad in (nan, inf):
        u, s = update(bad, lambda p: jax.tree.map(lambda x: 2 * x, p))
        want, _ = base.update(jax.tree.map(lambda x: 2 * x, params), base.init(params), params)
        allclose(u, want)
    if name == "tram":  # a NaN output makes d NaN: ε = 0 again
        u, s = update(params, lambda p: p, outputs=jnp.array([[jnp.nan, 0.0]]))
        allclose(u, base.update(params, base.init(params), params)[0])
    # A non-finite gradient at the perturbed point: the step is skipped, nothing becomes NaN.
    for bad in (nan, inf):
        u, s = update(params, lambda p: bad)
        assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(u))
        assert int(s.count) == 0 and int(s.notfinite_count) == 1
        for new, old in zip(jax.tree.leaves(s.base_state), jax.tree.leaves(state0.base_state), strict=True):
            np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(optax.apply_updates(params, u)))


def test_missing_extra_args_raise_clear_errors():
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="grad_fn="):
        optim.sam(optax.sgd(0.1)).update(params, optim.sam(optax.sgd(0.1)).init(params), params)
    tx = optim.tram(optax.sgd(0.1))
    with pytest.raises(ValueError, match="outputs="):
        tx.update(params, tx.init(params), params, grad_fn=lambda p: p)
    with pytest.raises(ValueError, match="outputs_fn="):
        tx.update(params, tx.init(params), params, grad_fn=lambda p: p, outputs=jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match="valid: prev, init, noise"):
        optim.tram(optax.sgd(0.1), target="fisher")


@pytest.mark.parametrize("target", ["prev", "init"])
def test_tram_state_can_be_donated_with_the_params(target):
    """The reference copy is its own buffer: donating (params, state) together must not donate one twice."""
    loss, _, params = quadratic(dim=3)
    tx = optim.tram(optax.sgd(0.1), target=target)

    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p, grad_fn=jax.grad(loss), outputs=p["w"][None],
                         outputs_fn=lambda q: q["w"][None])
        return optax.apply_updates(p, u), s

    p = jax.tree.map(jnp.copy, params)
    s = tx.init(p)
    p, s = jax.jit(step, donate_argnums=(0, 1))(p, s)
    assert np.isfinite(np.asarray(p["w"])).all()


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
def _nnx_problem():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(3, 4, rngs=rngs)
            self.layer_norm = nnx.LayerNorm(4, rngs=rngs)
            self.kernels = nnx.Linear(4, 1, rngs=rngs)

        def __call__(self, x):
            return self.kernels(self.layer_norm(jnp.tanh(self.dense(x))))[..., 0]

    graphdef, params = nnx.split(Net(nnx.Rngs(0)), nnx.Param)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(6, 3)), jnp.float32)
    y = jnp.arange(6.0)
    loss = lambda p: jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)  # noqa: E731
    logits_fn = lambda p: nnx.merge(graphdef, p)(x)[None]  # noqa: E731
    return params, loss, logits_fn


@pytest.mark.parametrize("name", optim.NAMES)
def test_make_builds_and_steps_every_name(name):
    params, loss, logits_fn = _nnx_problem()
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
    params, loss, _ = _nnx_problem()
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


def test_make_config_errors_name_the_key_and_the_fix():
    params, loss, _ = _nnx_problem()
    cases = [({"name": "adamx"}, "config.optimizer.name='adamx' is unknown; valid: adam, adamw, sgd, lamb"),
             ({"name": "sam", "base": "sam"}, "config.optimizer.base='sam' is unknown"),
             ({"lerning_rate": 1.0}, "config.optimizer.lerning_rate is not an optimizer option"),
             ({"tram": {"targt": "x"}}, "config.optimizer.tram.targt is not an optimizer option"),
             ({"freeze": ("(",)}, "config.optimizer.freeze: invalid regex"),
             ({"freeze": "dense"}, "config.optimizer.freeze: Could not override field 'freeze'"),
             ({"schedule": "cosine", "total_steps": 0}, "config.optimizer.total_steps"),
             ({"schedule": "poly"}, "schedule='poly' is unknown"),
             ({"name": "tram", "tram": {"target": "fisher"}}, "config.optimizer.tram: unknown TRAM target 'fisher'; "
              "valid: prev, init, noise"),
             ({"name": "tram", "tram": {"divergence": "js"}}, "config.optimizer.tram: unknown TRAM divergence"),
             ({"grad_clip_norm": -1.0}, "grad_clip_norm must be >= 0"),
             ({"lr_groups": (("dense", "fast"),)}, "lr_groups must be"),
             ({"sharpness_groups": 2}, "config.optimizer.sharpness_groups is not an optimizer option"),
             ({"lr_groups": (("dense",),)}, "lr_groups must be")]
    for fields, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            optim.make({"optimizer": fields})
    tx = optim.make({"freeze": ("no_such_param",)})
    with pytest.raises(ValueError, match=r"match no parameter; parameter paths look like \['dense/bias'"):
        tx.init(params)


def test_every_optimizer_name_is_a_registered_builder():
    assert sorted(n.split(".", 1)[1] for n in registry.names("optimizers")) == sorted(optim.NAMES)
    for name in optim.NAMES:
        assert isinstance(optim.make({"name": name}), optax.GradientTransformationExtraArgs)
