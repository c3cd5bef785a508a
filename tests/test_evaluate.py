"""``python -m ranking_jax.evaluate``: TREC qrels/run files (written and read by ranking_jax.data.formats) evaluated
by the CLI against ir-measures over pytrec_eval on the same files and against ranking_jax.metrics.trec; per-query
output. Malformed and non-UTF-8 lines (named by file and line, exit status 2): tests/faults/test_bad_input_files.py."""

import json
import subprocess
import sys

import ir_measures
import numpy as np
import pytest

from helpers import ROOT, random_trec_case
from ranking_jax import evaluate as cli
from ranking_jax.data import formats
from ranking_jax.metrics import trec


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _write_qrels(path, qrels):
    return _write(path, [f"{q} 0 {d} {r}" for q, docs in qrels.items() for d, r in docs.items()])


def test_files_round_trip_and_cli(tmp_path, capsys):
    qrels, run = random_trec_case(7)
    qrels_path = _write_qrels(tmp_path / "qrels.txt", qrels)
    run_path = tmp_path / "run.txt"
    assert formats.write_run(run_path, run, tag="test") == run_path
    assert formats.read_qrels(qrels_path) == qrels
    assert formats.read_run(run_path) == run
    lines = [line.split() for line in run_path.read_text().splitlines() if line.startswith("q0 ")]
    ranked = [(-run["q0"][d], d) for _, _, d, _, _, _ in lines]
    # File order is trec_eval's: score descending, then doc id descending; ranks 1..n.
    assert all((a[0], b[1]) <= (b[0], a[1]) for a, b in zip(ranked, ranked[1:]))
    assert [int(fields[3]) for fields in lines] == list(range(1, len(lines) + 1))

    assert cli.main(["--qrels", str(qrels_path), "--run", str(run_path), "--metrics", "nDCG@10 RR@10 AP R@20 P@5"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == pytest.approx(trec.evaluate(qrels, run, "nDCG@10 RR@10 AP R@20 P@5"))
    assert "2 judged queries absent from the run count as 0" in err and "2 run queries without judgments" in err
    want = ir_measures.calc_aggregate([ir_measures.parse_measure(n) for n in ("nDCG@10", "AP", "R@20", "P@5")],
                                      ir_measures.read_trec_qrels(str(qrels_path)),
                                      ir_measures.read_trec_run(str(run_path)))
    for m, v in want.items():
        assert json.loads(out)[str(m)] == pytest.approx(v, abs=1e-6)

    assert cli.main(["--qrels", str(qrels_path), "--run", str(run_path), "--metrics", "P@5,AP", "--per-query"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(result) == ["mean", "per_query"] and sorted(result["per_query"]) == sorted(qrels)
    assert result["mean"]["AP"] == pytest.approx(np.mean([v["AP"] for v in result["per_query"].values()]))


def test_module_entry_point(tmp_path):
    qrels_path = _write(tmp_path / "q.txt", ["1 0 a 1", "1 0 b 0"])
    run_path = _write(tmp_path / "r.txt", ["1 Q0 b 1 2.0 t", "1 Q0 a 2 1.0 t"])
    proc = subprocess.run([sys.executable, "-m", "ranking_jax.evaluate", "--qrels", str(qrels_path), "--run",
                           str(run_path), "--metrics", "RR P@1"], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    assert json.loads(proc.stdout) == {"RR": 0.5, "P@1": 0.0}


def test_cli_prints_float32_values_without_noise(tmp_path, capsys):
    """One relevant document of five retrieved: P@5 = 0.2 printed as 0.2 (float32's shortest decimal), and the
    per-query value reads back as the float32 the metric computed."""
    (tmp_path / "q.txt").write_text("q1 0 d1 1\n")
    (tmp_path / "r.txt").write_text("".join(f"q1 Q0 d{i} {i} {10 - i} t\n" for i in range(1, 6)))
    assert cli.main(["--qrels", str(tmp_path / "q.txt"), "--run", str(tmp_path / "r.txt"), "--metrics", "P@5",
                     "--per-query"]) == 0
    out = capsys.readouterr().out
    assert '"P@5": 0.2' in out and "0.2000000" not in out
    assert json.loads(out)["per_query"]["q1"]["P@5"] == 0.2 and np.float32(0.2) == np.float32(0.2000000029802)
