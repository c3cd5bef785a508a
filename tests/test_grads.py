"""GradCache (Gao et al. 2021): the chunked two-pass gradient equals the whole-batch gradient of an in-batch loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ranking_jax import grads, objectives, sharding, train
from ranking_jax.models import bi_encoder

CFG = {"vocab_size": 60, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
       "intermediate_size": 32, "max_position_embeddings": 16, "hidden_dropout_prob": 0.0,
       "attention_probs_dropout_prob": 0.0}
B, L, TQ, TD = 8, 3, 5, 7


def _batch(seed=0):
    r = np.random.default_rng(seed)
    q_mask = (np.arange(TQ)[None] < r.integers(2, TQ + 1, B)[:, None]).astype(np.int32)
    d_mask = (np.arange(TD)[None, None] < r.integers(2, TD + 1, (B, L))[..., None]).astype(np.int32)
    labels = np.zeros((B, L), np.float32)
    labels[:, 0] = 1.0
    mask = np.ones((B, L), bool)
    mask[5, 2] = False
    return {"query_ids": r.integers(1, 60, (B, TQ)).astype(np.int32) * q_mask, "query_mask": q_mask,
            "doc_ids": r.integers(1, 60, (B, L, TD)).astype(np.int32) * d_mask, "doc_mask": d_mask,
            "labels": labels, "mask": mask}


OBJECTIVE = objectives.parse("losses.infonce_loss(temperature=0.05) + 0.5 * losses.softmax_loss")


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_grad_cache_equals_the_whole_batch_gradient(chunk):
    model, params = train.split_model(bi_encoder(config=CFG, pooling="mean", similarity="cosine", seed=0))
    batch = jax.tree.map(jnp.asarray, _batch())
    rng = jax.random.key(0)
    (value, aux), g = jax.jit(grads.make_value_and_grad(model, OBJECTIVE))(params, batch, rng)
    (value_gc, aux_gc), g_gc = jax.jit(grads.make_value_and_grad(model, OBJECTIVE, grad_cache_chunk=chunk))(
        params, batch, rng)
    np.testing.assert_allclose(value_gc, value, rtol=1e-6)
    np.testing.assert_allclose(aux_gc["scores"], aux["scores"], atol=1e-6)
    for name in aux["terms"]:
        np.testing.assert_allclose(aux_gc["terms"][name], aux["terms"][name], rtol=1e-6)
    leaves, leaves_gc = jax.tree.leaves(g), jax.tree.leaves(g_gc)
    assert max(float(jnp.max(jnp.abs(x))) for x in leaves) > 1e-3  # a real gradient
    for a, b in zip(leaves, leaves_gc):
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_grad_cache_on_a_mesh_equals_the_plain_gradient():
    """Params and the batch sharded over a (data=4, model=2) mesh: GradCache's gradient equals the plain one up to
    float32 rounding of reductions in another order (relative 1e-5; these gradients reach ~70: cosine scores at
    temperature 0.05), and the train step with ``grad_cache_chunk`` takes the same step."""
    model, params = train.split_model(bi_encoder(config=CFG, pooling="mean", seed=0))
    mesh = sharding.make_mesh([("data", 4), ("model", 2)])
    placed = train.place(params, mesh, sharding.DEFAULT_RULES)
    with jax.set_mesh(mesh), sharding.axis_rules(sharding.DEFAULT_RULES):
        batch = sharding.shard_batch(_batch(), mesh)
        out = [jax.jit(grads.make_value_and_grad(model, OBJECTIVE, grad_cache_chunk=c))(placed, batch,
                                                                                          jax.random.key(0))
               for c in (0, 2)]
    (value, _), g = out[0]
    (value_gc, _), g_gc = out[1]
    assert float(value_gc) == pytest.approx(float(value), rel=1e-6)
    scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(g))
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_gc)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * scale)
    tx = optax.sgd(1e-3)
    state = train.init_state(params, tx, 0, mesh, sharding.DEFAULT_RULES)
    step = train.make_train_step(model, OBJECTIVE, tx, grad_cache_chunk=2, shardings=train.state_shardings(state))
    with jax.set_mesh(mesh), sharding.axis_rules(sharding.DEFAULT_RULES):
        state, metrics = step(state, sharding.shard_batch(_batch(), mesh), None)
    assert float(metrics["loss"]) == pytest.approx(float(value), rel=1e-6)
    for new, old, d in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(params), jax.tree.leaves(g)):
        np.testing.assert_allclose(np.asarray(old) - np.asarray(new), 1e-3 * np.asarray(d), rtol=1e-4,
                                   atol=1e-9 + 2 * float(np.max(np.spacing(np.abs(np.asarray(old))))))


def test_grad_cache_chunk_must_divide_the_batch():
    model, params = train.split_model(bi_encoder(config=CFG, seed=0))
    with pytest.raises(ValueError, match="8 rows cannot be split into GradCache chunks of 3"):
        grads.make_value_and_grad(model, OBJECTIVE, grad_cache_chunk=3)(params, _batch(), jax.random.key(0))
    with pytest.raises(ValueError, match="set one of them"):
        grads.make_value_and_grad(model, OBJECTIVE, accum_steps=2, grad_cache_chunk=2)
