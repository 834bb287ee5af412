"""Fixtures for the tests of the built book.

``built_book`` builds the book into ``_build/html`` with ``tools/build_book.py`` when it was
never built or a source changed since the last good build, once per test session. A lock
file keeps parallel pytest-xdist workers from building at the same time: the first one
builds, the others wait and then find the build up to date.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402
from system_tools import require_tool  # noqa: E402


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Path of _build/html, built (or rebuilt) if stale."""
    build_book.HTML.parent.mkdir(parents=True, exist_ok=True)
    with open(build_book.HTML.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if build_book.is_stale():
                try:
                    build_book.build()
                except subprocess.CalledProcessError as err:
                    pytest.fail(f"building the book failed (exit {err.returncode}); run "
                                f"`make book` to see the Sphinx warnings and cell errors")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return build_book.HTML


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the chromium executable (skips locally, fails under CI, when missing)."""
    return require_tool("chromium", "chromium", "the browser test of the built book")
