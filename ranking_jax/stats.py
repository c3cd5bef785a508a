"""Significance statistics for comparing two systems: paired t-tests, Holm's adjustment, the minimum detectable
effect and three-way verdicts.

A claim "A beats B" is tested twice (:func:`compare`): over queries (per-query values averaged over each row's
seeds, paired by query) and over seeds (per-seed means paired by seed), so that neither one machine's digits nor a
lucky seed carries it; rows that do not vary with the seed are compared over queries only. Its p-value is the
larger of the two (an intersection-union test: both must reject; Berger 1982), adjusted across a table's claims by Holm's step-down method (Holm 1979). The minimum detectable effect is
the true mean difference a two-sided paired t-test at level alpha detects with the given power (noncentral t;
Cohen 1988); a claim's is the larger of its two tests'. A "not worse" claim is a non-inferiority test: the
differences are shifted by the margin before testing, so it holds only when A is significantly better than
B minus the margin.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence

import numpy as np

__all__ = ["Test", "Comparison", "paired_t", "holm", "mde", "verdict", "compare", "ALPHA", "POWER"]

ALPHA, POWER = 0.05, 0.8


@dataclasses.dataclass(frozen=True)
class Test:
    """A two-sided paired t-test: ``diff`` = mean(a - b) over ``n`` pairs, ``sd`` of the differences, ``t``, ``p``
    (nan when n < 2 or every difference is equal) and ``mde`` (nan when n < 2)."""
    diff: float
    sd: float
    n: int
    t: float
    p: float
    mde: float


def mde(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean difference ``delta`` that a two-sided paired t-test on ``n`` pairs whose differences
    have standard deviation ``sd`` rejects with probability ``power``: solves
    P(|T'| > t_{1-alpha/2, n-1}) = power for T' ~ noncentral t(n - 1, delta sqrt(n) / sd)."""
    from scipy import optimize, stats
    if n < 2 or not np.isfinite(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    df, crit = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)

    def shortfall(effect):  # effect = delta / sd (Cohen's d_z)
        nc = effect * math.sqrt(n)
        lower = np.nan_to_num(stats.nct.cdf(-crit, df, nc))  # about 0; scipy answers nan for large nc
        return stats.nct.sf(crit, df, nc) + lower - power

    high = 1.0
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-12) * sd)


def paired_t(a: Sequence[float], b: Sequence[float], *, shift: float = 0.0) -> Test:
    """The two-sided paired t-test of ``a - b + shift`` against 0 (``diff`` reports it without the shift)."""
    from scipy import stats
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = len(d)
    if n == 0:
        raise ValueError("paired_t: no pairs")
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    if n < 2 or np.allclose(d, d[0], rtol=0, atol=1e-15):
        t = p = float("nan")
    else:
        t = float((d.mean() + shift) / (sd / math.sqrt(n)))
        p = float(2 * stats.t.sf(abs(t), n - 1))
    return Test(float(d.mean()), sd, n, t, p, mde(sd, n))


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: the i-th smallest of m is ``max_{j<=i} min(1, (m - j + 1) p_(j))``.
    NaN p-values (no test) stay NaN and do not count in m."""
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    return [float(x) for x in out]


def verdict(diff: float, p_adjusted: float, higher_is_better: bool, *, margin: float = 0.0,
            alpha: float = ALPHA) -> str:
    """``holds`` (adjusted p < alpha, the claimed direction), ``reversed`` (adjusted p < alpha, the other one) or
    ``inconclusive``. ``diff`` is mean(better - worse); a non-inferiority claim passes its ``margin``."""
    if not p_adjusted < alpha:
        return "inconclusive"
    gain = (diff if higher_is_better else -diff) + margin
    return "holds" if gain > 0 else "reversed"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A claim's tests and what decides it: ``p`` = max of the tests' p, ``mde`` = max of their MDEs (in the
    metric's units, before the margin). ``by_seed`` is None when neither row varies with the seed (e.g. a first
    stage against a fixed teacher): then the queries alone carry the claim."""
    diff: float
    by_query: Optional[Test]
    by_seed: Optional[Test]
    p: float
    mde: float


def _seed_pairs(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[list[float], list[float]]:
    """Per-seed values paired by seed; a row run at one seed only (a deterministic baseline) pairs with every seed
    of the other."""
    if len(a) == 1 or len(b) == 1:
        (one, other, swap) = (a, b, False) if len(a) == 1 else (b, a, True)
        value = next(iter(one.values()))
        xs, ys = [value] * len(other), list(other.values())
        return (ys, xs) if swap else (xs, ys)
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


def compare(seeds_a: Mapping[int, float], seeds_b: Mapping[int, float], queries_a: Optional[Mapping[str, float]] = None,
            queries_b: Optional[Mapping[str, float]] = None, *, higher_is_better: bool = True,
            margin: float = 0.0) -> Comparison:
    """Tests "A is better than B" (or not worse by more than ``margin``) from per-seed means ``{seed: value}`` and,
    when given, seed-averaged per-query values ``{query: value}`` (both rows must hold the same queries)."""
    sign = 1.0 if higher_is_better else -1.0
    shift = sign * margin
    fixed = len(set(seeds_a.values())) == 1 and len(set(seeds_b.values())) == 1
    by_seed = None if fixed and queries_a is not None else paired_t(*_seed_pairs(seeds_a, seeds_b), shift=shift)
    by_query = None
    if queries_a is not None:
        if queries_a.keys() != queries_b.keys():
            only = sorted(queries_a.keys() ^ queries_b.keys())
            raise ValueError(f"the rows hold different queries ({len(only)} in one only, e.g. {only[:3]})")
        keys = sorted(queries_a)
        by_query = paired_t([queries_a[k] for k in keys], [queries_b[k] for k in keys], shift=shift)
    tests = [t for t in (by_query, by_seed) if t is not None]
    p = max(t.p for t in tests)  # nan if any is nan
    if any(math.isnan(t.p) for t in tests):
        p = float("nan")
    diff = by_query.diff if by_query is not None else by_seed.diff
    return Comparison(diff, by_query, by_seed, p, max(t.mde for t in tests))
