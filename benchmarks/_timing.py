"""Wall-clock timing shared by the benchmark scripts: per-call seconds after untimed warm-up calls."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def timings(fn: Callable[[], Any], *, warmup: int = 0, iters: int) -> tuple[list[float], Any]:
    """Seconds of each of ``iters`` calls of ``fn()`` after ``warmup`` untimed ones, and the last call's result."""
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(iters):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def median_time(fn: Callable[[], Any], *, warmup: int = 0, iters: int) -> float:
    """Median seconds of ``iters`` calls of ``fn()`` after ``warmup`` untimed ones."""
    return statistics.median(timings(fn, warmup=warmup, iters=iters)[0])


def cpu_description() -> str:
    """``"<model name>, N cores, <SIMD flags that matter to XLA>"``: printed with every figure, since XLA picks
    other kernels on AVX2, AVX-512 and AMX machines."""
    import os
    import re
    try:
        info = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        import platform
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    model = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
    found = re.search(r"^flags\s*:\s*(.*)$", info, re.M)
    flags = set(found.group(1).split()) if found else set()
    simd = sorted(f for f in flags if re.fullmatch(r"avx2|fma|avx512(f|_bf16|_fp16|_vnni)|amx_(bf16|tile)", f))
    return f"{model.group(1).strip() if model else 'unknown CPU'}, {os.cpu_count()} cores, {' '.join(simd)}"
