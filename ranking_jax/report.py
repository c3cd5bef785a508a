"""A reproduced paper table from its runs: the claims tested (:mod:`ranking_jax.stats`), ``NAME.md``, ``NAME.json``
and ``NAME.png``. ``scripts/reproduce.py`` runs the table's configs and calls these; every number, p-value and
verdict here is computed from the runs, none is written by hand.

A table (``configs/tables/NAME.py``'s namespace) gives ``rows``, ``columns`` ``[(label, summary key,
higher_is_better)]``, ``claims`` (``{"text", "better", "worse", "column"[, "kind": "not_worse", "margin": m]
[, "effect": the paper's difference][, "paired"]}``), ``paired`` ("seed" or "query:RUNFILE"), and optionally
``baselines`` (rows that bracket the effect: a first stage's own order, a random or the best possible re-order,
the untrained model; rows ``{"baseline_of": ROW, "baseline": NAME}`` are baselines too), ``groups``
``{label: [rows]}`` (how the plot groups the factor compared) and ``published`` ``{row: {column label: value}}``
(the paper's comparable numbers, drawn beside ours).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
from typing import Mapping, Sequence

import numpy as np

from ranking_jax import stats

Results = Mapping[str, Mapping[int, Mapping[str, float]]]  # row -> seed -> summary key -> value
Workdirs = Mapping[str, Mapping[int, pathlib.Path]]


def baseline_rows(table) -> list[str]:
    """The rows that bracket the effects: those the table declares and those read from a run's baselines."""
    declared = list(getattr(table, "baselines", []))
    return declared + [r for r, spec in table.rows.items() if "baseline_of" in spec and r not in declared]


def baseline_values(summary: Mapping, name: str, keys: Sequence[str]) -> dict[str, float]:
    """A run's baseline ``name`` under the table's column keys: ``[PREFIX/]EVALUATOR/MEASURE`` reads
    ``summary["baselines"]["[PREFIX/]name"][MEASURE]`` (the baselines re-order the evaluator's candidates)."""
    out = {}
    for key in keys:
        *prefix, _, measure = key.split("/")
        value = summary.get("baselines", {}).get("/".join([*prefix, name]), {}).get(measure)
        if value is not None:
            out[key] = value
    return out


def _run_file(table, row: str, run_file: str) -> str:
    """``[PREFIX_]EVALUATOR.run`` -> ``[PREFIX_]NAME.run`` for a row read from a run's baseline NAME."""
    name = table.rows[row].get("baseline")
    if not name:
        return run_file
    stem = run_file[:-len(".run")]
    return (f"{stem.rsplit('_', 1)[0]}_" if "_" in stem else "") + f"{name}.run"


def per_query(workdirs: Sequence[pathlib.Path], run_file: str, measure: str) -> dict[str, float]:
    """``{query: value}`` of ``measure`` averaged over the runs (seeds) in ``workdirs``."""
    from ranking_jax.evaluators import per_query_path
    values: dict[str, list[float]] = {}
    for w in workdirs:
        for q, m in json.loads(per_query_path(w / run_file).read_text()).items():
            values.setdefault(q, []).append(m[measure])
    return {q: float(np.mean(v)) for q, v in values.items()}


def evaluate_claims(table, results: Results, workdirs: Workdirs) -> list[dict]:
    """Each claim tested over seeds and, where the table pairs by query, over queries; Holm-adjusted across the
    table's claims; with its minimum detectable effect and verdict."""
    columns = {label: (key, hib) for label, key, hib in table.columns}
    out = []
    for claim in table.claims:
        key, hib = columns[claim["column"]]
        better, worse = claim["better"], claim["worse"]
        if claim.get("kind", "better") == "not_worse" and "margin" not in claim:
            raise ValueError(f"claim {claim['text']!r}: a not_worse claim states its non-inferiority margin "
                             "(\"margin\": the largest loss in the metric that still counts as not worse)")
        margin = float(claim.get("margin", 0.0))
        seeds = [{s: results[row][s][key] for s in results[row]} for row in (better, worse)]
        paired = claim.get("paired", table.paired)
        queries = [None, None]
        if paired != "seed":
            run_file, measure = paired.split(":", 1)[1], key.rsplit("/", 1)[-1]  # "<evaluator>/<measure>"
            queries = [per_query(list(workdirs[row].values()), _run_file(table, row, run_file), measure)
                       for row in (better, worse)]
        c = stats.compare(*seeds, *queries, higher_is_better=hib, margin=margin)
        out.append({"claim": claim["text"], "better": better, "worse": worse, "metric": claim["column"],
                     "kind": claim.get("kind", "better"), "margin": margin, "effect": claim.get("effect"),
                     "diff": c.diff, "p_query": c.by_query.p if c.by_query else None,
                     "p_seed": c.by_seed.p if c.by_seed else None,
                     "p": c.p, "mde": c.mde, "n_queries": c.by_query.n if c.by_query else None,
                     "n_seeds": c.by_seed.n if c.by_seed else 0, "higher_is_better": hib})
    for claim, adjusted in zip(out, stats.holm([c["p"] for c in out])):
        claim["p_holm"] = adjusted
        claim["verdict"] = stats.verdict(claim["diff"], adjusted, claim.pop("higher_is_better"),
                                         margin=claim["margin"])
    return out


