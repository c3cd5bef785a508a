"""From a config to a trained, evaluated run: what ``python -m ranking_jax.main`` calls.

    mesh <- config.mesh ; objective <- config.loss ; task <- tasks.<config.task>(config, objective)
    -> the task's resolved fields into the config -> WORKDIR/config.json (the config that runs)
    -> model <- models.<config.model.name> ; optimizer <- config.optimizer -> train.train_and_evaluate

A config with ``runs`` (a dict of complete configs) runs each in ``WORKDIR/<name>`` and prints one table.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Mapping

import jax
from flax import nnx
from ml_collections import ConfigDict

from ranking_jax import checkpoint, defaults, models, objectives, optim, registry, runtime, sharding, train
from ranking_jax.models._common import FirstStagePrior
from ranking_jax.tasks import Context


class ConfigChangedError(RuntimeError):
    """A workdir holds a run of another config; rerunning it there would resume the wrong run."""


def write_config(config: ConfigDict, workdir: pathlib.Path, *, allow_change: bool = False) -> None:
    """Writes ``config.json`` (process 0); a workdir whose ``config.json`` differs refuses unless ``allow_change``
    (then the old one is kept as ``config.previous.json``)."""
    text = defaults.config_json(config)
    path = workdir / "config.json"
    if path.exists() and path.read_text() != text:
        changed = defaults.config_diff(path.read_text(), text)
        if not allow_change:
            raise ConfigChangedError(
                f"{workdir} holds a run of another config ({len(changed)} field(s) differ: {'; '.join(changed[:8])}"
                f"{' ...' if len(changed) > 8 else ''}). Use another --workdir, or pass --allow_config_change to "
                "continue this run's checkpoints with the new config.")
        if runtime.is_writer():
            path.replace(workdir / "config.previous.json")
    if runtime.is_writer():
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(path)


def run_one(config: ConfigDict, workdir: str | pathlib.Path, *, progress: bool = True,
            allow_config_change: bool = False) -> dict:
    """Trains and evaluates one config in ``workdir``; returns (and, on process 0, writes) its summary."""
    workdir = pathlib.Path(workdir)
    t0 = time.perf_counter()
    defaults.validate(config)
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.rules(config.sharding_rules)
    objective = objectives.parse(config.loss)
    if runtime.is_writer():
        for directory in (workdir, workdir / "checkpoints"):
            runtime.check_writable(directory)
    with runtime.workdir_lock(workdir):
        task = registry.lookup(f"tasks.{config.task}")(config, objective, Context(workdir, mesh, rules))
        undeclared = {f"model.{k}" for k in task.model_updates} - set(registry.entry(f"tasks.{config.task}").meta[
            "resolves"])
        assert not undeclared, f"task {config.task} resolves {undeclared} without declaring them"
        with config.unlocked():
            config.model.update(task.model_updates)
        write_config(config, workdir, allow_change=allow_config_change)
        t_data = time.perf_counter() - t0
        start = checkpoint.resolve_start(workdir, resume=config.resume)
        model = build_model(config, pretrained=start.source == "scratch")
        objective.check_model(config.model.name, model.OUTPUTS)
        if optim.needs_outputs(config) and "scores" not in model.OUTPUTS:
            raise ValueError(f"config.optimizer.name={config.optimizer.name!r} measures its trust region on list "
                             f"scores; model family {config.model.name!r} gives {model.OUTPUTS}. Use adamw, sam or "
                             "asam.")
        split, params = train.split_model(model)
        reference = None
        if objective.needs_reference:  # the frozen initial model, also when resuming
            reference = params if start.source == "scratch" else train.split_model(build_model(config))[1]
        t = config.train
        early = train.EarlyStopping(metric=config.early_stopping.metric, patience=config.early_stopping.patience,
                                    mode=config.early_stopping.mode)
        t_model = time.perf_counter() - t0 - t_data
        with jax.set_mesh(mesh), sharding.axis_rules(rules):
            summary = train.train_and_evaluate(
                workdir=workdir, model=split, params=params, tx=optim.make(config), objective=objective,
                data=task.train_data, mesh=mesh, rules=rules, schedule=train.Schedule.from_config(t),
                seed=config.seed, evaluators=task.evaluators, early_stopping=early, start=start, reference=reference,
                lr_fn=optim.learning_rate_fn(config), progress=progress)
        params = summary.pop("params")
        summary["baselines"] = task.baselines
        summary["timing"].update(data_s=round(t_data, 2), model_s=round(t_model, 2),
                                 total_s=round(time.perf_counter() - t0, 2))
        if config.get("export_dir"):
            export(split, params, workdir / config.export_dir, config)
        if runtime.is_writer():
            (workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def build_model(config: ConfigDict, *, pretrained: bool = True):
    """``config.model``'s model, with the first stage's scores added when ``config.data.first_stage_weight``."""
    model = models.from_config(config.model, seed=config.seed, pretrained=pretrained)
    weight = config.data.get("first_stage_weight", 0.0)
    return FirstStagePrior(model, weight) if weight else model


def export(split: train.Model, params, directory: pathlib.Path, config: ConfigDict) -> None:
    """The trained model in Hugging Face layout when the family has one, else ``params.npz`` + ``config.json``
    (written by process 0; every process takes part in gathering the parameters). A first-stage prior is not part
    of the exported model."""
    params = runtime.to_host(params)
    if not runtime.is_writer():
        return
    module = split.merge(params)
    if isinstance(module, FirstStagePrior):
        module = module.inner
        params = nnx.state(module, nnx.Param)
    if hasattr(module, "save_pretrained"):
        module.save_pretrained(directory, source=config.model.get("pretrained"))
    else:
        checkpoint.export_params(params, directory, config=config)


def table(summaries: Mapping[str, dict]) -> str:
    """Markdown: per run, the baselines (e.g. the first stage) and every evaluation before and after training."""
    lines = ["| run | evaluation | metric | before | after |", "|---|---|---|---|---|"]
    for name, s in summaries.items():
        for base, metrics in s.get("baselines", {}).items():
            lines += [f"| {name} | {base} (baseline) | {k} | - | {v:.4f} |" for k, v in sorted(metrics.items())]
        before, after = s.get("eval_before", {}), s.get("eval_after", {})
        for key in sorted(after):
            evaluation, _, metric = key.rpartition("/")
            b = f"{before[key]:.4f}" if key in before else "-"
            lines.append(f"| {name} | {evaluation} | {metric} | {b} | {after[key]:.4f} |")
    return "\n".join(lines)


def run(config: ConfigDict, workdir: str | pathlib.Path, *, allow_config_change: bool = False) -> dict:
    """Runs ``config`` (or each of ``config.runs``) in ``workdir``; prints and returns the summaries."""
    workdir = pathlib.Path(workdir)
    if "runs" in config:
        summaries = {name: run_one(sub, workdir / name, allow_config_change=allow_config_change)
                     for name, sub in config.runs.items()}
    else:
        summaries = {config.get("name", "run"): run_one(config, workdir, allow_config_change=allow_config_change)}
    text = table(summaries)
    if runtime.is_writer():
        (workdir / "summary.md").write_text(text + "\n")
        print(text, flush=True)
    return summaries
