"""The whole nbgrader flow on Assignment 1, with the real CLI, in a scratch course.

One autograde call grades every sample, hostile and adversarial student together (the
``graded`` fixture of ``conftest.py``), then each test asserts on the gradebook, the files
and the feedback. The adversarial corpus has its own assertions in ``test_trusted.py``.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import a1_students as S
import pytest
from course_tools import load_tool

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

FUNCS = {"conv_output_size": 4, "pad2d": 5, "correlate2d": 5, "conv2d": 7}


grade_samples = load_tool("grade_samples")
release = load_tool("release")


def by_function(row):
    return {f: sum(v for k, v in row.items() if k.startswith(f"test_{f}_")
                   and not k.endswith(":to-grade")) for f in FUNCS}


def test_release_matches_a_fresh_generation_and_leaks_nothing(graded):
    course = graded["course"]
    assert release.differences(course, "a1-convolution") == []
    assert release.scan_release(course, "a1-convolution") == []
    for release_dir in (ROOT / "assignments/a1-convolution", course / "assignments/a1-convolution"):
        files = sorted(p.name for p in release_dir.rglob("*") if p.is_file())
        assert files == ["convolution.ipynb"]
    assert sorted(p.name for p in (ROOT / "solutions/a1-convolution").iterdir()) == [
        "convolution.ipynb"]


def test_solution_earns_full_marks_and_release_earns_zero(graded):
    scores = graded["scores"]
    assert by_function(scores["solution"]) == FUNCS
    assert by_function(scores["released"]) == dict.fromkeys(FUNCS, 0)
    assert scores["solution"]["max"] == sum(FUNCS.values()) + 4  # + the manual task


def test_sample_class(graded):
    scores = graded["scores"]
    assert by_function(scores["alice_complete"]) == FUNCS
    assert by_function(scores["bob_partial"]) == dict(FUNCS, conv2d=0)
    carol = by_function(scores["carol_buggy"])
    # p:-p padding passes only the configurations with padding > 0 (the visible check)
    assert carol == {"conv_output_size": 0, "pad2d": 1, "correlate2d": 0, "conv2d": 0}


def test_containment_costs_only_the_failing_function(graded):
    # conv_output_size warns and writes to stderr, yet earns its points; the others exit,
    # crash and hang, and earn nothing, without stopping the notebook.
    assert by_function(graded["scores"]["hostile"]) == dict(
        FUNCS, pad2d=0, correlate2d=0, conv2d=0)
    nb = json.loads((graded["course"] / "autograded/hostile/a1-convolution/convolution.ipynb")
                    .read_text())
    errors = {c["metadata"]["nbgrader"]["grade_id"]: c["outputs"][-1].get("evalue", "")
              for c in nb["cells"] if c["cell_type"] == "code"
              and c["metadata"].get("nbgrader", {}).get("grade_id", "").startswith("test_")
              and c["outputs"] and c["outputs"][-1]["output_type"] == "error"}
    assert "os._exit" in errors["test_pad2d_2d"]
    assert "crashed" in errors["test_correlate2d_square"]
    assert "did not finish" in errors["test_conv2d_stride1"]
    # the student's own cells: a hang and os._exit at the top level are stopped, and the
    # notebook runs on to the end
    def outputs_of(text):
        (cell,) = [c for c in nb["cells"] if c["cell_type"] == "code"
                   and text in "".join(c["source"])]
        return cell["outputs"]
    assert "CellTimeLimit" in [o.get("ename") for o in outputs_of("conv2d(x_photo, np.ones")]
    assert "ProcessExitRefused" in [o.get("ename") for o in outputs_of("pad2d(np.ones((2, 2))")]
    assert "still running" in "".join(outputs_of("print('still running')")[0]["text"])


def test_delegation_earns_nothing_for_that_function(graded):
    assert by_function(graded["scores"]["delegator"]) == dict(
        FUNCS, pad2d=0, correlate2d=0, conv2d=0)


def test_tampering_earns_nothing(graded):
    assert graded["scores"]["tamperer"]["total"] == 0


def test_deleted_and_edited_test_cells_are_restored(graded):
    assert by_function(graded["scores"]["rewriter"]) == FUNCS


def test_bad_notebooks_are_named_and_the_rest_graded(graded):
    problems = graded["problems"]
    assert "corrupt" in problems and "corrupt" in problems["corrupt"]
    assert "convolution.ipynb" in problems["corrupt"]
    assert "missing" in problems and "missing from the submission" in problems["missing"]
    graded_students = set(graded["scores"])
    assert {"alice_complete", "solution", "hostile"} <= graded_students
    table = grade_samples.table(graded)
    assert "problem: corrupt: a1-convolution/convolution.ipynb is not a readable notebook" in table


def test_feedback_has_no_hidden_tests_and_explains_failures(graded):
    assert graded["feedback"], "no feedback generated"
    assert graded["leaks"] == []
    carol = (graded["course"] / "feedback/carol_buggy/a1-convolution/convolution.html").read_text()
    assert "seed=" not in carol and "GRADER.check" not in carol
    assert "true convolution (kernel flipped)" in carol
    assert "p:-p" in carol
    assert "(n + 2p - k + 1)/s + 1" in carol
    # at most one failing configuration per check: her conv2d's first kind of failure
    assert "conv2d: " in carol and "configurations differ from the reference" in carol
    for report in re.findall(r"configurations differ from the reference\.(.*?)</pre>", carol,
                             re.S):
        described = [ln for ln in report.split("\n") if ln.startswith("- ")
                     and not ln.startswith("- ...")]
        assert len(described) <= 1, report


def test_grades_csv_lists_every_graded_student(graded):
    with open(graded["grades_csv"]) as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert float(rows["alice_complete"]["raw_score"]) == sum(FUNCS.values())
    assert float(rows["released"]["raw_score"]) == 0


def test_validate_exits_0_on_failing_tests_but_the_validator_reports_them(tmp_path,
                                                                         monkeypatch):
    """Why the tests never trust ``nbgrader validate``'s exit status."""
    from nbgrader.validator import Validator

    released = tmp_path / "convolution.ipynb"
    released.write_bytes(S.RELEASE.read_bytes())
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "validate", str(released)],
                          cwd=tmp_path, env=grade_samples.nbgrader_env(), capture_output=True,
                          text=True)
    assert proc.returncode == 0
    assert "VALIDATION FAILED" in proc.stdout
    monkeypatch.chdir(tmp_path)
    results = Validator().validate(str(released))
    assert results.get("failed"), results


