"""ranking_jax.data.letor: the SVMlight tfds builder against scikit-learn's ``load_svmlight_file`` (features,
labels, qid lists, feature statistics), the real MSLR-WEB10K sample when fetched, and the normalizations by hand."""

import os
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from helpers import write_lines
from ranking_jax import data

tfds.disable_progress_bar()


def _svmlight_lines(rng, qids, n_features):
    lines = []
    for q, n in qids:
        for _ in range(n):
            feats = " ".join(f"{j + 1}:{rng.normal():.4f}" for j in range(n_features) if rng.random() < 0.7)
            lines.append(f"{rng.integers(0, 5)} qid:{q} {feats} #docid = x")
    return lines


def test_letor_round_trip_against_sklearn(tmp_path):
    from sklearn.datasets import load_svmlight_file

    rng = np.random.default_rng(0)
    root = tmp_path / "src"
    train = write_lines(root / "train.txt", _svmlight_lines(rng, [(1, 5), (7, 3), (2, 9), (7, 2)], 6))
    write_lines(root / "test.txt", _svmlight_lines(rng, [(3, 4), (4, 1)], 6))
    builder = data.prepare(data.Letor, config="custom", data_dir=tmp_path / "out", manual_dir=root)
    src = builder.as_data_source()
    assert {k: len(v) for k, v in src.items()} == {"train": 4, "test": 2}  # qid 7 reappears: a second list
    assert builder.info.metadata["repeated_qids"]["train"] == {"qid reappears after other qids": 1}
    x, y, q = load_svmlight_file(str(train), query_id=True, n_features=6)
    rows = [src["train"][i] for i in range(4)]
    np.testing.assert_array_equal(np.concatenate([r["features"] for r in rows]), x.toarray().astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([r["labels"] for r in rows]), y)
    assert [r["qid"].decode() for r in rows] == ["1", "7", "2", "7"]
    assert [len(r["labels"]) for r in rows] == [5, 3, 9, 2]
    stats = builder.info.metadata["feature_stats"]
    dense = x.toarray()
    np.testing.assert_allclose(stats["mean"], dense.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["std"], dense.std(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["max"], dense.max(0), rtol=1e-6)


def test_letor_real_mslr_sample(tmp_path):
    """The real MSLR-WEB10K sample (rankeval sdist) if a fetched copy exists ($RANKING_JAX_MSLR_SAMPLE)."""
    cached = pathlib.Path(os.environ.get("RANKING_JAX_MSLR_SAMPLE", "/tmp/ranking_jax_mslr_sample"))
    if not (cached / "msn1.fold1.train.5k.txt").exists():
        pytest.skip(f"MSLR sample not fetched; run scripts/prepare_mslr_sample.py --out {cached}")
    from sklearn.datasets import load_svmlight_file
    builder = data.prepare(data.Letor, config="mslr_sample", data_dir=tmp_path, manual_dir=cached)
    src = builder.as_data_source()
    assert len(src["train"]) == 43 and len(src["test"]) == 43
    x, y, _ = load_svmlight_file(str(cached / "msn1.fold1.train.5k.txt"), query_id=True, n_features=136)
    labels = np.concatenate([src["train"][i]["labels"] for i in range(43)])
    np.testing.assert_array_equal(np.bincount(labels.astype(int)), [2792, 1458, 665, 55, 30])
    np.testing.assert_array_equal(np.concatenate([src["train"][i]["features"] for i in range(43)]),
                                  x.toarray().astype(np.float32))


def test_letor_normalizations():
    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]], np.float32)
    np.testing.assert_allclose(data.normalize(x, mode="query_minmax"),
                               [[0, 0, 0], [0.5, 0, 2 / 7], [1, 0, 1]], rtol=1e-6)
    z = data.normalize(x, mode="query_zscore")
    np.testing.assert_allclose(z[:, 0], (x[:, 0] - 3) / np.sqrt(8 / 3), rtol=1e-6)
    np.testing.assert_array_equal(z[:, 1], 0)  # constant feature -> 0
    g = data.normalize(x, mode="global_zscore", stats={"mean": [1, 1, 1], "std": [2, 0, 4]})
    np.testing.assert_allclose(g, [[0, 0, 0.25], [1, 0, 0.75], [2, 0, 2]], rtol=1e-6)
    with pytest.raises(ValueError, match="needs the train statistics"):
        data.normalize(x, mode="global_zscore")
    with pytest.raises(ValueError, match="expected one of"):
        data.normalize(x, mode="zscore")
