"""Train state, one jitted train step, and the train-and-evaluate loop.

The step is one ``jax.jit`` with donated state and shardings derived from the model's logical axis
names; model family, loss and optimizer (SAM/ASAM/TRAM through ``grad_fn``) all come from the config.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import pathlib
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding

from ranking_jax import checkpoint as ckpt_lib
from ranking_jax import registry, sharding, writers
from ranking_jax.optim import divergence_of

_log = logging.getLogger(__name__)
Batch = Mapping[str, Any]


class DivergenceError(RuntimeError):
    """A non-finite loss or gradient: the run stops; the last good checkpoint is kept."""


# ------------------------------------------------------------------------------------------ state
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


def init_state(params: Any, tx: optax.GradientTransformation, seed: int, mesh: jax.sharding.Mesh,
               rules) -> dict:
    """``{step, params, opt_state, rng}`` placed on the mesh; optimizer moments inherit parameter shardings.

    ``tx.init`` runs eagerly on the already-sharded params (under ``jit`` it would lose the shardings);
    leaves it leaves unsharded (scalars such as step counts) are replicated.
    """
    # Copy first: device_put may alias the caller's buffers, which the donated step would then delete.
    params = jax.device_put(jax.tree.map(jnp.copy, params), sharding.param_shardings(params, mesh, rules))
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params),
             "rng": jax.random.key_data(jax.random.key(seed))}
    replicated = sharding.replicated(mesh)
    return jax.tree.map(lambda x: x if isinstance(getattr(x, "sharding", None), NamedSharding)
                        and x.sharding.mesh == mesh else jax.device_put(x, replicated), state)


def state_shardings(state: dict) -> Any:
    return jax.tree.map(lambda x: x.sharding, state)


# ------------------------------------------------------------------------------------------- step
def ranking_objective(loss: Callable, *, labels: str = "labels", loss_inputs: Mapping[str, str] = ()) -> Callable:
    """``objective(scores, batch) = loss(scores, batch[labels], where=batch["mask"], **extra)``.

    ``labels`` is the batch key of the loss's second argument: ``"labels"`` for ranking losses,
    ``"teacher_scores"`` for distillation losses (``loss(scores, teacher_scores)``). ``loss_inputs`` maps extra
    loss keyword arguments to batch keys.
    """
    loss_inputs = dict(loss_inputs)

    def objective(scores, batch):
        extra = {name: batch[key] for name, key in loss_inputs.items()}
        return loss(scores, batch[labels], where=batch["mask"], **extra)

    return objective


def objective_loss_fn(model: Model, objective: Callable) -> Callable:
    """``loss_fn(params, batch, rng) -> (objective(outputs, batch), outputs)``: the model's outputs in training
    mode (dropout keyed by ``rng``), then the task's objective, which reads what it needs from the batch."""
    def loss_fn(params, batch, rng):
        outputs = model.merge(params)(batch, deterministic=False, rngs=nnx.Rngs(dropout=rng)).astype(jnp.float32)
        return objective(outputs, batch), outputs

    return loss_fn


def make_loss_fn(model: Model, loss: Callable, *, loss_inputs: Mapping[str, str] = ()) -> Callable:
    """``loss_fn(params, batch, rng) -> (scalar, scores)`` for a ranking loss over scores ``[B, L]``."""
    return objective_loss_fn(model, ranking_objective(loss, loss_inputs=loss_inputs))


