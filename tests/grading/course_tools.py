"""Import the course's scripts in tools/ (not a package) by name, once per test session."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_tool(name):
    """``tools/<name>.py`` as a module (the same object on every call)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


def hidden_checks(assignment, notebook, function):
    """[(grade_id, hidden code)] of the solution's hidden test cells of ``function``
    (the cells named ``test_<function>_*``), as the grader runs them."""
    nb = json.loads((ROOT / "solutions" / assignment / notebook).read_text())
    out = []
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        match = HIDDEN.search("".join(cell["source"]))
        if match and grade_id.startswith(f"test_{function}_"):
            out.append((grade_id, match.group(1)))
    assert out, f"{assignment} has no hidden check of {function}"
    return out


def run_hidden_checks(assignment, code, cells, *, preamble="import numpy as np", timeout=10,
                      grader=None):
    """{grade_id: None when it passed, else the report} of ``cells`` (``hidden_checks``)
    run here against the student functions defined by ``code`` (their sources), with the
    kernel's Grader: the same spec checks, inputs and diagnosis as in grading, without a
    whole notebook. Each known mistake is graded this way; a few whole notebooks per
    assignment prove the rest of the pipeline. ``grader``: one to reuse (its start-up is
    most of the cost of a few checks); by default a new one, closed afterwards."""
    import numpy as np

    from cnnlib.grading import Grader

    own = grader is None
    grader = Grader(assignment, timeout=timeout) if own else grader
    ns = {"np": np, "GRADER": grader, "__name__": "__main__"}
    try:
        exec(preamble, ns)  # noqa: S102 - the course's own sample code
        for source in code.values():
            exec(source, ns)  # noqa: S102
        verdicts = {}
        for grade_id, source in cells:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(source, dict(ns))  # noqa: S102
                verdicts[grade_id] = None
            except AssertionError as exc:
                verdicts[grade_id] = str(exc)
    finally:
        if own:
            grader.close()
    return verdicts


def kernel_grader_fixture(assignment, timeout=20):
    """A module-scoped pytest fixture: one kernel Grader of ``assignment`` for every
    in-process check of a test module (its start-up is most of the cost of a few checks)."""
    import pytest

    @pytest.fixture(scope="module")
    def kernel_grader():
        from cnnlib.grading import Grader

        grader = Grader(assignment, timeout=timeout)
        yield grader
        grader.close()
    return kernel_grader
