"""How many threads NumPy's BLAS uses, and keeping its idle threads from spinning.

OpenBLAS's threads do not go to sleep when a multi-threaded product ends: they spin,
waiting for the next one, for about 0.1 s. conv2d shares a large batch between its own
worker threads (one per BLAS thread, with BLAS limited to one thread meanwhile), and a
worker that runs while a BLAS thread spins shares a core with it. So while the workers
are in use (``workers_recently_used``), the other products of ``cnnlib.numpy``, a small
convolution's or a linear layer's, run on one BLAS thread (``small_products``): a
second thread saves them microseconds, the spinning costs the workers milliseconds. A
loop that never uses the workers keeps BLAS's threads for every product.

Measured on LeNet-5 training on the digits at batch 128 with 2 threads (one epoch of
1438 images, configurations alternating in one process): 0.234 s with LeNet's layers
in the calling thread, 0.265 s with them in the workers and the small products on two
BLAS threads, 0.208 s (another run, against 0.236) with the small products on one.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager, nullcontext

# How long after conv2d's workers last finished the small products stay on one thread:
# longer than OpenBLAS spins (about 0.1 s by default), so that a training loop whose
# large layers use the workers keeps its small products from spinning through a whole
# step between them.
RECENT_SECONDS = 0.5

_CONTROLLER = None
_LOCK = threading.Lock()  # held by the thread whose one_blas_thread() set the limit
_WORKERS_DONE = -float("inf")  # time.monotonic() when conv2d's workers last finished


def _reset_after_fork() -> None:
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def blas_threads():
    """``(controller, threads)`` for NumPy's BLAS; ``(None, 1)`` without threadpoolctl."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
            _CONTROLLER = ThreadpoolController().select(user_api="blas")
            _CONTROLLER = _CONTROLLER if _CONTROLLER.lib_controllers else False
        except (ImportError, AttributeError):  # pragma: no cover - no threadpoolctl >= 3
            _CONTROLLER = False
    if _CONTROLLER is False:
        return None, 1
    return _CONTROLLER, max(1, min(c.num_threads for c in _CONTROLLER.lib_controllers))


@contextmanager
def one_blas_thread():
    """Limit NumPy's BLAS to one thread inside the block.

    The limit is process-wide, so one thread at a time sets it and lifts it. A second
    thread that set it meanwhile would record the first one's limit as the count to
    restore, and leave BLAS on one thread for good; a thread that finds the limit taken
    runs its block as it is instead, on one BLAS thread or, once the owner leaves,
    several: the same result, at most a little slower.
    """
    controller, threads = blas_threads()
    if controller is None or threads == 1 or not _LOCK.acquire(blocking=False):
        yield
        return
    try:
        with controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _LOCK.release()


def note_workers_used() -> None:
    """Called by conv2d when its worker threads finish a batch."""
    global _WORKERS_DONE
    _WORKERS_DONE = time.monotonic()


def workers_recently_used() -> bool:
    """Whether conv2d's worker threads finished a batch in the last ``RECENT_SECONDS``."""
    return time.monotonic() - _WORKERS_DONE < RECENT_SECONDS


def small_products():
    """Context for products too small to need BLAS's threads: one thread while conv2d's
    workers are in use, BLAS's usual threads otherwise."""
    return one_blas_thread() if workers_recently_used() else nullcontext()
