"""Assignment 2 (a2-pooling): its samples, its known mistakes and its grading, end to end.

- The committed samples equal what ``a2_students.py`` generates from the current release.
- In-process (the kernel's ``Grader``, no nbgrader): each mistake student fails only the
  checks of the function with the mistake, and the report names the mistake.
- With the real nbgrader CLI (one module-scoped scratch course, ``slow``): the solution
  earns full autograded marks and the release 0, the complete and partial samples and one
  mistake student (every mistake is graded in-process above, through the same hidden
  checks) lose exactly the points of their faulty functions, named in the feedback, broken
  functions (missing, wrong signature, wrong shape, integer dtype, NaN, a hang, a crash)
  cost only their own points, and no hidden-test source reaches the feedback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import a2_students as S
import pytest
from course_tools import load_tool, run_hidden_checks

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "solutions" / S.ASSIGNMENT / S.NOTEBOOK
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


def _cells(nb):
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        yield meta.get("grade_id"), meta, "".join(cell["source"])


def points():
    """{graded function: points} from the solution's test cells (``test_<function>_*``)."""
    nb = json.loads(SOLUTION.read_text())
    out = dict.fromkeys(S.CORRECT, 0)
    for grade_id, meta, _ in _cells(nb):
        for name in out:
            if grade_id and grade_id.startswith(f"test_{name}_"):
                out[name] += meta.get("points", 0)
    return out


FUNCS = points()


def by_function(row):
    return {f: sum(v for k, v in row.items() if k.startswith(f"test_{f}_")
                   and not k.endswith(":to-grade")) for f in FUNCS}


def test_points_cover_every_function_and_match_the_intro_table():
    nb = json.loads(SOLUTION.read_text())
    assert all(FUNCS.values()), FUNCS
    intro = next(src for gid, _, src in _cells(nb) if gid == "intro")
    for name, pts in FUNCS.items():
        assert re.search(rf"\| `{name}\(.*\)` \| {pts} \|", intro), name
    task = sum(m.get("points", 0) for gid, m, _ in _cells(nb) if gid and gid.startswith("task_"))
    assert f"graded by hand) | {task} |" in intro


def test_committed_samples_equal_the_generator():
    for student, nb in S.samples().items():
        path = S.EXAMPLES / student / S.ASSIGNMENT / S.NOTEBOOK
        assert path.read_text() == S.dumps(nb), (
            f"{path} is out of date: run python tests/grading/a2_students.py")


# --------------------------------------------------------------------------- in-process

@pytest.fixture(scope="module")
def hidden_cells():
    nb = json.loads(SOLUTION.read_text())
    return [(gid, HIDDEN.search(src).group(1)) for gid, _, src in _cells(nb)
            if gid and HIDDEN.search(src)]


def run_hidden(functions, hidden_cells):
    """{grade_id: None or the AssertionError's report} for one student's functions, with
    the kernel's Grader (each call in a forked child)."""
    return run_hidden_checks("a2", functions, hidden_cells)


def test_the_complete_student_passes_every_hidden_check(hidden_cells):
    verdicts = run_hidden(S.CORRECT, hidden_cells)
    assert {g: v for g, v in verdicts.items() if v} == {}


@pytest.mark.parametrize("student", sorted(S.MISTAKES))
def test_a_mistake_fails_only_its_function_and_is_named(student, hidden_cells):
    function, code, words = S.MISTAKES[student]
    verdicts = run_hidden(dict(S.CORRECT, **{function: code}), hidden_cells)
    failed = {g: v for g, v in verdicts.items() if v}
    assert failed, f"{student} passes every hidden check"
    assert all(g.startswith(f"test_{function}_") for g in failed), sorted(failed)
    assert any(words in report for report in failed.values()), failed


# --------------------------------------------------------------------------- nbgrader

