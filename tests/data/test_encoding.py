"""ranking_jax.data.encoding: batches trimmed to power-of-two length buckets of their longest real sequence (NumPy
slices as the oracle)."""

import numpy as np

from ranking_jax import data


def test_trim_padding_cuts_to_power_of_two_buckets():
    mask = np.zeros((2, 3, 40), np.int32)
    mask[0, 1, :20] = 1  # longest real sequence: 20 tokens -> bucket 32
    ids = np.arange(2 * 3 * 40).reshape(2, 3, 40)
    q_mask = np.zeros((2, 12), np.int32)
    q_mask[1, :11] = 1  # 11 tokens -> bucket 16 > 12 columns -> all 12 kept
    out = data.trim_padding({"pair_ids": ids, "pair_mask": mask, "pair_type_ids": ids % 2, "query_mask": q_mask,
                             "doc_mask": np.zeros((2, 3, 40), np.int32), "labels": np.ones((2, 3))})
    np.testing.assert_array_equal(out["pair_ids"], ids[..., :32])
    np.testing.assert_array_equal(out["pair_type_ids"], (ids % 2)[..., :32])
    assert out["pair_mask"].shape == (2, 3, 32) and out["query_mask"].shape == (2, 12)
    assert out["doc_mask"].shape == (2, 3, 16)  # no real token: the smallest bucket
    np.testing.assert_array_equal(out["labels"], np.ones((2, 3)))
