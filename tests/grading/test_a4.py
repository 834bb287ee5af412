"""Assignment 4 (LeNet to ResNet): the spec module on plain data, and one graded class.

The first tests need no kernel: every known mistake of ``cnnlib.grading.a4`` is named by
its own message from the buggy variant's values, the samples in ``examples/submissions``
are what ``a4_students.py`` generates, and the sample students' code behaves as the
spec's variants say, and every mistake student fails the solution's hidden checks of its
function (run here, with the kernel's grader) with its mistake named. The graded class
(``graded``, module-scoped, marked slow) autogrades the solution, the release, the complete
and partial samples, one mistake student and some broken notebooks with the real nbgrader
CLI in one scratch course with only this assignment.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import a4_students as S
import numpy as np
import pytest
from course_tools import hidden_checks, kernel_grader_fixture, load_tool, run_hidden_checks

import cnnlib.numpy as lib
from cnnlib.grading import a4, checks
from cnnlib.grading.sandbox import encode_value

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "solutions" / S.ASSIGNMENT / S.NOTEBOOK

PROBES = S.PROBES

# The student whose code has each mistake, in the order of the spec's mistakes.
STUDENT_OF = {
    ("LeNet5", 0): "a4_lenet_maxpool", ("LeNet5", 1): "a4_lenet_relu",
    ("LeNet5", 2): "a4_lenet_tanh_out", ("LeNet5", 3): "a4_lenet_softmax",
    ("vgg_block", 0): "a4_vgg_last_relu", ("vgg_block", 1): "a4_vgg_avgpool",
    ("InceptionBlock", 0): "a4_inception_order", ("InceptionBlock", 1): "a4_inception_inner_relu",
    ("InceptionBlock", 2): "a4_inception_outer_relu",
    ("InceptionBlock", 3): "a4_inception_avgpool",
    ("ResidualBlock", 0): "a4_residual_relu_before_add",
    ("ResidualBlock", 1): "a4_residual_no_final_relu",
    ("ResidualBlock", 2): "a4_residual_no_shortcut",
    ("ResidualBlock", 3): "a4_residual_stride_in_conv2",
    ("count_parameters", 0): "a4_count_no_bias", ("count_parameters", 1): "a4_count_shared_twice",
    ("count_parameters", 2): "a4_count_trainable", ("count_parameters", 3): "a4_count_buffers",
    ("receptive_field", 0): "a4_rf_no_stride", ("receptive_field", 1): "a4_rf_own_stride",
    ("receptive_field", 2): "a4_rf_start_zero", ("receptive_field", 3): "a4_rf_product",
}

# Students whose mistake is named from the output's shape (the spec's diagnose), not by
# a variant: {student: (function, message)}.
DIAGNOSED = {"a4_vgg_no_padding": ("vgg_block", a4.VGG_NO_PADDING)}


def message_of(student):
    if student in DIAGNOSED:
        return DIAGNOSED[student][1]
    name, index = next(key for key, s in STUDENT_OF.items() if s == student)
    return a4.FUNCTIONS[name].mistakes[index].message


def _plain(f, *args, **kwargs):
    return f(*args, **kwargs)


def ok(value):
    """An outcome as the kernel reports it."""
    if isinstance(value, tuple):
        descs = [encode_value(v)[0] for v in value]
        return {"kind": "ok", "value": value, "desc": {"kind": "tuple", "items": descs}}
    desc, _ = encode_value(value)
    return {"kind": "ok", "value": value, "desc": desc}


def same(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.shape(a) == np.shape(b) and checks.close(a, b)
    return a == b


def student_namespace(student):
    """The graded definitions of a sample student, executed here."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    code = dict(S.CORRECT)
    if student in S.MISTAKES:
        name, source = S.MISTAKES[student]
        code[name] = source
    ns = {"np": np, "torch": torch, "nn": nn, "F": F}
    for source in code.values():
        exec(source, ns)  # noqa: S102 - the course's own sample code
    return ns


# --------------------------------------------------------------------------- plain data

def test_every_mistake_has_a_sample_student():
    named = {(n, i) for n, spec in a4.FUNCTIONS.items() for i in range(len(spec.mistakes))}
    assert named == set(STUDENT_OF)
    assert sorted([*STUDENT_OF.values(), *DIAGNOSED]) == sorted(S.MISTAKES)


