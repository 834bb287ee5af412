"""Timing helpers shared by the benchmarks (not a benchmark: ``make bench`` skips it)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable


def side_by_side(ours: Callable[[], object], theirs: Callable[[], object], repeats: int, *,
                 warmup: int = 1) -> tuple[float, float]:
    """Median seconds of ``ours()`` and ``theirs()``.

    Each repeat times one call of each back to back, so a burst of load from other
    processes hits both; ``warmup`` untimed calls of each come first (allocators, caches,
    lazy imports, oneDNN kernel selection).
    """
    for _ in range(warmup):
        ours()
        theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - start)
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
