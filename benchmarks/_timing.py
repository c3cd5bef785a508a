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
