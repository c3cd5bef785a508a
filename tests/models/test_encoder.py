"""ranking_jax.models.encoder: forward vs an independent NumPy BERT written on Hugging Face-layout tensors
(tests/_models.py), dropout, bf16, remat, sharded forward/backward on 8 devices, no recompiles. Tiny random configs
only (fast)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from _models import TINY, numpy_bert, random_hf_tensors, tiny_cross_encoder, tiny_inputs, tiny_pair_batch
from ranking_jax import sharding
from ranking_jax.models import pretrained as hf
from ranking_jax.models.encoder import Encoder, dropout, mean_pool, mixed_einsum


@pytest.fixture(scope="module")
def tiny():
    tensors = random_hf_tensors(TINY)
    with nnx.use_eager_sharding(False):
        enc = Encoder(TINY, rngs=nnx.Rngs(0))
    loaded = hf.load_encoder_weights(enc, tensors)
    assert sorted(loaded) == sorted(tensors)  # every tensor mapped exactly once
    return enc, tensors


# ---------------------------------------------------------------- numerics

def test_forward_matches_numpy_reference(tiny):
    enc, tensors = tiny
    ids, mask, type_ids = tiny_inputs()
    ours = np.asarray(enc(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(type_ids)))
    ref = numpy_bert(ids, mask, type_ids, tensors, TINY)
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], ref[real], atol=2e-5, rtol=0)
    # leading dims are flattened and restored: [B, L, T] works like [B*L, T]
    ours3 = np.asarray(enc(jnp.asarray(ids.reshape(1, 3, -1)), jnp.asarray(mask.reshape(1, 3, -1)),
                           jnp.asarray(type_ids.reshape(1, 3, -1))))
    np.testing.assert_allclose(ours3.reshape(ours.shape), ours, atol=1e-6)


def test_padding_does_not_change_real_tokens(tiny):
    enc, _ = tiny
    ids, mask, type_ids = tiny_inputs()
    pad = ((0, 0), (0, 7))
    a = np.asarray(enc(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(type_ids)))
    b = np.asarray(enc(jnp.asarray(np.pad(ids, pad, constant_values=5)), jnp.asarray(np.pad(mask, pad)),
                       jnp.asarray(np.pad(type_ids, pad))))
    real = mask.astype(bool)
    np.testing.assert_allclose(b[:, :ids.shape[1]][real], a[real], atol=1e-5)


def test_first_tokens_equal_the_numpy_reference_and_the_full_gradient(tiny):
    """``first_tokens=n`` computes the last layer for the first n positions only; a row that is all
    padding (a filler row of a padded batch) stays finite."""
    enc, tensors = tiny
    ids, mask, type_ids = tiny_inputs(n=4)
    mask[3] = 0
    ref = numpy_bert(ids, mask, type_ids, tensors, TINY)
    for n in (1, 3):
        ours = np.asarray(enc(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(type_ids), first_tokens=n))
        assert ours.shape == (4, n, TINY.hidden_size) and np.isfinite(ours[3]).all()
        np.testing.assert_allclose(ours[:3], ref[:3, :n], atol=2e-5, rtol=0)
    x = enc.embed(jnp.asarray(ids))
    np.testing.assert_array_equal(enc.run_layers(x, jnp.asarray(mask, bool), slice(2, None), first_tokens=2),
                                  x[:, :2])
    graphdef, params = nnx.split(enc, nnx.Param)

    def loss(p, first):
        h = nnx.merge(graphdef, p)(jnp.asarray(ids), jnp.asarray(mask), first_tokens=first)
        return jnp.sum(jnp.sin(h[:, 0]))

    for a, b in zip(jax.tree.leaves(jax.grad(loss)(params, 1)), jax.tree.leaves(jax.grad(loss)(params, None))):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_too_long_input_raises(tiny):
    enc, _ = tiny
    with pytest.raises(ValueError, match="max_position_embeddings 40"):
        enc(jnp.ones((1, 41), jnp.int32), jnp.ones((1, 41), jnp.int32))


def test_mixed_einsum_bf16_gradients_match_rounded_float64():
    """bf16 mode: forward and both backward matmuls use bf16-rounded operands, f32 accumulation."""
    rng = np.random.default_rng(0)
    a, b, g = rng.normal(size=(5, 7)), rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    a32, b32, g32 = (jnp.asarray(x, jnp.float32) for x in (a, b, g))
    out, vjp = jax.vjp(lambda x, y: mixed_einsum("ik,kj->ij", x, y, jnp.bfloat16), a32, b32)
    da, db = vjp(g32)
    r = lambda x: np.asarray(jnp.asarray(x, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32)).astype(np.float64)  # noqa: E731
    np.testing.assert_allclose(out, r(a) @ r(b), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(da, r(g) @ r(b).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, r(a).T @ r(g), rtol=1e-5, atol=1e-5)
    assert out.dtype == da.dtype == db.dtype == jnp.float32
    # float32 mode is the plain einsum
    np.testing.assert_allclose(mixed_einsum("ik,kj->ij", a32, b32), a @ b, rtol=1e-5, atol=1e-5)


def test_bf16_compute_close_to_float32(tiny):
    enc, _ = tiny
    ids, mask, type_ids = tiny_inputs()
    f32 = np.asarray(mean_pool(enc(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(type_ids)), jnp.asarray(mask)))
    enc.dtype = "bfloat16"
    try:
        b16 = np.asarray(mean_pool(enc(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(type_ids)),
                                   jnp.asarray(mask)))
    finally:
        enc.dtype = "float32"
    cos = (f32 * b16).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(b16, axis=1)
    assert cos.min() > 0.999, cos
    assert not np.allclose(f32, b16, atol=1e-6)  # it really ran in bf16


def test_dropout_is_unbiased_with_exact_keep_rate():
    x = jnp.ones((400_000,), jnp.float32)
    y = np.asarray(dropout(x, 0.1, nnx.Rngs(dropout=3), deterministic=False))
    kept = y != 0
    threshold = round(0.1 * 65536)
    keep_p = (65536 - threshold) / 65536
    assert abs(kept.mean() - keep_p) < 4 * math.sqrt(keep_p * (1 - keep_p) / x.size)
    np.testing.assert_allclose(y[kept], 1.0 / keep_p, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 5e-3
    # no-ops: deterministic, or no rngs (the family contract), or rate 0
    assert dropout(x, 0.1, nnx.Rngs(dropout=3), deterministic=True) is x
    assert dropout(x, 0.1, None, deterministic=False) is x


def test_dropout_in_encoder_uses_rngs(tiny):
    enc, _ = tiny
    ids, mask, type_ids = (jnp.asarray(a) for a in tiny_inputs())
    det = enc(ids, mask, type_ids)
    np.testing.assert_array_equal(enc(ids, mask, type_ids, deterministic=False), det)  # no rngs: off
    d1 = enc(ids, mask, type_ids, deterministic=False, rngs=nnx.Rngs(dropout=1))
    d1b = enc(ids, mask, type_ids, deterministic=False, rngs=nnx.Rngs(dropout=1))
    d2 = enc(ids, mask, type_ids, deterministic=False, rngs=nnx.Rngs(dropout=2))
    np.testing.assert_array_equal(d1, d1b)
    assert not np.allclose(d1, det, atol=1e-3) and not np.allclose(d1, d2, atol=1e-3)


def _loss_and_grads(model, batch, key=None):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        m = nnx.merge(graphdef, p, rest)
        rngs = None if key is None else nnx.Rngs(dropout=key)
        s = m(batch, deterministic=key is None, rngs=rngs)
        return jnp.sum(jnp.where(batch["mask"], jax.nn.log_softmax(s), 0.0) * batch["labels"])

    return jax.jit(jax.value_and_grad(loss))(params)


def test_remat_gives_identical_loss_and_grads():
    batch = tiny_pair_batch()
    l0, g0 = _loss_and_grads(tiny_cross_encoder(), batch, jax.random.key(4))
    l1, g1 = _loss_and_grads(tiny_cross_encoder(remat=True), batch, jax.random.key(4))
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_bf16_gradients_close_to_float32():
    batch = tiny_pair_batch()
    _, g0 = _loss_and_grads(tiny_cross_encoder(), batch)
    _, g1 = _loss_and_grads(tiny_cross_encoder(dtype="bfloat16"), batch)
    a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g0)])
    b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g1)])
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.995


# ---------------------------------------------------------------- sharding

def test_logical_axis_names_on_every_parameter():
    model = tiny_cross_encoder()
    state = nnx.state(model, nnx.Param)
    names = {"/".join(map(str, path)): v.get_metadata().get("out_sharding")
             for path, v in nnx.to_flat_state(state)}
    assert all(n is not None and len(n) >= 1 for n in names.values()), names
    assert names["encoder/layers/0/qkv_kernel"] == ("embed", None, "heads", "kv")
    assert names["encoder/layers/0/mlp_kernel"] == ("embed", "mlp")
    assert names["encoder/embeddings/word"] == ("vocab", "embed")
    mesh = sharding.make_mesh([("data", -1), ("model", 2)])
    specs = sharding.param_specs(state, sharding.DEFAULT_RULES, mesh)
    assert specs["encoder"]["layers"][0]["mlp_kernel"] == P(None, "model")
    assert specs["encoder"]["layers"][0]["qkv_kernel"] == P(None, None, "model")
    assert specs["encoder"]["layers"][0]["out_kernel"] == P("model")
    fsdp = sharding.param_specs(state, sharding.FSDP_RULES, mesh)
    assert fsdp["encoder"]["layers"][0]["mlp_kernel"] == P("data", "model")


def _sharded_loss_and_grads(model, batch, mesh, rules):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    p_sh = sharding.param_shardings(params, mesh, rules)
    params = jax.device_put(params, p_sh)
    batch = sharding.shard_batch(batch, mesh, rules)

    def loss(p, batch):
        m = nnx.merge(graphdef, p, rest)
        s = m(batch)
        return jnp.sum(jnp.where(batch["mask"], jax.nn.log_softmax(s), 0.0) * batch["labels"]), s

    with jax.set_mesh(mesh), sharding.axis_rules(rules):
        (val, scores), grads = jax.jit(jax.value_and_grad(loss, has_aux=True), out_shardings=(
            (sharding.replicated(mesh), sharding.batch_sharding(mesh, 2, rules)), p_sh))(params, batch)
    return val, scores, grads


@pytest.mark.parametrize("mesh_spec,rules", [
    ([("data", 4), ("model", 2)], sharding.DEFAULT_RULES),
    ([("data", 8)], sharding.DEFAULT_RULES),
    ([("data", 4), ("model", 2)], sharding.FSDP_RULES),
])
def test_sharded_forward_and_backward_equal_single_device(mesh_spec, rules):
    model, batch = tiny_cross_encoder(), tiny_pair_batch()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    dev0 = jax.devices()[0]
    single_loss, single_grads = jax.jit(jax.value_and_grad(lambda p: jnp.sum(
        jnp.where(batch["mask"], jax.nn.log_softmax(nnx.merge(graphdef, p, rest)(batch)), 0.0) * batch["labels"])),
        device=None)(jax.device_put(params, dev0))
    single_scores = nnx.merge(graphdef, params, rest)(batch)
    mesh = sharding.make_mesh(mesh_spec)
    val, scores, grads = _sharded_loss_and_grads(model, batch, mesh, rules)
    np.testing.assert_allclose(val, single_loss, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(scores, single_scores, atol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(single_grads)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    kernel = grads["encoder"]["layers"][0]["mlp_kernel"]
    assert len(kernel.sharding.device_set) == 8
    if "model" in mesh.axis_names:
        assert kernel.addressable_shards[0].data.shape == (32 if rules is sharding.DEFAULT_RULES else 8, 32)


def test_second_step_does_not_recompile():
    model, batch = tiny_cross_encoder(), tiny_pair_batch()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(1e-3)
    traces = []

    def step(p, opt, batch, key):
        traces.append(1)

        def loss(p):
            s = nnx.merge(graphdef, p, rest)(batch, deterministic=False, rngs=nnx.Rngs(dropout=key))
            return jnp.sum(jnp.where(batch["mask"], jax.nn.log_softmax(s), 0.0) * batch["labels"])

        val, g = jax.value_and_grad(loss)(p)
        updates, opt = tx.update(g, opt, p)
        return optax.apply_updates(p, updates), opt, val

    jstep = jax.jit(step, donate_argnums=(0, 1))
    opt = tx.init(params)
    params, opt, l0 = jstep(params, opt, batch, jax.random.key(0))
    other = tiny_pair_batch(seed=5)  # same shapes, new values
    params, opt, l1 = jstep(params, opt, other, jax.random.key(1))
    assert len(traces) == 1 and jstep._cache_size() == 1
    assert np.isfinite(l0) and np.isfinite(l1) and l0 != l1


def test_sentence_transformers_poolings_against_numpy():
    """max (padding never wins) and mean_sqrt_len (sum / sqrt(n)) as sentence-transformers' Pooling computes them."""
    from ranking_jax.models.encoder import pool
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 5, 4)).astype(np.float32)
    h[:, 3:] = 50.0  # padded positions hold large values that must not leak in
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]], np.int32)
    n = mask.sum(1)
    want_max = np.stack([h[i, :n[i]].max(0) for i in range(3)])
    want_sqrt = np.stack([h[i, :n[i]].sum(0) / np.sqrt(n[i]) for i in range(3)])
    np.testing.assert_allclose(pool(jnp.asarray(h), jnp.asarray(mask), "max"), want_max, rtol=1e-6)
    np.testing.assert_allclose(pool(jnp.asarray(h), jnp.asarray(mask), "mean_sqrt_len"), want_sqrt, rtol=1e-6)
