"""ranking_jax.losses.debiasing (Rel-MF and the curriculum weights) against the official Rel-MF TF code, the paper's
unbiased estimator (unbiasedness under exposure ~ Bern(θ)), scipy's ``gaussian_kde`` for the KDE curriculum difficulty
and OpenNIR's curriculum weights. Properties: masked NaN invisible, all-masked lists excluded, jit == eager, vmap ==
batch (tests/_loss_checks.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from _loss_checks import call, check_list_loss_masking, rng
from ranking_jax.losses import curriculum_difficulty, curriculum_weights, popularity_propensity, relmf_loss


LIST_CASES = {
    "relmf_log": (relmf_loss, lambda r: [r.normal(size=(3, 5)), r.integers(0, 2, size=(3, 5))],
                  {"propensities": np.linspace(0.05, 1.0, 5)}),
    "relmf_squared_clipped": (relmf_loss, lambda r: [r.normal(size=(3, 5)), r.integers(0, 2, size=(3, 5))],
                              {"propensities": np.linspace(0.001, 1.0, 5), "clip": 0.1, "delta": "squared"}),
}


@pytest.mark.parametrize("name", sorted(LIST_CASES))
def test_list_debiasing_losses_masked_nan_finite_and_transforms(name):
    fn, make, kw = LIST_CASES[name]
    check_list_loss_masking(fn, make, kw)


def test_relmf_matches_official_code_and_paper_estimator():
    r = rng(14)
    logits = r.normal(size=20)
    clicks = (r.random(20) < 0.3).astype(np.float64)
    theta = r.uniform(0.001, 1.0, size=20)
    clip = 0.05
    # Official TF code (weight=1): clip propensity to [clip, 1], squared deltas, normalised by the count.
    th = np.clip(theta, clip, 1.0)
    pred = 1 / (1 + np.exp(-logits))
    expected_sq = np.sum(clicks / th * (1 - pred) ** 2 + (1 - clicks / th) * pred ** 2) / np.sum(
        clicks + (1 - clicks))
    got = call(relmf_loss, logits.astype(np.float32), clicks, propensities=theta.astype(np.float32), clip=clip,
               delta="squared")
    np.testing.assert_allclose(got, expected_sq, rtol=1e-4)
    # Paper: unbiased cross-entropy estimator (no clipping).
    expected_log = np.mean(clicks / theta * -np.log(pred) + (1 - clicks / theta) * -np.log(1 - pred))
    got = call(relmf_loss, logits.astype(np.float32), clicks, propensities=theta.astype(np.float32))
    np.testing.assert_allclose(got, expected_log, rtol=1e-4)
    # Unbiasedness: averaging over exposure O ~ Bern(θ) recovers the ideal loss with relevance R.
    rel = (r.random(20) < 0.5).astype(np.float32)
    ideal = np.mean(rel * -np.log(pred) + (1 - rel) * -np.log(1 - pred))
    exp_unreduced = theta * call(relmf_loss, logits.astype(np.float32), rel, propensities=theta.astype(np.float32),
                                 reduce_fn=None) + (1 - theta) * call(relmf_loss, logits.astype(np.float32),
                                                                      np.zeros(20, np.float32),
                                                                      propensities=theta.astype(np.float32),
                                                                      reduce_fn=None)
    np.testing.assert_allclose(np.mean(exp_unreduced), ideal, rtol=1e-4)
    np.testing.assert_allclose(popularity_propensity(np.array([4, 16, 0, 9])), [0.5, 1.0, 0.0, 0.75], rtol=1e-6)


def test_curriculum_difficulty_matches_numpy_and_scipy_kde():
    r = rng(15)
    run = r.normal(10, 3, size=(2, 7)).astype(np.float32)
    where = np.ones((2, 7), bool)
    where[1, 5:] = False
    recip = call(curriculum_difficulty, run, method="reciprank", where=where)
    for q in range(2):
        v = run[q, where[q]]
        ranks = np.argsort(np.argsort(-v)) + 1
        np.testing.assert_allclose(recip[q, where[q]], 1 / ranks, rtol=1e-6)
        norm = (v - v.min()) / (v.max() - v.min())
        np.testing.assert_allclose(call(curriculum_difficulty, run, method="normscore", where=where)[q, where[q]],
                                   norm, rtol=1e-5, atol=1e-6)
        kde = scipy.stats.gaussian_kde(v.astype(np.float64))
        expected = [kde.integrate_box_1d(-np.inf, x) for x in v]
        np.testing.assert_allclose(call(curriculum_difficulty, run, method="kde", where=where)[q, where[q]],
                                   expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(recip[1, 5:], 0.0)


def test_curriculum_weights_match_opennir():
    r = rng(16)
    # OpenNIR pairwise records: 1 positive + num_neg negatives; weight = min_neg (D_pos - D_neg + 1) / 2 + 1e-8,
    # annealed as w (1 - e/m) + e/m.
    d = r.uniform(0, 1, size=(4, 3)).astype(np.float32)
    labels = np.array([1, 0, 0])
    epoch, eoc = 5, 20
    w = np.min((d[:, :1] - d[:, 1:] + 1) / 2, axis=1) + 1e-8
    expected = w * (1 - epoch / eoc) + epoch / eoc
    np.testing.assert_allclose(call(curriculum_weights, d, labels, epoch=epoch, pairwise=True), expected, rtol=1e-6)
    np.testing.assert_allclose(call(curriculum_weights, d, labels, epoch=20, pairwise=True), np.ones(4))
    # Pointwise: D if relevant else 1 - D.
    w = np.where(labels > 0, d, 1 - d) + 1e-8
    np.testing.assert_allclose(call(curriculum_weights, d, labels, epoch=epoch), w * 0.75 + 0.25, rtol=1e-6)
    # epoch may be traced.
    np.testing.assert_allclose(jax.jit(lambda e: curriculum_weights(d, labels, epoch=e))(jnp.float32(epoch)),
                               w * 0.75 + 0.25, rtol=1e-6)
