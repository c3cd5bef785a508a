"""ranking_jax.losses.distill (Margin-MSE, pointwise MSE, weighted RankNet and KL distillation) against NumPy ports
of matchmaker's MSMarginLoss / MarginMSE_InterPassageLoss / MSETeacherPointwise / weighted-RankNet formulas and
scipy's softmax. Properties: per-pair offset invariance (Margin-MSE), masked ±inf/NaN give finite values and zero
gradients, all-masked rows are excluded, jit == eager, vmap == batch (tests/_loss_checks.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

from _loss_checks import call, list_case, list_case_checks, log_softmax, rng, softplus
from ranking_jax.losses import (kl_distill_loss, margin_mse_loss, margin_mse_triple_loss, mse_distill_loss,
                                weighted_ranknet_distill_loss)

RTOL = 1e-5


def test_margin_mse_triple_matches_matchmaker_formula():
    r = rng(1)
    sp, sn, tp, tn = (r.normal(size=7).astype(np.float32) for _ in range(4))
    expected = np.mean(((sp - sn) - (tp - tn)) ** 2)  # matchmaker MSMarginLoss
    np.testing.assert_allclose(call(margin_mse_triple_loss, sp, sn, tp, tn), expected, rtol=RTOL)
    # The same triples as lists [s+, s-]: labels or no labels select the one pair.
    scores, teacher = np.stack([sp, sn], -1), np.stack([tp, tn], -1)
    np.testing.assert_allclose(call(margin_mse_loss, scores, teacher), expected, rtol=RTOL)
    np.testing.assert_allclose(call(margin_mse_loss, scores, teacher, labels=np.array([1, 0])), expected, rtol=RTOL)
    w = r.uniform(0.5, 2.0, size=7).astype(np.float32)
    np.testing.assert_allclose(call(margin_mse_triple_loss, sp, sn, tp, tn, weights=w),
                               np.mean(w * ((sp - sn) - (tp - tn)) ** 2), rtol=RTOL)


def test_margin_mse_triple_masks_and_transforms():
    r = rng(30)
    arrays = [r.normal(size=5).astype(np.float32) for _ in range(4)]
    bad = np.array([np.nan, np.inf], np.float32)
    padded = [np.concatenate([a, bad]) for a in arrays]
    where = np.array([True] * 5 + [False] * 2)
    value, grads = jax.jit(jax.value_and_grad(lambda *a: margin_mse_triple_loss(*a, where=where), argnums=(0, 1)))(
        *padded)
    np.testing.assert_allclose(value, call(margin_mse_triple_loss, *arrays), rtol=RTOL)
    for g in grads:
        assert np.all(np.isfinite(g))
        np.testing.assert_array_equal(g[5:], 0.0)
    eager = margin_mse_triple_loss(*arrays, reduce_fn=None)
    np.testing.assert_allclose(call(margin_mse_triple_loss, *arrays, reduce_fn=None), eager, rtol=RTOL)
    per = jax.jit(jax.vmap(functools.partial(margin_mse_triple_loss, reduce_fn=None)))(*arrays)
    np.testing.assert_allclose(per, eager, rtol=RTOL)


def test_margin_mse_list_form_matches_interpassage_loss():
    # matchmaker MarginMSE_InterPassageLoss: scores_pos [B, P], scores_neg [B, N], every pos against every neg.
    r = rng(2)
    b, p, n = 3, 2, 4
    sp, sn = r.normal(size=(b, p)), r.normal(size=(b, n))
    tp, tn = r.normal(size=(b, p)), r.normal(size=(b, n))
    expected = np.mean(((sp[:, :, None] - sn[:, None, :]) - (tp[:, :, None] - tn[:, None, :])) ** 2)
    scores = np.concatenate([sp, sn], -1).astype(np.float32)
    teacher = np.concatenate([tp, tn], -1).astype(np.float32)
    labels = np.array([1] * p + [0] * n)
    np.testing.assert_allclose(call(margin_mse_loss, scores, teacher, labels=labels), expected, rtol=RTOL)
    # Shuffle the items of each list: the pairs follow the labels, not the positions.
    perm = r.permutation(p + n)
    np.testing.assert_allclose(call(margin_mse_loss, scores[:, perm], teacher[:, perm], labels=labels[perm]), expected,
                               rtol=RTOL)
    # Unreduced: [B, L*L] with pair (i, j) at i*L + j; sum equals the jnp.sum reduction.
    un = call(margin_mse_loss, scores, teacher, labels=labels, reduce_fn=None)
    assert un.shape == (b, (p + n) ** 2)
    np.testing.assert_allclose(un[0, 0 * (p + n) + p], ((sp[0, 0] - sn[0, 0]) - (tp[0, 0] - tn[0, 0])) ** 2,
                               rtol=RTOL)
    np.testing.assert_allclose(jnp.sum(un), call(margin_mse_loss, scores, teacher, labels=labels, reduce_fn=jnp.sum),
                               rtol=RTOL)


def test_margin_mse_all_pairs_without_labels():
    r = rng(3)
    s, t = r.normal(size=(2, 5)).astype(np.float32), r.normal(size=(2, 5)).astype(np.float32)
    where = np.array([[True] * 5, [True, True, False, True, False]])
    terms = []
    for q in range(2):
        idx = np.flatnonzero(where[q])
        for a in range(len(idx)):
            for c in range(a + 1, len(idx)):
                i, j = idx[a], idx[c]
                terms.append(((s[q, i] - s[q, j]) - (t[q, i] - t[q, j])) ** 2)
    np.testing.assert_allclose(call(margin_mse_loss, s, t, where=where), np.mean(terms), rtol=RTOL)


def test_mse_distill_matches_matchmaker_pointwise():
    r = rng(4)
    sp, sn, tp, tn = (r.normal(size=6).astype(np.float32) for _ in range(4))
    expected = 0.5 * (np.mean((sp - tp) ** 2) + np.mean((sn - tn) ** 2))  # MSETeacherPointwise
    got = call(mse_distill_loss, np.stack([sp, sn], -1), np.stack([tp, tn], -1))
    np.testing.assert_allclose(got, expected, rtol=RTOL)


def test_weighted_ranknet_matches_matchmaker_when_teacher_agrees():
    r = rng(5)
    sp, sn = r.normal(size=8), r.normal(size=8)
    tn = r.normal(size=8)
    tp = tn + r.uniform(0.1, 3.0, size=8)  # teacher prefers the positive
    y, x = tp - tn, sp - sn
    expected = np.mean(y * softplus(-x))  # BCEWithLogits(x, 1, weight=y), mean
    scores = np.stack([sp, sn], -1).astype(np.float32)
    teacher = np.stack([tp, tn], -1).astype(np.float32)
    np.testing.assert_allclose(call(weighted_ranknet_distill_loss, scores, teacher), expected, rtol=RTOL)
    # A list of 3: pairs ordered by the teacher, weighted by its margin.
    s3, t3 = np.array([0.2, 1.0, -0.5], np.float32), np.array([3.0, 1.0, 2.0], np.float32)
    pairs = [(0, 1), (0, 2), (2, 1)]
    expected3 = np.mean([(t3[i] - t3[j]) * softplus(-(s3[i] - s3[j])) for i, j in pairs])
    np.testing.assert_allclose(call(weighted_ranknet_distill_loss, s3, t3), expected3, rtol=RTOL)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kl_distill_matches_scipy(temperature):
    r = rng(6)
    s, t = r.normal(size=(3, 5)), r.normal(size=(3, 5))
    where = np.ones((3, 5), bool)
    where[1, 3:] = False
    expected = []
    for q in range(3):
        m = where[q]
        p = scipy.special.softmax(t[q, m] / temperature)
        logq = log_softmax(s[q, m] / temperature)
        expected.append(temperature ** 2 * np.sum(p * (np.log(p) - logq)))
    got = call(kl_distill_loss, s.astype(np.float32), t.astype(np.float32), temperature=temperature, where=where)
    np.testing.assert_allclose(got, np.mean(expected), rtol=RTOL)


_triple_unreduced = jax.jit(functools.partial(margin_mse_triple_loss, reduce_fn=None))
_margin_mse_unreduced = jax.jit(functools.partial(margin_mse_loss, reduce_fn=None))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(*[st.floats(-5, 5)] * 5), min_size=4, max_size=4))
def test_margin_mse_invariant_to_per_pair_offset(rows):
    a = np.asarray(rows, np.float32)
    sp, sn, tp, tn, c = a.T
    base = _triple_unreduced(sp, sn, tp, tn)
    np.testing.assert_allclose(base, ((sp - sn) - (tp - tn)) ** 2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_triple_unreduced(sp + c, sn + c, tp, tn), base, rtol=1e-4, atol=1e-3)
    # List form: one offset per list (student and teacher independently).
    s, t = np.stack([sp, sn, tp], -1), np.stack([tn, tp, sn], -1)
    np.testing.assert_allclose(_margin_mse_unreduced(s + c[:, None], t - 2 * c[:, None]), _margin_mse_unreduced(s, t),
                               rtol=1e-4, atol=1e-3)


# ---------------------------------------------------------------------------------------------------- generic checks
LIST_CASES = {
    "margin_mse_labels": list_case(margin_mse_loss, labels=np.array([2.0, 1.0, 0.0, 1.0, 0.0])),
    "margin_mse": list_case(margin_mse_loss),
    "mse_distill": list_case(mse_distill_loss),
    "weighted_ranknet": list_case(weighted_ranknet_distill_loss),
    "kl_distill": list_case(kl_distill_loss, temperature=2.0),
}


(test_masked_inf_nan_padding_is_invisible, test_all_masked_row_is_excluded_with_zero_grads,
 test_jit_equals_eager_and_vmap_equals_batch) = list_case_checks(LIST_CASES)
