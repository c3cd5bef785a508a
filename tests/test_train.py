"""Train step and loop: accumulation, exact resume, early stopping, logging outputs. (The NaN guard, a fault, is
tests/faults/test_divergence.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import SyntheticLists, metric_rows, mlp_ranker, softmax_ce, softmax_ce_objective, train_synthetic
from ranking_jax import grads, sharding, train

RULES = sharding.DEFAULT_RULES
OBJECTIVE = softmax_ce_objective()


def test_train_step_equals_manual_optax_loop():
    model, params = mlp_ranker()
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
    model, params = mlp_ranker()
    batch = jax.tree.map(jnp.asarray, next(SyntheticLists(batch=8)))
    batch["mask"] = jnp.ones_like(batch["mask"])  # equal valid lists per micro-batch: mean of means = mean
    full = grads.make_value_and_grad(model, OBJECTIVE)(params, batch, jax.random.key(0))
    acc = grads.make_value_and_grad(model, OBJECTIVE, accum_steps=4)(params, batch, jax.random.key(0))
    np.testing.assert_allclose(float(acc[0][0]), float(full[0][0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(acc[0][1]["scores"]), np.asarray(full[0][1]["scores"]), atol=1e-6)
    for a, b in zip(jax.tree.leaves(acc[1]), jax.tree.leaves(full[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_resume_continues_exactly(tmp_path):
    full = train_synthetic(tmp_path / "full", 6)
    train_synthetic(tmp_path / "split", 3, checkpoint_every=3)
    resumed = train_synthetic(tmp_path / "split", 6, checkpoint_every=3)
    assert resumed["start"] == "workdir" and resumed["first_step"] == 3
    for a, b in zip(jax.tree.leaves(full["params"]), jax.tree.leaves(resumed["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["step"] for r in metric_rows(tmp_path / "split", "train")] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "split" / "curves.png").stat().st_size > 1000
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "split" / "tensorboard").iterdir())


def test_early_stopping_restores_best(tmp_path):
    values = iter([0.5, 0.7, 0.6, 0.65, 0.1, 0.1])
    summary = train_synthetic(tmp_path, 20, evaluators={"dev": lambda m: {"score": next(values)}}, eval_every=2,
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
    summary = train_synthetic(tmp_path / "zero", 0, evaluators=evaluators, eval_before=eval_before)
    assert len(calls) == 1 and summary["final_step"] == 0 and summary["eval_after"] == {"dev/score": 1.0}
    assert ("eval_before" in summary) == eval_before
    calls.clear()
    summary = train_synthetic(tmp_path / "three", 3, evaluators=evaluators, eval_before=eval_before)
    assert len(calls) == 1 + eval_before and summary["eval_after"] == {"dev/score": float(len(calls))}