@pytest.mark.parametrize("name, index", sorted(STUDENT_OF))
def test_each_mistake_is_named_from_the_variants_values(name, index):
    spec = a4.FUNCTIONS[name]
    for config in PROBES[name]:
        configs, calls = checks.make_inputs(spec, 11, [config])
        args = calls[0][0]
        ref = spec.reference(lib, args)
        try:
            wrong = spec.mistakes[index].variant(lib, args)
        except ValueError:
            continue  # does not show in this configuration
        if same(wrong, ref):
            continue
        passed, report = checks.judge(spec, lib, configs, calls, [ok(wrong)])
        assert not passed
        assert spec.mistakes[index].message in report, report
        assert spec.describe(config) in report
        assert re.search(r"\d\.\d", report) is None, report  # no values from the arrays
        return
    pytest.fail(f"no probe shows mistake {index} of {name}")


def test_wrong_output_shapes_are_named():
    spec = a4.FUNCTIONS["vgg_block"]
    ns = student_namespace("a4_vgg_no_padding")
    configs, calls = checks.make_inputs(spec, 4, [dict(x=[1, 2, 9, 10], out_channels=3,
                                                       num_convs=2)])
    value = spec.adapter(ns["vgg_block"], _plain, *calls[0][0])
    passed, report = checks.judge(spec, lib, configs, calls, [ok(value)])
    assert not passed and a4.VGG_NO_PADDING in report, report
    assert "output has shape (1, 3, 2, 3), expected (1, 3, 4, 5)" in report


@pytest.mark.parametrize("student", sorted(set(S.MISTAKES) - set(DIAGNOSED)))
def test_each_sample_student_computes_its_variant(student):
    """The sample's code, run through the spec's adapter here, equals the variant that
    names its mistake (on at least one probe) and the reference nowhere it differs."""
    name, _ = S.MISTAKES[student]
    index = next(i for (n, i), s in STUDENT_OF.items() if s == student)
    spec = a4.FUNCTIONS[name]
    fn = student_namespace(student)[name]
    shown = False
    for config in PROBES[name]:
        _, calls = checks.make_inputs(spec, 5, [config])
        args = calls[0][0]
        value = spec.adapter(fn, _plain, *args)
        try:
            wrong = spec.mistakes[index].variant(lib, args)
        except ValueError:
            continue
        ref = spec.reference(lib, args)
        if not same(wrong, ref):
            assert same(value, wrong), f"{student} on {config}"
            shown = True
    assert shown, student


TORCH = "import numpy as np\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn"


kernel_grader = kernel_grader_fixture("a4")


@pytest.mark.parametrize("student", sorted(S.MISTAKES))
def test_each_mistake_fails_its_hidden_checks_and_is_named(student, kernel_grader):
    name, code = S.MISTAKES[student]
    verdicts = run_hidden_checks("a4", {name: code}, hidden_checks(S.ASSIGNMENT, S.NOTEBOOK,
                                                                    name), preamble=TORCH,
                                 grader=kernel_grader)
    failed = [report for report in verdicts.values() if report]
    assert failed, f"{student} passes every hidden check of {name}"
    assert any(message_of(student) in report for report in failed), failed


def visible_check(name):
    """[(grade_id, source)] of the solution's visible check of ``name``, as released."""
    nb = json.loads(SOLUTION.read_text())
    cells = [(c["metadata"]["nbgrader"]["grade_id"], "".join(c["source"]))
             for c in nb["cells"]
             if c["metadata"].get("nbgrader", {}).get("grade_id") == f"test_{name}_visible"]
    assert cells, name
    return cells


MODULES = ("LeNet5", "vgg_block", "InceptionBlock", "ResidualBlock")
# Mistakes a visible check's own assertion catches before the values are compared.
FAILS_AN_EARLIER_ASSERTION = {"a4_vgg_no_padding": "gives shape (1, 8, 2, 2), not (1, 8, 4, 4)",
                              "a4_residual_no_shortcut": "no gradient flows through the shortcut"}


@pytest.mark.parametrize("student", sorted(s for s in S.MISTAKES if S.MISTAKES[s][0] in MODULES))
def test_each_module_mistake_fails_its_visible_check_and_is_named(student, kernel_grader):
    """The visible check compares values (parameters from the public seed 0) and names the
    mistake, as the hidden checks do; a wrong shape fails the shape assertion before."""
    name, code = S.MISTAKES[student]
    (grade_id, report), = run_hidden_checks("a4", {name: code}, visible_check(name),
                                            preamble=TORCH, grader=kernel_grader).items()
    assert report, f"{student} passes the visible check of {name}"
    if student in FAILS_AN_EARLIER_ASSERTION:
        assert FAILS_AN_EARLIER_ASSERTION[student] in report, report
    else:
        assert message_of(student) in report, report
        assert re.search(r"\d\.\d", report) is None, report  # no values shown


