"""ranking_jax.metrics.correlation: Kendall tau per list against ``scipy.stats.kendalltau`` (ties, masks, constant
labels and all-masked lists left out, masked NaN ignored)."""

import numpy as np
import scipy.stats

import ranking_jax.metrics as metrics


def test_kendall_tau_equals_scipy():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, (40, 10)).astype(np.float32)
    y = rng.integers(0, 3, (40, 10)).astype(np.float32)
    where = rng.random((40, 10)) > 0.2
    y[0] = 1.0  # constant labels: tau undefined
    where[1] = False  # all masked
    got = np.asarray(metrics.kendall_tau(s, y, where=where, reduce_fn=None))
    want = []
    for i in range(40):
        if where[i].sum() < 2:
            want.append(np.nan)
            continue
        want.append(scipy.stats.kendalltau(s[i][where[i]], y[i][where[i]]).statistic)
    want = np.asarray(want)
    defined = ~np.isnan(want)
    assert not defined[0] and not defined[1] and defined.sum() > 30
    np.testing.assert_allclose(got[defined], want[defined], rtol=1e-5, atol=1e-6)
    assert np.all(got[~defined] == 0)
    np.testing.assert_allclose(metrics.kendall_tau(s, y, where=where), want[defined].mean(), rtol=1e-5)
    garbage = np.where(where, s, np.nan)
    np.testing.assert_allclose(metrics.kendall_tau(garbage, y, where=where), want[defined].mean(), rtol=1e-5)
