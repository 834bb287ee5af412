"""Assignment 1 (a1-convolution): its samples, the mistakes its checks must name, and the
rules its notebook states.

- The committed samples equal what ``a1_students.py`` generates from the current release.
- In-process (the kernel's ``Grader``, no nbgrader): each mistake student fails only the
  checks of the function with the mistake, and the report names the mistake; a flipped
  kernel fails the visible check of ``conv2d`` too.
- The time a cell may run, as the notebook states it, is the time the grader enforces.

The whole notebook under the real nbgrader CLI is ``test_pipeline.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import a1_students as S
import pytest
from course_tools import hidden_checks, run_hidden_checks

from cnnlib.grading import specs

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT, NOTEBOOK = "a1-convolution", "convolution.ipynb"
SOLUTION = ROOT / "solutions" / ASSIGNMENT / NOTEBOOK


def cell(nb, grade_id):
    (source,) = ["".join(c["source"]) for c in nb["cells"]
                 if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
    return source


def test_committed_samples_equal_the_generator():
    for student, nb in S.samples().items():
        path = ROOT / "examples" / "submissions" / student / ASSIGNMENT / NOTEBOOK
        assert path.read_text() == S.dumps(nb), (
            f"{path} is out of date: run python tests/grading/a1_students.py")


@pytest.mark.parametrize("student", sorted(S.MISTAKES))
def test_each_mistake_fails_its_hidden_checks_and_is_named(student):
    function, code, words = S.MISTAKES[student]
    cells = hidden_checks(ASSIGNMENT, NOTEBOOK, function)
    helpers = {f: c for f, c in S.CORRECT.items() if f != function}
    verdicts = run_hidden_checks("a1", {**helpers, function: code}, cells)
    failed = {g: v for g, v in verdicts.items() if v}
    assert failed, f"{student} passes every hidden check of {function}"
    assert any(words in report for report in failed.values()), failed
    assert run_hidden_checks("a1", S.CORRECT, cells) == dict.fromkeys(dict(cells))


def test_square_only_code_is_told_non_square_not_float32():
    # Its failures are the non-square kernels, float32 and float64 alike: a hint that blamed
    # the dtype (the float32 cases were once the only non-square kernels) would mislead.
    for function, code in (("conv2d", S.CONV_SQUARE_ONLY), ("correlate2d", S.CORR_SQUARE_ONLY)):
        helpers = {f: c for f, c in S.CORRECT.items() if f != function}
        verdicts = run_hidden_checks("a1", {**helpers, function: code},
                                     hidden_checks(ASSIGNMENT, NOTEBOOK, function))
        reports = "\n".join(v for v in verdicts.values() if v)
        assert "non-square kernels (KH != KW)" in reports, reports
        assert "float32" not in reports.replace("(float32)", ""), reports
        # an error alone may not tell a square window from one cut short by the edge:
        # then both are named, never the edge alone
        for line in reports.splitlines():
            assert "ran past the edge" not in line or "need not be square" in line, line
            assert line.startswith(("Hint", function)) or "square" in line, line


def test_code_for_square_inputs_only_is_told_so():
    verdicts = run_hidden_checks("a1", dict(S.CORRECT, conv2d=S.CONV_SQUARE_INPUT),
                                 hidden_checks(ASSIGNMENT, NOTEBOOK, "conv2d"))
    reports = "\n".join(v for v in verdicts.values() if v)
    assert ": the input was taken to be square" in reports, reports  # not only "either"
    assert "float32" not in reports.replace("(float32)", ""), reports


def _visible(grade_id, functions):
    nb = json.loads(SOLUTION.read_text())
    return run_hidden_checks("a1", functions, [(grade_id, cell(nb, grade_id))])[grade_id]


def test_a_flipped_kernel_fails_the_visible_check_of_conv2d():
    report = _visible("test_conv2d_visible", dict(S.CORRECT, conv2d=S.CONV_FLIPPED))
    assert report and "values differ from the worked example" in report, report
    assert _visible("test_conv2d_visible", S.CORRECT) is None


def test_the_worked_example_of_conv2d_is_not_symmetric_under_a_half_turn():
    import numpy as np

    nb = json.loads(SOLUTION.read_text())
    ns = {"np": np}
    source = cell(nb, "test_conv2d_visible")
    exec(source.split("GRADER.expect")[0], ns)  # noqa: S102 - x_example, w_example
    w = ns["w_example"]
    assert all(not np.array_equal(k, k[::-1, ::-1]) for k in w.reshape(-1, *w.shape[-2:]))


# --------------------------------------------------------------------------- stated rules

def stated_cell_limit(notebook):
    """The seconds a cell may run when graded, as the notebook's introduction says."""
    intro = cell(json.loads(Path(notebook).read_text()), "intro")
    (seconds,) = re.findall(r"may run for at most (\d+) seconds", intro.replace("\n", " "))
    return float(seconds)


