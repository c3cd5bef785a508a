"""ranking_jax.losses.preference (DPO family, MADPO, beta-DPO, MaPO, IRPO, Bradley-Terry) against published values and
NumPy ports of official code: the MADPO weights and effective target margins published with the official code
(w(-3)=0.062 ... w(10)=0.995; βΔ* = 0.9975 at m = 0.5, 3.956 at m = 2); NumPy ports of TRL / MADPO / beta-DPO / MaPO /
IRPO / SoliReward / QuRating formulas. Properties: masked ±inf/NaN finite with zero gradients, all-masked lists
excluded, jit == eager, vmap == batch, weights."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special

from _loss_checks import (assert_jit_vmap_sum, assert_padding_invisible, call, check_list_loss_masking, log_sigmoid,
                          rng, softplus)
from ranking_jax.losses import (beta_dpo_loss, bradley_terry_loss, dpo_loss, hinge_dpo_loss, ipo_loss, irpo_loss,
                                madpo_loss, madpo_weight, mapo_loss, robust_dpo_loss, soft_bradley_terry_loss)


def _pref_inputs(seed=5, n=6):
    r = rng(seed)
    return tuple(r.normal(-20.0, 3.0, size=n).astype(np.float32) for _ in range(4))


def test_dpo_family_matches_trl_formulas():
    pc, pr, rc, rr = _pref_inputs()
    delta = (pc.astype(np.float64) - rc) - (pr - rr)
    beta, eps = 0.1, 0.2
    z = beta * delta
    cases = [
        (dpo_loss, {}, -log_sigmoid(z)),
        (dpo_loss, {"label_smoothing": eps}, -(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z)),
        (ipo_loss, {}, (delta - 1 / (2 * beta)) ** 2),
        (hinge_dpo_loss, {}, np.maximum(0.0, 1 - z)),
        (robust_dpo_loss, {"label_smoothing": eps},
         (-(1 - eps) * log_sigmoid(z) + eps * log_sigmoid(-z)) / (1 - 2 * eps)),
    ]
    for fn, kw, expected in cases:
        np.testing.assert_allclose(call(fn, pc, pr, rc, rr, beta=beta, **kw, reduce_fn=None), expected, rtol=1e-4,
                                   atol=1e-5, err_msg=fn.__name__)
        np.testing.assert_allclose(call(fn, pc, pr, rc, rr, beta=beta, **kw), expected.mean(), rtol=1e-4)
    # The reference is a constant: no gradient flows into it.
    g = jax.grad(lambda a, b: dpo_loss(pc, pr, a, b), argnums=(0, 1))(rc, rr)
    np.testing.assert_array_equal(g[0], 0.0)
    np.testing.assert_array_equal(g[1], 0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        robust_dpo_loss(pc, pr, rc, rr, label_smoothing=0.5)


def _madpo_official(m, c_max=2.0, c_min=0.5, lmbda=1.0, tau=math.log(999)):
    """NumPy port of utils/loss_functions.py::MADPOLoss (weight of the chosen response)."""
    coef = c_min + (c_max - c_min) / (1 + (c_max - 1) / (1 - c_min) * np.exp(lmbda * (np.abs(m) - tau)))
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    return sig(coef * m) / sig(m) * (m > -tau) + 1.0 * (m <= -tau)


def test_madpo_weight_matches_published_values_and_official_code():
    m = np.array([-3.0, -1.0, 1.0, 3.0, 10.0], np.float32)
    got = call(madpo_weight, m, np.zeros_like(m))
    np.testing.assert_allclose(got, [0.062, 0.446, 1.204, 1.047, 0.995], atol=6e-4)
    m = np.linspace(-12.0, 12.0, 49).astype(np.float32)
    np.testing.assert_allclose(call(madpo_weight, m + 1.5, np.full_like(m, 1.5)), _madpo_official(m), rtol=1e-4)
    with pytest.raises(ValueError, match="c_min"):
        madpo_weight(m, m, c_min=1.5)


@pytest.mark.parametrize("margin,expected", [(0.5, 0.9975), (2.0, 3.956)])
def test_madpo_effective_target_margin(margin, expected):
    # Labels from BT with P(chosen) = σ(m): the expected weighted loss is minimised at βΔ* = c(|m|)·m.
    w_pos, w_neg = (float(call(madpo_weight, np.float32(v), np.float32(0.0))) for v in (margin, -margin))
    p = 1 / (1 + np.exp(-margin))

    def expected_loss(x):
        return p * w_pos * softplus(-x) + (1 - p) * w_neg * softplus(x)

    res = scipy.optimize.minimize_scalar(expected_loss, bounds=(-20, 20), method="bounded",
                                         options={"xatol": 1e-8})
    np.testing.assert_allclose(res.x, expected, atol=2e-3)


def test_madpo_loss_matches_official_code():
    pc, pr, rc, rr = _pref_inputs(6)
    r = rng(7)
    r1, r2 = r.normal(0, 3, size=6).astype(np.float32), r.normal(0, 3, size=6).astype(np.float32)
    z = 0.1 * ((pc.astype(np.float64) - rc) - (pr - rr))
    expected = np.mean(_madpo_official(r1.astype(np.float64) - r2) * softplus(-z))
    np.testing.assert_allclose(call(madpo_loss, pc, pr, rc, rr, r1, r2), expected, rtol=1e-4)
    g = jax.grad(lambda a, b: madpo_loss(pc, pr, rc, rr, a, b), argnums=(0, 1))(r1, r2)
    np.testing.assert_array_equal(g[0], 0.0)  # the reward model is frozen


def _beta_dpo_official(delta, *, beta=0.1, a=0.6, keep=0.8, mean=None, std=None):
    """junkangwu/beta-DPO ``trainers.py::preference_loss`` in NumPy, with the multinomial draw replaced by the
    ``keep`` fraction of largest weights (ours) and, by default, the batch's own statistics."""
    delta = np.asarray(delta, np.float64)
    mean = delta.mean() if mean is None else mean
    std = delta.std(ddof=1) if std is None else std  # torch.std is unbiased
    weight = np.exp(-0.5 * ((delta - mean) / std) ** 2)
    n_keep = int(math.ceil(keep * len(delta)))
    idx = np.argsort(-weight, kind="stable")[:n_keep]
    beta_used = max(beta * (1 + a * (delta[idx].mean() - mean)), 1e-3)
    return np.mean(softplus(-beta_used * delta[idx]))


