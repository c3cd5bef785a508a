"""scripts/reproduce.py with ranking_jax.report: a three-row table end to end (per-seed values from the runs' summaries;
the claims' query and seed tests, Holm-adjusted p, MDE and verdicts recomputed with scipy and statsmodels from the
per-query files; NAME.json; reuse), and the tables' hand-written notes files (rendered per scale, free of measured
results)."""

import json
import re

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from helpers import ROOT, metric_rows, write_svmlight
from ranking_jax import main, report

reproduce = main.load_module(ROOT / "scripts" / "reproduce.py")


TABLE = '''
import types

def get_table(scale="small"):
    rows = {{name: {{"config": "configs/ltr_mlp.py:runlocal",
                     "overrides": {{"loss": loss, "data.manual_dir": "{data}", "data.letor_config": "custom",
                                    "train.num_steps": 20, "evals.measures": "nDCG@5 nDCG@10"}}}}
             for name, loss in (("softmax", "losses.softmax_loss"), ("ranknet", "losses.pairwise_logistic_loss"))}}
    rows["short"] = dict(rows["softmax"], seeds=[1])
    rows["short"]["overrides"] = dict(rows["softmax"]["overrides"], **{{"train.num_steps": 5}})
    rows["random"] = {{"baseline_of": "softmax", "baseline": "random"}}
    rows["oracle"] = {{"baseline_of": "softmax", "baseline": "oracle"}}
    return types.SimpleNamespace(
        title="test table", paper="| a | b |", notes_values={{"steps": 20}}, seeds=[0, 1], rows=rows,
        columns=[("nDCG@10", "rerank/nDCG@10", True), ("nDCG@5", "rerank/nDCG@5", True)],
        paired="query:rerank.run", diagnostics=[("train loss", "loss"), ("missing", "no_such_scalar")],
        baselines=["short"], published={{"softmax": {{"nDCG@10": 0.5}}}},
        claims=[{{"text": "softmax beats ranknet", "better": "softmax", "worse": "ranknet", "column": "nDCG@10",
                  "effect": 0.01}},
                {{"text": "ranknet not worse than softmax", "better": "ranknet", "worse": "softmax",
                  "column": "nDCG@10", "kind": "not_worse", "margin": 0.02}},
                {{"text": "softmax beats short", "better": "softmax", "worse": "short", "column": "nDCG@5",
                  "paired": "seed"}},
                {{"text": "oracle beats random", "better": "oracle", "worse": "random", "column": "nDCG@10"}}])
'''
NOTES = "notes here, {steps} steps\n\n## small\n\nsmall-scale notes\n\n## full\n\nfull-scale notes\n"