@pytest.mark.parametrize("name", MODULES)
def test_the_visible_checks_compare_values_with_a_public_seed(name):
    (_, source), = visible_check(name)
    assert f'GRADER.check("{name}", {name}, seed=0' in source
    release = json.loads(S.RELEASE.read_text())
    assert any(f'GRADER.check("{name}", {name}, seed=0' in "".join(c["source"])
               for c in release["cells"])


@pytest.mark.parametrize("name", sorted(S.DIFFERENT["a4_lazy_layers"]))
def test_lazy_layers_earn_full_marks_in_every_check(name, kernel_grader):
    code = S.DIFFERENT["a4_lazy_layers"][name]
    assert "nn.LazyConv2d" in code
    cells = visible_check(name) + hidden_checks(S.ASSIGNMENT, S.NOTEBOOK, name)
    verdicts = run_hidden_checks("a4", {name: code}, cells, preamble=TORCH, grader=kernel_grader)
    assert verdicts == dict.fromkeys(verdicts), verdicts


def test_lazy_layers_are_materialised_under_the_watch():
    """The forward pass that creates a lazy layer's parameters is the student's code: it
    runs under the deny list like the rest."""
    from torch import nn

    calls = []

    def watch(f, *args, **kwargs):
        calls.append(getattr(f, "__name__", type(f).__name__))
        return f(*args, **kwargs)

    spec = a4.FUNCTIONS["vgg_block"]
    _, c = checks.make_inputs(spec, 1, PROBES["vgg_block"][:1])
    block = nn.Sequential(nn.LazyConv2d(3, 3, padding=1), nn.ReLU(), nn.LazyConv2d(3, 3, padding=1),
                          nn.ReLU(), nn.MaxPool2d(2))
    value = spec.adapter(lambda *a: block, watch, *c[0][0])
    assert same(value, spec.reference(lib, c[0][0]))
    assert "Sequential" in calls[:calls.index("double")]  # a watched forward pass first


def test_a_projection_named_shortcut_is_told_the_stated_convention(kernel_grader):
    cells = hidden_checks(S.ASSIGNMENT, S.NOTEBOOK, "ResidualBlock")
    verdicts = run_hidden_checks("a4", {"ResidualBlock": S.SHORTCUT_NAMED}, cells,
                                 preamble=TORCH, grader=kernel_grader)
    assert verdicts["test_ResidualBlock_identity"] is None  # no projection, no name to miss
    report = verdicts["test_ResidualBlock_projection"]
    assert a4.SHORTCUT_ONLY_NAME.format(alias="shortcut") in report, report
    # with a real mistake as well, the student is not told that only the name differs
    wrong = S.SHORTCUT_NAMED.replace("return self.relu(out)", "return out")
    verdicts = run_hidden_checks("a4", {"ResidualBlock": wrong}, cells, preamble=TORCH,
                                 grader=kernel_grader)
    report = verdicts["test_ResidualBlock_projection"]
    assert a4.SHORTCUT_NAME.format(alias="shortcut") in report, report
    assert a4.SHORTCUT_ONLY_NAME.format(alias="shortcut") not in report


def test_the_quoted_convention_is_the_notebooks_own_words():
    text = " ".join("".join(c["source"]) for c in json.loads(S.RELEASE.read_text())["cells"]
                    if c["cell_type"] == "markdown")
    assert a4.NAMES_CONVENTION in re.sub(r"\s+", " ", text.replace("`", ""))


def stated_seconds(path):
    """The per-cell time limit a notebook states, in seconds (it states one, once)."""
    text = " ".join("".join(c["source"]) for c in json.loads(Path(path).read_text())["cells"]
                    if c["cell_type"] == "markdown")
    found = re.findall(r"at most (\d+) seconds", re.sub(r"\s+", " ", text))
    assert len(found) == 1, found
    return float(found[0])


def enforced_seconds(assignment, monkeypatch):
    """The limit the kernel's guard puts on each student cell while the notebook is graded,
    as the setup cell's Grader sets it (the trusted grader's own limit is the backstop)."""
    from cnnlib.grading import harness, specs

    got = []
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.delenv("CNNLIB_GRADING_CELL_TIMEOUT", raising=False)
    monkeypatch.setattr(harness, "_guard_kernel", got.append)
    harness.Grader(assignment).close()
    (limit,) = got
    assert specs.cell_timeout(specs.load(assignment)) >= limit  # the backstop is later
    return limit