def test_beta_dpo_matches_official_algorithm():
    pc, pr, rc, rr = _pref_inputs(10, n=10)
    delta = (pc.astype(np.float64) - rc) - (pr - rr)
    np.testing.assert_allclose(call(beta_dpo_loss, pc, pr, rc, rr), _beta_dpo_official(delta), rtol=1e-5)
    np.testing.assert_allclose(call(beta_dpo_loss, pc, pr, rc, rr, gap_mean=0.3, gap_std=2.0, alpha=1.5),
                               _beta_dpo_official(delta, mean=0.3, std=2.0, a=1.5), rtol=1e-5)
    # Masked pairs (NaN/inf included) are invisible: same value and gradient as the valid pairs alone.
    bad = np.array([np.nan, np.inf], np.float32)
    padded = [np.concatenate([x, bad]) for x in (pc, pr, rc, rr)]
    where = np.array([True] * 10 + [False] * 2)
    v, g = jax.value_and_grad(lambda x: beta_dpo_loss(x, *padded[1:], where=where))(padded[0])
    v0, g0 = jax.value_and_grad(lambda x: beta_dpo_loss(x, pr, rc, rr))(pc)
    np.testing.assert_allclose(v, v0, rtol=1e-6)
    np.testing.assert_allclose(g[:10], g0, rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(g[10:], 0.0)
    # The gradient flows through the margins of the kept pairs only, with beta' held constant.
    kept = np.argsort(np.abs(delta - delta.mean()), kind="stable")[:8]
    d_sel = delta[kept]
    beta_used = 0.1 * (1 + 0.6 * (d_sel.mean() - delta.mean()))
    expected = np.zeros(10)
    expected[kept] = -beta_used * scipy.special.expit(-beta_used * d_sel) / 8
    np.testing.assert_allclose(g0, expected, rtol=1e-4, atol=1e-8)
    with pytest.raises(ValueError, match="keep"):
        beta_dpo_loss(pc, pr, rc, rr, keep=0.0)


def test_mapo_matches_official_train_step():
    r = rng(8)
    lw, ll = r.uniform(0.0, 0.3, size=5), r.uniform(0.0, 0.3, size=5)
    lw[0] = 0.0  # the bounded surrogate's removable singularity
    snr, beta, t = 0.5, 0.1, 1000

    def score(x):
        return np.where(x == 0, 1.0, snr * x / np.expm1(snr * np.where(x == 0, 1.0, x)))

    log_odds = score(lw) - score(ll)
    expected = lw.mean() - beta * log_sigmoid(log_odds * t).mean()
    got, grad = jax.jit(jax.value_and_grad(mapo_loss))(lw.astype(np.float32), ll.astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert np.all(np.isfinite(grad))


def _irpo_official(pol, ref, rel, ranks, beta=1.0):
    """NumPy port of trainers.py::rdpo_loss (ablation 0) for one list."""
    r = pol - ref
    w = (2.0 ** rel - 1) / np.log2(1 + ranks)
    diffs = (r[None, :] - r[:, None]) - np.eye(len(r)) * 100
    lse = scipy.special.logsumexp(beta * diffs, axis=1) - np.log(len(r) - 1)
    return -(w * log_sigmoid(-lse)).mean()


def test_irpo_matches_official_code():
    r = rng(9)
    pol, ref = r.normal(-5, 1, size=(2, 5)), r.normal(-5, 1, size=(2, 5))
    rel = np.array([[3, 2, 0, 1, 0], [0, 1, 2, 0, 1]], np.float32)
    ranks = np.array([[1, 2, 3, 4, 5], [2, 1, 5, 3, 4]], np.float32)
    per_list = [_irpo_official(pol[i], ref[i], rel[i], ranks[i]) for i in range(2)]
    pol32, ref32 = pol.astype(np.float32), ref.astype(np.float32)
    np.testing.assert_allclose(call(irpo_loss, pol32, ref32, rel, ranks=ranks, reduce_fn=jnp.sum), sum(per_list),
                               rtol=1e-4)
    # Default ranks = positions among valid items; masked items drop out of N and of the sums.
    where = np.array([True, True, False, True, True])
    keep = where.nonzero()[0]
    expected = _irpo_official(pol[0, keep], ref[0, keep], rel[0, keep], np.arange(1, 5))
    np.testing.assert_allclose(call(irpo_loss, pol32[0], ref32[0], rel[0], where=where), expected, rtol=1e-4)
    w = 1 / np.log2(1 + ranks[1])  # ablation 1
    rr = pol[1] - ref[1]
    diffs = (rr[None, :] - rr[:, None]) - np.eye(5) * 100
    lse = scipy.special.logsumexp(diffs, axis=1) - np.log(4)
    np.testing.assert_allclose(call(irpo_loss, pol32[1], ref32[1], rel[1], ranks=ranks[1], weighting="log_discount"),
                               -(w * log_sigmoid(-lse)).mean(), rtol=1e-4)


def test_bradley_terry_with_ties_matches_solireward():
    r = rng(10)
    rc, rr = r.normal(size=8).astype(np.float32), r.normal(size=8).astype(np.float32)
    qw = np.array([1, 1, 0, 1, 0, 1, 1, 0])
    ql = np.array([0, 1, 0, 0, 1, 1, 0, 0])
    tie = qw == ql
    m, eps = 3.0, 0.1
    d = rc.astype(np.float64) - rr
    bt = -((1 - eps) * log_sigmoid(d - m) + eps * log_sigmoid(-d - m))
    btt = -log_sigmoid(d - m) - log_sigmoid(-d - m)
    expected = np.mean(bt * ~tie + 1.0 * btt * tie)  # compute_combined_loss with c_bt = c_btt = 1, c_bce = 0
    got = call(bradley_terry_loss, rc, rr, ties=tie, margin=m, label_smoothing=eps)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(call(bradley_terry_loss, rc, rr), np.mean(-log_sigmoid(d)), rtol=1e-5)


def test_soft_bradley_terry_matches_qurating():
    r = rng(11)
    scores = r.normal(size=5)
    p = r.uniform(0, 1, size=(5, 5))
    p = np.triu(p, 1) + np.tril(1 - p.T, -1)  # P(i > j) = 1 - P(j > i)
    for conf, temp in [(0.5, 1.0), (0.0, 2.0)]:
        # QuRating: labels[i, j] = P(j beats i), probs = sigmoid(s_j - s_i), BCE over valid, confident entries.
        q_labels = p.T.copy()
        np.fill_diagonal(q_labels, -100)
        probs = 1 / (1 + np.exp(-(scores[None, :] - scores[:, None])))
        valid = (q_labels != -100) & (np.abs(q_labels - 0.5) >= conf / 2)
        lab = q_labels[valid]
        if temp != 1.0:
            lab = 1 / (1 + np.exp(-(np.log(lab) - np.log1p(-lab)) / temp))
        pr = probs[valid]
        expected = np.mean(-(lab * np.log(pr) + (1 - lab) * np.log(1 - pr)))
        got = call(soft_bradley_terry_loss, scores.astype(np.float32), p.astype(np.float32), confidence=conf,
                   label_temperature=temp)
        np.testing.assert_allclose(got, expected, rtol=1e-4)


PAIR_CASES = {
    "dpo": (dpo_loss, 4, {}),
    "cdpo": (dpo_loss, 4, {"label_smoothing": 0.1}),
    "ipo": (ipo_loss, 4, {}),
    "hinge": (hinge_dpo_loss, 4, {"beta": 1.0}),
    "robust": (robust_dpo_loss, 4, {}),
    "madpo": (madpo_loss, 6, {}),
    "mapo": (mapo_loss, 2, {}),
    "bt": (bradley_terry_loss, 2, {"margin": 1.0, "ties": np.array([True, False, True, False, False, True, False])}),
}


@pytest.mark.parametrize("name", sorted(PAIR_CASES))
def test_pair_losses_masked_nan_finite_and_transforms(name):
    fn, n_arrays, kw = PAIR_CASES[name]
    r = rng(12)
    arrays = [r.normal(-1.0, 1.0, size=5).astype(np.float32) for _ in range(n_arrays)]
    if fn is mapo_loss:
        arrays = [np.abs(a) * 0.1 for a in arrays]
    bad = np.array([np.nan, -np.inf], np.float32)
    padded = [np.concatenate([a, bad]) for a in arrays]
    where = np.array([True] * 5 + [False] * 2)
    f = functools.partial(fn, **kw)
    f5 = functools.partial(fn, **{k: (v[:5] if isinstance(v, np.ndarray) else v) for k, v in kw.items()})
    value, grad = jax.jit(jax.value_and_grad(lambda x, *a: f(x, *a, where=where)))(*padded)
    assert_padding_invisible(value, grad, *jax.jit(jax.value_and_grad(f5))(*arrays), n=5, axis=0, grad_atol=1e-7)
    none = jax.jit(jax.value_and_grad(lambda x, *a: f(x, *a, where=np.zeros(7, bool))))(*padded)
    assert float(none[0]) == 0.0
    np.testing.assert_array_equal(none[1], 0.0)
    per = None
    if "ties" in kw:
        per = jax.jit(jax.vmap(lambda t, *a: fn(*a, **{**kw, "ties": t}, reduce_fn=None)))(kw["ties"][:5], *arrays)
    eager = assert_jit_vmap_sum(f5, arrays, vmapped=per)
    w = r.uniform(0.5, 2.0, size=5).astype(np.float32)
    np.testing.assert_allclose(call(f5, *arrays, weights=w, reduce_fn=None), w * eager, rtol=1e-5, atol=1e-6)


LIST_CASES = {
    "irpo": (irpo_loss, lambda r: [r.normal(-5, 1, size=(3, 5)), r.normal(-5, 1, size=(3, 5)),
                                  r.integers(0, 3, size=(3, 5))], {}),
    "soft_bt": (soft_bradley_terry_loss, lambda r: [r.normal(size=(3, 5)), r.uniform(0, 1, size=(3, 5, 5))],
                {"confidence": 0.2}),
}


@pytest.mark.parametrize("name", sorted(LIST_CASES))
def test_list_preference_losses_masked_nan_finite_and_transforms(name):
    fn, make, kw = LIST_CASES[name]
    check_list_loss_masking(fn, make, kw)
