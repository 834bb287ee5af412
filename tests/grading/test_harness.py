"""The grading machinery without nbgrader: containment, anti-delegation, tamper
resistance and the diagnosis of every listed mistake, on independently written buggy
functions (tests/grading/a1_students.py). Fast: each check forks a child for a few ms.
"""

from __future__ import annotations

import re
import sys
import warnings

import a1_students as S
import numpy as np
import numpy.testing
import pytest

import cnnlib.numpy as lib
from cnnlib.grading import DenyList, Grader, run_cases

CONV_CASES = [
    dict(x=[2, 3, 7, 9], w=[4, 3, 3, 2], stride=2, padding=1, dtype="float32"),
    dict(x=[1, 2, 6, 5], w=[3, 2, 3, 3], stride=1, padding=0),
    dict(x=[1, 3, 8, 8], w=[2, 3, 2, 2], stride=3, padding=2),
]
PAD_CASES = [dict(x=[4, 5], padding=1), dict(x=[2, 3, 4, 5], padding=2, dtype="float32"),
             dict(x=[1, 1, 3, 3], padding=0)]
CORR_CASES = [dict(image=[5, 7], kernel=[3, 2]), dict(image=[6, 6], kernel=[3, 3]),
              dict(image=[4, 9], kernel=[2, 2], dtype="float32")]
SIZE_CASES = [dict(n=7, kernel_size=3, stride=2, padding=1), dict(n=10, kernel_size=3)]


@pytest.fixture(scope="module")
def grader():
    g = Grader(timeout=3.0)
    yield g
    g.close()


def define(*sources):
    """Execute student code the way a notebook does: in a fresh namespace with numpy."""
    ns = {"np": np, "__name__": "__main__"}
    for src in sources:
        exec(compile(src, "<student cell>", "exec"), ns)
    return ns


def complete():
    return define(S.SIZE, S.PAD, S.CORR, S.CONV)


def failure(grader, op, fn, **kw):
    with pytest.raises(AssertionError) as info:
        grader.check(op, fn, **kw)
    return str(info.value)


ARGS = {"conv_output_size": dict(seed=1, cases=SIZE_CASES, random=30),
        "pad2d": dict(seed=2, cases=PAD_CASES),
        "correlate2d": dict(seed=3, cases=CORR_CASES),
        "conv2d": dict(seed=4, cases=CONV_CASES)}


@pytest.mark.parametrize("op", list(ARGS))
def test_correct_student_code_passes(grader, op, capsys):
    grader.check(op, complete()[op], **ARGS[op])
    assert "match the reference" in capsys.readouterr().out


@pytest.mark.parametrize("op", list(ARGS))
def test_not_implemented_fails(grader, op):
    def stub(*args):
        raise NotImplementedError()
    assert "raised NotImplementedError" in failure(grader, op, stub, **ARGS[op])


@pytest.mark.parametrize("op, sources, message", [
    ("conv_output_size", [S.SIZE_PLUS_ONE], "(n + 2p - k + 1)/s + 1"),
    ("pad2d", [S.PAD_MINUS_P], "p:-p"),
    ("pad2d", [S.PAD_ALL_AXES], "every axis was padded"),
    ("correlate2d", [S.CORR_FLIPPED], "true convolution (kernel flipped)"),
    ("conv2d", [S.SIZE, S.PAD, S.CONV_FLIPPED], "true convolution (kernel flipped)"),
    ("conv2d", [S.SIZE, S.PAD, S.CONV_NO_BIAS], "the bias is missing"),
    ("conv2d", [S.SIZE, S.PAD, S.CONV_BIAS_PER_CHANNEL], "once per input channel"),
    ("conv2d", [S.SIZE, S.PAD, S.CONV_LAST_CHANNEL], "channels are not summed"),
    ("conv2d", [S.SIZE, S.PAD, S.CONV_STRIDE_IGNORED], "stride is ignored"),
    ("conv2d", [S.SIZE, S.PAD, S.CONV_NHWC], "(N, H_out, W_out, F)"),
    ("conv2d", [S.SIZE, S.PAD, S.CONV_INT], "integer truncation"),
    ("conv2d", [S.SIZE, S.PAD_MINUS_P, S.CONV], "p:-p"),
    ("conv2d", [S.CONV_PAD_WRONG_AXES], "padding is ignored (or applied to the wrong axes)"),
])
def test_each_mistake_is_named(grader, op, sources, message):
    text = failure(grader, op, define(*sources)[op], **ARGS[op])
    assert message in text, text


