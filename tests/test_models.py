"""Score functions and the model families against NumPy references (tiny random configs, HF-layout weights)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ranking_jax import registry, scoring
from ranking_jax.models import pretrained as hf
from ranking_jax.models.tk import sinusoidal_positions
from test_encoder import TINY, np_layer, numpy_bert, random_hf_tensors, tiny_inputs

B, L, TQ, TD = 2, 3, 7, 9
TENSORS = random_hf_tensors(TINY)
CFG = {f: getattr(TINY, f) for f in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                     "intermediate_size", "max_position_embeddings")}


def build(name, **kw):
    model = registry.lookup(f"models.{name}")(config=CFG, **kw)
    for enc in [getattr(model, a, None) for a in ("encoder", "query_encoder", "doc_encoder")]:
        if enc is not None:
            hf.load_encoder_weights(enc, TENSORS)
    return model


def text_batch(seed=0):
    q_ids, q_mask, _ = tiny_inputs(B, TQ, seed=seed)
    d_ids, d_mask, _ = tiny_inputs(B * L, TD, seed=seed + 1)
    d_mask[-1] = 0  # a padded candidate slot: no real tokens
    d_ids[-1] = 0
    mask = np.ones((B, L), bool)
    mask[-1, -1] = False
    return {"query_ids": q_ids, "query_mask": q_mask, "doc_ids": d_ids.reshape(B, L, TD),
            "doc_mask": d_mask.reshape(B, L, TD), "labels": np.ones((B, L), np.float32), "mask": mask}


def np_hidden(ids, mask, type_ids=None):
    flat = ids.reshape(-1, ids.shape[-1])
    m = mask.reshape(flat.shape)
    t = np.zeros_like(flat) if type_ids is None else type_ids.reshape(flat.shape)
    return numpy_bert(flat, m, t, TENSORS, TINY).reshape(*ids.shape, -1)


# ---------------------------------------------------------------- scoring

def np_maxsim(q, d, qm, dm):
    out = np.zeros(d.shape[:2])
    for b in range(d.shape[0]):
        for l in range(d.shape[1]):
            if not dm[b, l].any():
                continue
            for i in range(q.shape[1]):
                if qm[b, i]:
                    out[b, l] += max(q[b, i] @ d[b, l, j] for j in range(d.shape[2]) if dm[b, l, j])
    return out


def test_dot_cosine_and_matrices():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(B, 5)), rng.normal(size=(B, L, 5))
    np.testing.assert_allclose(scoring.dot(jnp.asarray(q), jnp.asarray(d)), np.einsum("bd,bld->bl", q, d), rtol=1e-5)
    cos = np.einsum("bd,bld->bl", q, d) / np.linalg.norm(q, axis=-1)[:, None] / np.linalg.norm(d, axis=-1)
    np.testing.assert_allclose(scoring.cosine(jnp.asarray(q), jnp.asarray(d)), cos, rtol=1e-5)
    dd = d.reshape(-1, 5)
    np.testing.assert_allclose(scoring.dot_matrix(jnp.asarray(q), jnp.asarray(dd)), q @ dd.T, rtol=1e-5)
    n = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(scoring.cosine_matrix(jnp.asarray(q), jnp.asarray(dd)), n(q) @ n(dd).T, rtol=1e-5)
    # a zero vector: finite value and gradient
    g = jax.grad(lambda x: scoring.cosine(x, jnp.ones((1, 5))).sum())(jnp.zeros(5))
    assert np.isfinite(g).all()


@pytest.mark.parametrize("chunk", [None, 1, 2, 16])
def test_maxsim_matches_naive_loop(chunk):
    rng = np.random.default_rng(1)
    q, d = rng.normal(size=(B, 4, 6)), rng.normal(size=(B, 5, 3, 6))
    qm, dm = rng.random((B, 4)) > 0.3, rng.random((B, 5, 3)) > 0.3
    dm[0, 2] = False
    ours = scoring.maxsim(jnp.asarray(q), jnp.asarray(d), jnp.asarray(qm), jnp.asarray(dm), chunk_size=chunk)
    np.testing.assert_allclose(ours, np_maxsim(q, d, qm, dm), rtol=1e-5, atol=1e-5)
    assert ours[0, 2] == 0.0
    grad = jax.grad(lambda d: scoring.maxsim(jnp.asarray(q), d, jnp.asarray(qm), jnp.asarray(dm),
                                             chunk_size=chunk).sum())(jnp.asarray(d))
    ref = jax.grad(lambda d: scoring.maxsim(jnp.asarray(q), d, jnp.asarray(qm), jnp.asarray(dm),
                                            chunk_size=None).sum())(jnp.asarray(d))
    np.testing.assert_allclose(grad, ref, atol=1e-6)
    assert np.isfinite(grad).all() and not np.asarray(grad)[~dm].any()  # masked tokens get no gradient
    mat = scoring.maxsim_matrix(jnp.asarray(q), jnp.asarray(d.reshape(-1, 3, 6)), jnp.asarray(qm),
                                jnp.asarray(dm.reshape(-1, 3)), chunk_size=chunk)
    full = np_maxsim(q, np.broadcast_to(d.reshape(1, -1, 3, 6), (B, 10, 3, 6)), qm,
                     np.broadcast_to(dm.reshape(1, -1, 3), (B, 10, 3)))
    np.testing.assert_allclose(mat, full, rtol=1e-5, atol=1e-5)


def test_kernel_pooling_matches_knrm_formula():
    rng = np.random.default_rng(2)
    sim = rng.uniform(-1, 1, (2, 4, 5))
    sim[0, 0, 0] = 1.0
    qm, dm = rng.random((2, 4)) > 0.3, rng.random((2, 5)) > 0.3
    mus, sigmas = scoring.TK_KERNEL_MUS, [0.001] + [0.1] * 10
    alpha = rng.uniform(0.5, 2, 11)
    ref = np.zeros((2, 11))
    for b in range(2):
        for k in range(11):
            for i in range(4):
                if qm[b, i]:
                    s = sum(math.exp(-(sim[b, i, j] - mus[k]) ** 2 / (2 * sigmas[k] ** 2)) for j in range(5) if dm[b, j])
                    ref[b, k] += math.log(max(alpha[k] * s, 1e-10))
    ours = scoring.kernel_pooling(jnp.asarray(sim, jnp.float32), jnp.asarray(qm), jnp.asarray(dm), mus=mus,
                                  sigmas=sigmas, scale=jnp.asarray(alpha, jnp.float32))
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
    assert scoring.TK_KERNEL_MUS == (1.0, 0.9, 0.7, 0.5, 0.3, 0.1, -0.1, -0.3, -0.5, -0.7, -0.9)


# ---------------------------------------------------------------- families

def test_cross_encoder_matches_numpy():
    model = build("cross_encoder")
    ids, mask, types = tiny_inputs(B * L, 12, seed=3)
    batch = {"pair_ids": ids.reshape(B, L, 12), "pair_mask": mask.reshape(B, L, 12),
             "pair_type_ids": types.reshape(B, L, 12)}
    h = np_hidden(batch["pair_ids"], batch["pair_mask"], batch["pair_type_ids"])
    ref = h[..., 0, :] @ np.asarray(model.head.kernel[...])[:, 0] + np.asarray(model.head.bias[...])[0]
    np.testing.assert_allclose(model(batch), ref, atol=2e-5)
    np.testing.assert_array_equal(model(batch, deterministic=False), model(batch))  # no rngs -> no dropout


@pytest.mark.parametrize("pooling,similarity", [("cls", "dot"), ("mean", "cosine")])
def test_bi_encoder_matches_numpy(pooling, similarity):
    model = build("bi_encoder", pooling=pooling, similarity=similarity)
    batch = text_batch()
    hq, hd = np_hidden(batch["query_ids"], batch["query_mask"]), np_hidden(batch["doc_ids"], batch["doc_mask"])

    def pool(h, m):
        if pooling == "cls":
            v = h[..., 0, :]
        else:
            v = (h * m[..., None]).sum(-2) / np.maximum(m.sum(-1, keepdims=True), 1e-9)
        return v / np.linalg.norm(v, axis=-1, keepdims=True) if similarity == "cosine" else v

    q, d = pool(hq, batch["query_mask"]), pool(hd, batch["doc_mask"])
    scores = model(batch)
    real = batch["mask"]
    np.testing.assert_allclose(np.asarray(scores)[real], np.einsum("bd,bld->bl", q, d)[real], atol=3e-5)
    outputs = model.outputs(model.represent(dict(batch, pseudo_ids=batch["query_ids"],
                                                 pseudo_mask=batch["query_mask"])),
                            batch, ("score_matrix", "pseudo_scores"))
    mat = np.asarray(outputs["score_matrix"])  # every query against every document of the batch
    assert mat.shape == (B, B * L)
    cols = real.reshape(-1)  # padded documents' vectors are not compared
    np.testing.assert_allclose(mat[:, cols], np.einsum("bd,cld->bcl", q, d).reshape(B, B * L)[:, cols], atol=3e-5)
    np.testing.assert_allclose(np.asarray(outputs["pseudo_scores"])[real], np.asarray(scores)[real], atol=1e-5)
    np.testing.assert_allclose(model.encode_queries(batch["query_ids"], batch["query_mask"]), q, atol=3e-5)


def test_bi_encoder_separate_towers_are_independent():
    model = build("bi_encoder", shared=False)
    batch = text_batch()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        return nnx.merge(graphdef, p, rest)(batch).sum()

    g = jax.grad(loss)(params)
    assert np.abs(np.asarray(g["doc_encoder"]["layers"][0]["mlp_kernel"])).sum() > 0
    assert np.abs(np.asarray(g["query_encoder"]["layers"][0]["mlp_kernel"])).sum() > 0
    before = model.encode_queries(batch["query_ids"], batch["query_mask"])
    model.doc_encoder.layers[0].mlp_kernel[...] = model.doc_encoder.layers[0].mlp_kernel[...] * 3.0
    np.testing.assert_array_equal(model.encode_queries(batch["query_ids"], batch["query_mask"]), before)


@pytest.mark.parametrize("skip", [(), (5, 7, 11)])
def test_colbert_matches_numpy(skip):
    model = build("colbert", dim=8, skip_ids=skip, chunk_size=2)
    batch = text_batch()
    w = np.asarray(model.projection.kernel[...])
    norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    q = norm(np_hidden(batch["query_ids"], batch["query_mask"]) @ w)
    d = norm(np_hidden(batch["doc_ids"], batch["doc_mask"]) @ w)
    dm = batch["doc_mask"].astype(bool) & ~np.isin(batch["doc_ids"], skip)
    ref = np_maxsim(q, d, batch["query_mask"].astype(bool), dm)
    np.testing.assert_allclose(model(batch), ref, atol=3e-5)
    mat = model.outputs(model.represent(batch), batch, ("score_matrix",))["score_matrix"]
    np.testing.assert_allclose(np.asarray(mat).reshape(B, B, L)[np.arange(B), np.arange(B)], ref, atol=3e-5)
    other = np_maxsim(q[1:2].repeat(B, 0), d, batch["query_mask"][1:2].astype(bool).repeat(B, 0), dm)
    np.testing.assert_allclose(np.asarray(mat)[1].reshape(B, L), other, atol=3e-5)  # query 1 vs every document


def np_tk(model, batch):
    """ECAI20_TK forward in NumPy from the model's parameters."""
    emb = np.asarray(model.embeddings[...], np.float64)
    layer_tensors = []
    for layer in model.layers:
        w = {k: np.asarray(getattr(layer, k)[...], np.float64) for k in
             ("qkv_kernel", "qkv_bias", "out_kernel", "out_bias", "mlp_kernel", "mlp_bias", "mlp_out_kernel",
              "mlp_out_bias")}
        d = w["qkv_kernel"].shape[0]
        t = {}
        for j, n in enumerate(("query", "key", "value")):
            t[f"attention.self.{n}.weight"] = w["qkv_kernel"][:, j].reshape(d, d).T
            t[f"attention.self.{n}.bias"] = w["qkv_bias"][j].reshape(d)
        t["attention.output.dense.weight"] = w["out_kernel"].reshape(d, d).T
        t["attention.output.dense.bias"] = w["out_bias"]
        t["intermediate.dense.weight"], t["intermediate.dense.bias"] = w["mlp_kernel"].T, w["mlp_bias"]
        t["output.dense.weight"], t["output.dense.bias"] = w["mlp_out_kernel"].T, w["mlp_out_bias"]
        for name, norm in (("attention.output.LayerNorm", layer.attention_norm), ("output.LayerNorm", layer.mlp_norm)):
            t[name + ".weight"], t[name + ".bias"] = np.asarray(norm.scale[...]), np.asarray(norm.bias[...])
        layer_tensors.append((t, layer.heads))
    mixer = float(model.mixer[...])

    def ctx(ids, mask, offset):
        flat, m = ids.reshape(-1, ids.shape[-1]), mask.reshape(-1, ids.shape[-1]).astype(np.float64)
        e = emb[flat]
        x = e + sinusoidal_positions(flat.shape[1], e.shape[-1], offset=offset)
        for t, heads in layer_tensors:
            x = np_layer(x, m, t, "", heads=heads, eps=1e-5, act="relu")
        return (mixer * e + (1 - mixer) * x).reshape(*ids.shape, -1)

    q, d = ctx(batch["query_ids"], batch["query_mask"], 0), ctx(batch["doc_ids"], batch["doc_mask"], 500)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    sim = np.einsum("bqe,blte->blqt", q, d)
    mus, sigmas = np.array(model.kernel_mus), np.array(model.kernel_sigmas)
    k = np.exp(-(sim[..., None] - mus) ** 2 / (2 * sigmas ** 2)) * batch["doc_mask"][:, :, None, :, None]
    per_q = k.sum(3) * np.asarray(model.kernel_alpha[...])
    phi = (np.log(np.maximum(per_q, 1e-10)) * batch["query_mask"][:, None, :, None]).sum(2)
    return phi @ np.asarray(model.kernel_weights[...])