@pytest.mark.parametrize("assignment, notebook", [
    ("a4-architectures", "architectures.ipynb"), ("a5-transfer", "transfer.ipynb")])
def test_the_stated_time_limit_is_the_enforced_one(assignment, notebook, monkeypatch):
    stated = stated_seconds(ROOT / "assignments" / assignment / notebook)
    assert stated == enforced_seconds(assignment, monkeypatch)
    guide = re.sub(r"\s+", " ", (ROOT / "book" / "guides" / "students.md").read_text())
    assert re.findall(rf"(\d+) seconds in `{assignment}`", guide) == [f"{stated:g}"]


def test_section_9_numbers_are_the_libraries():
    import torch

    from cnnlib.torch import count_parameters, models

    text = " ".join("".join(c["source"]) for c in json.loads(S.RELEASE.read_text())["cells"]
                    if c["metadata"].get("nbgrader", {}).get("grade_id") == "task_head")
    text = re.sub(r"\s+", " ", text)
    with torch.device("meta"):
        vgg, googlenet = models.vgg16(), models.googlenet()
        resnets = {n: getattr(models, n)() for n in ("resnet18", "resnet34", "resnet50")}
        maps = vgg.features(torch.zeros(1, 3, 224, 224)).shape[1:]
    assert f"${maps[0]} \\times {maps[1]} \\times {maps[2]}$ feature map" in text
    dense = [m for m in vgg.classifier if isinstance(m, torch.nn.Linear)]
    assert dense[0].in_features == 25088 and "$25\\,088 \\to 4096 \\to 4096 \\to 1000$" in text
    assert [m.out_features for m in dense] == [4096, 4096, 1000]
    assert f"{count_parameters(vgg.features):,}" in text
    assert f"GoogLeNet has {googlenet.fc.in_features} maps" in text
    assert resnets["resnet18"].fc.in_features == resnets["resnet34"].fc.in_features
    assert f"ResNet-18 and ResNet-34 have {resnets['resnet18'].fc.in_features}" in text
    assert f"ResNet-50 has {resnets['resnet50'].fc.in_features}" in text
    assert f"{maps[0]} \\to 1000" in text


def test_the_rules_state_lazy_layers_and_numpy_2():
    intro = "".join(json.loads(S.RELEASE.read_text())["cells"][1]["source"])
    assert "nn.LazyConv2d" in intro and "NumPy 2" in intro
    assert "`np.int`" in intro and "`float(array)`" in intro


@pytest.mark.parametrize("name", sorted(S.CORRECT))
def test_the_complete_student_and_the_solution_match_the_reference(name):
    spec = a4.FUNCTIONS[name]
    fn = student_namespace("alice_complete")[name]
    for config in PROBES[name]:
        _, calls = checks.make_inputs(spec, 3, [config])
        args = calls[0][0]
        assert same(spec.adapter(fn, _plain, *args), spec.reference(lib, args)), config


def test_wrong_parameter_names_get_a_message_listing_them():
    import torch.nn as nn

    class Renamed(nn.Module):
        def __init__(self, in_channels, out_channels, stride=1):
            super().__init__()
            self.first = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(out_channels)
            self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=True)
            self.bn2 = nn.BatchNorm2d(out_channels)

    spec = a4.FUNCTIONS["ResidualBlock"]
    _, calls = checks.make_inputs(spec, 1, PROBES["ResidualBlock"][:1])
    with pytest.raises(ValueError) as info:
        spec.adapter(Renamed, _plain, *calls[0][0])
    message = str(info.value)
    assert "missing conv1.weight" in message and "unexpected" in message
    assert "conv2.bias" in message and "first.weight" in message
    assert len(message) < 300  # the sandbox passes on 300 characters of a message

    class WrongKernel(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 3)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2 = nn.Linear(400, 120), nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, num_classes)

    spec = a4.FUNCTIONS["LeNet5"]
    _, calls = checks.make_inputs(spec, 1, PROBES["LeNet5"][:1])
    with pytest.raises(ValueError, match=r"conv1.weight has shape \(6, 1, 3, 3\)"):
        spec.adapter(WrongKernel, _plain, *calls[0][0])