def table_json(table, results: Results, claims: Sequence[dict]) -> dict:
    """``rows`` (row -> column label -> {mean, std, per_seed}), ``baselines`` and ``claims``."""
    rows = {}
    for row, by_seed in results.items():
        rows[row] = {}
        for label, key, _ in table.columns:
            v = np.array([by_seed[s][key] for s in sorted(by_seed)])
            rows[row][label] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                                "per_seed": {str(s): float(by_seed[s][key]) for s in sorted(by_seed)}}
    return {"rows": rows, "baselines": baseline_rows(table), "claims": [dict(c) for c in claims]}


def _fmt(x) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:.2g}" if abs(x) < 1e-3 and x != 0 else f"{x:.4f}"


def diagnostics(table, workdirs: Workdirs) -> list[str]:
    """Markdown table of ``table.diagnostics`` ``[(label, train scalar)]``: per row, median (min–max) over the
    logged steps of all its runs ("—" where a row logs none)."""
    from ranking_jax.writers import read_metrics
    wanted = list(getattr(table, "diagnostics", []))
    if not wanted:
        return []
    lines = ["", "## Training diagnostics (median, min–max over logged steps and seeds)", "",
             "| row | " + " | ".join(label for label, _ in wanted) + " |", "|---|" + "---|" * len(wanted)]
    for row, by_seed in workdirs.items():
        if "baseline_of" in table.rows[row]:
            continue  # its runs are another row's
        logged = [r for w in by_seed.values() for r in read_metrics(w) if r["split"] == "train"]
        cells = []
        for _, key in wanted:
            v = np.array([r[key] for r in logged if key in r])
            cells.append(f"{_fmt(np.median(v))} ({_fmt(v.min())}–{_fmt(v.max())})" if len(v) else "—")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def markdown(table, name: str, scale: str, results: Results, claims: Sequence[dict], *, wall_s: float,
             run_s: float, reused: int, diag: Sequence[str] = ()) -> str:
    seeds = list(table.seeds)
    baselines = set(baseline_rows(table))
    n_runs = sum(len(by_seed) for row, by_seed in results.items() if "baseline_of" not in table.rows[row])
    lines = [f"# {table.title}", "",
             f"`python scripts/reproduce.py --table {name} --scale {scale}` · scale **{scale}** · "
             f"{datetime.date.today().isoformat()} · wall time {wall_s / 60:.1f} min for this invocation "
             f"({n_runs - reused} of {n_runs} runs executed; the {n_runs} runs' own times sum to {run_s / 60:.1f} "
             f"min) · {os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}", "",
             "## Claims under test", ""]
    lines += [f"- {c['text']}" for c in table.claims]
    lines += ["", "## Published numbers", "", table.paper.strip(), "",
              f"## Ours ({scale} scale): mean ± std over seeds {seeds} (a row's own seeds where it names them; "
              "*baseline* rows bracket the effects)", "",
              "| row | " + " | ".join(f"{label} {'↑' if hib else '↓'}" for label, _, hib in table.columns) + " |",
              "|---|" + "---|" * len(table.columns)]
    for row in table.rows:
        cells = []
        for _, key, _ in table.columns:
            v = np.array([m[key] for m in results[row].values()])
            cells.append(f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}")
        lines.append(f"| {f'*{row}* (baseline)' if row in baselines else row} | " + " | ".join(cells) + " |")
    label, key, _ = table.columns[0]
    lines += ["", f"Per seed, {label}:", "", "| row | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|" + "---|" * len(seeds)]
    lines += [f"| {row} | " + " | ".join(f"{results[row][s][key]:.4f}" if s in results[row] else "—" for s in seeds)
              + " |" for row in table.rows]
    lines += list(diag)
    lines += ["", f"## Tests (paired t-tests over queries and over seeds; p = the larger; Holm-adjusted over the "
              f"{len(claims)} claims; α = {stats.ALPHA}; MDE: the difference detectable with power {stats.POWER})",
              "", "| claim | better | worse | metric | difference | p (queries) | p (seeds) | p Holm | MDE | "
              f"paper's effect | {getattr(table, 'unit', 'queries')} × seeds | verdict |", "|---" * 12 + "|"]
    for c in claims:
        margin = f" (margin {_fmt(c['margin'])})" if c["kind"] == "not_worse" else ""
        lines.append(f"| {c['claim']}{margin} | {c['better']} | {c['worse']} | {c['metric']} | {_fmt(c['diff'])} | "
                     f"{_fmt(c['p_query'])} | {_fmt(c['p_seed'])} | {_fmt(c['p_holm'])} | {_fmt(c['mde'])} | "
                     f"{_fmt(c['effect'])} | {c['n_queries'] or '—'} × {c['n_seeds']} | **{c['verdict']}** |")
    counts = {v: sum(c["verdict"] == v for c in claims) for v in ("holds", "reversed", "inconclusive")}
    undetectable = [c for c in claims if c["effect"] is not None and np.isfinite(c["mde"])
                    and c["mde"] > abs(c["effect"])]
    lines += ["", "## Verdicts", "", f"{counts['holds']} of {len(claims)} claims hold, {counts['reversed']} are "
              f"reversed, {counts['inconclusive']} inconclusive at this scale."]
    if undetectable:
        lines.append(f"{len(undetectable)} claim(s) have a minimum detectable effect above the paper's effect, so "
                     "this design cannot show them: " + "; ".join(
                         f"{c['claim']} (MDE {_fmt(c['mde'])} > {_fmt(abs(c['effect']))})" for c in undetectable) + ".")
    lines += ["", table.notes.strip(), ""]
    return "\n".join(lines)


