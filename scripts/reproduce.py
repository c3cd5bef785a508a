"""Reproduces a paper table: runs the configs declared in ``configs/tables/NAME.py`` over their seeds and writes
``tables/NAME.md`` (the paper's numbers beside ours, the claims under test with paired significance tests, and
whether each holds at this scale) and ``tables/NAME.png``.

    python scripts/reproduce.py --table listwise [--scale small|full] [--workdir workdirs/tables]

A table module defines ``get_table(scale) -> types.SimpleNamespace`` with

  title, paper (markdown: the published numbers and their source), notes_values (optional: the values of the
  notes file's {placeholders}, e.g. steps and learning rate; see below), seeds, rows ({row: {"config":
  "configs/x.py:arg", "overrides": {"a.b": v}[, "seeds": [...]]}}, each at the table's seeds or its own subset
  of them, e.g. [0] for a deterministic baseline; run seed by seed, rows in order within a seed, so an
  interrupted reproduction holds whole seeds; "{ROW}" in a string override is ROW's workdir at the same seed,
  "{ROW@S}" at seed S), columns ([(label, summary key, higher_is_better)]), claims ([{"text", "better", "worse",
  "column"[, "kind": "better" | "not_worse"]}]), paired: "seed" (a claim's two rows compared seed by seed) or
  "query:RUNFILE" (per-query values written beside RUNFILE by its evaluator, averaged over the seeds, compared
  query by query; a claim's own "paired" overrides it, e.g. one run file per target collection; optional unit:
  what a query is, e.g. "prompts"); optional diagnostics ([(label, train scalar)], e.g. TRAM's "tram_d": per row,
  the median and range over its runs' logged steps);

and optionally ``prepare(scale)``, run first (e.g. to fetch data). Each (row, seed) run lives in
``WORKDIR/NAME/SCALE/ROW/seed-S``; a finished run of the same resolved config is reused, an unfinished one
resumes from its checkpoint, so an interrupted reproduction continues where it stopped. The test is the paired
t-test (scipy.stats.ttest_rel, two-sided); a "better" claim holds when the difference has the claimed sign and
p < 0.05, a "not_worse" claim unless the difference is significantly against it.

A table's hand-written notes (what is the same as the paper, what differs and why, each scale's budget, caveats)
live in ``tables/NAME.notes.md`` (beside the table file for a table given as a path): text for both scales, then
a ``## small`` and a ``## full`` section; ``{placeholders}`` (``{{``/``}}`` for literal braces) are filled from
``notes_values``. Notes and table modules hold no measured results (numbers, p-values, verdicts, timings): this
script computes and writes all of those itself.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import string
import sys
import time
from typing import Sequence

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALPHA = 0.05


def load_table(name: str):
    """The module ``configs/tables/NAME.py`` (or the file NAME when it ends in .py)."""
    from ranking_jax import main
    path = pathlib.Path(name) if name.endswith(".py") else ROOT / "configs" / "tables" / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.py") if not p.stem.startswith("_"))
        raise SystemExit(f"--table {name!r}: {path} does not exist; tables: {known}")
    return main.load_module(path)


def notes_path(name: str) -> pathlib.Path:
    """The notes file of table ``name``: ``tables/NAME.notes.md``, or ``NAME.notes.md`` beside a table file."""
    return pathlib.Path(name).with_suffix(".notes.md") if name.endswith(".py") else ROOT / "tables" / f"{name}.notes.md"


def table_notes(name: str, scale: str, values: dict) -> str:
    """Table ``name``'s hand-written notes at ``scale``: its notes file's text before the ``## small`` / ``## full``
    sections, then that scale's section, ``{placeholders}`` filled from ``values`` (the table's notes_values)."""
    path = notes_path(name)
    if not path.is_file():
        raise SystemExit(f"table {name!r}: no notes file {path} (the table's hand-written notes, with a ## small "
                         "and a ## full section)")
    parts: dict[str | None, list[str]] = {None: []}
    part = None
    for line in path.read_text().splitlines():
        heading = re.fullmatch(r"## (small|full)\s*", line)
        if heading and heading[1] in parts:
            raise SystemExit(f"{path}: two '## {heading[1]}' sections")
        if heading:
            part = heading[1]
            parts[part] = []
        else:
            parts[part].append(line)
    if not {"small", "full"} <= parts.keys():
        raise SystemExit(f"{path}: needs a '## small' and a '## full' section, has {sorted(k for k in parts if k)}")
    text = "\n".join(parts[None]).strip() + "\n\n" + "\n".join(parts[scale]).strip()
    try:
        return text.format(**values).strip()
    except KeyError as e:
        raise SystemExit(f"{path}: placeholder {{{e.args[0]}}} is not in the table's notes_values "
                         f"{sorted(values)}") from None
    except (IndexError, ValueError) as e:
        raise SystemExit(f"{path}: {e} (write a literal brace as {{{{ or }}}})") from None


def row_seeds(table, row: str) -> list[int]:
    """The seeds ``row`` runs at: its own ``"seeds"`` (a subset of the table's) or the table's."""
    seeds = list(table.rows[row].get("seeds", table.seeds))
    if not seeds or not set(seeds) <= set(table.seeds):
        raise SystemExit(f"table row {row!r}: seeds {seeds} must be a non-empty subset of the table's {table.seeds}")
    return seeds


def placeholders(workdirs: dict[str, dict[int, pathlib.Path]], seed: int) -> dict[str, pathlib.Path]:
    """``{ROW: workdir at seed}`` for the rows run at ``seed`` and ``{ROW@S: workdir at S}`` for every run."""
    out = {f"{r}@{s}": w for r, by_seed in workdirs.items() for s, w in by_seed.items()}
    out.update({r: by_seed[seed] for r, by_seed in workdirs.items() if seed in by_seed})
    return out


def cell_order(table, workdirs: dict[str, dict[int, pathlib.Path]]) -> list[tuple[str, int]]:
    """Every ``(row, seed)`` run, seed by seed in declaration order (so an interrupted reproduction holds whole
    seeds), except that the runs a run's overrides name (``{ROW}`` / ``{ROW@S}``) come just before it."""
    cells = [(row, seed) for seed in table.seeds for row in table.rows if seed in workdirs[row]]
    order, visiting = [], set()

    def visit(row, seed):
        if (row, seed) in order:
            return
        if (row, seed) in visiting:
            raise SystemExit(f"table run {row} at seed {seed} needs itself through its {{ROW@S}} placeholders")
        visiting.add((row, seed))
        names = [field for v in table.rows[row].get("overrides", {}).values() if isinstance(v, str)
                 for _, field, _, _ in string.Formatter().parse(v) if field]  # what resolve's format_map fills
        for name in names:
            dep = (name.split("@")[0], int(name.split("@")[1])) if "@" in name else (name, seed)
            if dep in cells:  # a name that is no run is resolve()'s error to report
                visit(*dep)
        order.append((row, seed))

    for cell in cells:
        visit(*cell)
    return order


def resolve(table, row: str, seed: int, workdirs: dict[str, pathlib.Path] | None = None):
    """The locked experiment config of ``row`` at ``seed``; ``"{ROW}"`` / ``"{ROW@S}"`` in a string override
    become workdirs (``workdirs``, see :func:`placeholders`), e.g. a reward model another row exported."""
    from ranking_jax import main
    spec = table.rows[row]
    config = main.load_config(str(ROOT / spec["config"]))
    try:
        overrides = {k: v.format_map(workdirs or {}) if isinstance(v, str) and "{" in v else v
                     for k, v in spec.get("overrides", {}).items()}
    except KeyError as e:
        raise SystemExit(f"table row {row!r} at seed {seed}: placeholder {{{e.args[0]}}} names no run; use a row "
                         "declared before it, at this seed (or ROW@SEED)") from None
    config.lock()
    for key, value in overrides.items():
        try:
            config.update_from_flattened_dict({key: value})
        except (AttributeError, KeyError) as e:
            if not key.startswith("model."):  # model fields are the model builder's keywords, an open set
                raise SystemExit(f"table row {row!r}: override {key}={value!r}: {e}") from e
            with config.unlocked():
                config.update_from_flattened_dict({key: value})
        except TypeError as e:
            raise SystemExit(f"table row {row!r}: override {key}={value!r}: {e}") from e
    config.seed = seed
    return config


def run_cell(config, workdir: pathlib.Path) -> tuple[dict, bool]:
    """``(summary, reused)`` of ``config`` run in ``workdir`` (a finished run of the same config is reused)."""
    from ranking_jax import defaults, registry, run
    summary_path, config_path = workdir / "summary.json", workdir / "config.json"
    if config_path.exists():  # the saved config may differ only in the fields its task resolves (a feature count)
        resolved = registry.entry(f"tasks.{config.task}").meta["resolves"]
        changed = defaults.config_diff(config_path.read_text(), defaults.config_json(config), ignore=resolved)
        if changed:
            raise SystemExit(f"{workdir} holds a run of a different config ({config_path}: "
                             f"{'; '.join(changed[:5])}); delete that folder or pass another --workdir")
        if summary_path.exists():
            return json.loads(summary_path.read_text()), True
    return run.run_one(config, workdir, progress=False, allow_config_change=True), False


def paired_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """``(mean(a - b), t, p)`` of the two-sided paired t-test (t = p = nan when all differences are equal)."""
    from scipy import stats
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        return float(diff.mean()), float("nan"), float("nan")
    t, p = stats.ttest_rel(a, b)
    return float(diff.mean()), float(t), float(p)


def verdict(diff: float, p: float, higher_is_better: bool, kind: str = "better") -> str:
    """``kind`` "better": ``better`` beats ``worse`` significantly; "not_worse": it is not significantly worse."""
    right = diff > 0 if higher_is_better else diff < 0
    if kind == "not_worse":
        return "holds (not significantly worse)" if right or not p < ALPHA else "does not hold (significantly worse)"
    if right and p < ALPHA:
        return "holds"
    if right:
        return "same direction, not significant"
    if diff == 0 and np.isnan(p):
        return "does not hold (equal in every pair)"
    return "does not hold" + (" (significantly reversed)" if p < ALPHA else "")


def per_query(workdirs: list[pathlib.Path], run_file: str, measure: str) -> dict[str, float]:
    """``{query: value}`` of ``measure`` averaged over the runs (seeds) in ``workdirs``."""
    from ranking_jax.evaluators import per_query_path
    values: dict[str, list[float]] = {}
    for w in workdirs:
        for q, m in json.loads(per_query_path(w / run_file).read_text()).items():
            values.setdefault(q, []).append(m[measure])
    return {q: float(np.mean(v)) for q, v in values.items()}


def evaluate_claims(table, results, workdirs) -> list[dict]:
    columns = {label: (key, hib) for label, key, hib in table.columns}
    out = []
    for claim in table.claims:
        key, hib = columns[claim["column"]]
        better, worse = claim["better"], claim["worse"]
        paired = claim.get("paired", table.paired)
        if paired == "seed":
            seeds = [s for s in results[better] if s in results[worse]]
            a = np.array([results[better][s][key] for s in seeds])
            b = np.array([results[worse][s][key] for s in seeds])
            unit = f"{len(a)} seeds"
        else:
            run_file = paired.split(":", 1)[1]
            measure = key.rsplit("/", 1)[-1]  # "<evaluator>/<measure>", evaluator names may nest
            qa = per_query(list(workdirs[better].values()), run_file, measure)
            qb = per_query(list(workdirs[worse].values()), run_file, measure)
            queries = sorted(qa)
            a, b = np.array([qa[q] for q in queries]), np.array([qb[q] for q in queries])
            n = sorted({len(workdirs[better]), len(workdirs[worse])})
            unit = f"{len(a)} {getattr(table, 'unit', 'queries')} (mean of {' and '.join(map(str, n))} seeds)"
        diff, t, p = paired_test(a, b)
        out.append(dict(claim, diff=diff, t=t, p=p, unit=unit,
                        verdict=verdict(diff, p, hib, claim.get("kind", "better"))))
    return out


def diagnostics(table, workdirs) -> list[str]:
    """Markdown table of ``table.diagnostics``: per row, median (min–max) of each train scalar over the logged
    steps of all its runs ("—" where a row logs none)."""
    from ranking_jax.writers import read_metrics
    wanted = list(getattr(table, "diagnostics", []))
    if not wanted:
        return []
    lines = ["", "## Training diagnostics (median, min–max over logged steps and seeds)", "",
             "| row | " + " | ".join(label for label, _ in wanted) + " |", "|---|" + "---|" * len(wanted)]
    for row, by_seed in workdirs.items():
        logged = [r for w in by_seed.values() for r in read_metrics(w) if r["split"] == "train"]
        cells = []
        for _, key in wanted:
            v = np.array([r[key] for r in logged if key in r])
            cells.append(f"{_fmt(np.median(v))} ({_fmt(v.min())}–{_fmt(v.max())})" if len(v) else "—")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _fmt(x: float) -> str:
    return "—" if not np.isfinite(x) else (f"{x:.2g}" if abs(x) < 1e-3 and x != 0 else f"{x:.4f}")


def markdown(table, name: str, scale: str, results, claims, *, wall_s: float, run_s: float, reused: int,
             diag: Sequence[str] = ()) -> str:
    seeds = list(table.seeds)
    n_runs = sum(len(by_seed) for by_seed in results.values())
    lines = [f"# {table.title}", "",
             f"`python scripts/reproduce.py --table {name} --scale {scale}` · scale **{scale}** · "
             f"{datetime.date.today().isoformat()} · wall time {wall_s / 60:.1f} min for this invocation "
             f"({n_runs - reused} of {n_runs} runs executed; the {n_runs} runs' own times sum to {run_s / 60:.1f} "
             f"min) · {os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}", "",
             "## Claims under test", ""]
    lines += [f"- {c['text']}" for c in table.claims]
    lines += ["", "## Published numbers", "", table.paper.strip(), "",
              f"## Ours ({scale} scale): mean ± std over seeds {seeds} (a row's own seeds where it names them)",
              "",
              "| row | " + " | ".join(f"{label} {'↑' if hib else '↓'}" for label, _, hib in table.columns) + " |",
              "|---|" + "---|" * len(table.columns)]
    for row in table.rows:
        cells = []
        for _, key, _ in table.columns:
            v = np.array([m[key] for m in results[row].values()])
            cells.append(f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    label, key, _ = table.columns[0]
    lines += ["", f"Per seed, {label}:", "", "| row | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|" + "---|" * len(seeds)]
    lines += [f"| {row} | " + " | ".join(f"{results[row][s][key]:.4f}" if s in results[row] else "—" for s in seeds)
              + " |" for row in table.rows]
    lines += list(diag)
    lines += ["", f"## Paired tests (two-sided paired t-test, α = {ALPHA})", "",
              "| claim | better | worse | metric | mean difference | t | p | paired over | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {c['text']} | {c['better']} | {c['worse']} | {c['column']} | {_fmt(c['diff'])} | {_fmt(c['t'])} | "
              f"{_fmt(c['p'])} | {c['unit']} | **{c['verdict']}** |" for c in claims]
    held = [c for c in claims if c["verdict"].startswith("holds")]
    lines += ["", "## What reproduces, what does not, and why", "",
              f"{len(held)} of {len(claims)} claims hold at this scale."]
    lines += [f"- {c['text']} ({c['better']} vs {c['worse']}, {c['column']}): {c['verdict']}, "
              f"difference {_fmt(c['diff'])}, p = {_fmt(c['p'])}." for c in claims]
    lines += ["", table.notes.strip(), ""]
    return "\n".join(lines)


def plot(table, results, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(table.rows)
    fig, axes = plt.subplots(1, len(table.columns), figsize=(4 + 0.45 * len(rows) * len(table.columns), 4.2),
                             squeeze=False)
    for ax, (label, key, hib) in zip(axes[0], table.columns):
        values = [np.array([m[key] for m in results[r].values()]) for r in rows]
        x = np.arange(len(rows))
        ax.bar(x, [v.mean() for v in values], yerr=[v.std(ddof=1) if len(v) > 1 else 0.0 for v in values],
               color="#8fb3d9", capsize=3)
        for i, v in enumerate(values):
            ax.plot(np.full(len(v), i), v, "k.", ms=3)
        lo, hi = min(v.min() for v in values), max(v.max() for v in values)
        ax.set_ylim(lo - 0.15 * (hi - lo + 1e-9), hi + 0.15 * (hi - lo + 1e-9))
        ax.set_xticks(x, rows, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{label} ({'higher' if hib else 'lower'} is better)", fontsize=9)
    fig.suptitle(table.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", required=True, help="NAME of configs/tables/NAME.py, or a table file path")
    p.add_argument("--scale", default="small", choices=("small", "full"))
    p.add_argument("--workdir", default=str(ROOT / "workdirs" / "tables"), help="root of the runs' workdirs")
    p.add_argument("--out", default=str(ROOT / "tables"), help="where NAME.md and NAME.png go")
    args = p.parse_args(argv)
    module = load_table(args.table)
    name = pathlib.Path(args.table).stem
    table = module.get_table(args.scale)
    if hasattr(table, "notes"):
        raise SystemExit(f"table {name!r} sets notes: hand-written notes live in {notes_path(args.table)}, the table "
                         "gives only their notes_values")
    table.notes = table_notes(args.table, args.scale, getattr(table, "notes_values", {}))  # before hours of runs
    if hasattr(module, "prepare"):
        module.prepare(args.scale)
    t0 = time.perf_counter()
    root = pathlib.Path(args.workdir) / name / args.scale
    workdirs = {r: {s: root / r / f"seed-{s}" for s in row_seeds(table, r)} for r in table.rows}
    results: dict[str, dict[int, dict]] = {}
    run_s, reused = 0.0, 0
    for row, seed in cell_order(table, workdirs):
        workdir = workdirs[row][seed]
        summary, was_reused = run_cell(resolve(table, row, seed, placeholders(workdirs, seed)), workdir)
        missing = [key for _, key, _ in table.columns if key not in summary.get("eval_after", {})]
        if missing:
            raise SystemExit(f"{workdir}/summary.json has no {missing}; its eval_after holds "
                             f"{sorted(summary.get('eval_after', {}))}: fix the table's columns")
        results.setdefault(row, {})[seed] = summary["eval_after"]
        run_s += summary["timing"]["total_s"]
        reused += was_reused
        print(f"[{name}] {row} seed {seed}: "
              + ", ".join(f"{label} {summary['eval_after'][key]:.4f}" for label, key, _ in table.columns)
              + (" (reused)" if was_reused else f" ({summary['timing']['total_s']:.0f} s)"), flush=True)
    claims = evaluate_claims(table, results, workdirs)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(table, name, args.scale, results, claims, wall_s=time.perf_counter() - t0, run_s=run_s,
                    reused=reused, diag=diagnostics(table, workdirs))
    (out / f"{name}.md").write_text(text)
    plot(table, results, out / f"{name}.png")
    print(text)
    return 0


if __name__ == "__main__":
    # rows at other seeds compile the same programs: keep them across runs and invocations (read at jax import)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / "workdirs" / ".jax_cache"))
    sys.exit(main())
