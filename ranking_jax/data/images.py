"""``image_classes``: class-labelled images with an open-world class split, for metric learning.

Metric learning is evaluated on classes never seen in training (Oh Song et al., 2016), so all images
of the source (its own train and test files pooled) are split by class: ``train`` holds the images of
``train_classes``, ``test`` those of the other classes. Configs:
  ``digits``: scikit-learn's bundled ``load_digits`` (1,797 8x8 images, values 0..16; train classes 0-4).
  ``fashion_mnist``: Fashion-MNIST (Xiao et al., 2017; 70,000 28x28 images, values 0..255; train classes
  0-4 = T-shirt/top, Trouser, Pullover, Dress, Coat; test classes 5-9 = Sandal, Shirt, Sneaker, Bag,
  Ankle boot), read from manual_dir or the Debian package ``dataset-fashion-mnist``.
Rows: ``image`` uint8 [H, W], ``label`` (the original class id), ``index`` (row in the pooled source).
``info.metadata["max_value"]`` is the largest pixel value (pipelines scale images to [0, 1]).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from ranking_jax.data import formats

__all__ = ["ImageClasses", "ImageClassesConfig", "read_fashion_mnist", "FASHION_MNIST_DEBIAN_DIR"]

FASHION_MNIST_DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclasses.dataclass
class ImageClassesConfig(tfds.core.BuilderConfig):
    shape: tuple[int, int] = (8, 8)
    max_value: int = 255
    train_classes: tuple[int, ...] = (0, 1, 2, 3, 4)


class ImageClasses(tfds.core.GeneratorBasedBuilder):
    """Images with class labels, split by class (open world): train classes vs held-out test classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [ImageClassesConfig(name="digits", shape=(8, 8), max_value=16),
                       ImageClassesConfig(name="fashion_mnist", shape=(28, 28), max_value=255)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Fashion-MNIST: `apt-get install dataset-fashion-mnist` (files in {FASHION_MNIST_DEBIAN_DIR}), or put "
        f"{', '.join(_FASHION_FILES)} (from {FASHION_MNIST_URL}) in manual_dir.")

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__, disable_shuffling=True,
            metadata=tfds.core.MetadataDict(max_value=config.max_value, train_classes=list(config.train_classes)),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=config.shape, dtype=np.uint8),
                "label": tfds.features.Scalar(np.int32), "index": tfds.features.Scalar(np.int32)}))

    def _split_generators(self, dl_manager):
        if self.builder_config.name == "digits":
            images, labels = _digits()
        else:
            try:
                manual = pathlib.Path(dl_manager.manual_dir)
            except AssertionError:
                manual = None
            images, labels = read_fashion_mnist(manual)
        train = np.isin(labels, self.builder_config.train_classes)
        return {"train": self._generate_examples(images=images, labels=labels, rows=np.flatnonzero(train)),
                "test": self._generate_examples(images=images, labels=labels, rows=np.flatnonzero(~train))}

    def _generate_examples(self, *, images, labels, rows):
        for key, i in enumerate(rows):
            yield key, {"image": images[i], "label": int(labels[i]), "index": int(i)}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled data; imported here to keep sklearn optional elsewhere
    digits = load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int32)


def read_fashion_mnist(manual_dir: pathlib.Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 Fashion-MNIST images [N, 28, 28] uint8 and labels [N] (train file, then t10k file)."""
    for folder in ([manual_dir] if manual_dir else []) + [FASHION_MNIST_DEBIAN_DIR]:
        if all((folder / f).exists() for f in _FASHION_FILES):
            parts = [formats.read_idx(folder / f) for f in _FASHION_FILES]
            for images, labels, name in ((parts[0], parts[1], _FASHION_FILES[1]),
                                         (parts[2], parts[3], _FASHION_FILES[3])):
                if len(images) != len(labels):
                    raise formats.DataFormatError(folder / name, None, "one label per image",
                                                  f"{len(labels)} labels for {len(images)} images")
            return np.concatenate([parts[0], parts[2]]), np.concatenate([parts[1], parts[3]]).astype(np.int32)
    raise FileNotFoundError(
        f"Fashion-MNIST files ({', '.join(_FASHION_FILES)}) not found in "
        f"{'manual_dir ' + str(manual_dir) + ' or ' if manual_dir else ''}{FASHION_MNIST_DEBIAN_DIR}. "
        f"Install them with `apt-get install dataset-fashion-mnist`, or download them from {FASHION_MNIST_URL} "
        "into a folder and pass it as manual_dir.")
