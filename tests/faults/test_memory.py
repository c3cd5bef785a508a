"""Fault class: memory. Evaluation holds padded arrays of groups of similar list length, bounded by the run's size,
not [queries, longest list]: a skewed 1M-line run (one query retrieving 500,000 documents beside 1,000 of 500)
evaluates in a fraction of the memory the dense layout took (about 20 GB), with ir-measures' values."""

import json
import subprocess
import sys

import ir_measures
import pytest

from helpers import ROOT

MEASURES = ["nDCG@10", "AP", "R@100", "RR@10"]
_PEAK = """
import resource, sys
from ranking_jax import evaluate
code = evaluate.main(sys.argv[1:])
print("peak_rss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def _skewed(tmp_path, big=500_000, queries=1000, each=500):
    run, qrels = tmp_path / "run.txt", tmp_path / "qrels.txt"
    with run.open("w") as f:
        f.writelines(f"big Q0 d{i} {i + 1} {big - i} t\n" for i in range(big))
        for q in range(queries):
            f.writelines(f"q{q} Q0 d{i} {i + 1} {each - i} t\n" for i in range(each))
    with qrels.open("w") as f:
        f.writelines(f"big 0 d{i} 1\n" for i in range(0, big, 1000))
        f.writelines(f"q{q} 0 d{q % each} 1\nq{q} 0 x{q} 2\n" for q in range(queries))
    return run, qrels


def test_skewed_million_line_run_evaluates_in_bounded_memory(tmp_path):
    run, qrels = _skewed(tmp_path)
    assert sum(1 for _ in run.open()) == 1_000_000
    done = subprocess.run([sys.executable, "-c", _PEAK, "--qrels", str(qrels), "--run", str(run), "--metrics",
                           " ".join(MEASURES)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    peak_gib = int(done.stderr.split("peak_rss_kib")[1].split()[0]) / 2 ** 20
    assert peak_gib < 1.5, f"peak RSS {peak_gib:.2f} GiB"  # the dense [1024, 524288] layout peaked at 19.8 GB
    got = json.loads(done.stdout)
    want = ir_measures.calc_aggregate([ir_measures.parse_measure(m) for m in MEASURES[:3]],
                                      ir_measures.read_trec_qrels(str(qrels)), ir_measures.read_trec_run(str(run)))
    for measure, value in want.items():
        assert got[str(measure)] == pytest.approx(value, abs=1e-6)
    # RR@10 by hand: each small query's relevant d(q % 500) sits at rank q % 500 + 1; big's d0 at rank 1.
    rr = [1.0] + [1 / (q % 500 + 1) if q % 500 < 10 else 0.0 for q in range(1000)]
    assert got["RR@10"] == pytest.approx(sum(rr) / len(rr), abs=1e-6)