def test_tk_matches_numpy_ecai20_tk():
    model = registry.lookup("models.tk")(vocab_size=97, embed_dim=32, num_heads=4, mlp_dim=48)
    assert model.kernel_sigmas == (0.1,) * 11 and model.kernel_mus == scoring.TK_KERNEL_MUS
    model.mixer[...] = jnp.asarray(0.3)
    model.kernel_alpha[...] = jnp.linspace(0.5, 1.5, 11)
    batch = text_batch()
    np.testing.assert_allclose(model(batch), np_tk(model, batch), rtol=1e-4, atol=1e-4)
    km = registry.lookup("models.tk")(vocab_size=97, embed_dim=32, num_heads=4, exact_match_sigma=0.001)
    assert km.kernel_sigmas[0] == 0.001 and km.kernel_sigmas[1:] == (0.1,) * 10


def _pair_from_split(batch):
    """[CLS] q [SEP] (padded to Tq) + d[1:] -> the cross-encoder input PreTT(split_layer=0) must equal."""
    q_ids = np.broadcast_to(batch["query_ids"][:, None], (B, L, TQ))
    q_mask = np.broadcast_to(batch["query_mask"][:, None], (B, L, TQ))
    ids = np.concatenate([q_ids, batch["doc_ids"][..., 1:]], -1)
    mask = np.concatenate([q_mask, batch["doc_mask"][..., 1:]], -1)
    types = np.concatenate([np.zeros_like(q_ids), np.ones_like(batch["doc_ids"][..., 1:])], -1)
    return {"pair_ids": ids, "pair_mask": mask, "pair_type_ids": types}


