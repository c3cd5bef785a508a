"""ranking_jax.process: the command lines re-execute once with glibc's huge-page tunable (only they, only once,
never when turned off) and keep a persistent compilation cache; encoding pads to multiples of 8 tokens."""

import os
import sys

import jax
import pytest

from ranking_jax import process
from ranking_jax.data.encoding import bucket


@pytest.fixture
def execve(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("RANKING_JAX_HUGE_PAGES", raising=False)
    return calls


@pytest.mark.parametrize("tunables, want", [
    (None, "glibc.malloc.hugetlb=1"),
    ("glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")])
def test_entry_points_reexecute_with_huge_pages(execve, monkeypatch, tunables, want):
    if tunables is None:
        monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    else:
        monkeypatch.setenv("GLIBC_TUNABLES", tunables)
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "ranking_jax.encode", "--model", "minilm"])
    process.reexec_with_huge_pages()
    [(path, argv, env)] = execve
    assert path == sys.executable and argv == [sys.executable, "-m", "ranking_jax.encode", "--model", "minilm"]
    assert env["GLIBC_TUNABLES"] == want


@pytest.mark.parametrize("argv, env", [
    (["python3", "-m", "ranking_jax.main"], {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}),  # already re-executed
    (["python3", "-m", "ranking_jax.main"], {"RANKING_JAX_HUGE_PAGES": "0"}),  # turned off
    (["python3", "-m", "pytest", "tests"], {}),  # a library import
    (["python3", "-c", "import ranking_jax"], {}),
])
def test_no_reexecution_otherwise(execve, monkeypatch, argv, env):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "orig_argv", argv)
    process.reexec_with_huge_pages()
    assert execve == []


def test_compilation_cache_setting(tmp_path, monkeypatch):
    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    try:
        process.enable_compilation_cache(tmp_path / "xla")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.2
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])


def test_bucket_multiples():
    assert [bucket(n, multiple=8) for n in (1, 8, 9, 17, 23, 24, 250)] == [8, 8, 16, 24, 24, 24, 256]
    assert bucket(300, largest=256, multiple=8) == 256
    assert [bucket(n) for n in (1, 17, 33)] == [16, 32, 64]  # the default stays powers of two