def test_parameter_values_depend_on_the_seed_and_the_name_only():
    a = a4.parameter_values(3, "conv1.weight", (4, 2, 3, 3))
    assert np.array_equal(a, a4.parameter_values(3, "conv1.weight", (4, 2, 3, 3)))
    assert not np.allclose(a, a4.parameter_values(3, "conv2.weight", (4, 2, 3, 3)))
    assert not np.allclose(a, a4.parameter_values(4, "conv1.weight", (4, 2, 3, 3)))
    assert abs(a.std() - 1 / np.sqrt(18)) < 0.15  # scaled by 1/sqrt(fan_in)


def test_the_shortcut_gradient_is_zero_without_a_shortcut_and_not_with_one():
    spec = a4.FUNCTIONS["ResidualBlock"]
    _, calls = checks.make_inputs(spec, 2, PROBES["ResidualBlock"])
    for args, _ in calls:
        _, _, through_shortcut, _ = spec.reference(lib, args)
        assert np.abs(through_shortcut).sum() > 0
        _, _, plain, _ = spec.mistakes[2].variant(lib, args)
        assert np.abs(plain).sum() == 0


def test_receptive_field_reference_on_known_stacks():
    spec = a4.FUNCTIONS["receptive_field"]
    for layers, size in [([], 1), ([["conv", 3, 1]] * 2, 5), ([["conv", 3, 1]] * 3, 7),
                         ([["conv", 5, 1], ["pool", 2, 2], ["conv", 5, 1], ["pool", 2, 2]], 16)]:
        (args, _), = checks.make_inputs(spec, 0, [dict(layers=layers)])[1]
        assert spec.reference(lib, args) == size, layers


def test_the_committed_samples_are_what_the_generator_writes():
    for student, nb in S.samples().items():
        path = S.path(ROOT / "examples" / "submissions", student)
        assert path.read_text() == S.dumps(nb), f"{path} is stale: run tests/grading/a4_students.py"


def test_the_release_holds_no_solution_and_matches_the_source():
    release = json.loads(S.RELEASE.read_text())
    text = json.dumps(release)
    for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "seed=5124", "f.relu(branch(x))"):
        assert marker not in text
    ids = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in release["cells"]]
    source_ids = [c["metadata"].get("nbgrader", {}).get("grade_id")
                  for c in json.loads(SOLUTION.read_text())["cells"]]
    assert ids == source_ids


# --------------------------------------------------------------------------- one graded class

BROKEN_A = {  # a missing class, NaN, a hang; the rest correct
    "LeNet5": "# not done yet",
    "ResidualBlock": S.RESIDUAL.replace("return self.relu(out)",
                                        "return self.relu(out) * float('nan')"),
    "receptive_field": '''
def receptive_field(layers):
    while True:
        try:
            pass
        except KeyboardInterrupt:
            pass
''',
}
BROKEN_B = {  # a wrong signature, a crash, a float where an int belongs; the rest correct
    "vgg_block": S.VGG.replace("def vgg_block(in_channels, out_channels, num_convs):",
                               "def vgg_block(in_channels, out_channels):\n    num_convs = 2"),
    "InceptionBlock": S.INCEPTION.replace("        y1 = F.relu(self.branch1(x))",
                                          "        import ctypes\n        ctypes.string_at(0)\n"
                                          "        y1 = F.relu(self.branch1(x))"),
    "count_parameters": S.COUNT.replace("return total", "return float(total)"),
}
BROKEN = {"broken_a": BROKEN_A, "broken_b": BROKEN_B}


