"""ranking_jax.models.colbert against the NumPy BERT of tests/_models.py and a naive MaxSim loop (skip-list
tokens, chunking, the in-batch score matrix); the family contract."""

import numpy as np
import pytest

from _models import B, L, build, check_family_contract, np_hidden, np_maxsim, text_batch


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


@pytest.mark.parametrize("name", ["colbert"])
def test_family_contract_masked_slots_and_dropout(name):
    """[B, L] float32 scores; a padded candidate slot gives finite scores and NaN-free gradients."""
    check_family_contract(name)
