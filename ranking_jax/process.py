"""Process settings of the command lines (``python -m ranking_jax.main | encode``): the persistent XLA compilation
cache, and transparent huge pages for XLA:CPU's buffers.

XLA:CPU allocates a step's temporary buffers afresh at every call; glibc serves allocations over 32 MB with new
``mmap`` pages, so a MiniLM cross-encoder train step (32 x 256 tokens) takes ~870k page faults, 3.4 GB of first
touches. ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc >= 2.35; ignored before) lets those mappings use 2 MB
pages (31k faults) and the step runs 13% faster (BENCHMARKS.md). The tunable is read when a process starts, so a
command line re-executes itself once with it set; ``RANKING_JAX_HUGE_PAGES=0`` turns that off. Library imports
(notebooks, tests) are never re-executed.
"""

from __future__ import annotations

import os
import sys

__all__ = ["reexec_with_huge_pages", "enable_compilation_cache", "ENTRY_POINTS"]

ENTRY_POINTS = ("ranking_jax.main", "ranking_jax.encode")
_TUNABLE = "glibc.malloc.hugetlb"


def reexec_with_huge_pages() -> None:
    """Re-executes this process with ``glibc.malloc.hugetlb=1`` when it is one of :data:`ENTRY_POINTS` run with
    ``python -m`` on Linux and the tunable is not set yet (call before jax is imported)."""
    argv = getattr(sys, "orig_argv", [])
    if (not sys.platform.startswith("linux") or os.environ.get("RANKING_JAX_HUGE_PAGES", "1") == "0"
            or _TUNABLE in os.environ.get("GLIBC_TUNABLES", "") or len(argv) < 3 or argv[1] != "-m"
            or argv[2] not in ENTRY_POINTS):
        return
    tunables = ":".join(t for t in (os.environ.get("GLIBC_TUNABLES", ""), f"{_TUNABLE}=1") if t)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], {**os.environ, "GLIBC_TUNABLES": tunables})


def enable_compilation_cache(path: str | os.PathLike | None = None) -> None:
    """jax's persistent compilation cache in ``path`` (default ``$JAX_COMPILATION_CACHE_DIR``, else
    ``<cache root>/xla``), for every compilation that takes over 0.2 s: a second process compiles nothing it
    compiled before."""
    import jax

    from ranking_jax.assets import cache_root
    path = path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or cache_root() / "xla"
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