def _points():
    """{function: points of its test cells} from the solution notebook."""
    out = {}
    for cell in json.loads(SOLUTION.read_text())["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        match = re.match(r"test_(.+)_[a-z]+$", meta.get("grade_id", ""))
        if match and meta.get("points"):
            name = next(n for n in a4.FUNCTIONS if meta["grade_id"].startswith(f"test_{n}_"))
            out.setdefault(name, {})[meta["grade_id"]] = meta["points"]
    return out


POINTS = _points()


def by_function(row):
    return {name: sum(row.get(cell, 0) or 0 for cell in cells) for name, cells in POINTS.items()}


# The mistake student graded as a whole notebook too (its feedback names the mistake,
# found from the output's shape); every mistake is graded in-process above.
END_TO_END = ["a4_vgg_no_padding"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    grade_samples = load_tool("grade_samples")
    tmp = tmp_path_factory.mktemp("a4")
    course = grade_samples.make_course(tmp / "course", [S.ASSIGNMENT])
    subs = tmp / "submissions"
    students = {k: v for k, v in S.samples().items()
                if k not in S.MISTAKES or k in END_TO_END}
    students["solution"] = json.loads(SOLUTION.read_text())
    students["released"] = json.loads(S.RELEASE.read_text())
    for name, broken in BROKEN.items():
        students[name] = S.fill(dict(S.CORRECT, **broken))
    for student, nb in students.items():
        path = S.path(subs, student)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(S.dumps(nb))
    os.environ["CNNLIB_GRADING_TIMEOUT"] = "8"  # per check cell; the training asks for more
    try:
        result = grade_samples.grade_all(course, subs, S.ASSIGNMENT)
    finally:
        del os.environ["CNNLIB_GRADING_TIMEOUT"]
    result["feedback_text"] = {
        p.parts[-3]: html.unescape(re.sub(r"<[^>]+>", "", p.read_text(encoding="utf-8")))
        for p in result["feedback"]}
    return result


def _feedback(graded, student):
    return graded["feedback_text"][student]


@pytest.mark.slow
def test_everyone_is_graded_and_nothing_hidden_leaks(graded):
    assert not graded["problems"], graded["problems"]
    assert not graded["leaks"], graded["leaks"]
    assert set(graded["scores"]) >= set(END_TO_END) | {"solution", "released", "alice_complete"}


@pytest.mark.slow
def test_the_solution_and_the_complete_sample_earn_full_marks_and_the_release_none(graded):
    full = {name: sum(cells.values()) for name, cells in POINTS.items()}
    for student in ("solution", "alice_complete", "a4_lazy_layers"):
        assert by_function(graded["scores"][student]) == full, (
            student, graded["scores"][student])
    assert by_function(graded["scores"]["released"]) == dict.fromkeys(full, 0)
    assert graded["scores"]["released"]["total"] == 0


@pytest.mark.slow
def test_the_partial_sample_earns_the_points_of_what_it_wrote(graded):
    got = by_function(graded["scores"]["bob_partial"])
    for name, cells in POINTS.items():
        expected = 0 if name in ("InceptionBlock", "ResidualBlock", "train_digits") else sum(
            cells.values())
        assert got[name] == expected, (name, got)


# Mistakes that cannot show in every hidden check of their function: the cells they lose.
PARTIAL_LOSS = {"a4_residual_stride_in_conv2": {"test_ResidualBlock_projection"}}


@pytest.mark.slow
@pytest.mark.parametrize("student", END_TO_END)
def test_each_mistake_costs_its_own_function_and_is_named(graded, student):
    name, _ = S.MISTAKES[student]
    row = graded["scores"][student]
    full = {n: sum(cells.values()) for n, cells in POINTS.items()}
    got = by_function(row)
    for other, points in full.items():
        if other != name:
            assert got[other] == points, (student, other, row)
    hidden = {cell for cell in POINTS[name] if not cell.endswith("_visible")}
    lost = {cell for cell in POINTS[name] if row.get(cell) == 0}
    assert PARTIAL_LOSS.get(student, hidden) <= lost, (student, row)
    assert message_of(student) in _feedback(graded, student), student


@pytest.mark.slow
def test_a_broken_function_costs_only_its_own_points(graded):
    full = {name: sum(cells.values()) for name, cells in POINTS.items()}
    for student, broken in BROKEN.items():
        got = by_function(graded["scores"][student])
        zero = set(broken) | ({"train_digits"} if "ResidualBlock" in broken else set())
        for name, points in full.items():
            assert got[name] == (0 if name in zero else points), (student, name, got)
    text = _feedback(graded, "broken_a")
    assert "LeNet5 is not defined" in text
    assert "NaN" in text
    assert "did not finish" in text
    text = _feedback(graded, "broken_b")
    assert "crashed" in text
    assert "returned a float" in text


@pytest.mark.slow
def test_the_score_table_has_a_column_per_graded_function(graded):
    text = load_tool("grade_samples").table(graded, S.ASSIGNMENT)
    header, *rows = text.splitlines()
    assert header.split()[1:-2] == list(a4.FUNCTIONS)
    assert [row.split()[0] for row in rows[:len(graded["students"])]] == graded["students"]
    solution = next(row for row in rows if row.startswith("solution "))
    assert solution.split()[-2:] == [f"{sum(map(sum, (c.values() for c in POINTS.values()))):g}",
                                     "todo"]
