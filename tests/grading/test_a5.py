"""Assignment 5 (a5-transfer): every known mistake through the hidden checks, and the
class graded end to end with the real nbgrader CLI.

Each mistake student's function is run here through the solution's hidden checks of that
function (the kernel's grader: the same spec checks and diagnosis as in grading). One
scratch course with only this assignment grades, in one ``nbgrader autograde`` call, the
solution, the release, the complete and partial samples, one mistake student and two
broken notebooks; the tests then read the gradebook and the feedback.
The pre-trained weights come from the weight cache, which the jail shows read-only
(``ensure_pretrained`` fills it first when it is empty). The fast tests at the end check the
rules the notebook states: the arrays it ships instead of the generator, and its time limit.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import a5_students as S
import numpy as np
import pytest
from course_tools import hidden_checks, kernel_grader_fixture, load_tool, run_hidden_checks

from cnnlib.grading import a5, a5_task

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "solutions" / S.ASSIGNMENT / S.NOTEBOOK
FUNCTIONS = list(a5.FUNCTIONS)
# the mistake each sample student makes: (graded function, index in its spec's mistakes)
MISTAKE_OF = {
    "a5_freeze_head_frozen": ("freeze_backbone", 0),
    "a5_freeze_module_attribute": ("freeze_backbone", 1),
    "a5_freeze_convs_only": ("freeze_backbone", 2),
    "a5_freeze_stem_only": ("freeze_backbone", 3),
    "a5_head_not_assigned": ("replace_head", 0),
    "a5_head_fixed_inputs": ("replace_head", 1),
    "a5_head_stacked": ("replace_head", 2),
    "a5_head_frozen_like_old": ("replace_head", 3),
    "a5_groups_swapped": ("param_groups", 0),
    "a5_groups_head_twice": ("param_groups", 1),
    "a5_groups_trainable_only": ("param_groups", 2),
    "a5_groups_weight_only": ("param_groups", 3),
    "a5_groups_one_rate_base": ("param_groups", 4),
    "a5_groups_one_rate_head": ("param_groups", 5),
}


# The mistake student graded as a whole notebook too (its feedback names the mistake);
# every mistake is graded in-process (test_each_mistake_fails_its_hidden_checks_and_is_named).
END_TO_END = ["a5_head_stacked"]
TORCH = "import numpy as np\nimport torch\nfrom torch import nn"


kernel_grader = kernel_grader_fixture("a5")


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(MISTAKE_OF))
def test_each_mistake_fails_its_hidden_checks_and_is_named(student, kernel_grader):
    function, index = MISTAKE_OF[student]
    verdicts = run_hidden_checks("a5", {function: S.MISTAKES[student][1]},
                                 hidden_checks(S.ASSIGNMENT, S.NOTEBOOK, function),
                                 preamble=TORCH, grader=kernel_grader)
    failed = [report for report in verdicts.values() if report]
    assert failed, f"{student} passes every hidden check of {function}"
    message = a5.FUNCTIONS[function].mistakes[index].message
    assert any(message in report for report in failed), failed


def points():
    """{function: points} from the solution's autograded test cells."""
    out = dict.fromkeys(FUNCTIONS, 0.0)
    for cell in json.loads(SOLUTION.read_text())["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        gid = meta.get("grade_id", "")
        for name in FUNCTIONS:
            if gid.startswith(f"test_{name}_"):
                out[name] += meta.get("points", 0)
    return out


def by_function(row):
    return {name: sum(v for k, v in row.items() if k.startswith(f"test_{name}_")
                      and isinstance(v, (int, float)) and not isinstance(v, bool))
            for name in FUNCTIONS}


def feedback_text(result, student):
    (page,) = [p for p in result["feedback"] if f"/{student}/" in str(p)]
    text = re.sub(r"<[^>]+>", "", Path(page).read_text(encoding="utf-8"))
    return html.unescape(text)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from cnnlib.torch.pretrain import ensure_pretrained

    ensure_pretrained(progress=False)
    grade_samples = load_tool("grade_samples")
    tmp = tmp_path_factory.mktemp("a5")
    course = grade_samples.make_course(tmp / "course", [S.ASSIGNMENT])
    students = {k: v for k, v in S.samples().items() if k not in S.MISTAKES or k in END_TO_END}
    students.update({
        "solution": json.loads(SOLUTION.read_text()),
        "released": json.loads(S.RELEASE.read_text()),
        "broken": S.broken(),
        "crashing": S.crashing(),
    })
    subs = tmp / "submissions"
    for name, nb in students.items():
        S.write(nb, subs, name)
    os.environ["CNNLIB_GRADING_TIMEOUT"] = "5"  # what a hang costs per test cell
    try:
        result = grade_samples.grade_all(course, subs, S.ASSIGNMENT)
    finally:
        del os.environ["CNNLIB_GRADING_TIMEOUT"]
    result["points"] = points()
    result["course"] = course
    return result


@pytest.mark.slow
def test_every_notebook_is_graded(graded):
    assert graded["problems"] == {}, graded["problems"]
    assert len(graded["students"]) == 2 + len(END_TO_END) + 4


@pytest.mark.slow
def test_solution_and_complete_student_earn_every_autograded_point(graded):
    full = graded["points"]
    for student in ("solution", "alice_complete"):
        got = by_function(graded["scores"][student])
        assert got == full, (student, got, graded["autograde_log"][-3000:])


@pytest.mark.slow
def test_release_earns_nothing(graded):
    assert set(by_function(graded["scores"]["released"]).values()) == {0}


@pytest.mark.slow
def test_partial_student_loses_what_is_missing(graded):
    got = by_function(graded["scores"]["bob_partial"])
    full = graded["points"]
    assert got == dict(full, param_groups=0, predict=0), got


@pytest.mark.slow
@pytest.mark.parametrize("student", END_TO_END)
def test_each_mistake_costs_its_function_and_is_named(graded, student):
    function, index = MISTAKE_OF[student]
    got = by_function(graded["scores"][student])
    full = graded["points"]
    # the other functions keep every point; this one loses the checks the mistake shows
    # in (a mistake that only shows when the model starts frozen keeps the other checks)
    assert {k: v for k, v in got.items() if k != function} == {
        k: v for k, v in full.items() if k != function}, got
    assert got[function] < full[function], got
    message = a5.FUNCTIONS[function].mistakes[index].message
    assert message in feedback_text(graded, student)


@pytest.mark.slow
def test_broken_functions_cost_only_their_own_points(graded):
    full = graded["points"]
    broken = by_function(graded["scores"]["broken"])
    assert broken == dict(full, freeze_backbone=0, replace_head=0, param_groups=0), broken
    text = feedback_text(graded, "broken")
    assert "freeze_backbone is not defined" in text
    assert "positional argument" in text  # replace_head(model) called with num_classes
    assert "NaN" in text
    crashing = by_function(graded["scores"]["crashing"])
    assert crashing == dict(full, freeze_backbone=0, param_groups=0, predict=0), crashing
    text = feedback_text(graded, "crashing")
    assert "crashed" in text and "did not finish" in text
    assert "predict returned shape (400, 4)" in text


@pytest.mark.slow
def test_committed_release_is_current_and_hides_the_solution(graded):
    release = load_tool("release")
    assert release.differences(graded["course"], S.ASSIGNMENT) == []
    assert release.scan_release(graded["course"], S.ASSIGNMENT) == []


@pytest.mark.slow
def test_feedback_shows_no_hidden_test(graded):
    assert graded["feedback"] and graded["leaks"] == []


def test_samples_are_what_the_generator_writes():
    for student, nb in S.samples().items():
        path = ROOT / "examples" / "submissions" / student / S.ASSIGNMENT / S.NOTEBOOK
        assert path.read_text() == json.dumps(nb, indent=1) + "\n", (
            f"{path} is out of date: run python tests/grading/a5_students.py")


# --------------------------------------------------------------------------- the stated rules

RELEASE_TEXT = S.RELEASE.read_text()


def _cell(nb, grade_id):
    return next("".join(c["source"]) for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def test_the_notebook_ships_the_arrays_it_may_train_on():
    data = a5.target_data()
    assert set(data) == set(a5.TARGET_ARRAYS)
    assert [len(data[f"y_{s}"]) for s in ("train", "val", "test")] == [20, 20, 400]
    for split in ("train", "val"):  # five labelled images per class, no more
        assert np.bincount(data[f"y_{split}"], minlength=4).tolist() == [5, 5, 5, 5]
    # the committed file is what tools/a5_data.py draws with the grader's generator
    drawn = load_tool("a5_data").arrays()
    for name in a5.TARGET_ARRAYS:
        assert data[name].dtype == drawn[name].dtype and np.array_equal(data[name], drawn[name])


def test_a_notebook_that_calls_the_generator_does_not_find_it():
    imports = _cell(json.loads(RELEASE_TEXT), "imports")
    line = next(ln for ln in imports.splitlines() if "cnnlib.grading.a5" in ln)
    assert line == "from cnnlib.grading.a5 import SHAPE_CLASSES, target_data"
    ns = {}
    exec(line, ns)  # noqa: S102 - the release's own import
    with pytest.raises(NameError):
        exec("target_images(5000, seed=1)", ns)  # noqa: S102 - a student's extra cell
    with pytest.raises(ImportError):
        exec("from cnnlib.grading.a5 import target_images", {})  # noqa: S102
    assert not hasattr(a5, "target_images")
    for name in ("target_images", "a5_task", "make_shapes("):
        assert name not in RELEASE_TEXT, name


def test_the_rule_is_stated_and_the_hidden_checks_draw_their_own_images():
    intro = _cell(json.loads(RELEASE_TEXT), "intro")
    assert "**Training data.**" in intro and "train only on `x_train`" in intro
    assert "NumPy 2" in intro and "`np.int`" in intro
    data = _cell(json.loads(RELEASE_TEXT), "data")
    assert "target_data()" in data
    for _, code in hidden_checks(S.ASSIGNMENT, S.NOTEBOOK, "predict"):
        assert "a5_task.target_images(" in code  # run in the grading process
    x, y = a5_task.target_images(8, seed=3)
    assert x.shape == (8, 1, a5.IMAGE_SIZE, a5.IMAGE_SIZE) and x.dtype == np.float32


# A predict that learns from thousands of images it draws with the public generator
# instead of the five labelled images per class the rule allows.
EXTRA_DATA_PREDICT = '''
def predict(images):
    from cnnlib.data import make_shapes
    x, y = make_shapes(2000, size=16, seed=1, grey=True)
    flat = x.reshape(len(x), -1)
    queries = np.asarray(images).reshape(len(images), -1)
    d = (queries ** 2).sum(1)[:, None] - 2 * queries @ flat.T + (flat ** 2).sum(1)[None]
    return y[d.argmin(1)]
'''


@pytest.mark.slow
def test_a_predict_that_draws_extra_target_images_earns_nothing(kernel_grader):
    verdicts = run_hidden_checks("a5", {"predict": EXTRA_DATA_PREDICT},
                                 hidden_checks(S.ASSIGNMENT, S.NOTEBOOK, "predict"),
                                 preamble=TORCH, grader=kernel_grader)
    assert verdicts and all(verdicts.values()), verdicts  # every predict check fails
    for report in verdicts.values():
        assert a5.EXTRA_DATA_REASON in report, report
