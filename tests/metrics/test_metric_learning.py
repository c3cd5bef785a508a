"""ranking_jax.metrics.metric_learning: Recall@k and OPIS / eps-OPIS (threshold utilities, FAR calibration) by hand
on points on a line and against NumPy loops over all pairs."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ranking_jax.metrics as metrics
from ranking_jax.metrics import metric_learning


def jit(fn, **static):
    """``fn`` jitted with ``static`` keyword arguments bound (one compilation instead of many eager ops)."""
    return jax.jit(functools.partial(fn, **static))


def _np_recall_at_k(e, y, valid, ks):
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-30)
    dist = 1.0 - e @ e.T
    out = {k: [] for k in ks}
    for i in np.flatnonzero(valid):
        others = [j for j in np.flatnonzero(valid) if j != i]
        if not any(y[j] == y[i] for j in others):
            continue
        order = sorted(others, key=lambda j: (dist[i, j], j))
        for k in ks:
            out[k].append(float(any(y[j] == y[i] for j in order[:k])))
    return [np.mean(out[k]) for k in ks]


def test_recall_at_k_by_hand():
    # 1-D points; Euclidean: item 0 (class 0) has nearest item 2 (class 1), then item 1 (class 0).
    e = jnp.asarray([[0.0], [0.5], [0.3], [2.0], [5.0]])
    y = jnp.asarray([0, 0, 1, 1, 2])  # item 4 is a lone query: left out of the mean
    per_query = jit(metrics.recall_at_k, k=(1, 2), distance="euclidean", reduce_fn=None)(e, y)
    # item0: nn 2 (x), 1 (ok) -> R@1 0, R@2 1; item1: nn 2 (x), 0 (ok); item2: nn 1, 0 (x x) -> 0, 0;
    # item3: nn 1 (d=1.5, x), 2 (d=1.7, ok) -> 0, 1.
    np.testing.assert_array_equal(per_query, [[0, 0, 0, 0, 0], [1, 1, 0, 1, 0]])
    np.testing.assert_allclose(np.asarray(per_query)[:, :4].mean(1), [0.0, 0.75])
    np.testing.assert_allclose(jit(metrics.recall_at_k, k=2, distance="euclidean")(e, y), 0.75)


def test_recall_at_k_equals_numpy():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(60, 8)).astype(np.float32)
    y = rng.integers(0, 12, 60)
    valid = rng.random(60) > 0.1
    got = jit(metrics.recall_at_k, k=[1, 2, 4, 8])(np.where(valid[:, None], e, np.nan), y, where=valid)
    np.testing.assert_allclose(got, _np_recall_at_k(e, y, valid, [1, 2, 4, 8]), rtol=1e-6)


def _np_opis(e, y, valid, far, grid, reference="overall", eps=None):
    e = e[valid].astype(np.float64)
    y = y[valid]
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    dist = 1.0 - e @ e.T
    n = len(y)
    neg_unordered = [dist[a, b] for a in range(n) for b in range(a + 1, n) if y[a] != y[b]]
    lo, hi = (np.quantile(neg_unordered, q, method="inverted_cdf") for q in far)
    t = np.linspace(lo, hi, grid)

    def utility(pos, neg):
        tpr = (np.asarray(pos)[:, None] <= t).mean(0)
        tnr = (np.asarray(neg)[:, None] > t).mean(0)
        return np.where(tpr + tnr > 0, 2 * tpr * tnr / np.maximum(tpr + tnr, 1e-300), 0.0)

    curves = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        pos = [dist[a, b] for a in members for b in members if a != b]
        neg = [dist[a, b] for a in members for b in range(n) if y[b] != c]
        if pos and neg:
            curves.append(utility(pos, neg))
    curves = np.asarray(curves)
    all_pos = [dist[a, b] for a in range(n) for b in range(n) if a != b and y[a] == y[b]]
    all_neg = [dist[a, b] for a in range(n) for b in range(n) if y[a] != y[b]]
    ref = utility(all_pos, all_neg) if reference == "overall" else curves.mean(0)
    integral = lambda f: np.trapezoid(f, t) / (hi - lo)  # noqa: E731
    if eps is None:
        return np.mean([integral((u - ref) ** 2) for u in curves])
    m = max(1, math.ceil(eps * len(curves)))
    ordered = np.sort(curves, axis=0)
    return integral((ordered[-m:].mean(0) - ordered[:m].mean(0)) ** 2)


def test_opis_by_hand():
    # Classes A {0, 0.1}, B {1, 1.3}, C {3, 3.5} on a line; thresholds 0.2, 0.3, 0.4; every negative pair is
    # farther than 0.9, so TNR = 1. Positive distances 0.1, 0.3, 0.5 give U_A = [1, 1, 1], U_B = [0, 1, 1],
    # U_C = [0, 0, 0]; pooled TPR = [1/3, 2/3, 2/3] gives U = [0.5, 0.8, 0.8]. Trapezoid weights [1/4, 1/2, 1/4]:
    # gaps A 0.0925, B 0.0925, C 0.5425 -> OPIS = 0.2425; against the mean class utility [1/3, 2/3, 2/3]: 2/9.
    e = jnp.asarray([[0.0], [0.1], [1.0], [1.3], [3.0], [3.5]])
    y = jnp.asarray([0, 0, 1, 1, 2, 2])
    kw = dict(distance="euclidean", distance_range=(0.2, 0.4), num_thresholds=3)
    u = jit(metric_learning.threshold_utilities, **kw)(e, y)
    np.testing.assert_allclose(u.thresholds, [0.2, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(u.class_utility[np.asarray(u.class_valid)], [[1, 1, 1], [0, 1, 1], [0, 0, 0]],
                               atol=1e-6)
    np.testing.assert_allclose(u.overall_utility, [0.5, 0.8, 0.8], rtol=1e-6)
    np.testing.assert_allclose(jit(metrics.opis, **kw)(e, y), 0.2425, rtol=1e-5)
    np.testing.assert_allclose(jit(metrics.opis, reference="mean", **kw)(e, y), 2 / 9, rtol=1e-5)
    # epsilon = 0.5 -> the best/worst 2 of 3 classes: gaps 0.5, 0.5, 0.5 -> 0.25.
    np.testing.assert_allclose(jit(metrics.eps_opis, epsilon=0.5, **kw)(e, y), 0.25, rtol=1e-5)
    # FAR calibration: the 12 negative distances sorted are 0.9 1 1.2 1.3 1.7 2 2.2 2.5 2.9 3 3.4 3.5; FAR 0.1
    # is reached at the ceil(1.2) = 2nd (1.0), FAR 0.5 at the 6th (2.0).
    u = jit(metric_learning.threshold_utilities, distance="euclidean", far_range=(0.1, 0.5), num_thresholds=5)(e, y)
    np.testing.assert_allclose(u.thresholds, [1.0, 1.25, 1.5, 1.75, 2.0], rtol=1e-6)


@pytest.mark.parametrize("reference", ["overall", "mean"])
def test_opis_equals_numpy(reference):
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(6, 4))
    y = rng.integers(0, 6, 50)
    spread = np.linspace(0.2, 1.5, 6)[y][:, None]  # classes of different spreads: inconsistent thresholds
    e = (centers[y] + spread * rng.normal(size=(50, 4))).astype(np.float32)
    valid = rng.random(50) > 0.1
    kw = dict(far_range=(0.05, 0.3), num_thresholds=21)
    got = jit(metrics.opis, reference=reference, **kw)(np.where(valid[:, None], e, np.nan), y, where=valid)
    want = _np_opis(e, y, valid, (0.05, 0.3), 21, reference)
    assert want > 1e-3
    np.testing.assert_allclose(got, want, rtol=1e-4)
    got_eps = jit(metrics.eps_opis, epsilon=0.34, **kw)(e, y, where=valid)
    np.testing.assert_allclose(got_eps, _np_opis(e, y, valid, (0.05, 0.3), 21, eps=0.34), rtol=1e-4)
