"""Cached artifacts keyed by content: built data sets, first-stage candidates, teacher scores, frozen features.

    path = cached(config, "candidates", key=(source_folder, "bm25", depth, rows), build=write_npz)

The key's parts are hashed: a file or folder part by its content (each file's bytes, the hash remembered per
(path, size, mtime) so an unchanged file is read once), anything else by its ``repr``. An entry is built once
(by process 0, the others wait) into a temporary folder and renamed into place, so a crash never leaves a
half-written entry. When the same ``name`` and first part (usually the source) was cached before under another
key, the rebuild says what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import shutil
from typing import Any, Callable, Sequence

from ranking_jax import assets, runtime

_log = logging.getLogger(__name__)
_MEMO = "file-hashes.json"


def root(config: Any = None) -> pathlib.Path:
    """``config.data.cache_dir`` or ``$RANKING_JAX_CACHE`` or ``~/.cache/ranking_jax``."""
    explicit = config.data.get("cache_dir") if config is not None and "data" in config else ""
    return pathlib.Path(explicit) if explicit else assets.cache_root()


def _file_hash(path: pathlib.Path, memo: dict) -> str:
    st = path.stat()
    stamp = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if stamp not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        memo[stamp] = h.hexdigest()
    return memo[stamp]


def content_hash(path: str | pathlib.Path, *, cache_root: pathlib.Path | None = None) -> str:
    """sha256 over a file's bytes, or over a folder's files (relative names and bytes, sorted)."""
    path = pathlib.Path(path)
    memo_path = (cache_root or root()) / _MEMO
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{path} does not exist or holds no files")
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        h.update(_file_hash(f, memo).encode())
    if runtime.is_writer():
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, memo_path)
    return h.hexdigest()


def key_of(parts: Sequence[Any], *, cache_root: pathlib.Path | None = None) -> tuple[str, str, dict[str, str]]:
    """``(digest, digest without file contents, {path: content hash})``: paths by content, other parts by repr."""
    hashes, shown = {}, []
    for p in parts:
        if isinstance(p, pathlib.Path):
            hashes[str(p.resolve())] = content_hash(p, cache_root=cache_root)
            shown.append(f"{p.resolve()}@{hashes[str(p.resolve())]}")
        else:
            shown.append(repr(p))
    by_path = [f"{p.resolve()}" if isinstance(p, pathlib.Path) else repr(p) for p in parts]
    digest = lambda items: hashlib.sha256("\n".join(items).encode()).hexdigest()[:20]  # noqa: E731
    return digest(shown), digest(by_path), hashes


def cached(config: Any, name: str, *, key: Sequence[Any], build: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """The folder of the ``name`` artifact for ``key``, built by ``build(folder)`` on a miss (see the module
    docstring). Every process gets the same finished folder."""
    base = root(config)
    digest, sources, hashes = key_of(key, cache_root=base)
    path = base / f"{name}-{digest}"
    if runtime.is_writer() and not (path / "KEY.json").exists():
        _build(base, name, path, sources, hashes, build)
    runtime.barrier(f"cache:{name}-{digest}")  # every process, every call: the others then read it
    return path


def prepared(config: Any, builder_cls, *, name: str, builder_config: str, source: Any, manual_dir=None):
    """A tfds builder (array_record) prepared once per content of ``source`` (a folder, or a tag such as
    ``"download:mslr_web10k_fold1"`` for builders that fetch their data) and its builder config."""
    from ranking_jax import data as data_lib

    def build(out):
        import tensorflow_datasets as tfds
        tfds.disable_progress_bar()
        data_lib.prepare(builder_cls, data_dir=out, config=builder_config, manual_dir=manual_dir)
    folder = cached(config, name, key=(source, builder_config, str(builder_cls.VERSION)), build=build)
    return data_lib.prepare(builder_cls, data_dir=folder, config=builder_config, manual_dir=manual_dir)


def _build(base: pathlib.Path, name: str, path: pathlib.Path, sources: str, hashes: dict, build) -> None:
    index_path = base / f"{name}.index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    changed = [f"{p} (sha256 {old[:12]} -> {hashes[p][:12]})" for p, old in index.get(sources, {}).items()
               if hashes.get(p) != old]
    if changed:
        _log.warning("%s: rebuilding, since %s changed after the cached build", name, ", ".join(changed))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / "KEY.json").write_text(json.dumps({"name": name, "sources": hashes}, indent=1) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    index[sources] = hashes
    index_path.write_text(json.dumps(index, indent=1) + "\n")