# Mistake students graded as whole notebooks too: one proves that a mistake's name reaches
# the feedback; the others would prove nothing the in-process checks above do not.
END_TO_END = ["a2_maxpool_stride_ignored"]

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    grade_samples = load_tool("grade_samples")
    tmp = tmp_path_factory.mktemp("a2")
    course = grade_samples.make_course(tmp / "course", [S.ASSIGNMENT])
    subs = tmp / "submissions"
    for student_dir in sorted(S.EXAMPLES.iterdir()):
        src = student_dir / S.ASSIGNMENT
        if src.is_dir() and (student_dir.name not in S.MISTAKES
                             or student_dir.name in END_TO_END):
            shutil.copytree(src, subs / student_dir.name / S.ASSIGNMENT)
    extra = {
        "solution": json.loads(SOLUTION.read_text()),
        "released": json.loads(S.RELEASE.read_text()),
        "broken": S.broken(),
    }
    for name, nb in extra.items():
        path = subs / name / S.ASSIGNMENT / S.NOTEBOOK
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(nb))
    # shorter budgets than a real run: 3 s per check cell, 10 s per student cell
    saved = {k: os.environ.get(k) for k in ("CNNLIB_GRADING_TIMEOUT",
                                            "CNNLIB_GRADING_CELL_TIMEOUT")}
    os.environ["CNNLIB_GRADING_TIMEOUT"] = "3"
    os.environ["CNNLIB_GRADING_CELL_TIMEOUT"] = "10"
    try:
        result = grade_samples.grade_all(course, subs, S.ASSIGNMENT)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    result["course"] = course
    return result


def errors(graded, student):
    """{grade_id: error text} of the failed test cells of one autograded notebook."""
    path = graded["course"] / "autograded" / student / S.ASSIGNMENT / S.NOTEBOOK
    nb = json.loads(path.read_text())
    out = {}
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if cell["cell_type"] == "code" and grade_id.startswith("test_"):
            errs = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
            if errs:
                out[grade_id] = errs[-1].get("evalue", "")
    return out


@pytest.mark.slow
def test_every_notebook_is_graded_and_nothing_leaks(graded):
    assert graded["problems"] == {}
    assert graded["leaks"] == []
    assert len(graded["feedback"]) == len(graded["students"])
    release = load_tool("release")
    assert release.differences(graded["course"], S.ASSIGNMENT) == []
    assert release.scan_release(graded["course"], S.ASSIGNMENT) == []


@pytest.mark.slow
def test_solution_earns_full_marks_and_release_earns_zero(graded):
    scores = graded["scores"]
    assert by_function(scores["solution"]) == FUNCS
    assert by_function(scores["released"]) == dict.fromkeys(FUNCS, 0)
    assert scores["solution"]["max"] == sum(FUNCS.values()) + 5  # + the study, by hand


@pytest.mark.slow
def test_complete_and_partial_samples(graded):
    scores = graded["scores"]
    assert by_function(scores["alice_complete"]) == FUNCS
    assert scores["alice_complete"].get("task_shift:to-grade")
    assert by_function(scores["bob_partial"]) == dict(
        FUNCS, gem_pool=0, softmax=0, flatten=0, linear=0)


@pytest.mark.slow
@pytest.mark.parametrize("student", END_TO_END)
def test_a_mistake_costs_its_function_only_and_is_named_in_feedback(graded, student):
    function, _, words = S.MISTAKES[student]
    got = by_function(graded["scores"][student])
    assert got[function] < FUNCS[function]
    assert {f: v for f, v in got.items() if f != function} == {
        f: v for f, v in FUNCS.items() if f != function}
    failed = errors(graded, student)
    assert failed and all(g.startswith(f"test_{function}_") for g in failed), failed
    assert any(words in text for text in failed.values()), failed
    html = (graded["course"] / "feedback" / student / S.ASSIGNMENT /
            S.NOTEBOOK.replace(".ipynb", ".html")).read_text()
    assert words.replace("(", "").split()[0] in html


@pytest.mark.slow
def test_broken_functions_cost_only_their_own_points(graded):
    got = by_function(graded["scores"]["broken"])
    assert got == {f: 0 if f in S.BROKEN else v for f, v in FUNCS.items()}
    failed = errors(graded, "broken")
    said = {f: "\n".join(t for g, t in failed.items() if g.startswith(f"test_{f}_"))
            for f in S.BROKEN}
    assert "relu is not defined" in said["relu"]
    assert "TypeError" in said["softmax"]
    assert "return (N, C)" in said["global_avgpool"]
    assert "integer dtype" in said["flatten"]
    assert "NaN" in said["elu"]
    assert "did not finish" in said["leaky_relu"]
    assert "crashed" in said["sigmoid"]


# --------------------------------------------------------------------------- feedback words

def _cell(grade_id):
    nb = json.loads(SOLUTION.read_text())
    (source,) = [src for gid, _, src in _cells(nb) if gid == grade_id]
    return source


