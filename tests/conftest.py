"""Shared test configuration.

- hypothesis: the ``ci`` profile (derandomized, no deadline) is loaded when CI is set,
  so a CI run is repeatable; locally the ``dev`` profile explores new examples.
- System tools (``make test`` installs them where it can: ``tools/system_tools.sh``):
  a test that needs a missing one skips locally with a reason naming the tool and the
  command that installs it, and fails under CI=true. pytest's summary then ends with one
  line per missing tool: how many tests it skipped and how to install it.
  The checks live in ``tests/system_tools.py`` (``require_tool``, ``require_sandbox``,
  ``require_postgres``).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from system_tools import IN_CI, missing_tools_summary, require_tool, sandbox_available  # noqa: F401

os.environ.setdefault("MPLBACKEND", "Agg")

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session", autouse=True)
def _grade_unsandboxed_without_bubblewrap():
    """Without bubblewrap (and outside CI) the grading tests still grade the course's own
    sample classes, through autograding's explicit unsandboxed mode; the tests of the
    sandbox itself skip (``require_sandbox``). With bubblewrap nothing changes."""
    if IN_CI or sandbox_available() or os.environ.get("CNNLIB_GRADING_UNSAFE"):
        yield
        return
    os.environ["CNNLIB_GRADING_UNSAFE"] = "1"
    try:
        yield
    finally:
        os.environ.pop("CNNLIB_GRADING_UNSAFE", None)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    missing_tools_summary(terminalreporter)


# Test files that share one graded class (the session fixture ``graded`` of tests/grading).
_SHARED_SCOPES = {"tests/grading/test_trusted.py": "tests/grading/test_pipeline.py"}


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (``make test`` runs a worker per core), each test file runs on one
    worker, so a module's expensive fixture (a graded class, a trained network) is built
    once, and the two files that share the a1 class run on the same worker. (xdist's own
    ``loadgroup`` marks do not reach this pytest's node ids.)"""
    from xdist.scheduler import LoadFileScheduling

    class CourseScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid):
            scope = super()._split_scope(nodeid)
            return _SHARED_SCOPES.get(scope, scope)

    return CourseScheduling(config, log)
