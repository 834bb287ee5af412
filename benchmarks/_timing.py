"""Timing helpers shared by the benchmarks (not a benchmark: ``make bench`` skips it)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable


def side_by_side(ours: Callable[[], object], theirs: Callable[[], object], repeats: int, *,
                 warmup: int = 1, block: int = 1, lead_in: int = 0,
                 lead_in_seconds: float = 0.0, settle: float = 0.0) -> tuple[float, float]:
    """Median seconds of ``ours()`` and ``theirs()`` over ``repeats`` timed calls each.

    The two take turns, ``block`` timed calls at a time, so that a burst of load from
    other processes hits both; ``warmup`` untimed calls of each come first (allocators,
    caches, lazy imports, oneDNN kernel selection).

    Multi-threaded steps of a few milliseconds need more care to be timed as a training
    loop of their own kind sees them. After a parallel call, OpenBLAS's idle threads
    spin for about 0.1 s before they sleep, and PyTorch's OpenMP threads for a while
    too, so a step run right after the *other* library's step shares the cores with
    those threads: measured here, a 2.1 ms torch step took 6.8 ms right after a
    2-thread NumPy product, and 3.3 ms when 0.15 s passed in between. ``settle`` seconds
    of sleep before each turn let the other library's threads go quiet. Threads that
    slept are slow to start again, so each turn begins with untimed calls, ``lead_in``
    of them and for at least ``lead_in_seconds``, and then ``block`` timed calls in a row
    show the steady state. A count alone is not enough: on this course's 2-core virtual
    machine, after 0.15 s of sleep torch's LeNet C3 step was back to its usual time by
    the second call, but cnnlib's run in its two worker threads, which hand work to each
    other a few dozen times a step, took about 50 ms (7 steps, 8.5 ms falling to 4.1) to
    get there.
    """
    for _ in range(warmup):
        ours()
        theirs()
    t_ours, t_theirs = [], []
    while len(t_theirs) < repeats:
        for fn, times in ((ours, t_ours), (theirs, t_theirs)):
            if settle:
                time.sleep(settle)
            start = time.perf_counter()
            calls = 0
            while calls < lead_in or time.perf_counter() - start < lead_in_seconds:
                fn()
                calls += 1
            for _ in range(min(block, repeats - len(times))):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
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