def test_prett_split0_equals_cross_encoder_and_split2_matches_numpy():
    batch = text_batch()
    p0 = build("prett", split_layer=0)
    ce = build("cross_encoder")
    ce.head.kernel[...], ce.head.bias[...] = p0.head.kernel[...], p0.head.bias[...]
    real = batch["mask"]
    np.testing.assert_allclose(np.asarray(p0(batch))[real], np.asarray(ce(_pair_from_split(batch)))[real], atol=2e-5)

    p2 = build("prett", split_layer=1)
    t64 = {k: v.astype(np.float64) for k, v in TENSORS.items()}
    eps = TINY.layer_norm_eps
    from test_encoder import np_embed
    qx = np_embed(batch["query_ids"], np.zeros_like(batch["query_ids"]), t64, eps)
    qx = np_layer(qx, batch["query_mask"].astype(float), t64, "encoder.layer.0.", heads=4, eps=eps)
    d_ids = batch["doc_ids"].reshape(B * L, TD)
    dx = np_embed(d_ids, np.ones_like(d_ids), t64, eps, position_offset=TQ - 1)
    dx = np_layer(dx, batch["doc_mask"].reshape(B * L, TD).astype(float), t64, "encoder.layer.0.", heads=4, eps=eps)
    x = np.concatenate([np.repeat(qx, L, axis=0), dx[:, 1:]], 1)
    m = _pair_from_split(batch)["pair_mask"].reshape(B * L, -1).astype(float)
    x = np_layer(x, m, t64, "encoder.layer.1.", heads=4, eps=eps)
    ref = (x[:, 0] @ np.asarray(p2.head.kernel[...])[:, 0] + np.asarray(p2.head.bias[...])[0]).reshape(B, L)
    np.testing.assert_allclose(np.asarray(p2(batch))[real], ref[real], atol=3e-5)
    with pytest.raises(ValueError, match="split_layer must be in"):
        build("prett", split_layer=3)