def test_wrong_formula_in_conv2d_is_named(grader):
    # With loops, a size that is too large makes the last window run off the input.
    ns = define(S.SIZE_PLUS_ONE, S.PAD, S.CONV)
    text = failure(grader, "conv2d", ns["conv2d"], seed=5, cases=[
        dict(x=[1, 1, 8, 8], w=[1, 1, 3, 3], stride=2, padding=0)])
    assert "a window ran past the edge" in text and "floor((n + 2p - k)/s) + 1" in text, text


@pytest.mark.parametrize("op, sources", [
    ("correlate2d", [S.CORR_FLIPPED]),
    ("conv2d", [S.SIZE, S.PAD, S.CONV_NO_BIAS]),
    ("conv2d", [S.SIZE, S.PAD, S.CONV_NHWC]),
    ("pad2d", [S.PAD_ALL_AXES]),
])
def test_messages_never_contain_values(grader, op, sources):
    text = failure(grader, op, define(*sources)[op], **ARGS[op])
    # shapes and settings are integers: any decimal number or array printout would be data
    assert re.search(r"\d\.\d", text) is None, text
    assert "[[" not in text and "array(" not in text, text


# --------------------------------------------------------------------------- containment

def _hang(*a):
    import time
    while True:
        try:
            time.sleep(0.01)
        except KeyboardInterrupt:
            pass


@pytest.mark.parametrize("source, words", [
    (S.HANG, "did not finish"), (S.SEGFAULT, "crashed"), (S.EXIT, "os._exit"),
])
def test_hang_crash_and_exit_cost_only_that_check(grader, source, words):
    ns = define(source.format(name="pad2d"))
    text = failure(grader, "pad2d", ns["pad2d"], **ARGS["pad2d"])
    assert words in text, text
    # the grader (and this process) still works afterwards
    grader.check("pad2d", complete()["pad2d"], **ARGS["pad2d"])


def test_warnings_and_stderr_of_a_correct_function_do_not_leak(grader, capfd):
    ns = define(S.NOISY_CORRECT)
    grader.check("conv_output_size", ns["conv_output_size"], **ARGS["conv_output_size"])
    captured = capfd.readouterr()
    assert captured.err == ""
    assert "match the reference" in captured.out


# --------------------------------------------------------------------------- delegation

@pytest.mark.parametrize("op, source, words", [
    ("correlate2d", S.DELEGATE_TORCH, "torch"),
    ("correlate2d", S.DELEGATE_SCIPY, "scipy.signal"),
    ("conv2d", S.DELEGATE_CNNLIB, "cnnlib"),
    ("pad2d", S.DELEGATE_NP_PAD, "numpy.pad"),
    ("correlate2d", '''
def correlate2d(image, kernel):
    c = np.correlate
    rows = [c(image[i], kernel[0], mode="valid") for i in range(image.shape[0])]
    return np.array(rows)[: image.shape[0] - kernel.shape[0] + 1]
''', "numpy.correlate"),
    ("conv2d", '''
def conv2d(x, w, b, stride=1, padding=0):
    import sys
    sys.setprofile(None)
    return np.zeros(1)
''', "setprofile"),
])
def test_delegation_earns_nothing_and_says_why(grader, op, source, words):
    text = failure(grader, op, define(source)[op], **ARGS[op])
    assert "earns no points" in text and words in text, text


def test_own_helpers_are_allowed(grader):
    ns = complete()  # conv2d calls the student's pad2d and conv_output_size
    grader.check("conv2d", ns["conv2d"], **ARGS["conv2d"])


def test_deny_list_checks_code_not_names():
    deny = DenyList(modules=("scipy.signal",))
    ns = define("import importlib\n"
                "def f(a):\n"
                "    m = importlib.import_module('scipy.' + 'signal')\n"
                "    return m.correlate(a, a)\n")
    (outcome,) = run_cases(ns["f"], [((np.ones(3),), {})], deny=deny, timeout=5)
    assert outcome.kind == "denied" and "scipy.signal" in outcome["detail"]


