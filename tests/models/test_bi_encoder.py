"""ranking_jax.models.bi_encoder against the NumPy BERT of tests/_models.py (tiny random config, HF-layout
weights): pooling, similarity, the in-batch score matrix, separate towers; the family contract."""

import jax
import numpy as np
import pytest
from flax import nnx

from _models import B, L, build, check_family_contract, np_hidden, text_batch


@pytest.mark.parametrize("pooling,similarity,scale", [("cls", "dot", 1.0), ("mean", "cosine", 1.0),
                                                       ("mean", "cosine", 20.0)])
def test_bi_encoder_matches_numpy(pooling, similarity, scale):
    """Every output is ``scale`` times the similarity (BERT_DOT students: cosine x 20)."""
    model = build("bi_encoder", pooling=pooling, similarity=similarity, scale=scale)
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
    np.testing.assert_allclose(np.asarray(scores)[real], scale * np.einsum("bd,bld->bl", q, d)[real],
                               atol=3e-5 * scale)
    outputs = model.outputs(model.represent(dict(batch, pseudo_ids=batch["query_ids"],
                                                 pseudo_mask=batch["query_mask"])),
                            batch, ("score_matrix", "pseudo_scores"))
    mat = np.asarray(outputs["score_matrix"])  # every query against every document of the batch
    assert mat.shape == (B, B * L)
    cols = real.reshape(-1)  # padded documents' vectors are not compared
    np.testing.assert_allclose(mat[:, cols], scale * np.einsum("bd,cld->bcl", q, d).reshape(B, B * L)[:, cols],
                               atol=3e-5 * scale)
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


@pytest.mark.parametrize("name", ["bi_encoder"])
def test_family_contract_masked_slots_and_dropout(name):
    """[B, L] float32 scores; a padded candidate slot gives finite scores and NaN-free gradients."""
    check_family_contract(name)
