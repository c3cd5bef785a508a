"""ranking_jax.models.cross_encoder against the NumPy BERT of tests/_models.py (tiny random config, HF-layout
weights): [CLS] of the pair through a linear head; the family contract."""

import numpy as np
import pytest

from _models import B, L, build, check_family_contract, np_hidden, tiny_inputs


def test_cross_encoder_matches_numpy():
    model = build("cross_encoder")
    ids, mask, types = tiny_inputs(B * L, 12, seed=3)
    batch = {"pair_ids": ids.reshape(B, L, 12), "pair_mask": mask.reshape(B, L, 12),
             "pair_type_ids": types.reshape(B, L, 12)}
    h = np_hidden(batch["pair_ids"], batch["pair_mask"], batch["pair_type_ids"])
    ref = h[..., 0, :] @ np.asarray(model.head.kernel[...])[:, 0] + np.asarray(model.head.bias[...])[0]
    np.testing.assert_allclose(model(batch), ref, atol=2e-5)
    np.testing.assert_array_equal(model(batch, deterministic=False), model(batch))  # no rngs -> no dropout


@pytest.mark.parametrize("name", ["cross_encoder"])
def test_family_contract_masked_slots_and_dropout(name):
    """[B, L] float32 scores; a padded candidate slot gives finite scores and NaN-free gradients."""
    check_family_contract(name)