# --------------------------------------------------------------------------- tampering

@pytest.fixture
def restore_patched():
    """Undo the tampering student's patches of numpy and cnnlib in this process."""
    saved = (np.allclose, np.isclose, numpy.testing.assert_allclose, lib.conv2d_forward,
             lib.pad2d, lib.conv_output_size)
    yield
    (np.allclose, np.isclose, numpy.testing.assert_allclose, lib.conv2d_forward, lib.pad2d,
     lib.conv_output_size) = saved


def test_tampering_after_setup_earns_nothing(grader, restore_patched):
    ns = define(S.TAMPER)  # patches np.allclose, numpy.testing and cnnlib in this process
    assert np.allclose(np.zeros(2), np.ones(2))  # the patches are real here...
    for op in ARGS:  # ...and change nothing in the verdicts
        failure(grader, op, ns[op], **ARGS[op])


def test_objects_that_claim_equality_are_rejected(grader):
    ns = define("""
class Anything(np.ndarray):
    def __eq__(self, other):
        return True

def correlate2d(image, kernel):
    return np.zeros((9, 9)).view(Anything)

class Liar:
    def __eq__(self, other):
        return True

def conv_output_size(n, kernel_size, stride=1, padding=0):
    return Liar()
""")
    assert "returned a __main__.Anything" in failure(grader, "correlate2d", ns["correlate2d"],
                                                       **ARGS["correlate2d"])
    assert "returned a __main__.Liar" in failure(grader, "conv_output_size",
                                                   ns["conv_output_size"],
                                                   **ARGS["conv_output_size"])


def test_visible_checks_compare_with_the_worked_example(grader, capsys):
    ns = complete()
    grader.expect("conv_output_size", ns["conv_output_size"], [(7, 3, 2, 1)], [4])
    with pytest.raises(AssertionError, match="got 6, expected 5"):
        grader.expect("conv_output_size", define(S.SIZE_PLUS_ONE)["conv_output_size"],
                      [(7, 3, 1, 0)], [5])
    with pytest.raises(AssertionError, match="values differ"):
        grader.expect("correlate2d", define(S.CORR_FLIPPED)["correlate2d"],
                      [(np.arange(9.0).reshape(3, 3), np.array([[1.0, 0.0], [0.0, 2.0]]))],
                      [np.array([[8.0, 11.0], [17.0, 20.0]])])


def test_run_returns_the_result_or_explains(grader):
    out = grader.run("pad2d", complete()["pad2d"], np.ones((2, 3)), 1)
    assert out.shape == (4, 5) and out.flags.writeable
    with pytest.raises(AssertionError, match="os._exit"):
        grader.run("pad2d", define(S.EXIT.format(name="f"))["f"], np.ones(2), 1)


def test_grader_refuses_a_shadowed_library(tmp_path, monkeypatch):
    (tmp_path / "numpy.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    fake = type(sys)("numpy")
    fake.__file__ = str(tmp_path / "numpy.py")
    monkeypatch.setitem(sys.modules, "numpy", fake)
    problem = Grader._environment_problem()
    monkeypatch.undo()
    assert "replaces the real numpy" in problem


def test_warnings_filter_untouched():
    # run_cases silences warnings in the child only: the caller's filters stay as they were
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = list(warnings.filters)
        run_cases(lambda: 1, [((), {})])
        assert warnings.filters == before


def test_the_arguments_of_a_call_cross_with_their_types():
    from cnnlib.grading.harness import _decode_calls, _encode_calls

    calls = [((np.arange(4.0).reshape(2, 2), 3, 2.5, None, "mean", True), {})]
    (args, _), = _decode_calls(*_encode_calls(calls))
    assert args[0].tolist() == [[0.0, 1.0], [2.0, 3.0]] and args[0].flags.writeable
    assert args[1:] == (3, 2.5, None, "mean", True)
    assert type(args[1]) is int and type(args[5]) is bool
    with pytest.raises(Exception, match="cannot be sent"):
        _encode_calls([(([1, 2],), {})])
