"""Tests of cnnlib/numpy/_blas.py: BLAS thread limits shared by conv2d and linear."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from cnnlib.numpy import _blas
from cnnlib.numpy import linear as linear_module


@pytest.fixture
def two_blas_threads():
    with threadpool_limits(limits=2, user_api="blas"):
        if _blas.blas_threads()[1] != 2:
            pytest.skip("NumPy's BLAS does not take 2 threads here")
        yield


def test_one_blas_thread_limits_and_restores(two_blas_threads):
    with _blas.one_blas_thread():
        assert _blas.blas_threads()[1] == 1
    assert _blas.blas_threads()[1] == 2


@pytest.mark.parametrize("owner_leaves_first", [True, False])
def test_one_blas_thread_in_two_threads_never_leaves_the_limit(two_blas_threads,
                                                                owner_leaves_first):
    """Two threads inside at once: the first one in sets the limit and lifts it; the
    second runs under it, and whichever leaves first, BLAS ends with its threads."""
    inside, leave = threading.Event(), threading.Event()
    seen = []

    def other():
        with _blas.one_blas_thread():
            seen.append(_blas.blas_threads()[1])
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    with _blas.one_blas_thread():
        t.start()
        assert inside.wait(10)
        if not owner_leaves_first:
            leave.set()
            t.join(10)
    leave.set()
    t.join(10)
    assert not t.is_alive() and seen == [1]
    assert _blas.blas_threads()[1] == 2


def test_one_blas_thread_restores_after_an_exception(two_blas_threads):
    with pytest.raises(RuntimeError):
        with _blas.one_blas_thread():
            raise RuntimeError("inside")
    assert _blas.blas_threads()[1] == 2


def test_small_products_follow_the_workers_recent_use(two_blas_threads, monkeypatch):
    monkeypatch.setattr(_blas, "_WORKERS_DONE", time.monotonic())
    with _blas.small_products():
        assert _blas.blas_threads()[1] == 1
    monkeypatch.setattr(_blas, "_WORKERS_DONE", time.monotonic() - 2 * _blas.RECENT_SECONDS)
    assert not _blas.workers_recently_used()
    with _blas.small_products():
        assert _blas.blas_threads()[1] == 2


class _Recording(np.ndarray):
    """An array whose products record how many BLAS threads they ran with."""

    threads: list = []

    def __matmul__(self, other):
        _Recording.threads.append(_blas.blas_threads()[1])
        return np.asarray(self) @ np.asarray(other)


@pytest.mark.parametrize("recent, inner, expected", [
    (True, 4, 1),      # small, workers in use: one thread
    (False, 4, 2),     # small, workers idle: BLAS's threads
    (True, 1024, 2),   # 16 * 1024 * 1024 multiply-adds, not small: BLAS's threads
])
def test_linear_products(two_blas_threads, monkeypatch, recent, inner, expected):
    """linear's products run on one BLAS thread when small and the workers are in use."""
    assert 16 * 1024 * 1024 == linear_module._ONE_THREAD_MACS  # the boundary tested
    ago = 0.0 if recent else 2 * _blas.RECENT_SECONDS
    monkeypatch.setattr(_blas, "_WORKERS_DONE", time.monotonic() - ago)
    monkeypatch.setattr(_Recording, "threads", [])
    a = np.ones((16, inner), dtype=np.float32).view(_Recording)
    out = linear_module._product(a, np.ones((inner, 1024), dtype=np.float32))
    assert _Recording.threads == [expected]
    assert np.array_equal(np.asarray(out), np.full((16, 1024), inner, dtype=np.float32))
    assert _blas.blas_threads()[1] == 2
