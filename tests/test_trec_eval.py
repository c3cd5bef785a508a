"""ranking_jax.metrics.trec and ``python -m ranking_jax.evaluate`` against ir-measures over pytrec_eval
(trec_eval semantics, ties included) on random TREC qrels/run files (read and written by ranking_jax.data.formats)."""

import json
import pathlib
import subprocess
import sys

import ir_measures
import numpy as np
import pytest

from ranking_jax import evaluate as cli
from ranking_jax.data import formats
from ranking_jax.metrics import trec

MEASURES = ["nDCG", "nDCG@5", "nDCG@10", "AP", "AP@5", "P@5", "P@10", "R@5", "R@20", "RR", "P(rel=2)@5",
            "AP(rel=2)", "RR(rel=2)"]


def _random_case(seed):
    """Qrels/run with tied scores, negative and all-zero judgments, judged queries absent from the run and run
    queries without judgments; doc ids of mixed length and case so that string order matters."""
    rng = np.random.default_rng(seed)
    pool = [f"d{i}" for i in range(40)] + [f"D{i:03d}" for i in range(20)] + ["x", "x1", "x10", "y2"]
    qrels, run = {}, {}
    for q in range(14):
        qid = f"q{q}"
        judged = rng.choice(pool, size=rng.integers(1, 18), replace=False)
        rels = rng.choice([-1, 0, 0, 0, 1, 1, 2, 3], size=len(judged))
        if q == 3:
            rels[:] = 0
        qrels[qid] = {d: int(r) for d, r in zip(judged, rels)}
    for q in list(range(12)) + [20, 21]:  # q12, q13 judged but not run; q20, q21 run but not judged
        qid = f"q{q}"
        docs = rng.choice(pool, size=rng.integers(1, 40), replace=False)
        run[qid] = {d: float(np.round(rng.normal(), 1)) for d in docs}  # one decimal: many ties
    return qrels, run


def _oracle(qrels, run, names):
    """Per-query values from ir-measures (pytrec_eval provider); RR@k = RR if RR >= 1/k else 0 (trec order)."""
    measures = [ir_measures.parse_measure(n) for n in names]
    out = {q: {} for q in qrels}
    for m in ir_measures.iter_calc(measures, qrels, run):
        out[m.query_id][str(m.measure)] = m.value
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_equals_ir_measures(seed):
    qrels, run = _random_case(seed)
    ties = sum(len(v) - len(set(v.values())) for v in run.values())
    assert ties > 20
    got = trec.evaluate_per_query(qrels, run, MEASURES + ["RR@3", "RR@10"])
    want = _oracle(qrels, run, MEASURES)
    assert sorted(got) == sorted(want) == sorted(qrels)
    for qid in qrels:
        for name in MEASURES:
            assert got[qid][name] == pytest.approx(want[qid][name], abs=1e-6), (qid, name)
        for k in (3, 10):
            rr = want[qid]["RR"]
            assert got[qid][f"RR@{k}"] == pytest.approx(rr if rr >= 1 / k - 1e-9 else 0.0, abs=1e-6)
    means = trec.evaluate(qrels, run, MEASURES)
    want_means = ir_measures.calc_aggregate([ir_measures.parse_measure(n) for n in MEASURES], qrels, run)
    for m, v in want_means.items():
        assert means[str(m)] == pytest.approx(v, abs=1e-6)
    assert got["q12"]["AP"] == 0.0 and "q20" not in got


def test_ties_break_by_docno_descending():
    qrels = {"q": {"d5": 1}}
    run = {"q": {f"d{i}": 1.0 for i in range(1, 6)}}
    assert trec.evaluate(qrels, run, "RR RR@10")["RR"] == 1.0
    assert trec.evaluate({"q": {"d1": 1}}, run, "RR")["RR"] == pytest.approx(0.2)
    # ir-measures routes RR@k to its msmarco provider, which breaks ties by doc id ascending instead.
    msmarco = ir_measures.calc_aggregate([ir_measures.parse_measure("RR@10")], qrels, run)
    assert list(msmarco.values()) == [pytest.approx(0.2)]
    assert trec.evaluate(qrels, run, "RR@10")["RR@10"] == 1.0


