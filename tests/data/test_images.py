"""ranking_jax.data.images: the image-classes tfds builder against scikit-learn's ``load_digits`` (the open-world
split: classes 0-4 train, 5-9 test), on Fashion-MNIST-layout IDX files, and the Debian package's published counts."""

import gzip
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ranking_jax import data
from ranking_jax.data import images as images_lib

tfds.disable_progress_bar()


def test_digits_open_world_split(tmp_path):
    from sklearn.datasets import load_digits
    builder = data.prepare(data.ImageClasses, config="digits", data_dir=tmp_path)
    src = builder.as_data_source()
    digits = load_digits()
    train_rows = [src["train"][i] for i in range(len(src["train"]))]
    test_rows = [src["test"][i] for i in range(len(src["test"]))]
    assert len(train_rows) == int((digits.target < 5).sum()) and len(test_rows) == int((digits.target >= 5).sum())
    assert {r["label"] for r in train_rows} == {0, 1, 2, 3, 4} and {r["label"] for r in test_rows} == {5, 6, 7, 8, 9}
    for r in train_rows[:50] + test_rows[-50:]:
        np.testing.assert_array_equal(r["image"], digits.images[r["index"]])
        assert r["label"] == digits.target[r["index"]]
    assert builder.info.metadata["max_value"] == 16


def _idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_layout_from_manual_dir(tmp_path, monkeypatch):
    """The builder on Fashion-MNIST-layout IDX files (a tiny fixture), and the Debian path fallback."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fm"
    root.mkdir()
    x_train, y_train = rng.integers(0, 256, (30, 28, 28)), np.arange(30) % 10
    x_test, y_test = rng.integers(0, 256, (10, 28, 28)), np.arange(10)
    for name, arr in (("train-images-idx3-ubyte.gz", x_train), ("train-labels-idx1-ubyte.gz", y_train),
                      ("t10k-images-idx3-ubyte.gz", x_test), ("t10k-labels-idx1-ubyte.gz", y_test)):
        _idx(root / name, arr)
    monkeypatch.setattr(images_lib, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "absent")
    builder = data.prepare(data.ImageClasses, config="fashion_mnist", data_dir=tmp_path / "out", manual_dir=root)
    src = builder.as_data_source()
    assert len(src["train"]) == 20 and len(src["test"]) == 20  # classes 0-4 vs 5-9 of all 40 images
    r = src["test"][0]
    pooled = np.concatenate([x_train, x_test])
    np.testing.assert_array_equal(r["image"], pooled[r["index"]])
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.read_fashion_mnist(tmp_path / "empty")


def test_fashion_mnist_debian_package():
    """If the Debian package is installed: 70,000 images, 7,000 per class (the published counts)."""
    if not images_lib.FASHION_MNIST_DEBIAN_DIR.exists():
        pytest.skip("dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    x, y = data.read_fashion_mnist()
    assert x.shape == (70000, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [7000] * 10)
