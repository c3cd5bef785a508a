"""ranking_jax.optim.tram: TRAM against NumPy steps of its Eq. 7 (targets prev / init / noise, max_d), TRAM-x's
Gaussian noise on the word embeddings (KS test) and its reference model, the KL divergences against scipy, donation,
zero / non-finite gradients, and the errors for missing extra arguments (SAM's grad_fn included)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from flax import nnx

from _optim_problems import check_zero_and_nonfinite_gradients, quadratic
from ranking_jax import optim


# ------------------------------------------------------------------------------------------ TRAM in NumPy
def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("target,scale,max_d,calibrate", [("prev", 1.0, None, 0), ("init", 3.0, 0.05, 0),
                                                           ("noise", 1.0, None, 0), ("prev", 1.0, None, 2),
                                                           ("noise", 1.0, None, 3)])
def test_tram_equals_numpy_eq7(target, scale, max_d, calibrate):
    """Also calibrated: over the first ``calibrate`` steps scale = target_d / median of the positive unscaled
    divergences so far, then fixed."""
    target_d = 0.05
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

    tx = optim.tram(optax.sgd(lr), target=target, eta=eta, scale=scale, max_d=max_d, calibrate=calibrate,
                    target_d=target_d if calibrate else None)

    @jax.jit
    def step(p, s):  # TRAM-x's noised inputs given as target_outputs (its own noise is tested below)
        noised = {"target_outputs": (xj + zj) @ p["w"]} if target == "noise" else {}
        u, s = tx.update(jax.grad(loss)(p), s, p, grad_fn=jax.grad(loss), outputs=xj @ p["w"],
                         outputs_fn=lambda q: xj @ q["w"], **noised)
        return optax.apply_updates(p, u), s

    grad_np = lambda w: x.T @ (_softmax(x @ w) - onehot) / n  # noqa: E731
    p, s = {"w": jnp.asarray(w0, jnp.float32)}, tx.init({"w": jnp.asarray(w0, jnp.float32)})
    w, ref, history, step_scale = w0.copy(), w0.copy(), [], scale
    for t in range(steps):
        p, s = step(p, s)
        target_logits = {"prev": x @ ref, "init": x @ w0, "noise": (x + z) @ w}[target]
        raw = np.mean(scipy.stats.entropy(_softmax(target_logits), _softmax(x @ w), axis=-1))
        if calibrate and t < calibrate:
            history.append(raw)
            positive = [h for h in history if h > 0]
            step_scale = target_d / np.median(positive) if positive else 0.0
        d = step_scale * raw
        d = min(d, max_d) if max_d else d
        if calibrate and t < calibrate and raw > 0 and len(positive) == 1:
            assert d == pytest.approx(target_d)  # the first positive divergence is scaled to target_d exactly
        np.testing.assert_allclose(float(s.scale), step_scale, rtol=1e-4)
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
    # relative: sigma is a fraction of the table's root-mean-square entry
    table = np.asarray(params["encoder"]["embeddings"]["word"][...])
    relative = optim.perturb_inputs(params, jax.random.key(0), 0.3, relative=True)
    diff = np.asarray(relative["encoder"]["embeddings"]["word"][...]) - table
    assert diff.std() == pytest.approx(0.3 * np.sqrt(np.mean(table ** 2)), rel=0.02)
    assert scipy.stats.kstest(diff.ravel() / (0.3 * np.sqrt(np.mean(table ** 2))), "norm").pvalue > 1e-3


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


# ----------------------------------------------------------------------------------- zero / non-finite
@pytest.mark.parametrize("name", ["tram"])
def test_zero_and_nonfinite_gradients_keep_params_finite(name):
    check_zero_and_nonfinite_gradients(name)


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
