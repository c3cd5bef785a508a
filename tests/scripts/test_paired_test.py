"""scripts/paired_test.py: two per-query files against scipy's paired t-test; mismatched query sets refused."""

import json

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower

from helpers import ROOT
from ranking_jax import main

paired = main.load_module(ROOT / "scripts" / "paired_test.py")


def _write(path, values):
    path.write_text(json.dumps({f"q{i}": {"nDCG@10": v, "RR@10": 1.0} for i, v in enumerate(values)}))
    return str(path)


def test_matches_scipy(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=30), rng.uniform(size=30)
    out = paired.main([_write(tmp_path / "a.json", a), _write(tmp_path / "b.json", b)])
    t, p = stats.ttest_rel(a, b)
    assert out["queries"] == 30 and out["diff"] == pytest.approx(float(np.mean(a - b)))
    assert out["t"] == pytest.approx(t) and out["p"] == pytest.approx(p)
    d = a - b  # the minimum detectable difference, from statsmodels' power solver
    assert out["mde"] == pytest.approx(TTestPower().solve_power(nobs=30, alpha=0.05, power=0.8) * d.std(ddof=1),
                                       rel=1e-6)
    assert json.loads(capsys.readouterr().out)["p"] == pytest.approx(p)


def test_refuses_other_queries_and_unknown_measure(tmp_path):
    a = _write(tmp_path / "a.json", [0.1, 0.2, 0.3])
    with pytest.raises(SystemExit, match="different queries"):
        paired.main([a, _write(tmp_path / "b.json", [0.1, 0.2])])
    with pytest.raises(SystemExit, match="'MAP' is not in both"):
        paired.main([a, a, "--measure", "MAP"])
