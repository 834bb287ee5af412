"""Checks for the system tools some tests need (``make test`` installs them where it can:
``tools/system_tools.sh``). A test that needs a missing one skips with a reason naming the
tool and the command that installs it, or fails under CI=true; ``tests/conftest.py`` ends
pytest's summary with one line per missing tool.
"""

from __future__ import annotations

import glob
import os
import re
import shutil

import pytest

IN_CI = bool(os.environ.get("CI"))

# Every skip for a missing tool carries this phrase: the summary groups skips by it.
_MISSING = "missing system tool"
_MISSING_RE = re.compile(_MISSING + r" (?P<tool>[\w-]+) \((?P<why>[^)]*)\): install it with: "
                         r"(?P<command>[^;]+)")


def missing_tool(tool: str, package: str, why: str) -> None:
    """Skip the test (fail it under CI=true): ``tool`` is missing, which ``package`` (a
    Debian package) provides."""
    message = (f"{_MISSING} {tool} ({why}): install it with: sudo apt-get install {package}; "
               "`make test` as root installs it")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_tool(executable: str, package: str, why: str = "") -> str:
    """Return the tool's path; skip (locally) or fail (CI) when it is missing."""
    path = shutil.which(executable)
    if path is None:
        missing_tool(executable, package, why or f"the tests that run {executable}")
    return path


def sandbox_available() -> bool:
    """Whether bubblewrap is installed and can create a sandbox on this machine."""
    from cnnlib.grading import jail

    return jail.bwrap_works()


def require_sandbox(why: str = "the tests of the grading sandbox itself") -> None:
    """Skip (fail under CI) unless bubblewrap can create a sandbox here."""
    if not sandbox_available():
        missing_tool("bubblewrap", "bubblewrap", why)


def postgres_available() -> bool:
    """Whether a PostgreSQL server (initdb, pg_ctl, postgres) is installed."""
    if shutil.which("initdb") and shutil.which("pg_ctl") and shutil.which("postgres"):
        return True
    return any(all(os.access(os.path.join(d, t), os.X_OK) for t in ("initdb", "pg_ctl",
                                                                     "postgres"))
               for d in glob.glob("/usr/lib/postgresql/*/bin"))


def require_postgres(why: str = "the PostgreSQL gradebook tests") -> None:
    if not postgres_available():
        missing_tool("postgresql", "postgresql", why)


def missing_tools_summary(terminalreporter):
    """One line per missing system tool: the tests it skipped and the install command."""
    groups: dict[tuple[str, str], list[str]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        text = str(report.longrepr[2] if isinstance(report.longrepr, tuple)
                   else report.longrepr)
        match = _MISSING_RE.search(text)
        if match:
            groups.setdefault((match["tool"], match["command"].strip()), []).append(
                match["why"])
    if not groups:
        return
    terminalreporter.section("skipped for missing system tools")
    for (tool, command), whys in sorted(groups.items()):
        what = ", ".join(sorted(set(whys)))
        terminalreporter.write_line(f"{tool} missing: skipped {len(whys)} test(s) ({what}); "
                                    f"install it with: {command}")
