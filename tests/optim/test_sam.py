"""ranking_jax.optim.sam: SAM against optax.contrib.sam (opaque mode), ASAM with a rho schedule and m-sharpness
groups against NumPy steps derived by hand, SAM reaching the flat basin where SGD reaches the sharp one (Hessian
eigenvalues), and zero / non-finite gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from _optim_problems import allclose, check_zero_and_nonfinite_gradients, mlp_problem, quadratic, run
from ranking_jax import optim
from ranking_jax.optim.sam import split_groups


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
@pytest.mark.parametrize("name", ["sam", "asam"])
def test_zero_and_nonfinite_gradients_keep_params_finite(name):
    check_zero_and_nonfinite_gradients(name)