@pytest.mark.parametrize("name", ["cross_encoder", "bi_encoder", "colbert", "tk", "prett"])
def test_family_contract_masked_slots_and_dropout(name):
    """[B, L] float32 scores; a padded candidate slot gives finite scores and NaN-free gradients."""
    model = (registry.lookup("models.tk")(vocab_size=97, embed_dim=32, num_heads=4) if name == "tk" else build(name))
    batch = text_batch()
    batch.update(_pair_from_split(batch))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p, key):
        s = nnx.merge(graphdef, p, rest)(batch, deterministic=False, rngs=nnx.Rngs(dropout=key))
        return jnp.sum(jnp.where(batch["mask"], jax.nn.log_softmax(jnp.where(batch["mask"], s, -1e9)), 0.0)), s

    (val, s), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, jax.random.key(0))
    assert s.shape == (B, L) and s.dtype == jnp.float32 and np.isfinite(np.asarray(s)).all()
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))
    if name != "tk":  # TK has no dropout (ECAI20_TK)
        det = nnx.merge(graphdef, params, rest)(batch)
        assert not np.allclose(np.asarray(s), np.asarray(det), atol=1e-6)


def test_registry_specs_build_models():
    m = registry.lookup("models.cross_encoder(config={'vocab_size': 50, 'hidden_size': 16, 'num_hidden_layers': 1, "
                        "'num_attention_heads': 2, 'intermediate_size': 32}, hidden_dropout_prob=0.0)")()
    assert m.encoder.config.hidden_dropout_prob == 0.0 and m.encoder.config.vocab_size == 50
    with pytest.raises(TypeError, match="unknown encoder option"):
        registry.lookup("models.bi_encoder")(config=CFG, hidden_dropout=0.1)
    with pytest.raises(ValueError, match="pooling must be"):
        registry.lookup("models.bi_encoder")(config=CFG, pooling="max")
