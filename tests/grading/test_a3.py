"""Assignment 3 (backpropagation): its spec module, its samples, and its grading with the real
nbgrader CLI in a scratch course of its own.

Every sample mistake is graded in-process through the solution's hidden checks of its
function (the same spec checks and diagnosis as in grading). The slow tests share one
module-scoped autograde run (``graded_a3``) of the solution, the release, the complete and
partial samples, the mistake students of ``END_TO_END`` and a few broken notebooks, so
nbgrader's start-up is paid once. Visible checks, the cell limit the notebook states and the
library's own first convolution inside the watch are tested in-process (the last in a fresh
Python).
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
         "avgpool2d_backward": 4, "train_step": 2, "predict": 2}
TASK_POINTS = 4
# The function each sample mistake is in, and the message its feedback must show.
MISTAKE_OF = {
    "max_every_element": ("maxpool2d_backward", a3.MAXPOOL2D_BACKWARD.mistakes[0].message),
    "pool_overwrite": ("maxpool2d_backward", a3.MAXPOOL2D_BACKWARD.mistakes[1].message),
    "max_every_tie": ("maxpool2d_backward", a3.MAXPOOL2D_BACKWARD.mistakes[3].message),
    "kernel_not_rotated": ("conv2d_backward", a3.CONV2D_BACKWARD.mistakes[0].message),
    "db_not_summed": ("conv2d_backward", a3.CONV2D_BACKWARD.mistakes[1].message),
    "missing_1_over_n": ("softmax_cross_entropy", a3.SOFTMAX_CROSS_ENTROPY.mistakes[0].message),
    "sce_global_max": ("softmax_cross_entropy", a3._SCE_GLOBAL_MAX),
    "one_sided": ("numerical_gradient", a3.NUMERICAL_GRADIENT.mistakes[1].message),
    "train_step_library": ("train_step", "train_step earns no points here: while it ran it "
                           "called cnnlib.numpy.linear.linear_backward"),
}
# A gradient N times too large makes gradient descent diverge: that network cannot learn,
# so the missing 1/N also costs the trained-network checks (their message says why), and
# the step train_step takes with it is not gradient descent's.
ALSO_LOST = {"missing_1_over_n": {"predict", "train_step"}}
# The mistakes graded as a whole notebook too: the missing 1/N reaches other functions; the
# train_step that calls the library is watched in the real sandbox, where predict, which
# uses the library's forward passes, keeps its points.
END_TO_END = ["missing_1_over_n", "train_step_library"]


def _cell(path, grade_id):
    for cell in json.loads(Path(path).read_text())["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            return "".join(cell["source"])
    raise KeyError(grade_id)


# What a student's functions see in the notebook: the imports, then the read-only training
# set-up (the library's forward passes as ``forward``, ``cnp``, the data).
PREAMBLE = "\n".join(_cell(S.RELEASE, g) for g in ("imports", "train-setup"))


def student_code(**changes):
    """The complete student's functions, with ``changes`` ({function: code}) instead."""
    return {**S.COMPLETE, **changes}


