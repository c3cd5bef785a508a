"""Train step and loop: accumulation, NaN guard, exact resume, early stopping, logging outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from helpers import metric_rows
from ranking_jax import grads, objectives, sharding, train
from ranking_jax.models.mlp import MlpRanker

RULES = sharding.DEFAULT_RULES


class SyntheticLists:
    """Deterministic LTR batches: batch i depends only on (seed, i); state is the next index."""

    def __init__(self, *, seed=0, batch=8, list_size=6, features=5, nan_at=None):
        self.seed, self.batch, self.list_size, self.features, self.nan_at = seed, batch, list_size, features, nan_at
        self.index = 0
        self.w = np.random.default_rng(123).normal(size=features)

    def __next__(self):
        rng = np.random.default_rng([self.seed, self.index])
        x = rng.normal(size=(self.batch, self.list_size, self.features)).astype(np.float32)
        labels = np.clip(np.round(x @ self.w + rng.normal(scale=0.3, size=x.shape[:2])), 0, 4).astype(np.float32)
        mask = np.ones(x.shape[:2], bool)
        mask[:, -1] = rng.random(self.batch) < 0.5
        if self.nan_at is not None and self.index == self.nan_at:
            x[0, 0, 0] = np.nan
            mask[0, 0] = True
        self.index += 1
        return {"features": x, "labels": labels * mask, "mask": mask}

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = int(state["index"])


def softmax_ce(scores, labels, *, where):
    """Listwise softmax cross-entropy written out here (independent of ranking_jax.losses)."""
    scores = jnp.where(where, scores, -1e9)
    logp = jax.nn.log_softmax(scores, axis=-1)
    return jnp.mean(-jnp.sum(jnp.where(where, labels * logp, 0.0), -1))


def _model(seed=0):
    with nnx.use_eager_sharding(False):
        return train.split_model(MlpRanker(5, hidden=(16, 8), dropout=0.0, rngs=nnx.Rngs(seed)))


OBJECTIVE = objectives.Objective.of(softmax_ce)
SCHEDULE_KEYS = ("log_every", "eval_every", "checkpoint_every", "eval_before", "accum_steps")


def _run(tmp_path, steps, *, data=None, log_every=1, **kw):
    model, params = _model()
    mesh = sharding.make_mesh([("data", -1), ("model", 2)])
    schedule = train.Schedule(num_steps=steps, log_every=log_every,
                              **{k: kw.pop(k) for k in SCHEDULE_KEYS if k in kw})
    return train.train_and_evaluate(
        workdir=tmp_path, model=model, params=params, tx=optax.adam(1e-2), objective=OBJECTIVE,
        data=data or SyntheticLists(), mesh=mesh, rules=RULES, schedule=schedule, progress=False, **kw)


def test_train_step_equals_manual_optax_loop():
    model, params = _model()
    # SGD with momentum: Adam would turn the float noise of the output bias's zero gradient (softmax is
    # shift-invariant) into full-size steps.
    tx = optax.sgd(0.1, momentum=0.9)
    mesh = sharding.make_mesh([("data", 4), ("model", 2)])
    state = train.init_state(params, tx, 0, mesh, RULES)
    step = train.make_train_step(model, OBJECTIVE, tx, shardings=train.state_shardings(state))
    data = SyntheticLists()
    ref_params, ref_opt = params, tx.init(params)
    for i in range(3):
        b = next(data)
        state, m = step(state, sharding.shard_batch(b, mesh), None)
        loss, g = jax.value_and_grad(lambda p: softmax_ce(model.merge(p)(jax.tree.map(jnp.asarray, b)),
                                                          b["labels"], where=b["mask"]))(ref_params)
        upd, ref_opt = tx.update(g, ref_opt, ref_params)
        ref_params = optax.apply_updates(ref_params, upd)
        np.testing.assert_allclose(float(m["loss"]), float(loss), rtol=1e-5)
    assert int(state["step"]) == 3
    for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(ref_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    kernel = state["params"]["layers"][0]["kernel"]
    assert kernel[...].sharding.spec == jax.sharding.PartitionSpec(None, "model")


def test_gradient_accumulation_equals_full_batch():
    model, params = _model()
    batch = jax.tree.map(jnp.asarray, next(SyntheticLists(batch=8)))
    batch["mask"] = jnp.ones_like(batch["mask"])  # equal valid lists per micro-batch: mean of means = mean
    full = grads.make_value_and_grad(model, OBJECTIVE)(params, batch, jax.random.key(0))
    acc = grads.make_value_and_grad(model, OBJECTIVE, accum_steps=4)(params, batch, jax.random.key(0))
    np.testing.assert_allclose(float(acc[0][0]), float(full[0][0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(acc[0][1]["scores"]), np.asarray(full[0][1]["scores"]), atol=1e-6)
    for a, b in zip(jax.tree.leaves(acc[1]), jax.tree.leaves(full[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_nan_guard_stops_with_step_and_keeps_checkpoint(tmp_path):
    with pytest.raises(train.DivergenceError, match=r"at step 4 .*Last good checkpoint: .*checkpoints/2.*"
                       r"--allow_config_change to continue from that checkpoint"):
        _run(tmp_path, 10, data=SyntheticLists(nan_at=3), checkpoint_every=2)
    from ranking_jax.checkpoint import Checkpointer
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 2
    # the recovery the message names: the same workdir, the cause fixed, continues from the last good checkpoint
    summary = _run(tmp_path, 10, data=SyntheticLists(), checkpoint_every=2)
    assert (summary["start"], summary["first_step"]) == ("workdir", 2)
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 10


def test_nan_guard_between_log_steps(tmp_path):
    """Step 4 is neither logged nor saved: its flag is read after step 5 is dispatched, and still names step 4."""
    with pytest.raises(train.DivergenceError, match=r"at step 4 .*Last good checkpoint: .*checkpoints/3"):
        _run(tmp_path, 10, data=SyntheticLists(nan_at=3), checkpoint_every=3, log_every=10)
    from ranking_jax.checkpoint import Checkpointer
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 3


def test_resume_continues_exactly(tmp_path):
    full = _run(tmp_path / "full", 6)
    _run(tmp_path / "split", 3, checkpoint_every=3)
    resumed = _run(tmp_path / "split", 6, checkpoint_every=3)
    assert resumed["start"] == "workdir" and resumed["first_step"] == 3
    for a, b in zip(jax.tree.leaves(full["params"]), jax.tree.leaves(resumed["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["step"] for r in metric_rows(tmp_path / "split", "train")] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "split" / "curves.png").stat().st_size > 1000
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "split" / "tensorboard").iterdir())


def test_early_stopping_restores_best(tmp_path):
    values = iter([0.5, 0.7, 0.6, 0.65, 0.1, 0.1])
    summary = _run(tmp_path, 20, evaluators={"dev": lambda m: {"score": next(values)}}, eval_every=2,
                   early_stopping=train.EarlyStopping(metric="dev/score", patience=2), checkpoint_every=2)
    # evals at steps 0 (before), 2 (0.7 best), 4 (0.6), 6 (0.65) -> 2 bad evaluations -> stop at 6
    assert summary["stopped_early"] and summary["final_step"] == 6
    assert summary["best_step"] == 2 and summary["best"] == pytest.approx(0.7)


@pytest.mark.parametrize("eval_before", [True, False])
def test_eval_before_switch_and_zero_step_runs_evaluate_once(tmp_path, eval_before):
    """``eval_before=False`` skips the evaluation of the starting params; a 0-step run (a pre-trained baseline)
    evaluates them exactly once either way."""
    calls = []
    evaluators = {"dev": lambda m: calls.append(1) or {"score": float(len(calls))}}
    summary = _run(tmp_path / "zero", 0, evaluators=evaluators, eval_before=eval_before)
    assert len(calls) == 1 and summary["final_step"] == 0 and summary["eval_after"] == {"dev/score": 1.0}
    assert ("eval_before" in summary) == eval_before
    calls.clear()
    summary = _run(tmp_path / "three", 3, evaluators=evaluators, eval_before=eval_before)
    assert len(calls) == 1 + eval_before and summary["eval_after"] == {"dev/score": float(len(calls))}
