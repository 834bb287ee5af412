"""Shared test configuration.

- hypothesis: the ``ci`` profile (derandomized, no deadline) is loaded when CI is set,
  so a CI run is repeatable; locally the ``dev`` profile explores new examples.
- ``require_tool``: a test that needs a missing system tool skips locally with a
  message naming the Debian package, and fails under CI=true.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("MPLBACKEND", "Agg")

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

IN_CI = bool(os.environ.get("CI"))


def require_tool(executable: str, package: str) -> str:
    """Return the tool's path; skip (locally) or fail (CI) when it is missing."""
    path = shutil.which(executable)
    if path is None:
        message = f"{executable} not found: install the Debian package '{package}'"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
