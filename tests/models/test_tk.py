"""ranking_jax.models.tk against a NumPy port of ECAI20_TK computed from the model's own parameters (contextualized
embeddings, kernel pooling); the family contract."""

import jax.numpy as jnp
import numpy as np
import pytest

from _models import check_family_contract, np_layer, text_batch
from ranking_jax import registry, scoring
from ranking_jax.models.tk import sinusoidal_positions


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


@pytest.mark.parametrize("name", ["tk"])
def test_family_contract_masked_slots_and_dropout(name):
    """[B, L] float32 scores; a padded candidate slot gives finite scores and NaN-free gradients."""
    check_family_contract(name)
