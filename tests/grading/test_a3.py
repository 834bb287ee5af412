"""Assignment 3 (backpropagation): its spec module, its samples, and its grading with the real
nbgrader CLI in a scratch course of its own.

Every sample mistake is graded in-process through the solution's hidden checks of its
function (the same spec checks and diagnosis as in grading). The slow tests share one
module-scoped autograde run (``graded_a3``) of the solution, the release, the complete and
partial samples, one mistake student and a few broken notebooks, so nbgrader's start-up is
paid once.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from pathlib import Path

import a3_students as S
import numpy as np
import pytest
from course_tools import hidden_checks, load_tool, run_hidden_checks

import cnnlib.numpy as lib
from cnnlib.grading import a3, checks
from cnnlib.grading.sandbox import run_cases

ROOT = Path(__file__).resolve().parents[2]
A = "a3-backprop"
FUNCS = {"relu_backward": 3, "linear_backward": 5, "softmax_cross_entropy": 4,
         "numerical_gradient": 4, "conv2d_backward": 7, "maxpool2d_backward": 5,
         "avgpool2d_backward": 4, "predict": 4}
TASK_POINTS = 4
# The function each sample mistake is in, and the message its feedback must show.
MISTAKE_OF = {
    "max_every_element": ("maxpool2d_backward", a3.MAXPOOL2D_BACKWARD.mistakes[0].message),
    "pool_overwrite": ("maxpool2d_backward", a3.MAXPOOL2D_BACKWARD.mistakes[1].message),
    "kernel_not_rotated": ("conv2d_backward", a3.CONV2D_BACKWARD.mistakes[0].message),
    "db_not_summed": ("conv2d_backward", a3.CONV2D_BACKWARD.mistakes[1].message),
    "missing_1_over_n": ("softmax_cross_entropy", a3.SOFTMAX_CROSS_ENTROPY.mistakes[0].message),
}
# A gradient N times too large makes gradient descent diverge: that network cannot learn,
# so the missing 1/N also costs the trained-network checks (their message says why).
ALSO_LOST = {"missing_1_over_n": {"predict"}}
# The mistake graded as a whole notebook too: its effect reaches another function.
END_TO_END = ["missing_1_over_n"]


def by_function(row):
    return {f: sum(v for k, v in row.items() if k.startswith(f"test_{f}_")
                   and isinstance(v, (int, float)) and not isinstance(v, bool))
            for f in FUNCS}


def feedback_text(course, student):
    page = (Path(course) / "feedback" / student / A / "backprop.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", page))


# --------------------------------------------------------------------------- fast tests

def test_the_committed_samples_are_what_the_generator_writes():
    assert set(S.MISTAKES) == set(MISTAKE_OF)
    for student, nb in S.samples().items():
        path = ROOT / "examples/submissions" / student / A / S.NOTEBOOK
        assert path.read_text() == json.dumps(nb, indent=1) + "\n", (
            f"{path} is out of date: run python tests/grading/a3_students.py")


def test_every_sample_mistake_changes_one_function_only():
    for name, (func, code) in S.MISTAKES.items():
        assert MISTAKE_OF[name][0] == func
        assert code != S.COMPLETE[func]


@pytest.mark.parametrize("mistake", sorted(MISTAKE_OF))
def test_each_mistake_fails_its_hidden_checks_and_is_named(mistake):
    func, message = MISTAKE_OF[mistake]
    cells = hidden_checks(A, S.NOTEBOOK, func)
    verdicts = run_hidden_checks("a3", {func: S.MISTAKES[mistake][1]}, cells)
    failed = [report for report in verdicts.values() if report]
    assert failed, f"{mistake} passes every hidden check of {func}"
    assert any(message in report for report in failed), failed
    # the student's other functions are the complete student's, who passes everything
    assert run_hidden_checks("a3", {func: S.COMPLETE[func]}, cells) == dict.fromkeys(
        dict(cells), None)


def _frames_of(code_object, call):
    """The frames in which ``code_object`` runs while ``call()`` runs."""
    seen = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is code_object:
            seen.append(frame)
    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return seen


def test_the_function_f_belongs_to_no_denied_package():
    deny = a3.NUMERICAL_GRADIENT.deny()
    assert "cnnlib" in deny.modules  # the graded function may not call the library
    for name in a3.F_SOURCES:
        xs, ps, _ = a3._f_shapes({"f": name, "x": [2, 3]})
        f = a3.make_f(name, np.ones(ps))
        frames = _frames_of(f.__code__, lambda f=f, xs=xs: f(np.ones(xs)))
        assert frames, name
        assert all(deny.check_frame(fr) is None for fr in frames), name
    # the same check denies a function whose code lives in cnnlib (so it can fail)
    frames = _frames_of(a3._ng_ref.__code__, lambda: a3._ng_ref(
        lib, ("tanh", np.ones(2), np.ones(2), np.ones(2), 1e-5)))
    assert frames and deny.check_frame(frames[0]) is not None


def _student_numerical_gradient():
    namespace = {"np": np}
    exec(S.NUMGRAD, namespace)  # noqa: S102 - the sample student's code
    return namespace["numerical_gradient"]


def test_a_student_numerical_gradient_runs_watched_on_f():
    student = _student_numerical_gradient()
    args = a3._ng_inputs(np.random.default_rng(0), {"f": "affine", "x": [3, 4], "out": 2})
    fname, p, x, dout, h = args
    deny = a3.NUMERICAL_GRADIENT.deny()
    (outcome,) = run_cases(student, [((a3.make_f(fname, p), x, dout, h), {})], deny=deny)
    assert outcome["kind"] == "ok", outcome
    assert checks.close(outcome["value"], a3._ng_ref(lib, args))
    # an f that calls the library is caught by the same watch
    namespace = {"lib": lib}
    exec("def g(x):\n    return lib.relu_forward(x)[0]\n", namespace)  # noqa: S102
    (outcome,) = run_cases(student, [((namespace["g"], x, np.ones_like(x), h), {})], deny=deny)
    assert outcome["kind"] == "denied" and "cnnlib" in outcome["detail"]


def test_predict_may_use_the_library_forward_passes_but_not_torch_or_sklearn():
    deny = a3.PREDICT.deny()
    assert deny._module_denied("cnnlib.numpy.conv") is None
    assert deny._module_denied("torch.nn") and deny._module_denied("sklearn.svm")
    assert deny._module_denied("cnnlib.torch.models")


def test_the_training_cell_limit_leaves_room_for_loops():
    # measured: the loop student (S.loops) trains in about 31 s on one busy core; the
    # kernel's own guard stops a cell at 3/4 of the assignment's limit
    from cnnlib.grading import specs

    assert 0.75 * specs.cell_timeout(a3) >= 4 * 31


@pytest.mark.parametrize("student_code, mistake", [
    ("db = dout.sum(axis=(2, 3))", "summed over space but not over the batch"),
    ("db = dout.sum(axis=0)", "summed over the batch but not over space"),
    ("db = dout.copy()", "db has dout's shape"),
])
def test_conv_bias_shapes_are_diagnosed(student_code, mistake):
    spec = a3.CONV2D_BACKWARD
    config = dict(x=[2, 3, 6, 6], w=[4, 3, 3, 3], padding=1)
    configs, calls = checks.make_inputs(spec, 3, [config])
    (args, _), = calls
    dx, dw, db = spec.reference(lib, args)
    dout = args[0]
    namespace = {"dout": dout}
    exec(student_code, namespace)  # noqa: S102
    message = spec.diagnose(lib, args, (dx, dw, namespace["db"]), (dx, dw, db))
    assert message and mistake in message


def test_linear_and_pool_shapes_are_diagnosed():
    spec = a3.LINEAR_BACKWARD
    (args, _), = checks.make_inputs(spec, 1, [dict(n=4, d_in=5, d_out=3)])[1]
    dx, dw, db = spec.reference(lib, args)
    assert "one row per sample" in spec.diagnose(lib, args, (dx, dw, args[0]), (dx, dw, db))
    assert "transposed" in spec.diagnose(lib, args, (dx, dw.T, db), (dx, dw, db))
    pool = a3.MAXPOOL2D_BACKWARD
    (args, _), = checks.make_inputs(pool, 1, [dict(x=[1, 2, 6, 6], kernel_size=3, stride=2,
                                                   padding=1)])[1]
    ref = pool.reference(lib, args)
    padded = np.zeros((1, 2, 8, 8))
    assert "padded input's shape" in pool.diagnose(lib, args, padded, ref)
    assert "dout's shape" in pool.diagnose(lib, args, args[0], ref)


# --------------------------------------------------------------------------- the grading run

@pytest.fixture(scope="module")
def graded_a3(tmp_path_factory):
    grade_samples = load_tool("grade_samples")
    tmp = tmp_path_factory.mktemp("grading-a3")
    course = grade_samples.make_course(tmp / "course", [A])
    subs = tmp / "submissions"
    for path in (ROOT / "examples/submissions").glob(f"*/{A}/*.ipynb"):
        student = path.parts[-3]
        if student.startswith("a3_") and student[3:] not in END_TO_END:
            continue
        dst = subs / path.relative_to(ROOT / "examples/submissions")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(path.read_bytes())
    students = {"solution": json.loads((ROOT / "solutions" / A / S.NOTEBOOK).read_text()),
                "released": json.loads(S.RELEASE.read_text())}
    students.update({f"broken_{name}": S.broken(name) for name in S.BROKEN})
    for name, nb in students.items():
        S.write(nb, subs, name)
    os.environ["CNNLIB_GRADING_TIMEOUT"] = "3"  # a hanging function costs 3 s per check
    try:
        result = grade_samples.grade_all(course, subs, A)
    finally:
        del os.environ["CNNLIB_GRADING_TIMEOUT"]
    result["course"] = course
    return result


@pytest.mark.slow
def test_every_a3_notebook_is_graded_and_the_release_is_fresh(graded_a3):
    release = load_tool("release")
    assert graded_a3["problems"] == {}, graded_a3["autograde_log"][-3000:]
    assert release.differences(graded_a3["course"], A) == []
    assert release.scan_release(graded_a3["course"], A) == []


@pytest.mark.slow
def test_a3_solution_earns_full_marks_and_release_earns_zero(graded_a3):
    scores = graded_a3["scores"]
    assert by_function(scores["solution"]) == FUNCS
    assert scores["solution"]["max"] == sum(FUNCS.values()) + TASK_POINTS
    assert by_function(scores["released"]) == dict.fromkeys(FUNCS, 0)


@pytest.mark.slow
def test_a3_complete_and_partial_students(graded_a3):
    scores = graded_a3["scores"]
    assert by_function(scores["alice_complete"]) == FUNCS
    assert by_function(scores["bob_partial"]) == dict(
        FUNCS, conv2d_backward=0, maxpool2d_backward=0, avgpool2d_backward=0, predict=0)


@pytest.mark.slow
@pytest.mark.parametrize("mistake", END_TO_END)
def test_each_mistake_costs_its_function_and_is_named(graded_a3, mistake):
    func, message = MISTAKE_OF[mistake]
    student = f"a3_{mistake}"
    got = by_function(graded_a3["scores"][student])
    lost = {func} | ALSO_LOST.get(mistake, set())
    assert {f: v for f, v in got.items() if f not in lost} == {
        f: v for f, v in FUNCS.items() if f not in lost}
    assert got[func] < FUNCS[func]
    text = feedback_text(graded_a3["course"], student)
    assert message in text, f"{student}: the feedback does not name the mistake"
    if "predict" in ALSO_LOST.get(mistake, ()):
        assert got["predict"] < FUNCS["predict"]


@pytest.mark.slow
@pytest.mark.parametrize("name, words", [
    ("missing_and_signature", ["avgpool2d_backward is not defined", "TypeError"]),
    ("hang_and_nan", ["did not finish", "NaN"]),
    ("crash_and_shape", ["crashed", "dout's shape"]),
])
def test_a_broken_function_costs_only_its_own_points(graded_a3, name, words):
    got = by_function(graded_a3["scores"][f"broken_{name}"])
    broken = set(S.BROKEN[name]) - {f for f, code in S.BROKEN[name].items()
                                    if code == S.COMPLETE.get(f)}
    assert got == {f: (0 if f in broken else v) for f, v in FUNCS.items()}
    text = feedback_text(graded_a3["course"], f"broken_{name}")
    for w in words:
        assert w in text, (name, w)


@pytest.mark.slow
def test_a3_feedback_shows_no_hidden_test(graded_a3):
    assert graded_a3["feedback"]
    assert graded_a3["leaks"] == []
    for student in ("a3_missing_1_over_n", "broken_hang_and_nan"):
        text = feedback_text(graded_a3["course"], student)
        assert re.search(r"seed=\d{4}", text) is None, student
        assert "GRADER.check" not in text and "8117" not in text, student
