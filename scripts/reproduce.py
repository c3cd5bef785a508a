"""Reproduces a paper table: runs the configs declared in ``configs/tables/NAME.py`` over their seeds and writes
``tables/NAME.md`` (the paper's numbers beside ours, baseline rows, the claims tested with their verdicts),
``tables/NAME.json`` (the same numbers for programs) and ``tables/NAME.png`` (:mod:`ranking_jax.report`).

    python scripts/reproduce.py --table listwise [--scale small|full] [--workdir workdirs/tables]

A table module defines ``get_table(scale) -> types.SimpleNamespace`` with

  title, paper (markdown: the published numbers and their source), notes_values (optional: the values of the
  notes file's {placeholders}, e.g. steps and learning rate; see below), seeds, rows ({row: {"config":
  "configs/x.py:arg", "overrides": {"a.b": v}[, "seeds": [...]]}}, each at the table's seeds or its own subset
  of them, e.g. [0] for a deterministic baseline; run seed by seed, rows in order within a seed, so an
  interrupted reproduction holds whole seeds; "{ROW}" in a string override is ROW's workdir at the same seed,
  "{ROW@S}" at seed S), columns ([(label, summary key, higher_is_better)]), claims ([{"text", "better", "worse",
  "column"[, "kind": "not_worse", "margin": m][, "effect": the paper's difference]}]), paired: "seed" or
  "query:RUNFILE" (per-query values written beside RUNFILE by its evaluator; a claim's own "paired" overrides
  it, e.g. one run file per target collection; optional unit: what a query is, e.g. "prompts"); a row
  {"baseline_of": ROW, "baseline": NAME} runs nothing: it reads ROW's runs' baseline NAME (e.g. "first_stage",
  "random", "oracle": ranking_jax.tasks.text_ranking.reorders) in place of their evaluators; optional
  baselines, groups and published (see :mod:`ranking_jax.report`) and diagnostics ([(label, train scalar)], e.g.
  TRAM's "tram_d": per row, the median and range over its runs' logged steps);

and optionally ``prepare(scale)``, run first (e.g. to fetch data). Each (row, seed) run lives in
``WORKDIR/NAME/SCALE/ROW/seed-S``; a finished run of the same resolved config is reused, an unfinished one
resumes from its checkpoint, so an interrupted reproduction continues where it stopped. Each claim is tested over
queries and over seeds, Holm-adjusted across the table, with its minimum detectable effect; verdicts are
``holds``, ``reversed`` or ``inconclusive`` (:mod:`ranking_jax.stats`).

A table's hand-written notes (what is the same as the paper, what differs and why, each scale's budget, caveats)
live in ``tables/NAME.notes.md`` (beside the table file for a table given as a path): text for both scales, then
a ``## small`` and a ``## full`` section; ``{placeholders}`` (``{{``/``}}`` for literal braces) are filled from
``notes_values``. Notes and table modules hold no measured results (numbers, p-values, verdicts, timings): this
script computes and writes all of those itself.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import string
import sys
import time


ROOT = pathlib.Path(__file__).resolve().parents[1]


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
    cells = [(row, seed) for seed in table.seeds for row in table.rows if seed in workdirs.get(row, ())]
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
    from ranking_jax import report
    derived = {r: spec for r, spec in table.rows.items() if "baseline_of" in spec}
    workdirs = {r: {s: root / r / f"seed-{s}" for s in row_seeds(table, r)} for r in table.rows if r not in derived}
    for r, spec in derived.items():
        if spec["baseline_of"] not in workdirs:
            raise SystemExit(f"table row {r!r}: baseline_of {spec['baseline_of']!r} is not a row that runs")
        workdirs[r] = workdirs[spec["baseline_of"]]
    results: dict[str, dict[int, dict]] = {}
    run_s, reused = 0.0, 0
    for row, seed in cell_order(table, {r: w for r, w in workdirs.items() if r not in derived}):
        workdir = workdirs[row][seed]
        summary, was_reused = run_cell(resolve(table, row, seed, placeholders(workdirs, seed)), workdir)
        views = {row: summary.get("eval_after", {})}
        views.update({r: report.baseline_values(summary, spec["baseline"], [k for _, k, _ in table.columns])
                      for r, spec in derived.items() if spec["baseline_of"] == row})
        for view_row, values in views.items():
            missing = [key for _, key, _ in table.columns if key not in values]
            if missing:
                raise SystemExit(f"{workdir}/summary.json has no {missing} for row {view_row!r}; it holds "
                                 f"{sorted(values)} (eval_after) and baselines {sorted(summary.get('baselines', {}))}:"
                                 " fix the table's columns or the row's baseline")
            results.setdefault(view_row, {})[seed] = values
        run_s += summary["timing"]["total_s"]
        reused += was_reused
        print(f"[{name}] {row} seed {seed}: "
              + ", ".join(f"{label} {summary['eval_after'][key]:.4f}" for label, key, _ in table.columns)
              + (" (reused)" if was_reused else f" ({summary['timing']['total_s']:.0f} s)"), flush=True)
    claims = report.evaluate_claims(table, results, workdirs)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = report.markdown(table, name, args.scale, results, claims, wall_s=time.perf_counter() - t0, run_s=run_s,
                           reused=reused, diag=report.diagnostics(table, workdirs))
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps(report.table_json(table, results, claims), indent=1) + "\n")
    report.plot(table, results, out / f"{name}.png")
    print(text)
    return 0


if __name__ == "__main__":
    # rows at other seeds compile the same programs: keep them across runs and invocations (read at jax import)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / "workdirs" / ".jax_cache"))
    sys.exit(main())
