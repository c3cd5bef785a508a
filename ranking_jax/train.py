"""Train state, one jitted train step, and the train-and-evaluate loop.

The step is one ``jax.jit`` with donated state and shardings derived from the model's logical axis names. The
objective (:mod:`ranking_jax.objectives`) reads the model's outputs; the optimizer gets, as optax extra
arguments, what sharpness-aware and trust-region methods need (``grad_fn``, the step's ``outputs`` and
``outputs_fn``, a fresh ``key``); optimizers ignore what they do not use.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding

from ranking_jax import checkpoint as ckpt_lib
from ranking_jax import grads, optim, runtime, sharding, writers
from ranking_jax.data.encoding import global_batch
from ranking_jax.objectives import Objective

_log = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
    """A non-finite loss or gradient: the run stops; the last good checkpoint is kept."""


@dataclasses.dataclass
class Model:
    """An nnx model split at the jit boundary: ``graphdef`` is static, ``rest`` holds non-trainable state."""
    graphdef: Any
    rest: Any

    def merge(self, params: Any) -> nnx.Module:
        return nnx.merge(self.graphdef, params, self.rest)


def split_model(model: nnx.Module) -> tuple[Model, Any]:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return Model(graphdef, rest), params


@dataclasses.dataclass(frozen=True)
class Schedule:
    """``config.train``: how long, how gradients are computed, and when to log, evaluate and checkpoint."""
    num_steps: int
    accum_steps: int = 1
    grad_cache_chunk: int = 0
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    eval_before: bool = True

    @classmethod
    def from_config(cls, train: Mapping[str, Any]) -> "Schedule":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(train).items() if k in fields})


def place(tree: Any, mesh: jax.sharding.Mesh, rules) -> Any:
    """A copy of nnx params on the mesh, laid out by their logical names."""
    # Copy first: device_put may alias the caller's buffers, which the donated step would then delete.
    return jax.device_put(jax.tree.map(jnp.copy, tree), sharding.param_shardings(tree, mesh, rules))


def init_state(params: Any, tx: optax.GradientTransformation, seed: int, mesh: jax.sharding.Mesh, rules) -> dict:
    """``{step, params, opt_state, rng}`` placed on the mesh; optimizer moments inherit parameter shardings.

    ``tx.init`` runs eagerly on the already-sharded params (under ``jit`` it would lose the shardings);
    leaves it leaves unsharded (scalars such as step counts) are replicated.
    """
    params = place(params, mesh, rules)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params),
             "rng": jax.random.key_data(jax.random.key(seed))}
    replicated = sharding.replicated(mesh)
    return jax.tree.map(lambda x: x if isinstance(getattr(x, "sharding", None), NamedSharding)
                        and x.sharding.mesh == mesh else jax.device_put(x, replicated), state)


def state_shardings(state: dict) -> Any:
    return jax.tree.map(lambda x: x.sharding, state)


def make_train_step(model: Model, objective: Objective, tx: optax.GradientTransformation, *, accum_steps: int = 1,
                    grad_cache_chunk: int = 0, shardings: Any = None):
    """One jitted step ``(state, batch, reference) -> (state, metrics)`` with donated state.

    ``reference`` (params or None) is the frozen model whose scores fill ``batch["reference_scores"]`` when the
    objective reads them and the batch lacks them. A non-finite loss or gradient leaves the state unchanged
    (selected with ``jnp.where``) and reports ``finite=False``; the loop then stops. Metrics: ``loss``,
    ``loss/<term>`` (with several terms or a weight), norms, and the optimizer's diagnostics.
    """
    tx = optax.with_extra_args_support(tx)
    value_and_grad = grads.make_value_and_grad(model, objective, accum_steps=accum_steps,
                                               grad_cache_chunk=grad_cache_chunk)
    log_terms = len(objective.terms) > 1 or any(t.weight != 1.0 for t in objective.terms)

    def step(state, batch, reference):
        rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        params = state["params"]
        if objective.needs_reference and "reference_scores" not in batch:
            if reference is None:
                raise ValueError("the objective reads reference_scores: pass the reference params")
            batch = dict(batch, reference_scores=jax.lax.stop_gradient(
                model.merge(reference)(batch, deterministic=True).astype(jnp.float32)))
        (loss, aux), g = value_and_grad(params, batch, rng)
        extra = dict(grad_fn=lambda p: value_and_grad(p, batch, rng)[1], key=jax.random.fold_in(rng, 2),
                     outputs_fn=lambda p: model.merge(p)(batch, deterministic=True).astype(jnp.float32))
        if aux["scores"] is not None:
            extra.update(outputs=aux["scores"], outputs_mask=batch["mask"])
        updates, opt_state = tx.update(g, state["opt_state"], params, **extra)
        new_params = optax.apply_updates(params, updates)
        grad_norm = optax.tree.norm(g)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(updates))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        new_state = {"step": state["step"] + finite.astype(jnp.int32), "params": keep(new_params, params),
                     "opt_state": keep(opt_state, state["opt_state"]), "rng": state["rng"]}
        metrics = {"loss": loss, "grad_norm": grad_norm, "param_norm": optax.tree.norm(params), "finite": finite,
                   **optim.diagnostics(opt_state)}
        if log_terms:
            metrics.update({f"loss/{k}": v for k, v in aux["terms"].items()})
        return new_state, metrics

    shard = None if shardings is None else (shardings, None, None)
    return jax.jit(step, donate_argnums=(0,), in_shardings=shard,
                   out_shardings=None if shardings is None else (shardings, None))


@dataclasses.dataclass
class EarlyStopping:
    """Stops when ``metric`` has not improved for ``patience`` evaluations (0 disables)."""
    metric: str = ""
    patience: int = 0
    mode: str = "max"
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0

    def update(self, step: int, metrics: Mapping[str, float]) -> bool:
        """Returns True when ``metrics`` is a new best."""
        if not self.metric:
            return False
        if self.metric not in metrics:
            raise KeyError(f"config.early_stopping.metric={self.metric!r} is not among the evaluation "
                           f"metrics {sorted(metrics)}")
        value = float(metrics[self.metric])
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.best_step, self.bad_evals = value, step, 0
        else:
            self.bad_evals += 1
        return better

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.bad_evals >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals}


def train_and_evaluate(*, workdir: str | pathlib.Path, model: Model, params: Any, tx: optax.GradientTransformation,
                       objective: Objective, data: Any, mesh: jax.sharding.Mesh, rules, schedule: Schedule,
                       seed: int = 0, evaluators: Mapping[str, Callable] = (),
                       early_stopping: EarlyStopping | None = None,
                       start: ckpt_lib.Start | None = None, reference: Any = None, lr_fn: Callable | None = None,
                       progress: bool = True) -> dict:
    """Trains ``schedule.num_steps`` steps, evaluating, checkpointing and logging; returns the summary (with the
    final ``params``). ``data`` iterates this process's host batches (``get_state``/``set_state``);
    ``evaluators`` map a name to ``evaluator(module) -> {metric: value}``; ``start`` is where the run starts
    (:func:`ranking_jax.checkpoint.resolve_start`). Only process 0 writes files.

    The finite-loss guard reads each step's flag only after the next step is dispatched, so the host never
    waits on the device in between; flags are read at once before logging, evaluating or saving, so no
    non-finite state is ever logged, evaluated or checkpointed.
    """
    from tqdm import tqdm

    workdir = pathlib.Path(workdir)
    s = schedule
    state = init_state(params, tx, seed, mesh, rules)
    reference = None if reference is None else place(reference, mesh, rules)
    step_fn = make_train_step(model, objective, tx, accum_steps=s.accum_steps, grad_cache_chunk=s.grad_cache_chunk,
                              shardings=state_shardings(state))
    checkpointer = ckpt_lib.Checkpointer(workdir / "checkpoints", max_to_keep=s.keep_checkpoints)
    early_stopping = early_stopping or EarlyStopping()
    best_checkpointer = ckpt_lib.Checkpointer(workdir / "best", max_to_keep=1, async_save=False) \
        if early_stopping.metric else None
    writer = writers.MetricWriter(workdir, enabled=runtime.is_writer())

    start = start or ckpt_lib.resolve_start(workdir)
    if start.source in ("workdir", "resume"):
        source = checkpointer if start.source == "workdir" else ckpt_lib.Checkpointer(start.directory)
        state, data_state, meta = source.restore(state, start.step)
        if start.source == "workdir":
            data.set_state(data_state)
            for k, v in meta.get("early_stopping", {}).items():
                setattr(early_stopping, k, v)
            writer.truncate_after(int(state["step"]))
        _log.info("resumed from %s step %d (%s)", start.directory, int(state["step"]), start.source)
    first_step = int(state["step"])
    last_good = checkpointer.latest_step()
    timing = {"eval_s": 0.0, "train_s": 0.0, "checkpoint_s": 0.0}

    def evaluate(step):
        t0 = time.perf_counter()
        module = model.merge(state["params"])
        results = {f"{name}/{k}": v for name, evaluator in dict(evaluators).items()
                   for k, v in evaluator(module).items()}
        writer.write(step, results, split="eval")
        timing["eval_s"] += time.perf_counter() - t0
        return results

    def check(step, metrics):
        """The guard: a non-finite step stops the run (its update was not applied in the step)."""
        if not bool(metrics["finite"]):
            checkpointer.wait()
            raise DivergenceError(
                f"non-finite loss or gradient at step {step} (loss={float(metrics['loss'])}, "
                f"grad_norm={float(metrics['grad_norm'])}); the update was not applied. Last good checkpoint: "
                f"{checkpointer.directory / str(last_good) if last_good is not None else 'none saved yet'}. "
                "Lower the learning rate, enable clipping (config.optimizer.grad_clip_norm) or check the data, then "
                "rerun the command with the change and --allow_config_change to continue from that checkpoint (or "
                "with a new --workdir to start over).")

    summary: dict[str, Any] = {"start": start.source, "first_step": first_step}
    last_eval: tuple[int, dict] | None = None
    if first_step == 0 and evaluators and s.eval_before:
        summary["eval_before"] = evaluate(0)
        last_eval = (0, summary["eval_before"])
    bar = tqdm(total=s.num_steps, initial=first_step, disable=not progress or not runtime.is_writer(),
               dynamic_ncols=True, desc="train")
    t_log, examples, step, stopped_early, pending = time.perf_counter(), 0, first_step, False, None
    t_train, eval_s0 = time.perf_counter(), timing["eval_s"]
    while step < s.num_steps:
        host_batch = next(data)
        if step == first_step:
            objective.check_batch(host_batch)
        state, metrics = step_fn(state, global_batch(host_batch, mesh, rules), reference)
        if pending is not None:
            check(*pending)
        step += 1
        pending = (step, metrics)
        examples += int(np.asarray(host_batch["mask"]).shape[0]) * jax.process_count()
        bar.update(1)
        log = step % s.log_every == 0 or step == s.num_steps
        run_eval = bool(s.eval_every and evaluators and (step % s.eval_every == 0 or step == s.num_steps))
        save_now = bool(s.checkpoint_every and (step % s.checkpoint_every == 0 or step == s.num_steps))
        if log or run_eval or save_now:
            check(*pending)
            pending = None
        if log:
            dt = time.perf_counter() - t_log
            scalars = {k: float(v) for k, v in metrics.items() if k != "finite"}
            scalars["examples_per_s"] = examples / max(dt, 1e-9)
            if lr_fn is not None:
                scalars["learning_rate"] = float(lr_fn(step - 1))
            writer.write(step, scalars)
            bar.set_postfix(loss=f"{scalars['loss']:.4f}")
            t_log, examples = time.perf_counter(), 0
        if run_eval:
            last_eval = (step, evaluate(step))
            if early_stopping.update(step, last_eval[1]) and best_checkpointer is not None:
                best_checkpointer.save(step, {"params": state["params"]}, force=True)
            stopped_early = early_stopping.should_stop
        if s.checkpoint_every and (save_now or stopped_early):
            t0 = time.perf_counter()
            checkpointer.save(step, state, data_state=data.get_state(),
                              meta={"early_stopping": early_stopping.state()}, force=True)
            timing["checkpoint_s"] += time.perf_counter() - t0
            last_good = step
        if stopped_early:
            _log.info("early stopping at step %d: %s did not improve for %d evaluations (best %.4f at %d)",
                      step, early_stopping.metric, early_stopping.patience, early_stopping.best,
                      early_stopping.best_step)
            break
    if pending is not None:
        check(*pending)
    bar.close()
    checkpointer.close()
    timing["train_s"] = time.perf_counter() - t_train - (timing["eval_s"] - eval_s0) - timing["checkpoint_s"]
    summary.update(final_step=step, stopped_early=stopped_early)
    evaluated = last_eval is not None and last_eval[0] == step  # the loop's last evaluation was of these params
    if best_checkpointer is not None and early_stopping.best_step is not None:
        restored, _, _ = best_checkpointer.restore({"params": state["params"]})
        state = dict(state, params=restored["params"])
        summary.update(best_step=early_stopping.best_step, best=early_stopping.best)
        best_checkpointer.close()
        evaluated = evaluated and early_stopping.best_step == step
    if evaluators:
        summary["eval_after"] = last_eval[1] if evaluated else evaluate(step)
    summary["timing"] = {k: round(v, 2) for k, v in timing.items()}
    writer.close()
    if runtime.is_writer():
        writers.plot_curves(writer.rows(), workdir / "curves.png")
    summary["params"] = state["params"]
    return summary