def enforced_cell_limit(notebook, monkeypatch):
    """The seconds after which grading stops a cell of ``notebook``: the kernel's own guard,
    armed by the Grader of the notebook's setup cell (recorded, not armed, here), or the
    grader's limit per cell, whichever comes first."""
    from cnnlib.grading import harness, trusted

    setup = cell(json.loads(Path(notebook).read_text()), "setup")
    (args,) = re.findall(r"GRADER = Grader\((.*)\)", setup)
    armed = []
    monkeypatch.setattr(harness, "_guard_kernel", armed.append)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.delenv("CNNLIB_GRADING_CELL_TIMEOUT", raising=False)
    grader = eval(f"harness.Grader({args})")  # noqa: S307 - the course's own setup line
    grader.close()
    module = specs.load(Path(notebook).parent.name)
    per_cell = max(float(trusted.TrustedExecute.timeout.default_value),
                   specs.cell_timeout(module))
    return min([per_cell, *armed])


@pytest.mark.parametrize("notebook", [SOLUTION, ROOT / "assignments" / ASSIGNMENT / NOTEBOOK])
def test_the_stated_time_per_cell_is_the_enforced_one(notebook, monkeypatch):
    assert stated_cell_limit(notebook) == enforced_cell_limit(notebook, monkeypatch)


def test_the_numpy_2_changes_are_in_the_rules():
    intro = cell(json.loads(SOLUTION.read_text()), "intro")
    for words in ("`np.int`", "`np.float`", "`float(a)`", "TypeError"):
        assert words in intro, words


# --------------------------------------------------------------------------- hidden cells

class _AnyName(dict):
    """A cell's names: the student functions it passes are not needed to read its cases."""

    def __missing__(self, name):
        import builtins

        return getattr(builtins, name, name)


def hidden_configs(assignment, notebook):
    """[(grade_id, spec, configurations)] of every hidden check of a notebook: the cell's
    own cases and the random ones its seed draws, as the judge sees them."""
    from cnnlib.grading import checks

    class Recorder:
        def check(self, op, fn, *, seed, cases=(), random=0, timeout=None):
            spec = specs.find(op, assignment)
            self.calls.append((spec, checks.make_inputs(spec, seed, cases, random)[0]))

    nb = json.loads((ROOT / "solutions" / assignment / notebook).read_text())
    out = []
    for c in nb["cells"]:
        grade_id = c.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        match = re.search(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS",
                          "".join(c["source"]), re.S)
        if match:
            grader = Recorder()
            grader.calls = []
            exec(match.group(1), {}, _AnyName(GRADER=grader))  # noqa: S102
            out += [(grade_id, spec, configs) for spec, configs in grader.calls]
    return out


@pytest.mark.parametrize("assignment, notebook", [(ASSIGNMENT, NOTEBOOK),
                                                  ("a2-pooling", "pooling.ipynb")])
def test_float32_and_non_square_cases_vary_apart_in_every_hidden_check(assignment, notebook):
    # When the float32 configurations of a check are exactly its non-square ones, code that
    # handles only square kernels is told "it fails only for float32 inputs".
    for grade_id, spec, configs in hidden_configs(assignment, notebook):
        dtype = [h for h in spec.hints if "float32" in h.text]
        shape = [h for h in spec.hints if "non-square" in h.text]
        for a in dtype:
            for b in shape:
                picked = {i for i, c in enumerate(configs) if a.applies(c)}
                assert not picked or picked != {i for i, c in enumerate(configs)
                                                if b.applies(c)}, (grade_id, b.text)
