"""ranking_jax.data.lists: candidate lists read from a TREC run keep trec_eval's order (score descending, ties by
doc id descending) and drop unknown queries and documents."""

import numpy as np

from ranking_jax import data


def test_candidates_from_run_use_trec_eval_order(tmp_path):
    path = data.write_run(tmp_path / "run.trec", {"q1": {"d1": 1.0, "d2": 2.0, "d3": 1.0, "zz": 5.0}, "qx": {"d1": 1}})
    cands = data.candidates_from_run(data.read_run(path), queries=data.IdIndex(["q0", "q1"]),
                                     docs=data.IdIndex(["d1", "d2", "d3"]))
    assert list(cands) == [1]  # qx is not a known query
    np.testing.assert_array_equal(cands[1], [1, 2, 0])  # d2, then the tie d3 > d1; zz is not in the corpus