def visible_check(grade_id):
    """[(grade_id, source)] of a visible check cell of the solution, as a student runs it."""
    return [(grade_id, _cell(ROOT / "solutions" / A / S.NOTEBOOK, grade_id))]


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
    verdicts = run_hidden_checks("a3", student_code(**{func: S.MISTAKES[mistake][1]}), cells,
                                 preamble=PREAMBLE)
    failed = [report for report in verdicts.values() if report]
    assert failed, f"{mistake} passes every hidden check of {func}"
    assert any(message in report for report in failed), failed
    # the student's other functions are the complete student's, who passes everything
    assert run_hidden_checks("a3", student_code(), cells, preamble=PREAMBLE) == dict.fromkeys(
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


# --------------------------------------------------------------------------- visible checks

VISIBLE = ["relu_backward", "linear_backward", "softmax_cross_entropy", "numerical_gradient",
           "conv2d_backward", "maxpool2d_backward", "avgpool2d_backward"]
SCE_SUMMED = S.SCE.replace("loss = -np.sum(log_probs[np.arange(N), y]) / N",
                           "loss = -np.sum(log_probs[np.arange(N), y])")


def test_every_visible_check_passes_for_correct_code_written_differently():
    cells = [c for f in VISIBLE for c in visible_check(f"test_{f}_visible")]
    for code in (student_code(), student_code(**S.LOOPS)):
        assert run_hidden_checks("a3", code, cells, preamble=PREAMBLE) == dict.fromkeys(
            dict(cells), None)


@pytest.mark.parametrize("func, code, label", [
    # the text warns about the 1/N and the mean: a batch of one cannot show either
    ("softmax_cross_entropy", S.MISTAKES["missing_1_over_n"][1], "a batch of two"),
    ("softmax_cross_entropy", SCE_SUMMED, "a batch of two"),
    # the text says the one-sided difference is worse: at h = 1e-5 it passes, at 0.1 not
    ("numerical_gradient", S.MISTAKES["one_sided"][1], "h = 0.1"),
    # the text states the tie rule
    ("maxpool2d_backward", S.MISTAKES["max_every_tie"][1], "tied maxima: the first maximum"),
])
def test_visible_checks_catch_what_the_text_warns_about(func, code, label):
    grade_id = f"test_{func}_visible"
    (report,) = run_hidden_checks("a3", student_code(**{func: code}), visible_check(grade_id),
                                  preamble=PREAMBLE).values()
    assert report is not None, f"{grade_id} passes {func} with the mistake"
    failed = [line for line in report.splitlines() if line.startswith("- ")]
    assert len(failed) == 1 and label in failed[0], report


RELU_AT_ZERO = S.RELU.replace("dx[x <= 0] = 0", "dx[x < 0] = 0")  # lets dout through at 0


def test_the_relu_convention_at_zero_is_named_as_such():
    assert RELU_AT_ZERO != S.RELU
    quote = "at x = 0 we take 0, as PyTorch does"
    assert quote in _cell(S.RELEASE, "relu-text").replace("$", "").replace("\n", " ")
    code = student_code(relu_backward=RELU_AT_ZERO)
    # the hidden checks draw x from a normal distribution: no 0, no point lost there
    hidden = hidden_checks(A, S.NOTEBOOK, "relu_backward")
    assert run_hidden_checks("a3", code, hidden) == dict.fromkeys(dict(hidden), None)
    # the one point it loses is the visible check's, which says it is the convention
    (report,) = run_hidden_checks("a3", code, visible_check("test_relu_backward_visible")
                                  ).values()
    failed = [line for line in report.splitlines() if line.startswith("- ")]
    assert len(failed) == 1 and "convention" in failed[0] and quote in failed[0], report
    # and the train_step check does not charge it twice (no ReLU input is exactly 0 there)
    cells = hidden_checks(A, S.NOTEBOOK, "train_step")
    assert run_hidden_checks("a3", code, cells, preamble=PREAMBLE) == dict.fromkeys(
        dict(cells), None)


def test_the_notebook_writes_the_upstream_gradient_with_one_symbol():
    cells = json.loads(S.RELEASE.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    math = " ".join(display or inline for display, inline in
                    re.findall(r"\$\$(.*?)\$\$|\$([^$]+)\$", text, re.S))
    assert r"\bar{Y}" in math
    for other in (r"\\bar\{y\}", r"(?<![A-Za-z\\])G(?![A-Za-z])", r"\\delta"):
        assert re.search(other, math) is None, other


def test_the_tie_rule_quoted_in_feedback_is_the_notebooks():
    text = " ".join(_cell(S.RELEASE, "maxpool-text").split())
    rule = re.fullmatch(r"the notebook's rule is '(.*)'", a3._TIE_RULE).group(1)
    assert rule in text
    assert all(rule in m.message for m in a3.MAXPOOL2D_BACKWARD.mistakes[3:5])


def test_tied_inputs_tie_and_standard_normal_ones_do_not():
    spec = a3.MAXPOOL2D_BACKWARD
    configs = [dict(x=[2, 3, 6, 6], kernel_size=2, ties=True), dict(x=[2, 3, 6, 6], kernel_size=2)]
    _, calls = checks.make_inputs(spec, 5, configs)
    ties = []
    for args, _ in calls:
        x = args[1]
        windows = x.reshape(2, 3, 3, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 9, 4)
        ties.append(int(((windows == windows.max(axis=3, keepdims=True)).sum(axis=3) > 1).sum()))
    assert ties[0] > 10 and ties[1] == 0, ties


MAX_LAST_TIE = S.MAXPOOL.replace(
    "best = np.argmax(window, axis=2)",
    "best = k * k - 1 - np.argmax(window[:, :, ::-1], axis=2)")


def test_the_last_of_tied_maxima_is_named_with_the_rule():
    assert MAX_LAST_TIE != S.MAXPOOL
    cells = hidden_checks(A, S.NOTEBOOK, "maxpool2d_backward")
    verdicts = run_hidden_checks("a3", {"maxpool2d_backward": MAX_LAST_TIE}, cells)
    failed = {k: v for k, v in verdicts.items() if v}
    assert list(failed) == ["test_maxpool2d_backward_ties"], verdicts
    assert a3.MAXPOOL2D_BACKWARD.mistakes[4].message in failed["test_maxpool2d_backward_ties"]


def test_a_softmax_without_any_shift_is_named_an_overflow():
    unshifted = S.SCE.replace("z = scores - np.max(scores, axis=1, keepdims=True)", "z = scores")
    assert unshifted != S.SCE
    cells = hidden_checks(A, S.NOTEBOOK, "softmax_cross_entropy")
    verdicts = run_hidden_checks("a3", {"softmax_cross_entropy": unshifted}, cells)
    report = verdicts["test_softmax_cross_entropy_stable"]
    assert report and a3._SCE_OVERFLOW in report and a3._SCE_GLOBAL_MAX not in report, report


@pytest.mark.parametrize("func, old, new, words", [
    ("relu_backward", "dx = dout.copy()", "dx = dout.astype(np.float)",
     "np.int and np.float no longer exist"),
    ("softmax_cross_entropy", "loss = -np.sum(log_probs[np.arange(N), y]) / N",
     "loss = -np.sum(log_probs[np.arange(N), y], keepdims=True) / N",
     "even an array of shape (1,) raises"),
])
def test_what_numpy_2_raises_is_explained(func, old, new, words):
    code = S.COMPLETE[func].replace(old, new)
    assert code != S.COMPLETE[func]
    cells = hidden_checks(A, S.NOTEBOOK, func)
    verdicts = run_hidden_checks("a3", {func: code}, cells)
    assert all(report and words in report for report in verdicts.values()), verdicts


# --------------------------------------------------------------------------- train_step, predict

# Run in a fresh Python: threadpoolctl loads the BLAS libraries with ctypes once per process,
# so a process where any convolution already ran cannot show the problem.
FRESH_KERNEL = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import test_a3 as T
from course_tools import hidden_checks, run_hidden_checks
from cnnlib.grading import Grader, a3
from cnnlib.grading.sandbox import run_cases

ns = {}
exec(T.PREAMBLE, ns)  # the notebook's read-only cells: predict uses the library's forward
x = np.random.default_rng(0).uniform(size=(5, 1, 8, 8))
spec = a3.PREDICT
out = {}
(o,) = run_cases(ns["predict"], [((x,), {})], deny=spec.deny())
out["bare"] = [o["kind"], o.get("detail", "")]
(o,) = run_cases(ns["predict"], [((x,), {})], deny=spec.deny(), adapter=spec.adapter)
out["adapter"] = [o["kind"], list(np.shape(o.get("value")))]
grader = Grader("a3")
try:
    out["grader"] = list(np.shape(grader.run("predict", ns["predict"], x)))
    cells = hidden_checks(T.A, T.S.NOTEBOOK, "train_step")
    out["train_step"] = run_hidden_checks("a3", T.student_code(), cells, preamble=T.PREAMBLE,
                                          grader=grader)
finally:
    grader.close()
print(json.dumps(out))
"""


def test_the_library_forward_passes_are_not_flagged_in_a_fresh_kernel():
    import subprocess

    here = str(Path(__file__).resolve().parent)
    proc = subprocess.run([sys.executable, "-c", FRESH_KERNEL, here], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # unwarmed, the watch would count the library's own ctypes.dlopen as the student's
    assert out["bare"][0] == "denied" and "ctypes.dlopen" in out["bare"][1], out
    # the spec's adapter builds it before the watch: predict and train_step, which use the
    # library's forward passes as the notebook allows, pass
    assert out["adapter"] == ["ok", [5, 10]], out
    assert out["grader"] == [5, 10], out
    assert out["train_step"] == {"test_train_step_one_step": None}, out


# Correct train_steps written differently: the library's forward passes called directly, the
# parameters rebound instead of updated in place, loop backward passes.
OWN_FORWARD = '''
def train_step(params, x, y, lr):
    z1 = cnp.conv2d_forward(x, params["w1"], params["b1"], padding=1)[0]
    a1 = cnp.relu_forward(z1)[0]
    p1 = cnp.maxpool2d_forward(a1, kernel_size=2)[0]
    flat = p1.reshape(x.shape[0], -1)
    loss, dscores = softmax_cross_entropy(flat @ params["w2"].T + params["b2"], y)
    dflat, dw2, db2 = linear_backward(dscores, flat, params["w2"])
    dz1 = relu_backward(maxpool2d_backward(dflat.reshape(p1.shape), a1, 2), z1)
    dw1, db1 = conv2d_backward(dz1, x, params["w1"], 1, 1)[1:]
    new = {"w1": params["w1"] - lr * dw1, "b1": params["b1"] - lr * db1,
           "w2": params["w2"] - lr * dw2, "b2": params["b2"] - lr * db2}
    params.update(new)
    return loss
'''


@pytest.mark.parametrize("changes", [{"train_step": OWN_FORWARD}, S.LOOPS])
def test_correct_train_steps_written_differently_pass(changes):
    cells = hidden_checks(A, S.NOTEBOOK, "train_step")
    assert run_hidden_checks("a3", student_code(**changes), cells,
                             preamble=PREAMBLE) == dict.fromkeys(dict(cells), None)


TRAIN_STEP_UPHILL = S.TRAIN_STEP.replace("-= lr", "+= lr")
TRAIN_STEP_NO_BIASES = S.TRAIN_STEP.replace(
    '    params["b1"] -= lr * grads_b1\n', "").replace('    params["b2"] -= lr * grads_b2\n', "")


@pytest.mark.parametrize("code, index", [(TRAIN_STEP_UPHILL, 0), (TRAIN_STEP_NO_BIASES, 1)])
def test_train_step_mistakes_are_named(code, index):
    assert code != S.TRAIN_STEP
    cells = hidden_checks(A, S.NOTEBOOK, "train_step")
    (report,) = run_hidden_checks("a3", student_code(train_step=code), cells,
                                  preamble=PREAMBLE).values()
    assert report and a3.TRAIN_STEP.mistakes[index].message in report, report


def test_a_mistake_in_a_backward_function_shows_in_train_step_and_says_so():
    code = student_code(maxpool2d_backward=S.MISTAKES["max_every_element"][1])
    cells = hidden_checks(A, S.NOTEBOOK, "train_step")
    (report,) = run_hidden_checks("a3", code, cells, preamble=PREAMBLE).values()
    assert report and "train_step runs your own softmax_cross_entropy and backward" in report
    assert "params['w1'] after the step differs" in report
    assert "params['w2']" not in report  # the dense layer's step is right


def test_train_step_may_not_call_any_of_the_library_gradients():
    deny = a3.TRAIN_STEP.deny()
    for name in dir(lib):
        f = getattr(lib, name)
        if not callable(f) or name.startswith("_"):
            continue
        code = getattr(f, "__code__", None)
        if "backward" in name:
            assert code is not None and deny._codes.get(id(code)), name
    for name in ("softmax_cross_entropy", "numerical_gradient", "sgd", "adam"):
        assert deny._file_denied(getattr(lib, name).__code__.co_filename), name
    for name in ("conv2d_forward", "maxpool2d_forward", "relu_forward", "linear_forward"):
        assert deny._codes.get(id(getattr(lib, name).__code__)) is None, name
        assert deny._file_denied(getattr(lib, name).__code__.co_filename) is None, name


def test_the_stated_cell_limit_is_the_enforced_one(monkeypatch):
    from cnnlib.grading import Grader, harness, specs

    limits = []
    monkeypatch.setattr(harness, "_guard_kernel", limits.append)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.delenv("CNNLIB_GRADING_CELL_TIMEOUT", raising=False)
    Grader("a3").close()
    (enforced,) = limits
    assert enforced == 0.75 * specs.cell_timeout(a3)
    for path in (S.RELEASE, ROOT / "solutions" / A / S.NOTEBOOK):
        text = " ".join(_cell(path, "train-text").split())
        stated = re.findall(r"each cell may run for at most (\d+) s", text)
        assert stated == [f"{enforced:g}"], (path, stated)
    guide = " ".join((ROOT / "book/guides/students.md").read_text().split())
    assert re.findall(r"in Assignment 3, whose training cell runs your backward passes, "
                      r"(\d+) s", guide) == [f"{enforced:g}"]
    # the sandbox interrupts a cell only after the kernel's own guard
    from cnnlib.grading.trusted import TrustedExecute
    assert max(TrustedExecute.timeout.default_value, specs.cell_timeout(a3)) > enforced


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
        FUNCS, conv2d_backward=0, maxpool2d_backward=0, avgpool2d_backward=0, train_step=0,
        predict=0)


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
