"""Shared plumbing of the tfds builders: finding the source files (manual_dir or download) and preparing.

Builders always write ``array_record`` (tfds' default tfrecord needs TensorFlow; parquet loses rows in
tfds 4.9.10) and keep the generation order (``disable_shuffling``), so that row ``i`` of a split is the
``i``-th example generated: ``doc_index`` is the corpus row.
"""

from __future__ import annotations

import os
import pathlib
from typing import Type

import tensorflow_datasets as tfds

__all__ = ["prepare", "find_source"]


def find_source(dl_manager, *, name: str, url: str | None, marker: str, instructions: str) -> pathlib.Path:
    """The directory holding ``marker``: ``manual_dir``, ``manual_dir/<name>`` or a folder below, else ``url``.

    The manual directory wins, so offline users never touch the network.
    """
    try:
        manual = pathlib.Path(dl_manager.manual_dir)
    except AssertionError:  # no manual_dir given, or it is empty
        manual = None
    if manual is not None:
        found = _locate(manual, marker, name)
        if found is not None:
            return found
    if url is None:
        raise FileNotFoundError(
            f"{name}: no {marker} found under the manual directory {manual or '(none given)'}; this dataset has "
            f"no download URL. {instructions} Then pass manual_dir=DIR (ranking_jax.data.prepare(..., "
            f"manual_dir=DIR)); DIR or DIR/{name} must hold {marker}.")
    root = pathlib.Path(dl_manager.download_and_extract(url))
    found = _locate(root, marker, name)
    if found is None:
        raise FileNotFoundError(f"{name}: the download of {url} (extracted to {root}) holds no {marker}")
    return found


def _locate(root: pathlib.Path, marker: str, name: str) -> pathlib.Path | None:
    for candidate in (root, root / name):
        if (candidate / marker).exists():
            return candidate
    hits = sorted({p.parent for p in root.glob(f"*/{marker}")} | {p.parent for p in root.glob(f"*/*/{marker}")})
    if len(hits) > 1:
        named = [h for h in hits if h.name == name]
        if len(named) == 1:
            return named[0]
        raise FileNotFoundError(f"{root}: several folders hold {marker} ({', '.join(map(str, hits))}); "
                                f"point manual_dir at the one for {name}")
    return hits[0] if hits else None


def prepare(builder_cls: Type[tfds.core.GeneratorBasedBuilder], *, data_dir: str | os.PathLike,
            config: str | None = None, manual_dir: str | os.PathLike | None = None):
    """Builds (once) and returns the builder; read its splits with ``builder.as_data_source()``.

    ``manual_dir`` holds the already downloaded source files (offline); without it the builder's
    official URL is downloaded.
    """
    builder = builder_cls(config=config, data_dir=os.fspath(data_dir), file_format="array_record")
    download_config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir) if manual_dir else None)
    builder.download_and_prepare(download_config=download_config)
    return builder
