"""ranking_jax.models.prett: split layer 0 equals the cross-encoder on the joined pair, split layer 1 equals the
NumPy BERT layers of tests/_models.py run on query and document apart and then together; the family contract."""

import numpy as np
import pytest

from _models import (B, L, TD, TENSORS, TINY, TQ, build, check_family_contract, np_embed, np_layer, pair_from_split,
                     text_batch)


def test_prett_split0_equals_cross_encoder_and_split2_matches_numpy():
    batch = text_batch()
    p0 = build("prett", split_layer=0)
    ce = build("cross_encoder")
    ce.head.kernel[...], ce.head.bias[...] = p0.head.kernel[...], p0.head.bias[...]
    real = batch["mask"]
    np.testing.assert_allclose(np.asarray(p0(batch))[real], np.asarray(ce(pair_from_split(batch)))[real], atol=2e-5)

    p2 = build("prett", split_layer=1)
    t64 = {k: v.astype(np.float64) for k, v in TENSORS.items()}
    eps = TINY.layer_norm_eps
    qx = np_embed(batch["query_ids"], np.zeros_like(batch["query_ids"]), t64, eps)
    qx = np_layer(qx, batch["query_mask"].astype(float), t64, "encoder.layer.0.", heads=4, eps=eps)
    d_ids = batch["doc_ids"].reshape(B * L, TD)
    dx = np_embed(d_ids, np.ones_like(d_ids), t64, eps, position_offset=TQ - 1)
    dx = np_layer(dx, batch["doc_mask"].reshape(B * L, TD).astype(float), t64, "encoder.layer.0.", heads=4, eps=eps)
    x = np.concatenate([np.repeat(qx, L, axis=0), dx[:, 1:]], 1)
    m = pair_from_split(batch)["pair_mask"].reshape(B * L, -1).astype(float)
    x = np_layer(x, m, t64, "encoder.layer.1.", heads=4, eps=eps)
    ref = (x[:, 0] @ np.asarray(p2.head.kernel[...])[:, 0] + np.asarray(p2.head.bias[...])[0]).reshape(B, L)
    np.testing.assert_allclose(np.asarray(p2(batch))[real], ref[real], atol=3e-5)
    with pytest.raises(ValueError, match="split_layer must be in"):
        build("prett", split_layer=3)


@pytest.mark.parametrize("name", ["prett"])
def test_family_contract_masked_slots_and_dropout(name):
    """[B, L] float32 scores; a padded candidate slot gives finite scores and NaN-free gradients."""
    check_family_contract(name)