NAIVE_SIGMOID = '''
def sigmoid(x):
    return 1 / (1 + np.exp(-x))
'''


def test_an_overflowing_sigmoid_fails_the_visible_check_and_is_told_why(hidden_cells):
    from course_tools import run_hidden_checks

    visible = [("test_sigmoid_visible", _cell("test_sigmoid_visible"))]
    report = run_hidden_checks("a2", {"sigmoid": NAIVE_SIGMOID}, visible)["test_sigmoid_visible"]
    assert report and "RuntimeWarning: overflow encountered in exp" in report, report
    assert "np.exp overflows to inf" in report and "values may still be right" in report
    assert run_hidden_checks("a2", {"sigmoid": S.SIGMOID}, visible) == {
        "test_sigmoid_visible": None}
    # its values are right: the hidden checks, which judge values, keep their points
    verdicts = run_hidden({"sigmoid": NAIVE_SIGMOID},
                          [c for c in hidden_cells if c[0].startswith("test_sigmoid_")])
    assert verdicts == {"test_sigmoid_values": None, "test_sigmoid_large": None}


def test_missing_padding_is_named_before_non_overlapping_windows():
    # kernel 3, stride 2, padding 1 on 6 x 7: no padding and windows stepping by the kernel
    # size both give a 2 x 3 output; the values tell them apart
    import cnnlib.numpy as lib
    from cnnlib.grading import checks, specs

    for name, pool in (("maxpool2d", lib.maxpool2d_forward), ("avgpool2d", lib.avgpool2d_forward)):
        spec = specs.find(name, "a2")
        configs, calls = checks.make_inputs(spec, 3, [dict(x=[1, 3, 6, 7], kernel_size=3,
                                                           stride=2, padding=1)])
        (x, k, s, p), _ = calls[0]
        unpadded = pool(x, kernel_size=k, stride=s, padding=0)[0]
        tiled = pool(x, kernel_size=k, stride=k, padding=p)[0]
        assert unpadded.shape == tiled.shape
        for value, words in ((unpadded, "the padding is ignored"),
                             (tiled, "the windows do not overlap")):
            outcome = {"kind": "ok", "value": value,
                       "desc": {"kind": "array", "dtype": value.dtype.str,
                                "shape": list(value.shape)}}
            passed, report = checks.judge(spec, lib, configs, calls, [outcome])
            assert not passed and words in report, report


@pytest.mark.parametrize("student", ["a2_softmax_global_max", "a2_maxpool_no_padding"])
def test_a_named_mistake_is_not_blamed_on_another(student, hidden_cells):
    function, code, words = S.MISTAKES[student]
    verdicts = run_hidden(dict(S.CORRECT, **{function: code}), hidden_cells)
    reports = "\n".join(v for v in verdicts.values() if v)
    assert words in reports
    for wrong in ("np.empty", "overflows to inf", "do not overlap"):
        assert wrong not in reports, reports


@pytest.mark.parametrize("student, cell, rule", [
    ("a2_maxpool_zero_padding", "test_maxpool2d_stride", "MAX_PADDING_RULE"),
    ("a2_avgpool_padding_not_counted", "test_avgpool2d_windows", "AVG_PADDING_RULE"),
])
def test_points_lost_to_a_padding_convention_say_so_in_any_check(student, cell, rule,
                                                                   hidden_cells):
    from cnnlib.grading import a2

    quote = getattr(a2, rule)
    nb = json.loads(SOLUTION.read_text())
    text = "\n".join(src for _, _, src in _cells(nb)).replace("\n", " ")
    assert quote.strip('"') in text, f"{rule} no longer quotes the notebook"
    function, code, _ = S.MISTAKES[student]
    report = run_hidden(dict(S.CORRECT, **{function: code}), hidden_cells)[cell]
    assert report, f"{student} passes {cell}: the check no longer tests the convention"
    assert "padding convention" in report and quote in report, report


@pytest.mark.parametrize("notebook", [SOLUTION, S.RELEASE])
def test_the_stated_time_per_cell_is_the_enforced_one(notebook, monkeypatch):
    from test_a1 import enforced_cell_limit, stated_cell_limit

    assert stated_cell_limit(notebook) == enforced_cell_limit(notebook, monkeypatch)


def test_the_numpy_2_changes_are_in_the_rules():
    intro = _cell("intro")
    for words in ("`np.int`", "`np.float`", "`float(a)`", "TypeError"):
        assert words in intro, words
