"""ranking_jax.losses.metric_learning (contrastive, triplet, multi-similarity losses and the TCM regularizer)
against pytorch-metric-learning's published TCM unit test (TCM 0.1929 + 0.325 = 0.518, with its contrastive base loss
0.4866, total 1.0045) and loop oracles over all pairs / triplets. Properties: permutation invariance, masked ±inf/NaN
finite with zero gradients, all-masked batches excluded, jit == eager, vmap == batch."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _loss_checks import assert_jit_vmap_sum, assert_padding_invisible, assert_row_excluded, call, rng
from ranking_jax.losses import contrastive_loss, multi_similarity_loss, tcm_regularizer, triplet_loss


PML_EMB = np.array([[0.00, 1.00], [0.43, 0.90], [1.00, 0.00], [0.50, 0.50]], np.float32)
PML_LABELS = np.array([0, 0, 1, 1])


def test_tcm_reproduces_pytorch_metric_learning_unit_test():
    # pytorch-metric-learning's tests/losses/test_tcm_loss.py: positive part 0.1929, negative part 0.325, TCM = 0.518.
    got = call(tcm_regularizer, PML_EMB, PML_LABELS)
    np.testing.assert_allclose(got, 0.1929 + 0.325, atol=1e-4)
    np.testing.assert_allclose(call(tcm_regularizer, PML_EMB, PML_LABELS, lambda_neg=0.0), 0.1929, atol=1e-4)
    np.testing.assert_allclose(call(tcm_regularizer, PML_EMB, PML_LABELS, lambda_pos=0.0), 0.325, atol=1e-4)
    # Its base loss: ContrastiveLoss(CosineSimilarity, pos_margin=0.9, neg_margin=0.4) = 0.4866 with PML's
    # AvgNonZeroReducer (non-zero positive terms averaged, non-zero negative terms averaged, summed): total 1.0045.
    per_pair = np.asarray(call(contrastive_loss, PML_EMB, PML_LABELS, metric="cosine", pos_margin=0.9,
                               neg_margin=0.4, reduce_fn=None))
    same = (PML_LABELS[:, None] == PML_LABELS[None, :]) & ~np.eye(4, dtype=bool)
    diff = PML_LABELS[:, None] != PML_LABELS[None, :]

    def avg_nonzero(x):
        return x[x > 0].mean() if np.any(x > 0) else 0.0

    base = avg_nonzero(per_pair[same]) + avg_nonzero(per_pair[diff])
    np.testing.assert_allclose(base, 0.4866, atol=1e-4)
    np.testing.assert_allclose(base + got, 1.0045, atol=1e-4)


def _cos(x):
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return x @ x.T


def test_tcm_matches_loop_oracle_with_mask_and_weights():
    r = rng(1)
    emb = r.normal(size=(10, 3)).astype(np.float32)
    labels = r.integers(0, 3, size=10)
    where = r.random(10) < 0.8
    w = r.uniform(0.5, 2.0, size=10).astype(np.float32)
    s = _cos(emb.astype(np.float64))
    num_p = den_p = num_n = den_n = 0.0
    for i in range(10):
        for j in range(10):
            if i == j or not (where[i] and where[j]):
                continue
            if labels[i] == labels[j] and s[i, j] <= 0.8:
                num_p += w[i] * (0.8 - s[i, j])
                den_p += w[i]
            if labels[i] != labels[j] and s[i, j] >= 0.3:
                num_n += w[i] * (s[i, j] - 0.3)
                den_n += w[i]
    expected = 2.0 * num_p / den_p + 0.5 * num_n / den_n
    got = call(tcm_regularizer, emb, labels, m_pos=0.8, m_neg=0.3, lambda_pos=2.0, lambda_neg=0.5, where=where,
               weights=w)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def _pair_dist(x, metric):
    return _cos(x) if metric == "cosine" else np.linalg.norm(x[:, None] - x[None], axis=-1)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_contrastive_and_triplet_match_loop_oracles(metric):
    r = rng(2)
    emb = r.normal(size=(7, 4)) * 0.6
    labels = np.array([0, 1, 0, 2, 1, 0, 2])
    m = _pair_dist(emb, metric)
    pos_m, neg_m, margin = (0.8, 0.3, 0.1) if metric == "cosine" else (0.2, 1.5, 0.3)
    pair_terms, trip_terms = [], []
    for a in range(7):
        for b in range(7):
            if a == b:
                continue
            if labels[a] == labels[b]:
                pair_terms.append(max(pos_m - m[a, b], 0) if metric == "cosine" else max(m[a, b] - pos_m, 0))
                for n in range(7):
                    if labels[n] != labels[a]:
                        v = m[a, n] - m[a, b] if metric == "cosine" else m[a, b] - m[a, n]
                        trip_terms.append(max(v + margin, 0))
            else:
                pair_terms.append(max(m[a, b] - neg_m, 0) if metric == "cosine" else max(neg_m - m[a, b], 0))
    emb32 = emb.astype(np.float32)
    np.testing.assert_allclose(call(contrastive_loss, emb32, labels, pos_margin=pos_m, neg_margin=neg_m,
                                    metric=metric), np.mean(pair_terms), rtol=1e-4)
    np.testing.assert_allclose(call(triplet_loss, emb32, labels, margin=margin, metric=metric), np.mean(trip_terms),
                               rtol=1e-4)


@pytest.mark.parametrize("epsilon", [None, 0.1])
def test_multi_similarity_matches_loop_oracle(epsilon):
    r = rng(3)
    emb = r.normal(size=(8, 3))
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    s = _cos(emb)
    alpha, beta, base = 2.0, 50.0, 0.5
    per_anchor = []
    for i in range(8):
        pos = [j for j in range(8) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(8) if labels[j] != labels[i]]
        if epsilon is not None:
            min_pos, max_neg = min(s[i, pos]), max(s[i, neg])
            pos, neg = [j for j in pos if s[i, j] < max_neg + epsilon], [j for j in neg if s[i, j] > min_pos - epsilon]
        pos_term = np.log1p(np.sum(np.exp(-alpha * (s[i, pos] - base)))) / alpha
        neg_term = np.log1p(np.sum(np.exp(beta * (s[i, neg] - base)))) / beta
        per_anchor.append(pos_term + neg_term)
    got = call(multi_similarity_loss, emb.astype(np.float32), labels, epsilon=epsilon, reduce_fn=None)
    np.testing.assert_allclose(got, per_anchor, rtol=1e-4, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_metric_losses_are_permutation_invariant(seed):
    r = rng(seed)
    emb = r.normal(size=(7, 3)).astype(np.float32)
    labels = r.integers(0, 3, size=7)
    where = r.random(7) < 0.85
    perm = r.permutation(7)
    np.testing.assert_allclose(_metric_losses(emb[perm], labels[perm], where[perm]),
                               _metric_losses(emb, labels, where), rtol=1e-4, atol=1e-6)


@jax.jit
def _metric_losses(emb, labels, where):
    return jnp.stack([tcm_regularizer(emb, labels, where=where), contrastive_loss(emb, labels, where=where),
                      triplet_loss(emb, labels, where=where), multi_similarity_loss(emb, labels, where=where),
                      contrastive_loss(emb, labels, where=where, metric="cosine")])


METRIC_FNS = {
    "tcm": tcm_regularizer,
    "contrastive_euclidean": contrastive_loss,
    "contrastive_cosine": functools.partial(contrastive_loss, metric="cosine", pos_margin=0.9, neg_margin=0.2),
    "triplet": functools.partial(triplet_loss, margin=0.5),
    "triplet_smooth_cosine": functools.partial(triplet_loss, metric="cosine", smooth=True),
    "multi_similarity": multi_similarity_loss,
    "multi_similarity_mined": functools.partial(multi_similarity_loss, epsilon=0.1),
}


@pytest.mark.parametrize("name", sorted(METRIC_FNS))
def test_metric_masked_nan_rows_and_transforms(name):
    fn = METRIC_FNS[name]
    r = rng(4)
    emb = r.normal(size=(2, 6, 3)).astype(np.float32)  # two independent batches
    labels = np.array([[0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1]])
    padded = np.concatenate([emb, np.broadcast_to(np.array([np.nan, np.inf, -np.inf], np.float32), (2, 2, 3))], 1)
    plabels = np.concatenate([labels, np.zeros((2, 2), int)], 1)
    where = np.concatenate([np.ones((2, 6), bool), np.zeros((2, 2), bool)], 1)
    value, grad = jax.jit(jax.value_and_grad(lambda e, w: fn(e, plabels, where=w)))(padded, where)
    assert_padding_invisible(value, grad, *jax.jit(jax.value_and_grad(lambda e: fn(e, labels)))(emb), n=6)
    # A fully masked batch is excluded from the mean and gets zero gradients.
    where2 = where.copy()
    where2[1] = False
    nan_batch = padded.copy()
    nan_batch[1] = np.nan
    value, grad = jax.jit(jax.value_and_grad(lambda e: fn(e, plabels, where=where2)))(nan_batch)
    assert_row_excluded(value, grad, call(fn, emb[:1], labels[:1]))
    # jit == eager; vmap over batches == batched; sum(unreduced) == jnp.sum.
    assert_jit_vmap_sum(fn, (emb, labels))


def test_metric_learning_rejects_bad_input():
    with pytest.raises(ValueError, match="metric"):
        contrastive_loss(PML_EMB, PML_LABELS, metric="manhattan")
    with pytest.raises(ValueError, match="labels"):
        triplet_loss(PML_EMB, PML_LABELS[:3])
