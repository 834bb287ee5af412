"""Timing helpers shared by the benchmarks (not a benchmark: ``make bench`` skips it)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable


def side_by_side(ours: Callable[[], object], theirs: Callable[[], object], repeats: int, *,
                 warmup: int = 1, lead_in: bool = False) -> tuple[float, float]:
    """Median seconds of ``ours()`` and ``theirs()``.

    Each repeat times one call of each back to back, so a burst of load from other
    processes hits both; ``warmup`` untimed calls of each come first (allocators, caches,
    lazy imports, oneDNN kernel selection).

    With ``lead_in``, each timed call follows an untimed call of the same function. For
    multi-threaded steps of a few milliseconds this matters: after a parallel region,
    PyTorch's OpenMP threads and OpenBLAS's threads keep spinning for a while, so a step
    timed right after the *other* library's step shares the cores with those idle
    threads (measured here: a 7.4 ms cnnlib step took 9.9 ms right after a torch step,
    and a 2.3 ms torch step 3.3 ms right after a cnnlib step). A step after one of its
    own kind is what a training loop sees.
    """
    for _ in range(warmup):
        ours()
        theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        if lead_in:
            ours()
        start = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - start)
        if lead_in:
            theirs()
        start = time.perf_counter()
        theirs()
        t_theirs.append(time.perf_counter() - start)
    return statistics.median(t_ours), statistics.median(t_theirs)


def geometric_mean(ratios: list[float]) -> float:
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def blas_threads() -> tuple[str, int]:
    """NumPy's BLAS (name and version) and its thread count."""
    from threadpoolctl import threadpool_info

    for pool in threadpool_info():
        if pool["user_api"] == "blas":
            return f"{pool['internal_api']} {pool.get('version')}", int(pool["num_threads"])
    return "unknown BLAS", 1
