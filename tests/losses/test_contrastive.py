"""ranking_jax.losses.contrastive (InfoNCE, soft InfoNCE, E2Rank, CoDiEmb's Pearson / RankKL / PRO) against optax's
``softmax_cross_entropy_with_integer_labels`` and ``ntxent`` for InfoNCE, scipy's ``pearsonr``/``rankdata`` and NumPy
ports of CoDiEmb's sorted-loop PRO and RankKL, E2Rank's InfoNCE + pooled-pair RankNet. Properties: permutation
invariance (of these and the distillation losses, in one compiled function), masked ±inf/NaN give finite values and
zero gradients, all-masked rows are excluded, jit == eager, vmap == batch (tests/_loss_checks.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from _loss_checks import (call, list_case, list_case_checks,
                          log_softmax, matrix_case, rng, softplus)
from ranking_jax.losses import (e2rank_loss, infonce_loss, kl_distill_loss, margin_mse_loss, mse_distill_loss,
                                pearson_loss, pro_loss, rank_kl_loss, soft_infonce_loss, weighted_ranknet_distill_loss)

RTOL = 1e-5


# ---------------------------------------------------------------------------------------------------- InfoNCE
def test_infonce_in_batch_matches_optax_cross_entropy():
    r = rng(7)
    q, d = r.normal(size=(4, 8)), r.normal(size=(6, 8))  # 4 queries, 4 positives + 2 global negatives
    scores = (q @ d.T).astype(np.float32)
    expected = call(optax.softmax_cross_entropy_with_integer_labels, scores / 0.05, np.arange(4)).mean()
    np.testing.assert_allclose(call(infonce_loss, scores, temperature=0.05), expected, rtol=RTOL)
    np.testing.assert_allclose(call(infonce_loss, scores, temperature=0.05, multi_positive="any"), expected, rtol=RTOL)
    # Grouped layout: each query followed by its own hard negatives (E2Rank/Tevatron): target = i * group_size.
    scores = r.normal(size=(3, 9)).astype(np.float32)
    expected = call(optax.softmax_cross_entropy_with_integer_labels, scores / 0.03, np.arange(3) * 3).mean()
    np.testing.assert_allclose(call(infonce_loss, scores, temperature=0.03, group_size=3), expected, rtol=RTOL)
    labels = np.zeros((3, 9))
    labels[np.arange(3), np.arange(3) * 3] = 1
    np.testing.assert_allclose(call(infonce_loss, scores, temperature=0.03, labels=labels), expected, rtol=RTOL)


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1]])
def test_infonce_each_matches_optax_ntxent(labels):
    # NT-Xent: every positive pair vs the anchor's negatives, self excluded. With the same number of positives per
    # anchor, the mean over anchors of the per-anchor mean equals optax's mean over positive pairs.
    r = rng(8)
    emb = r.normal(size=(6, 4)).astype(np.float32)
    labels = np.asarray(labels)
    e = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    cos = (e @ e.T).astype(np.float32)
    not_self = ~np.eye(6, dtype=bool)
    same = (labels[:, None] == labels[None, :]) & not_self
    got = call(infonce_loss, cos, labels=same, where=not_self, temperature=0.07)
    np.testing.assert_allclose(got, call(optax.losses.ntxent, emb, labels, temperature=0.07), rtol=1e-4)


def test_infonce_any_multi_positive_by_hand():
    scores = np.array([[2.0, 1.0, 0.0, -1.0], [0.5, 0.5, 3.0, 1.0]], np.float32)
    labels = np.array([[1, 1, 0, 0], [0, 0, 1, 1]])
    where = np.array([[True, True, True, True], [True, False, True, True]])
    e0 = np.log((np.exp(2) + np.exp(1)) / np.exp(scores[0]).sum())
    e1 = np.log((np.exp(3) + np.exp(1)) / (np.exp(0.5) + np.exp(3) + np.exp(1)))
    got = call(infonce_loss, scores, labels=labels, where=where, multi_positive="any", reduce_fn=None)
    np.testing.assert_allclose(got, [-e0, -e1], rtol=RTOL)
    each0 = 0.5 * (softplus(np.log(np.exp(0) + np.exp(-1)) - 2) + softplus(np.log(np.exp(0) + np.exp(-1)) - 1))
    got = call(infonce_loss, scores, labels=labels, where=where, reduce_fn=None)
    np.testing.assert_allclose(got[0], each0, rtol=RTOL)


def test_infonce_rejects_bad_layout():
    with pytest.raises(ValueError, match="group_size"):
        call(infonce_loss, np.zeros((4, 6), np.float32), group_size=2)
    with pytest.raises(ValueError, match="multi_positive"):
        call(infonce_loss, np.zeros((2, 2), np.float32), multi_positive="all")


def test_soft_infonce_with_positive_aware_filter_by_hand():
    scores = np.array([[1.0, 0.5, 0.2, -0.3, 0.8]], np.float32)
    teacher = np.array([[5.0, 4.9, 3.0, 1.0, 6.0]], np.float32)
    # positive = column 0 (diagonal); margin 0.5 drops col 1 (4.9 > 4.5) and col 4 (6 > 4.5).
    keep = np.array([0, 2, 3])
    p = scipy.special.softmax(teacher[0, keep] / 2.0)
    expected = -np.sum(p * log_softmax(scores[0, keep] / 0.5))
    got = call(soft_infonce_loss, scores, teacher, temperature=0.5, teacher_temperature=2.0, negative_margin=0.5)
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    # Ratio filter 0.95 * 5 = 4.75 drops the same columns.
    got = call(soft_infonce_loss, scores, teacher, temperature=0.5, teacher_temperature=2.0, negative_ratio=0.95)
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    # No filter: all five columns.
    p = scipy.special.softmax(teacher[0] / 0.5)
    np.testing.assert_allclose(call(soft_infonce_loss, scores, teacher, temperature=0.5),
                               -np.sum(p * log_softmax(scores[0] / 0.5)), rtol=RTOL)


def test_soft_infonce_with_one_hot_teacher_is_infonce():
    r = rng(9)
    scores = r.normal(size=(4, 4)).astype(np.float32)
    teacher = np.eye(4, dtype=np.float32) * 1e3
    np.testing.assert_allclose(call(soft_infonce_loss, scores, teacher, temperature=0.1, teacher_temperature=1.0),
                               call(infonce_loss, scores, temperature=0.1), rtol=RTOL)


def test_e2rank_matches_numpy_port():
    r = rng(10)
    b, k, dim = 3, 5, 6
    q = r.normal(size=(b, dim))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    d = r.normal(size=(b * k, dim))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    cos = (q @ d.T).astype(np.float32)  # [B, B*K]; positive of query i at column i*K
    pq = r.normal(size=(b, dim))
    pq /= np.linalg.norm(pq, axis=-1, keepdims=True)
    rerank = np.einsum("bd,bkd->bk", pq, d.reshape(b, k, dim)).astype(np.float32)
    teacher_rank = np.stack([r.permutation(k) for _ in range(b)])  # rank position of each candidate
    rel = (k - teacher_rank).astype(np.float32)
    # E2Rank: CE(scores / tau, i*K) + lambda * BCEWithLogits over all pairs of the batch with rel_i > rel_j.
    ce = np.mean([-log_softmax(cos[i] / 0.03)[i * k] for i in range(b)])
    pair_terms = [softplus(-10.0 * (rerank[x, i] - rerank[x, j])) for x in range(b) for i in range(k)
                  for j in range(k) if rel[x, i] > rel[x, j]]
    expected = ce + 2.0 * np.mean(pair_terms)
    got = call(e2rank_loss, cos, rerank, rel, group_size=k)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------- CoDiEmb
def test_pearson_matches_scipy_and_weighted_numpy():
    r = rng(11)
    x, y = r.normal(size=(2, 9)), r.normal(size=(2, 9))
    expected = np.mean([1 - scipy.stats.pearsonr(x[i], y[i])[0] for i in range(2)])
    np.testing.assert_allclose(call(pearson_loss, x.astype(np.float32), y.astype(np.float32)), expected, rtol=1e-4)
    w = r.uniform(0.5, 2.0, size=9)
    cov = np.cov(x[0], y[0], aweights=w, bias=True)
    expected_w = 1 - cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    np.testing.assert_allclose(call(pearson_loss, x[0].astype(np.float32), y[0].astype(np.float32), weights=w),
                               expected_w, rtol=1e-4)
    # Constant gold scores: no correlation, excluded (CoDiEmb returns 0).
    xs = np.stack([x[0], x[1]]).astype(np.float32)
    ys = np.stack([y[0], np.full(9, 0.3)]).astype(np.float32)
    np.testing.assert_allclose(call(pearson_loss, xs, ys), 1 - scipy.stats.pearsonr(x[0], y[0])[0], rtol=1e-4)
    np.testing.assert_allclose(call(pearson_loss, xs, ys, reduce_fn=None)[1], 0.0)


def _rank_kl_codiemb(pred, true, temperature=0.05):
    ranks = scipy.stats.rankdata(-true, method="average") - 1
    n = len(true)
    target = (n - 1 - ranks) / (n - 1) if n > 1 else np.zeros(1)
    p = scipy.special.softmax(target / temperature)
    return np.sum(p * (np.log(p) - log_softmax(pred / temperature)))


def test_rank_kl_matches_codiemb_port_with_ties():
    r = rng(12)
    pred = r.uniform(-1, 1, size=7)
    true = np.array([3.0, 1.0, 1.0, 4.0, 0.0, 3.0, 2.5])
    np.testing.assert_allclose(call(rank_kl_loss, pred.astype(np.float32), true.astype(np.float32)),
                               _rank_kl_codiemb(pred, true), rtol=1e-4)
    # Masked items are dropped before ranking.
    where = np.array([True, True, False, True, True, False, True])
    np.testing.assert_allclose(call(rank_kl_loss, pred.astype(np.float32), true.astype(np.float32), where=where),
                               _rank_kl_codiemb(pred[where], true[where]), rtol=1e-4)


def _pro_codiemb(pred, true, eps=1e-8, temperature=0.05):
    pred = pred / temperature
    order = np.argsort(-true, kind="stable")
    yt, yp = true[order], pred[order]
    total, count = 0.0, 0
    for k in range(len(yt) - 1):
        mask = (yt[k] - yt[k + 1:]) > eps
        if not mask.any():
            continue
        wneg = yt[k] - yt[k + 1:][mask]
        logits = np.concatenate([[yp[k] * wneg.max()], yp[k + 1:][mask] * wneg])
        total += log_softmax(logits)[0]
        count += 1
    return -total / count


def test_pro_matches_codiemb_sorted_loop():
    r = rng(13)
    pred = r.uniform(-1, 1, size=8)
    true = np.array([0.9, 0.1, 0.5, 0.5, 0.0, 0.7, 0.1, 0.3])
    got = call(pro_loss, pred.astype(np.float32), true.astype(np.float32))
    np.testing.assert_allclose(got, _pro_codiemb(pred, true), rtol=1e-4)
    assert float(call(pro_loss, pred.astype(np.float32), np.zeros(8, np.float32))) == 0.0  # no ordered pair


# ---------------------------------------------------------------------------------------------------- permutation
@jax.jit
def _all_list_losses(s, t, y, where, scores, labels):
    return jnp.stack([
        margin_mse_loss(s, t, labels=y, where=where), margin_mse_loss(s, t, where=where),
        kl_distill_loss(s, t, where=where), mse_distill_loss(s, t, where=where),
        weighted_ranknet_distill_loss(s, t, where=where), pearson_loss(s, y, where=where),
        rank_kl_loss(s, y, where=where), pro_loss(s, y, where=where), infonce_loss(scores, labels=labels),
        infonce_loss(scores, labels=labels, multi_positive="any"), soft_infonce_loss(scores, scores * 2.0)])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_list_losses_are_permutation_invariant(seed):
    r = rng(seed)
    n = 6
    s, t = r.normal(size=n).astype(np.float32), r.normal(size=n).astype(np.float32)
    y = r.integers(0, 3, size=n).astype(np.float32)
    where = r.random(n) < 0.8
    perm = r.permutation(n)
    # InfoNCE: permuting the document columns (positives follow via labels).
    scores = r.normal(size=(3, n)).astype(np.float32)
    labels = np.zeros((3, n), bool)
    labels[np.arange(3), r.integers(0, n, size=3)] = True
    np.testing.assert_allclose(_all_list_losses(s[perm], t[perm], y[perm], where[perm], scores[:, perm],
                                                labels[:, perm]),
                               _all_list_losses(s, t, y, where, scores, labels), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- generic checks
LIST_CASES = {
    "pearson": list_case(pearson_loss, round_targets=True),
    "rank_kl": list_case(rank_kl_loss, round_targets=True),
    "pro": list_case(pro_loss, round_targets=True),
    "infonce_each": matrix_case(infonce_loss, labels=np.array([1, 0, 0, 1, 0])),
    "infonce_any": matrix_case(infonce_loss, labels=np.array([1, 0, 0, 1, 0]), multi_positive="any"),
    "soft_infonce": matrix_case(soft_infonce_loss, 2, labels=np.array([1, 0, 0, 0, 0]), negative_margin=-5.0,
                                 temperature=0.5),
}


(test_masked_inf_nan_padding_is_invisible, test_all_masked_row_is_excluded_with_zero_grads,
 test_jit_equals_eager_and_vmap_equals_batch) = list_case_checks(
    LIST_CASES, score_matrix=lambda fn: fn.func in (infonce_loss, soft_infonce_loss))


def test_e2rank_masks_and_transforms():
    r = rng(22)
    cos = r.normal(size=(2, 4)).astype(np.float32)
    rerank = r.normal(size=(2, 3)).astype(np.float32)
    rel = np.array([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0]], np.float32)
    base = e2rank_loss(cos, rerank, rel, reduce_fn=None)  # eager
    np.testing.assert_allclose(call(e2rank_loss, cos, rerank, rel, reduce_fn=None), base, rtol=1e-5)
    base = jnp.mean(base)
    cos_p = np.concatenate([cos, np.full((2, 1), np.nan, np.float32)], -1)
    rerank_p = np.concatenate([rerank, np.full((2, 1), -np.inf, np.float32)], -1)
    rel_p = np.concatenate([rel, np.full((2, 1), np.nan, np.float32)], -1)
    where = np.array([True] * 4 + [False])
    rwhere = np.array([True] * 3 + [False])
    f = lambda c, rr: e2rank_loss(c, rr, rel_p, where=where, rerank_where=rwhere)  # noqa: E731
    value, (g1, g2) = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(cos_p, rerank_p)
    np.testing.assert_allclose(value, base, rtol=1e-5)
    assert np.all(np.isfinite(g1)) and np.all(np.isfinite(g2))
    np.testing.assert_array_equal(g1[:, -1], 0.0)
    np.testing.assert_array_equal(g2[:, -1], 0.0)
    np.testing.assert_allclose(call(e2rank_loss, cos, rerank, rel), base, rtol=1e-5)
    per = jax.jit(jax.vmap(functools.partial(e2rank_loss, reduce_fn=None)))(cos[None], rerank[None], rel[None])
    np.testing.assert_allclose(jnp.mean(per[0]), base, rtol=1e-5)
