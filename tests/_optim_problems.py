"""Optimizer test problems shared by the SAM/ASAM, TRAM and make(config) tests (and their config faults): a quadratic
whose NumPy gradient is the oracle, a small MLP, a small nnx network, jitted steps with ``grad_fn``, tree comparison,
and the zero / non-finite gradient checks every sharpness wrapper must pass."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ranking_jax import optim


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


def nnx_problem():
    """An nnx network with ``dense``, ``layer_norm`` and ``kernels`` parameters (the names make(config)'s groups and
    freezing match) and a squared loss: (params, loss, logits_fn)."""
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


def wrappers():
    return {"sam": optim.sam(optax.adamw(0.01, weight_decay=0.1), 0.05),
            "asam": optim.sam(optax.adamw(0.01, weight_decay=0.1), 0.5, adaptive=True),
            "tram": optim.tram(optax.adamw(0.01, weight_decay=0.1), target="noise")}


def check_zero_and_nonfinite_gradients(name):
    """Wrapper ``name`` (sam, asam, tram) around adamw: a zero gradient gives the base step (no 0/0); a non-finite
    clean gradient (or TRAM distance) gives epsilon = 0; a non-finite perturbed gradient skips the step, counted;
    params stay finite."""
    tx = wrappers()[name]
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
