"""ranking_jax.stats against statsmodels (Holm's adjustment, the power of a paired t-test) and scipy (paired and
one-sample t-tests); verdicts and the two-test comparison by hand."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from ranking_jax import stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_holm_equals_statsmodels(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.2, size=12) ** 2
    p[3] = p[7]  # a tie
    want = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(stats.holm(p), want, rtol=1e-12)
    with_nan = np.insert(p, 5, np.nan)
    got = stats.holm(with_nan)
    assert math.isnan(got[5]) and np.allclose(np.delete(got, 5), want, rtol=1e-12)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # hand: 3 x .01, max(2 x .03, .03)


@pytest.mark.parametrize("n, sd", [(3, 0.02), (10, 0.1), (43, 0.25), (300, 0.3)])
def test_mde_equals_statsmodels_power(n, sd):
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
    assert stats.mde(sd, n) == pytest.approx(effect * sd, rel=1e-6)
    # and the power at that difference is 0.8
    assert TTestPower().power(effect_size=stats.mde(sd, n) / sd, nobs=n, alpha=0.05) == pytest.approx(0.8, abs=1e-6)
    assert math.isnan(stats.mde(sd, 1)) and stats.mde(0.0, 5) == 0.0


def test_paired_t_equals_scipy_and_shift_is_a_one_sample_test():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.5, 0.1, 40), rng.normal(0.48, 0.1, 40)
    test = stats.paired_t(a, b)
    want = scipy_stats.ttest_rel(a, b)
    assert test.t == pytest.approx(want.statistic, rel=1e-12) and test.p == pytest.approx(want.pvalue, rel=1e-10)
    assert test.diff == pytest.approx(np.mean(a - b)) and test.n == 40
    shifted = stats.paired_t(a, b, shift=0.03)
    want = scipy_stats.ttest_1samp(a - b, -0.03)
    assert shifted.p == pytest.approx(want.pvalue, rel=1e-10) and shifted.diff == test.diff
    assert math.isnan(stats.paired_t([1.0, 2.0], [0.5, 1.5]).p)  # constant differences: no test
    with pytest.raises(ValueError, match="no pairs"):
        stats.paired_t([], [])


@pytest.mark.parametrize("diff, p, hib, margin, expected", [
    (0.1, 0.01, True, 0.0, "holds"),
    (0.1, 0.2, True, 0.0, "inconclusive"),
    (-0.1, 0.01, True, 0.0, "reversed"),
    (-0.1, 0.01, False, 0.0, "holds"),  # lower is better
    (-0.01, 0.01, True, 0.02, "holds"),  # not worse by more than 0.02
    (-0.05, 0.01, True, 0.02, "reversed"),  # worse by more than the margin
    (0.0, float("nan"), True, 0.0, "inconclusive"),
])
def test_verdicts(diff, p, hib, margin, expected):
    assert stats.verdict(diff, p, hib, margin=margin) == expected


def test_compare_takes_the_larger_p_and_mde_of_the_query_and_seed_tests():
    rng = np.random.default_rng(4)
    qa = {f"q{i}": v for i, v in enumerate(rng.uniform(0.3, 0.9, 200))}
    qb = {q: v - 0.05 + rng.normal(0, 0.1) for q, v in qa.items()}
    seeds_a, seeds_b = {0: 0.61, 1: 0.64, 2: 0.60}, {0: 0.58, 1: 0.57, 2: 0.59}
    c = stats.compare(seeds_a, seeds_b, qa, qb)
    by_query = scipy_stats.ttest_rel(list(qa.values()), list(qb.values()))
    by_seed = scipy_stats.ttest_rel([0.61, 0.64, 0.60], [0.58, 0.57, 0.59])
    assert c.by_query.p == pytest.approx(by_query.pvalue) and c.by_seed.p == pytest.approx(by_seed.pvalue)
    assert c.p == pytest.approx(max(by_query.pvalue, by_seed.pvalue))
    assert c.mde == max(c.by_query.mde, c.by_seed.mde) == c.by_seed.mde  # 3 seeds detect less than 200 queries
    # a one-seed (deterministic) row pairs with every seed of the other: a one-sample test
    one = stats.compare(seeds_a, {0: 0.55})
    assert one.p == pytest.approx(scipy_stats.ttest_1samp([0.61, 0.64, 0.60], 0.55).pvalue)
    # lower is better with a margin: a - b - margin tested against 0
    lower = stats.compare({0: 0.30, 1: 0.31, 2: 0.33}, {0: 0.30, 1: 0.30, 2: 0.31}, higher_is_better=False,
                          margin=0.05)
    assert lower.p == pytest.approx(scipy_stats.ttest_1samp([0.0, 0.01, 0.02], 0.05).pvalue)
    with pytest.raises(ValueError, match="different queries"):
        stats.compare(seeds_a, seeds_b, qa, {"x": 1.0})


def test_rows_fixed_across_seeds_are_compared_over_queries_only():
    """A first stage against a fixed teacher: neither varies with the seed, so the seed test (constant
    differences, no variance) is skipped and the per-query test decides."""
    rng = np.random.default_rng(5)
    qa = {f"q{i}": v for i, v in enumerate(rng.uniform(0.3, 0.9, 50))}
    qb = {q: v - 0.03 + rng.normal(0, 0.05) for q, v in qa.items()}
    c = stats.compare({0: 0.6, 1: 0.6, 2: 0.6}, {0: 0.57, 1: 0.57, 2: 0.57}, qa, qb)
    assert c.by_seed is None and c.p == c.by_query.p == pytest.approx(
        scipy_stats.ttest_rel(list(qa.values()), list(qb.values())).pvalue)
    varying = stats.compare({0: 0.6, 1: 0.61, 2: 0.6}, {0: 0.57, 1: 0.57, 2: 0.57}, qa, qb)
    assert varying.by_seed is not None and varying.p >= varying.by_query.p