def accumulated_value_and_grad(loss_fn: Callable, accum_steps: int) -> Callable:
    """``(loss, scores), grads`` averaged over ``accum_steps`` equal micro-batches (a ``lax.scan``)."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if accum_steps == 1:
        return grad_fn

    def value_and_grad(params, batch, rng):
        def split(x):
            if x.shape[0] % accum_steps:
                raise ValueError(f"batch size {x.shape[0]} is not divisible by config.train.accum_steps="
                                 f"{accum_steps}")
            return x.reshape((accum_steps, x.shape[0] // accum_steps) + x.shape[1:])

        micro = jax.tree.map(split, batch)

        def body(carry, xs):
            i, mb = xs
            (value, scores), grads = grad_fn(params, mb, jax.random.fold_in(rng, i))
            return jax.tree.map(jnp.add, carry, (value, grads)), scores

        zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
        (value, grads), scores = jax.lax.scan(body, zero, (jnp.arange(accum_steps), micro))
        value, grads = jax.tree.map(lambda x: x / accum_steps, (value, grads))
        return (value, scores.reshape((-1,) + scores.shape[2:])), grads

    return value_and_grad


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation, *, accum_steps: int = 1,
                    shardings: Any = None, logits_fn: Callable | None = None):
    """One jitted step ``(state, batch) -> (state, metrics)`` with donated state.

    SAM/ASAM receive ``grad_fn`` (the gradient at other parameters on the same batch and dropout key),
    TRAM also the step's scores as ``logits`` and ``logits_fn(params, batch, key)`` for its reference outputs
    (``key``: a fresh key of the step, for TRAM-x's input noise),
    so one ``tx.update`` is one optimizer step; optimizers ignore the arguments they do not use. A non-finite loss or gradient leaves the state
    unchanged (selected with ``jnp.where``) and reports ``finite=False``; the loop then stops.
    """
    tx = optax.with_extra_args_support(tx)
    value_and_grad = accumulated_value_and_grad(loss_fn, accum_steps)

    def step(state, batch):
        rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        params = state["params"]
        (loss, scores), grads = value_and_grad(params, batch, rng)
        kwargs = dict(grad_fn=lambda p: value_and_grad(p, batch, rng)[1], logits=scores,
                      logits_mask=batch["mask"])
        if logits_fn is not None:
            kwargs["logits_fn"] = lambda p: logits_fn(p, batch, jax.random.fold_in(rng, 1))
        updates, opt_state = tx.update(grads, state["opt_state"], params, **kwargs)
        new_params = optax.apply_updates(params, updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(updates))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        new_state = {"step": state["step"] + finite.astype(jnp.int32), "params": keep(new_params, params),
                     "opt_state": keep(opt_state, state["opt_state"]), "rng": state["rng"]}
        metrics = {"loss": loss, "grad_norm": grad_norm, "param_norm": optax.tree.norm(params),
                   "finite": finite}
        if (d := divergence_of(opt_state)) is not None:
            metrics["tram_d"] = d  # TRAM's trust-region distance this step
        return new_state, metrics

    # batches arrive as global arrays already laid out by sharding.shard_batch
    in_shardings = None if shardings is None else (shardings, None)
    out_shardings = None if shardings is None else (shardings, None)
    return jax.jit(step, donate_argnums=(0,), in_shardings=in_shardings, out_shardings=out_shardings)


# ------------------------------------------------------------------------------------------- loop
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


def train_and_evaluate(*, workdir: str | pathlib.Path, model: Model, params: Any, tx: optax.GradientTransformation,
                       loss_fn: Callable, train_data: Any, mesh: jax.sharding.Mesh, rules, num_steps: int,
                       seed: int = 0, accum_steps: int = 1, log_every: int = 10, eval_every: int = 0,
                       checkpoint_every: int = 0, keep_checkpoints: int = 2, evaluators: Mapping[str, Callable] = (),
                       early_stopping: EarlyStopping | None = None, resume: str = "", lr_fn: Callable | None = None,
                       logits_fn: Callable | None = None, progress: bool = True, trim_padding: bool = True,
                       eval_before: bool = True) -> dict:
    """Trains for ``num_steps`` steps, evaluating, checkpointing and logging; returns the final summary.

    ``train_data`` is an iterator of host batches with ``get_state()``/``set_state()``; ``evaluators``
    map a name to ``evaluator(model_module) -> {metric: value}``. ``trim_padding`` cuts token arrays to
    the batch's longest sequence in power-of-two buckets (a few compiled shapes, no wasted padding).
    ``eval_before`` evaluates the starting params too (``summary["eval_before"]``) on a fresh start.

    The finite-loss guard reads each step's flag only after the next step is dispatched, so the host never
    waits on the device in between; flags are read at once before logging, evaluating or saving, so no
    non-finite state is ever logged, evaluated or checkpointed.
    """
    from tqdm import tqdm

    from ranking_jax.data.pipeline import trim_padding as trim

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = init_state(params, tx, seed, mesh, rules)
    step_fn = make_train_step(loss_fn, tx, accum_steps=accum_steps, shardings=state_shardings(state),
                              logits_fn=logits_fn)
    checkpointer = ckpt_lib.Checkpointer(workdir / "checkpoints", max_to_keep=keep_checkpoints)
    best_checkpointer = ckpt_lib.Checkpointer(workdir / "best", max_to_keep=1, async_save=False) \
        if early_stopping and early_stopping.metric else None
    writer = writers.MetricWriter(workdir)
    early_stopping = early_stopping or EarlyStopping()

    start = ckpt_lib.resolve_start(workdir, resume=resume)
    if start.source in ("workdir", "resume"):
        source = checkpointer if start.source == "workdir" else ckpt_lib.Checkpointer(start.directory)
        state, data_state, meta = source.restore(state, start.step)
        if start.source == "workdir":
            train_data.set_state(data_state)
            for k in ("best", "best_step", "bad_evals"):
                setattr(early_stopping, k, meta.get("early_stopping", {}).get(k, getattr(early_stopping, k)))
            writer.truncate_after(int(state["step"]))
        _log.info("resumed from %s step %d (%s)", start.directory, int(state["step"]), start.source)
    first_step = int(state["step"])
    last_good = checkpointer.latest_step()

    timing = {"eval_s": 0.0, "train_s": 0.0, "checkpoint_s": 0.0}

    def evaluate(step):
        t0 = time.perf_counter()
        module = model.merge(state["params"])
        results = {}
        for name, evaluator in dict(evaluators).items():
            for k, v in evaluator(module).items():
                results[f"{name}/{k}"] = v
        writer.write(step, results, split="eval")
        timing["eval_s"] += time.perf_counter() - t0
        return results

    def save(step, force=False):
        meta = {"early_stopping": {"best": early_stopping.best, "best_step": early_stopping.best_step,
                                   "bad_evals": early_stopping.bad_evals}}
        checkpointer.save(step, state, data_state=train_data.get_state(), meta=meta, force=force)

    def check(step, metrics):
        """The guard: a non-finite step stops the run (its update was not applied in the step)."""
        if not bool(metrics["finite"]):
            checkpointer.wait()
            raise DivergenceError(
                f"non-finite loss or gradient at step {step} (loss={float(metrics['loss'])}, "
                f"grad_norm={float(metrics['grad_norm'])}); the update was not applied. Last good checkpoint: "
                f"{checkpointer.directory / str(last_good) if last_good is not None else 'none saved yet'}. "
                "Lower the learning rate, enable clipping (config.optimizer.grad_clip_norm) or check the data.")

    summary: dict[str, Any] = {"start": start.source, "first_step": first_step}
    last_eval: tuple[int, dict] | None = None
    if first_step == 0 and evaluators and eval_before:
        summary["eval_before"] = evaluate(0)
        last_eval = (0, summary["eval_before"])
    bar = tqdm(total=num_steps, initial=first_step, disable=not progress, dynamic_ncols=True, desc="train")
    t_log, examples = time.perf_counter(), 0
    step = first_step
    stopped_early = False
    pending = None  # (step, metrics) whose finite flag is not yet read
    t_train, eval_s0 = time.perf_counter(), timing["eval_s"]
    while step < num_steps:
        host_batch = next(train_data)
        batch = sharding.shard_batch(trim(dict(host_batch)) if trim_padding else dict(host_batch), mesh, rules)
        state, metrics = step_fn(state, batch)
        if pending is not None:
            check(*pending)
        step += 1
        pending = (step, metrics)
        examples += int(np.asarray(host_batch["mask"]).shape[0]) * jax.process_count()
        bar.update(1)
        log = step % log_every == 0 or step == num_steps
        run_eval = bool(eval_every and evaluators and (step % eval_every == 0 or step == num_steps))
        save_now = bool(checkpoint_every and (step % checkpoint_every == 0 or step == num_steps))
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
        if checkpoint_every and (save_now or stopped_early):
            t0 = time.perf_counter()
            save(step, force=True)
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
    writers.plot_curves(writer.rows(), workdir / "curves.png")
    summary["params"] = state["params"]
    return summary