def test_evaluation_order_is_the_run_file_order(tmp_path):
    """trec's ranking (kept private so that evaluation imports nothing from data) equals formats.ranked, which
    fixes the order of the run files; both are trec_eval's."""
    _, run = _random_case(3)
    for docs in run.values():
        assert trec._trec_order(docs) == formats.ranked(docs)
    assert formats.ranked({"d1": 1.0, "d10": 1.0, "D2": 1.0, "d2": 2.0, "x": -1.0}) == ["d2", "d10", "d1", "D2", "x"]


def test_rr_at_k_equals_ir_measures_without_ties():
    qrels, run = _random_case(5)
    run = {q: {d: s + 1e-3 * i for i, (d, s) in enumerate(docs.items())} for q, docs in run.items()}
    names = ["RR@3", "RR@10", "RR(rel=2)@5"]
    got = trec.evaluate(qrels, run, names)
    want = ir_measures.calc_aggregate([ir_measures.parse_measure(n) for n in names], qrels, run)
    for m, v in want.items():
        assert got[str(m)] == pytest.approx(v, abs=1e-6)


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _write_qrels(path, qrels):
    return _write(path, [f"{q} 0 {d} {r}" for q, docs in qrels.items() for d, r in docs.items()])


def test_files_round_trip_and_cli(tmp_path, capsys):
    qrels, run = _random_case(7)
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
                          cwd=pathlib.Path(__file__).parents[1])
    assert json.loads(proc.stdout) == {"RR": 0.5, "P@1": 0.0}


@pytest.mark.parametrize("kind, lines, line, message", [
    ("qrels", ["q1 0 d1 1", "q1 0 d2 1 extra"], 2, "qrels"),
    ("qrels", ["q1 0 d1 1", "q1 0 d2 1", "q1 0 d3 high"], 3, "integer relevance"),
    ("qrels", ["q1 0 d1 1", "q1 0 d1 2"], 2, "already judged at line 1"),
    ("qrels", ["q1 0 d1 1.0", "q1 0 d2 1"], 1, "integer relevance"),
    ("run", ["q1 Q0 d1 1 0.5 t", "q1 Q0 d2 2 0.4"], 2, "'qid Q0 docid rank score tag'"),
    ("run", ["q1 Q0 d1 1 abc t"], 1, "numeric score"),
    ("run", ["q1 Q0 d1 1 nan t"], 1, "not NaN"),
    ("run", ["q1 Q0 d1 1 0.5 t", "", "q1 Q0 d1 2 0.4 t"], 3, "already listed at line 1"),
])
def test_malformed_lines_name_file_and_line(tmp_path, capsys, kind, lines, line, message):
    path = _write(tmp_path / f"{kind}.txt", lines)
    reader = formats.read_qrels if kind == "qrels" else formats.read_run
    with pytest.raises(ValueError, match=message) as info:
        reader(path)
    assert f"{path}:{line}:" in str(info.value)
    other = _write(tmp_path / "other.txt", ["q1 Q0 d1 1 0.5 t"] if kind == "qrels" else ["q1 0 d1 1"])
    args = ["--qrels", str(path), "--run", str(other)] if kind == "qrels" else ["--qrels", str(other), "--run",
                                                                                str(path)]
    assert cli.main(args) == 2
    assert f"{path}:{line}:" in capsys.readouterr().err


@pytest.mark.parametrize("spec, message", [("nDCG(rel=2)@5", "unsupported parameter"), ("P", "needs a cut-off"),
                                           ("Foo@3", "unknown measure"), ("P@0", ">= 1"), ("", "no measures")])
def test_bad_measures(spec, message):
    with pytest.raises(ValueError, match=message):
        trec.parse_measures(spec)


def test_measure_names_are_canonical():
    assert [str(m) for m in trec.parse_measures("NDCG@10, MRR@10 MAP Precision@5 Recall@100 P(rel=2)@5")] == [
        "nDCG@10", "RR@10", "AP", "P@5", "R@100", "P(rel=2)@5"]