def plot(table, results: Results, path: pathlib.Path) -> None:
    """One panel per column: the compared rows grouped by the table's factor (bars: mean over seeds, dots: seeds),
    baselines as labelled horizontal lines, the paper's numbers as diamonds where the table gives them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    baselines = [r for r in baseline_rows(table) if r in results]
    groups = dict(getattr(table, "groups", {})) or {r: [r] for r in table.rows if r not in baselines}
    published = getattr(table, "published", {})
    slots = [(g, r) for g, rows in groups.items() for r in rows]
    x = np.arange(len(slots)) + np.repeat(np.arange(len(groups)), [len(rows) for rows in groups.values()]) * 0.6
    fig, axes = plt.subplots(1, len(table.columns), squeeze=False,
                             figsize=(3 + 0.35 * len(slots) * len(table.columns), 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (label, key, hib) in zip(axes[0], table.columns):
        values = [np.array([m[key] for m in results[r].values()]) for _, r in slots]
        for i, ((group, row), v) in enumerate(zip(slots, values)):
            ax.bar(x[i], v.mean(), yerr=v.std(ddof=1) if len(v) > 1 else 0.0, capsize=2,
                   color=colors[list(groups).index(group) % len(colors)], alpha=0.55)
            ax.plot(np.full(len(v), x[i]), v, "k.", ms=3)
            if label in published.get(row, {}):
                ax.plot(x[i], published[row][label], "rD", ms=5, label="paper" if not ax.get_legend_handles_labels()[1]
                        else None)
        for j, row in enumerate(baselines):
            value = np.mean([m[key] for m in results[row].values()])
            ax.axhline(value, ls="--", lw=1, color="0.35")
            ax.annotate(row, (x[-1] + 0.5, value), fontsize=7, va="center", color="0.25", annotation_clip=False)
        flat = np.concatenate(values + [[np.mean([m[key] for m in results[r].values()]) for r in baselines]]
                              + [[published[r][label] for _, r in slots if label in published.get(r, {})]])
        lo, hi = flat.min(), flat.max()
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
        ax.set_xticks(x, [r for _, r in slots], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{label} ({'higher' if hib else 'lower'} is better)", fontsize=9)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7)
    fig.suptitle(table.title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