def test_suspicious_code_is_listed_for_review(graded):
    review = graded["review"]
    assert "touches numpy's testing helpers" in review["tamperer"]
    assert "assigns to a numpy attribute" in review["tamperer"]
    assert "mentions cnnlib" in review["delegator"]
    assert "ends or starts processes" in review["hostile"]
    for honest in ("alice_complete", "bob_partial", "carol_buggy", "solution", "released"):
        assert honest not in review, review.get(honest)
    assert "review: tamperer:" in grade_samples.table(graded)


def test_setup_cell_placement_changes_nothing(graded):
    # Verdicts are computed outside the student's kernel, so code that runs before the
    # setup cell can neither help nor hurt: the mover keeps full marks.
    assert by_function(graded["scores"]["mover"]) == FUNCS


@pytest.mark.parametrize("attack, reason", [
    ("import cnnlib.grading.a4 as m\nobject.__setattr__(m.LENET5, 'adapter', None)",
     "uses the grader object"),
    ("import gc\nspecs = [o for o in gc.get_objects() if type(o).__name__ == 'FunctionSpec']",
     "touches interpreter internals"),
    ("s = __import__('cnnl' + 'ib.grading.a4')", "imports indirectly"),
])
def test_replacing_the_grading_machinery_is_listed_for_review(tmp_path, attack, reason):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": attack, "outputs": [],
                     "execution_count": None}], "metadata": {}, "nbformat": 4,
          "nbformat_minor": 5}
    path = tmp_path / "submitted" / "mallory" / "a4-architectures" / "architectures.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb))
    flags = grade_samples.review_flags(tmp_path, "a4-architectures", ["mallory"])
    assert reason in flags["mallory"]
    path.write_text(json.dumps({**nb, "cells": [{**nb["cells"][0], "source": "x = 1"}]}))
    assert grade_samples.review_flags(tmp_path, "a4-architectures", ["mallory"]) == {}