def test_table_end_to_end(tmp_path, capsys):
    data = write_svmlight(tmp_path / "letor", queries=10, docs=12, features=5)
    table_file = tmp_path / "mini.py"
    table_file.write_text(TABLE.format(data=data))
    (tmp_path / "mini.notes.md").write_text(NOTES)  # a table file's notes sit beside it
    args = ["--table", str(table_file), "--workdir", str(tmp_path / "runs"), "--out", str(tmp_path / "tables")]
    assert reproduce.main(args) == 0
    md = (tmp_path / "tables" / "mini.md").read_text()
    assert (tmp_path / "tables" / "mini.png").stat().st_size > 0
    assert md.endswith("\nnotes here, 20 steps\n\nsmall-scale notes\n") and "full-scale" not in md

    runs = tmp_path / "runs" / "mini" / "small"
    per_seed = {(row, s): json.loads((runs / row / f"seed-{s}" / "summary.json").read_text())["eval_after"]
                for row in ("softmax", "ranknet") for s in (0, 1)}
    for row in ("softmax", "ranknet"):
        v = np.array([per_seed[row, s]["rerank/nDCG@10"] for s in (0, 1)])
        assert f"| {row} | {v.mean():.4f} ± {v.std(ddof=1):.4f} |" in md
        assert f"| {row} | {v[0]:.4f} | {v[1]:.4f} |" in md

    def per_query(row):  # mean over the seeds of each query's nDCG@10, read from the evaluator's files
        files = [json.loads((runs / row / f"seed-{s}" / "rerank.run.per_query.json").read_text()) for s in (0, 1)]
        for s, f in zip((0, 1), files):  # the files agree with the run's reported mean
            assert np.mean([m["nDCG@10"] for m in f.values()]) == pytest.approx(per_seed[row, s]["rerank/nDCG@10"],
                                                                              abs=1e-6)
        return np.array([np.mean([f[q]["nDCG@10"] for f in files]) for q in sorted(files[0])])

    a, b = per_query("softmax"), per_query("ranknet")
    assert len(a) == 10
    out = json.loads((tmp_path / "tables" / "mini.json").read_text())
    assert out["rows"]["softmax"]["nDCG@10"]["per_seed"] == {str(s): per_seed["softmax", s]["rerank/nDCG@10"]
                                                             for s in (0, 1)}
    claims = {c["claim"]: c for c in out["claims"]}
    # the oracle: scipy's paired t-tests over queries and over seeds, statsmodels' Holm and power solver
    seed_a = [per_seed["softmax", s]["rerank/nDCG@10"] for s in (0, 1)]
    seed_b = [per_seed["ranknet", s]["rerank/nDCG@10"] for s in (0, 1)]
    beats = claims["softmax beats ranknet"]
    assert beats["p_query"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert beats["p_seed"] == pytest.approx(stats.ttest_rel(seed_a, seed_b).pvalue, rel=1e-9)
    assert beats["p"] == max(beats["p_query"], beats["p_seed"]) and beats["diff"] == pytest.approx(np.mean(a - b))
    assert (beats["n_queries"], beats["n_seeds"], beats["effect"]) == (10, 2, 0.01)
    power = TTestPower()
    assert beats["mde"] == pytest.approx(max(
        power.solve_power(nobs=10, alpha=0.05, power=0.8) * np.std(a - b, ddof=1),
        power.solve_power(nobs=2, alpha=0.05, power=0.8) * np.std(np.subtract(seed_a, seed_b), ddof=1)), rel=1e-6)
    # non-inferiority: ranknet - softmax + 0.02 tested against 0
    worse = claims["ranknet not worse than softmax"]
    assert worse["p_query"] == pytest.approx(stats.ttest_1samp(b - a, -0.02).pvalue, rel=1e-9)
    # a row run at one seed (short) pairs with both seeds of the other: a one-sample test
    short5 = json.loads((runs / "short" / "seed-1" / "summary.json").read_text())["eval_after"]["rerank/nDCG@5"]
    vs_short = claims["softmax beats short"]
    assert vs_short["p_query"] is None and vs_short["n_seeds"] == 2
    assert vs_short["p"] == pytest.approx(stats.ttest_1samp(
        [per_seed["softmax", s]["rerank/nDCG@5"] for s in (0, 1)], short5).pvalue, rel=1e-9)
    # rows read from softmax's runs' baselines: their values and per-query files (random.run, oracle.run)
    for kind in ("random", "oracle"):
        summaries = [json.loads((runs / "softmax" / f"seed-{s}" / "summary.json").read_text()) for s in (0, 1)]
        assert out["rows"][kind]["nDCG@10"]["per_seed"] == {str(s): summaries[s]["baselines"][kind]["nDCG@10"]
                                                            for s in (0, 1)}
    oracle, random_ = (np.array([np.mean([json.loads((runs / "softmax" / f"seed-{s}" / f"{k}.run.per_query.json")
                                                     .read_text())[q]["nDCG@10"] for s in (0, 1)])
                                 for q in sorted(json.loads((runs / "softmax" / "seed-0" / "rerank.run.per_query.json")
                                                            .read_text()))]) for k in ("oracle", "random"))
    assert (oracle == 1.0).all() or oracle.mean() > random_.mean()  # the oracle orders every list by its labels
    assert claims["oracle beats random"]["p_query"] == pytest.approx(stats.ttest_rel(oracle, random_).pvalue, rel=1e-9)
    assert "| *oracle* (baseline) |" in md and out["baselines"] == ["short", "random", "oracle"]
    ps = [claims[c]["p"] for c in ("softmax beats ranknet", "ranknet not worse than softmax", "softmax beats short",
                                   "oracle beats random")]
    finite = [i for i, p in enumerate(ps) if np.isfinite(p)]
    holm = multipletests([ps[i] for i in finite], method="holm")[1]
    for i, adjusted in zip(finite, holm):
        c = out["claims"][i]
        assert c["p_holm"] == pytest.approx(adjusted, rel=1e-9)
        gain = c["diff"] + c["margin"]
        assert c["verdict"] == ("inconclusive" if adjusted >= 0.05 else "holds" if gain > 0 else "reversed")
    line = next(line for line in md.splitlines() if line.startswith("| softmax beats ranknet |"))
    assert f"| {report._fmt(beats['p_holm'])} | {report._fmt(beats['mde'])} | 0.0100 | 10 × 2 | " in line
    assert f"**{beats['verdict']}**" in line
    # a row with its own seeds: run once, "—" for the other seed; marked as a baseline
    short = json.loads((runs / "short" / "seed-1" / "summary.json").read_text())["eval_after"]["rerank/nDCG@10"]
    assert not (runs / "short" / "seed-0").exists()
    assert f"| short | — | {short:.4f} |" in md and "| *short* (baseline) |" in md

    # diagnostics: the median (min–max) of the logged train loss over both seeds' steps
    losses = np.array([r["loss"] for s in (0, 1) for r in metric_rows(runs / "softmax" / f"seed-{s}", "train")])
    assert len(losses) == 40
    assert (f"| softmax | {report._fmt(np.median(losses))} ({report._fmt(losses.min())}–"
            f"{report._fmt(losses.max())}) | — |") in md

    capsys.readouterr()
    assert reproduce.main(args) == 0  # a second invocation reuses all five runs
    assert capsys.readouterr().out.count("(reused)") == 5
    assert "0 of 5 runs executed" in (tmp_path / "tables" / "mini.md").read_text()


def test_bad_table_name_lists_tables():
    with pytest.raises(SystemExit, match="tables: .*listwise.*madpo.*tcm"):
        reproduce.load_table("no_such_table")


@pytest.mark.parametrize("scale", ["small", "full"])
def test_declared_tables_resolve(tmp_path, scale):
    """Every declared row of the committed tables builds a locked config with its overrides applied ("{ROW}"
    placeholders become that row's workdir); a baseline row reads a row that runs."""
    import re
    names = sorted(p.stem for p in (reproduce.ROOT / "configs" / "tables").glob("*.py"))
    assert names == ["listwise", "madpo", "margin_mse", "tcm", "tram"]
    for name in names:
        table = reproduce.load_table(name).get_table(scale)
        workdirs = {r: {s: tmp_path / r / str(s) for s in reproduce.row_seeds(table, r)} for r in table.rows}
        rows = list(table.rows)
        for row, spec in table.rows.items():
            if "baseline_of" in spec:  # read from another row's runs
                assert "config" not in spec and "config" in table.rows[spec["baseline_of"]], (name, row)
                continue
            seed = reproduce.row_seeds(table, row)[-1]
            names_ = reproduce.placeholders(workdirs, seed)
            config = reproduce.resolve(table, row, seed, names_)
            assert config.seed == seed
            for key, value in spec.get("overrides", {}).items():
                node = config
                for part in key.split("."):
                    node = node[part]
                if isinstance(value, str) and "{" in value:
                    for source in re.findall(r"{([^}]+)}", value):
                        assert rows.index(source.split("@")[0]) < rows.index(row)  # read from a row run before
                    value = value.format_map(names_)
                assert node == value, (name, row, key)
        labels = {label for label, _, _ in table.columns}
        assert all(c["better"] in table.rows and c["worse"] in table.rows and c["column"] in labels
                   for c in table.claims)


def test_row_seeds_and_seed_placeholders(tmp_path):
    import types
    spec = {"config": "configs/ltr_mlp.py"}
    table = types.SimpleNamespace(seeds=[0, 1], rows={
        "a": dict(spec, seeds=[0]), "b": dict(spec, overrides={"data.manual_dir": "{a@0}/m"}),
        "c": dict(spec, overrides={"data.manual_dir": "{a}"})})
    workdirs = {r: {s: tmp_path / r / str(s) for s in reproduce.row_seeds(table, r)} for r in table.rows}
    assert sorted(workdirs["a"]) == [0] and sorted(workdirs["b"]) == [0, 1]
    resolved = lambda row, seed: reproduce.resolve(table, row, seed, reproduce.placeholders(workdirs, seed))
    assert resolved("b", 1).data.manual_dir == f"{tmp_path}/a/0/m"
    assert resolved("c", 0).data.manual_dir == f"{tmp_path}/a/0"
    with pytest.raises(SystemExit, match=r"row 'c' at seed 1: placeholder \{a\} names no run"):
        resolved("c", 1)
    table.rows["a"]["seeds"] = [2]
    with pytest.raises(SystemExit, match=r"row 'a': seeds \[2\] must be a non-empty subset"):
        reproduce.row_seeds(table, "a")


def test_cell_order_is_seed_major_with_named_runs_first(tmp_path):
    import types
    spec = {"config": "configs/ltr_mlp.py"}
    table = types.SimpleNamespace(seeds=[0, 1], rows={
        "a": dict(spec, seeds=[0]), "b": dict(spec, overrides={"data.manual_dir": "{a@0}/m"}),
        "c": dict(spec, overrides={"init": "{e@1}", "data.manual_dir": "{b}"}), "e": dict(spec, seeds=[1])})
    workdirs = {r: {s: tmp_path / r / str(s) for s in reproduce.row_seeds(table, r)} for r in table.rows}
    assert reproduce.cell_order(table, workdirs) == [("a", 0), ("b", 0), ("e", 1), ("c", 0), ("b", 1), ("c", 1)]
    table.rows["e"]["overrides"] = {"init": "{c@0}"}
    with pytest.raises(SystemExit, match="table run c at seed 0 needs itself"):
        reproduce.cell_order(table, workdirs)


def test_misspelled_override_names_row_and_key():
    import types
    table = types.SimpleNamespace(rows={"x": {"config": "configs/ltr_mlp.py", "overrides": {"data.manul_dir": "a"}}})
    with pytest.raises(SystemExit, match=r"table row 'x': override data.manul_dir='a'.*manual_dir"):
        reproduce.resolve(table, "x", 0)
    table.rows["x"]["overrides"] = {"train.num_steps": "many"}
    with pytest.raises(SystemExit, match="train.num_steps"):
        reproduce.resolve(table, "x", 0)


@pytest.mark.parametrize("scale", ["small", "full"])
def test_declared_tables_render_notes(scale):
    """Every committed table's notes file renders at both scales from the module's notes_values alone."""
    for path in sorted((reproduce.ROOT / "configs" / "tables").glob("*.py")):
        table = reproduce.load_table(path.stem).get_table(scale)
        assert not hasattr(table, "notes"), path  # the notes live in tables/NAME.notes.md
        notes = reproduce.table_notes(path.stem, scale, table.notes_values)
        assert notes.count("**Scale.**") == 1 and "{" not in notes and "}" not in notes, (path.stem, scale)


MEASURED = [r"\bp\s*[=<≤]\s*\d", r"claims? holds?", r"\d+ of \d+ claims", r"wall[ -]?time|min wall",
            r"\d\s*(s|min|h)\b", r"\b20\d\d-\d\d-\d\d\b", r"\bmeasured\b", r"\bseed \d+: ", r"\bours gives\b"]


def test_notes_and_table_modules_hold_no_measured_results():
    """Notes files and table modules hold design prose and published numbers only: results, p-values, verdict
    counts, timings and dated lab notes are the script's to compute."""
    files = sorted((reproduce.ROOT / "tables").glob("*.notes.md"))
    assert [f.name.split(".")[0] for f in files] == ["listwise", "madpo", "margin_mse", "tcm", "tram"]
    for f in files + sorted((reproduce.ROOT / "configs" / "tables").glob("*.py")):
        text = f.read_text()
        for pattern in MEASURED:
            assert not re.search(pattern, text, re.IGNORECASE), (f.name, pattern, re.search(pattern, text, re.I)[0])


def test_notes_file_errors_name_the_path(tmp_path):
    table = tmp_path / "t.py"
    table.write_text("import types\n\ndef get_table(scale):\n    return types.SimpleNamespace(notes='x')\n")
    with pytest.raises(SystemExit, match=f"no notes file {tmp_path / 't.notes.md'}"):
        reproduce.table_notes(str(table), "small", {})
    with pytest.raises(SystemExit, match="sets notes: hand-written notes live in .*t.notes.md"):
        reproduce.main(["--table", str(table), "--workdir", str(tmp_path / "runs"), "--out", str(tmp_path)])
    (tmp_path / "t.notes.md").write_text("common {steps}\n## small\nsmall\n")
    with pytest.raises(SystemExit, match=r"t.notes.md: needs a '## small' and a '## full' section, has \['small'\]"):
        reproduce.table_notes(str(table), "small", {"steps": 1})
    (tmp_path / "t.notes.md").write_text("common {steps}\n## small\nsmall\n## full\nfull {lr}\n")
    assert reproduce.table_notes(str(table), "small", {"steps": 1}) == "common 1\n\nsmall"
    with pytest.raises(SystemExit, match=r"t.notes.md: placeholder \{lr\} is not in the table's notes_values"):
        reproduce.table_notes(str(table), "full", {"steps": 1})
    with pytest.raises(SystemExit, match="no notes file .*tables/no_such_table.notes.md"):
        reproduce.table_notes("no_such_table", "small", {})
