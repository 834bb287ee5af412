"""A missing system tool skips the tests that need it, naming the tool and its install
command, and pytest ends with one line per missing tool; under CI=true the tests fail."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

TESTS = """
from system_tools import require_tool

def test_needs_a_tool():
    require_tool("cnnlib-no-such-tool", "cnnlib-no-such-package", "the tests of a tool")

def test_needs_it_too():
    require_tool("cnnlib-no-such-tool", "cnnlib-no-such-package", "the tests of a tool")

def test_needs_nothing():
    assert True
"""


@pytest.fixture
def session(pytester):
    pytester.makeconftest("from system_tools import missing_tools_summary as "
                          "pytest_terminal_summary\n")
    pytester.makepyfile(test_tools=TESTS)
    return pytester


def test_a_missing_tool_skips_and_is_summarised_once(session, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = session.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines([
        "*skipped for missing system tools*",
        "cnnlib-no-such-tool missing: skipped 2 test(s) (the tests of a tool); install it "
        "with: sudo apt-get install cnnlib-no-such-package",
    ])
    assert result.stdout.str().count("cnnlib-no-such-tool missing:") == 1


def test_under_ci_a_missing_tool_fails(session, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = session.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*missing system tool cnnlib-no-such-tool*"])
