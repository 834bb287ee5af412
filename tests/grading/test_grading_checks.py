"""The judge (``cnnlib.grading.checks``) and the spec modules, on plain data only.

No student code and no process here: outcomes are built by hand, the way the sandbox
reports them, so these tests show that the judge decides from values alone and that
every known mistake of every spec module is named by its own message.
"""

from __future__ import annotations

import re

import a4_students
import numpy as np
import pytest

import cnnlib.numpy as lib
from cnnlib.grading import checks, specs
from cnnlib.grading.sandbox import encode_value

# Configurations to look for a case where a mistake shows (several channels, strides,
# paddings, square and non-square): the judge is tested on them, never the hidden ones.
PROBES = {
    "conv_output_size": [dict(n=n, kernel_size=k, stride=s, padding=p)
                         for n in (5, 7, 10) for k in (1, 2, 3) for s in (1, 2, 3)
                         for p in (0, 1, 2)],
    "pad2d": [dict(x=[3, 4], padding=2), dict(x=[2, 3, 4, 5], padding=1)],
    "correlate2d": [dict(image=[6, 6], kernel=[3, 3]), dict(image=[5, 7], kernel=[2, 3])],
    "conv2d": [dict(x=[2, 3, 7, 6], w=[4, 3, 3, 3], stride=2, padding=1),
               dict(x=[1, 2, 6, 6], w=[2, 2, 3, 3], stride=1, padding=0)],
    # a3-backprop
    "relu_backward": [dict(x=[3, 4]), dict(x=[2, 3, 4, 4])],
    "linear_backward": [dict(n=4, d_in=5, d_out=5), dict(n=3, d_in=4, d_out=2)],
    "softmax_cross_entropy": [dict(n=4, classes=5), dict(n=3, classes=4, scale=1000.0)],
    "numerical_gradient": [dict(f="tanh", x=[3, 4], h=1e-2),
                           dict(f="affine", x=[3, 4], out=2)],
    "conv2d_backward": [dict(x=[2, 3, 7, 6], w=[4, 3, 3, 3], stride=2, padding=1),
                        dict(x=[2, 2, 6, 6], w=[2, 2, 3, 3])],
    "maxpool2d_backward": [dict(x=[2, 3, 7, 7], kernel_size=3, stride=2, padding=1),
                           dict(x=[1, 2, 8, 8], kernel_size=2, stride=1),
                           dict(x=[2, 2, 6, 6], kernel_size=2, ties=True)],
    "avgpool2d_backward": [dict(x=[2, 3, 7, 7], kernel_size=3, stride=2, padding=1),
                           dict(x=[1, 2, 8, 8], kernel_size=2, stride=1)],
    "train_step": [dict(batch=8, lr=0.1)],
    # a3-backprop and a5-transfer both grade a predict(images)
    "predict": [dict(n=4)],
    # a5-transfer: small ResNets in every starting state, a width whose head is not 64 wide
    "freeze_backbone": [dict(depth=8, width=8, classes=4, state=s)
                        for s in ("trainable", "frozen", "head_frozen", "backbone_frozen")],
    "replace_head": [dict(depth=8, width=8, classes=10, state="trainable", num_classes=3),
                     dict(depth=8, width=4, classes=10, state="frozen", num_classes=4)],
    "param_groups": [dict(depth=8, width=8, classes=4, state=s, base_lr=1e-3, head_lr=1e-2)
                     for s in ("trainable", "backbone_frozen")],
}
# a2-pooling
_POOLS = [dict(x=[2, 3, 7, 6], kernel_size=3, stride=2, padding=1, shift=-1.0),
          dict(x=[2, 2, 6, 6], kernel_size=2),
          dict(x=[1, 2, 7, 7], kernel_size=3, stride=1, padding=0)]
PROBES.update({
    "maxpool2d": _POOLS, "avgpool2d": _POOLS,
    "global_avgpool": [dict(x=[2, 3, 4, 5])], "global_maxpool": [dict(x=[2, 3, 4, 5]),
                                                        dict(x=[2, 3, 2, 2], shift=-1.5)],
    "gem_pool": [dict(x=[2, 3, 4, 4], p=2.0), dict(x=[2, 3, 4, 4], p=2.0, eps=0.5),
                 dict(x=[2, 3, 4, 4], p=4.0, positive=True)],
    "relu": [dict(x=[3, 4])],
    "leaky_relu": [dict(x=[3, 4], negative_slope=0.2)],
    "elu": [dict(x=[3, 4], alpha=0.5)],
    "sigmoid": [dict(x=[3, 4])],
    "softmax": [dict(x=[4, 5], axis=0), dict(x=[4, 5]), dict(x=[4, 4])],
    "flatten": [dict(x=[2, 3, 2, 2])],
    "linear": [dict(x=[3, 4], out=4), dict(x=[3, 4], out=2)],
})
# a4-architectures
PROBES.update(a4_students.PROBES)
CONFIG_ONLY = {"conv_output_size"} | a4_students.CONFIG_ONLY  # inputs = the configuration


def ok(value):
    desc, blobs = encode_value(value)
    value = np.asarray(value) if desc["kind"] == "array" else value
    return {"kind": "ok", "value": value, "desc": desc}


def all_specs():
    return [(name, spec) for module in specs.assignments().values()
            for name, spec in module.FUNCTIONS.items()]


def test_every_spec_module_is_complete():
    modules = specs.assignments()
    assert "a1-convolution" in modules
    for assignment, module in modules.items():
        assert specs.load(assignment) is module
        assert module.FUNCTIONS, assignment
        for name, spec in module.FUNCTIONS.items():
            assert spec.name == name
            assert spec.signature.startswith(f"{name}(")
            assert callable(spec.deny().check_frame)
            for need in getattr(module, "REFERENCE_NEEDS", ()):
                assert callable(getattr(lib, need))


def test_find_and_load_reject_unknown_names():
    assert specs.find("conv2d").name == "conv2d"
    assert specs.find("pad2d", "a1-convolution").name == "pad2d"
    with pytest.raises(KeyError, match="no graded function named 'nope'"):
        specs.find("nope")
    with pytest.raises(KeyError, match="graded in several assignments .a3-backprop, "
                                       "a5-transfer.: name the assignment"):
        specs.find("predict")
    assert specs.find("predict", "a5") is specs.load("a5").FUNCTIONS["predict"]
    with pytest.raises(ValueError, match="no grading spec"):
        specs.load("a99-missing")
    with pytest.raises(ValueError, match="must look like"):
        specs.load("../etc")


@pytest.mark.parametrize("name, spec", all_specs())
def test_inputs_depend_on_the_seed_only(name, spec):
    cases = PROBES[name][:1]
    a = checks.make_inputs(spec, 7, cases)[1]
    b = checks.make_inputs(spec, 7, cases)[1]
    c = checks.make_inputs(spec, 8, cases)[1]
    flat = lambda calls: [np.asarray(x).ravel() for args, _ in calls for x in args]  # noqa: E731
    assert all(np.array_equal(x, y) for x, y in zip(flat(a), flat(b)))
    if name not in CONFIG_ONLY:  # else its inputs are the configuration itself
        assert not all(np.array_equal(x, y) for x, y in zip(flat(a), flat(c)))


@pytest.mark.parametrize("name, spec", all_specs())
def test_reference_outcomes_pass_and_say_so(name, spec):
    configs, calls = checks.make_inputs(spec, 3, PROBES[name])
    outcomes = [ok(spec.reference(lib, args)) for args, _ in calls]
    passed, report = checks.judge(spec, lib, configs, calls, outcomes)
    assert passed, report
    assert "match the reference" in report


def _first_case_showing(spec, mistake_index, seed=11):
    """A configuration where mistake i differs from the reference and from every earlier
    mistake (so the judge must name this one), with its inputs."""
    for config in PROBES[spec.name]:
        (args, _), = checks.make_inputs(spec, seed, [config])[1]
        ref = spec.reference(lib, args)
        try:
            wrong = spec.mistakes[mistake_index].variant(lib, args)
        except Exception:  # noqa: BLE001 - does not apply here
            continue
        if not checks.comparable(spec, wrong, ref) or checks.same_result(spec, wrong, ref):
            continue
        earlier = []
        for m in spec.mistakes[:mistake_index]:
            try:
                earlier.append(m.variant(lib, args))
            except Exception:  # noqa: BLE001
                pass
        if any(checks.same_result(spec, e, wrong) for e in earlier):
            continue
        return config, args, wrong
    return None


@pytest.mark.parametrize("name, index", [(n, i) for n, s in all_specs()
                                         for i in range(len(s.mistakes))])
def test_each_known_mistake_is_named_without_values(name, index):
    spec = specs.find(name)
    found = _first_case_showing(spec, index)
    assert found is not None, f"no probe configuration shows mistake {index} of {name}"
    config, args, wrong = found
    passed, report = checks.judge(spec, lib, [config], [(args, {})], [ok(wrong)])
    assert not passed
    assert spec.mistakes[index].message in report, report
    assert spec.describe(config) in report
    # apart from the configuration's own settings (a slope of 0.2), a decimal number
    # would be data from the arrays
    assert re.search(r"\d\.\d", report.replace(spec.describe(config), "")) is None, report


def test_failures_report_at_most_show_kinds_and_a_hint():
    spec = specs.find("conv2d")
    configs = [dict(x=[1, 2, 6, 6], w=[2, 2, 3, 3], stride=1),
               dict(x=[1, 2, 7, 7], w=[2, 2, 3, 3], stride=2),
               dict(x=[1, 2, 9, 9], w=[2, 2, 3, 3], stride=3)]
    configs, calls = checks.make_inputs(spec, 5, configs)
    outcomes = [ok(spec.reference(lib, calls[0][0]))]
    outcomes += [ok(spec.reference(lib, args) + 1.0) for args, _ in calls[1:]]
    passed, report = checks.judge(spec, lib, configs, calls, outcomes, show=1)
    assert not passed
    assert report.count("\n- ") == 1
    assert "Hint: it fails only when stride > 1" in report


@pytest.mark.parametrize("outcome, words", [
    ({"kind": "denied", "detail": "numpy.pad"}, "earns no points"),
    ({"kind": "raised", "detail": "raised NotImplementedError"}, "NotImplementedError"),
    ({"kind": "badtype", "detail": "returned a __main__.Liar", "type": "__main__.Liar"},
     "Liar"),
    ({"kind": "timeout", "detail": "did not finish within 3 s"}, "did not finish"),
])
def test_failed_calls_never_pass(outcome, words):
    spec = specs.find("pad2d")
    configs, calls = checks.make_inputs(spec, 1, PROBES["pad2d"][:1])
    passed, report = checks.judge(spec, lib, configs, calls, [outcome])
    assert not passed and words in report, report


def test_values_are_judged_not_types_that_claim_equality():
    spec = specs.find("conv_output_size")
    configs, calls = checks.make_inputs(spec, 1, [dict(n=7, kernel_size=3)])
    for value in (5.0, True, "5", None, np.float64(5.0)):
        desc, _ = encode_value(value)
        outcome = ({"kind": "ok", "value": value, "desc": desc} if desc["kind"] != "badtype"
                   else dict(desc, detail=f"returned a {desc['type']}"))
        passed, report = checks.judge(spec, lib, configs, calls, [outcome])
        assert not passed, (value, report)
    assert "returns an int" in checks.judge(spec, lib, configs, calls, [ok(5.0)])[1]


def test_nan_and_integer_arrays_fail_with_a_reason():
    spec = specs.find("correlate2d")
    configs, calls = checks.make_inputs(spec, 2, PROBES["correlate2d"][:1])
    ref = spec.reference(lib, calls[0][0])
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert "NaN" in checks.judge(spec, lib, configs, calls, [ok(nan)])[1]
    report = checks.judge(spec, lib, configs, calls, [ok(ref.astype(np.int64))])[1]
    assert "integer truncation" in report


def test_wrong_number_of_results_fails():
    spec = specs.find("pad2d")
    configs, calls = checks.make_inputs(spec, 1, PROBES["pad2d"])
    passed, report = checks.judge(spec, lib, configs, calls, [])
    assert not passed and "results for" in report


def test_visible_check_comparison():
    spec = specs.find("conv_output_size")
    passed, report = checks.judge_expected(spec, [ok(4), ok(6)], [4, 5], ["a", "b"])
    assert not passed and "b: got 6, expected 5" in report and "- a" not in report


# --------------------------------------------------------------------------- result kinds
# Specs made here, on plain data: a function returning (loss, grad) and one returning a float.

def _pair_reference(lib, args):
    (x,) = args
    return float((x ** 2).sum()) / x.shape[0], 2 * x / x.shape[0]


PAIR = specs.FunctionSpec(
    name="pair", signature="pair(x)", returns=("float", "array"), parts=("loss", "dx"),
    inputs=lambda rng, case: (rng.standard_normal(tuple(case["x"])),),
    reference=_pair_reference,
    describe=lambda case: f"x of shape {tuple(case['x'])}",
    deny=lambda: None,
    mistakes=(specs.Mistake("the mean over the batch is missing (divide by N)",
                            lambda lib, args: (float((args[0] ** 2).sum()), 2 * args[0])),),
)
SCALAR = specs.FunctionSpec(
    name="scalar", signature="scalar(x)", returns="float",
    inputs=lambda rng, case: (rng.standard_normal(tuple(case["x"])),),
    reference=lambda lib, args: float(args[0].sum()),
    describe=lambda case: f"x of shape {tuple(case['x'])}", deny=lambda: None,
    mistakes=(specs.Mistake("the sum runs over the first row only",
                            lambda lib, args: float(args[0][0].sum())),),
)


def _judge(spec, value, shape=(4, 3)):
    configs, calls = checks.make_inputs(spec, 5, [{"x": list(shape)}])
    outcome = value(calls[0][0]) if callable(value) else value
    return checks.judge(spec, lib, configs, calls, [outcome])


def test_tuple_results_are_judged_part_by_part():
    passed, report = _judge(PAIR, lambda args: ok(_pair_reference(lib, args)))
    assert passed, report
    loss_only = _judge(PAIR, lambda args: ok((_pair_reference(lib, args)[0], args[0])))
    assert not loss_only[0] and "dx differs" in loss_only[1] and "loss" not in loss_only[1]
    mistake = _judge(PAIR, lambda args: ok((float((args[0] ** 2).sum()), 2 * args[0])))
    assert not mistake[0] and "divide by N" in mistake[1] and "loss differs" in mistake[1]
    assert re.search(r"\d\.\d", mistake[1]) is None, mistake[1]


@pytest.mark.parametrize("value, words", [
    (lambda a: ok(_pair_reference(lib, a)[1]), "returns a tuple (loss, dx)"),
    (lambda a: ok((1.0,)), "tuple of 1 elements"),
    (lambda a: ok((np.ones(2), _pair_reference(lib, a)[1])), "loss is array of shape (2,)"),
    (lambda a: ok((_pair_reference(lib, a)[0], np.ones((3, 4)))), "dx has shape (3, 4)"),
    (lambda a: ok((float("nan"), _pair_reference(lib, a)[1])), "loss is nan"),
    (lambda a: ok((_pair_reference(lib, a)[0], np.ones((4, 3), dtype=np.int64))),
     "dx has dtype int64"),
])
def test_malformed_tuples_fail_with_a_reason(value, words):
    passed, report = _judge(PAIR, value)
    assert not passed and words in report, report


def test_float_results_accept_numbers_and_name_mistakes():
    for wrap in (float, np.float64, np.asarray):  # np.sum's scalar, a 0-d array
        passed, report = _judge(SCALAR, lambda a, w=wrap: ok(w(a[0].sum())))
        assert passed, report
    passed, report = _judge(SCALAR, lambda a: ok(float(a[0][0].sum())))
    assert not passed and "first row only" in report
    passed, report = _judge(SCALAR, lambda a: ok(a[0].sum(axis=0)))
    assert not passed and "not a number" in report


def test_visible_checks_of_tuples_and_floats():
    x = np.array([[1.0, 2.0]])
    want = (5.0, np.array([[2.0, 4.0]]))
    assert checks.judge_expected(PAIR, [ok(want)], [want], ["ex"])[0]
    passed, report = checks.judge_expected(PAIR, [ok((5.0, x))], [want], ["ex"])
    assert not passed and "dx differs from the worked example" in report
    assert checks.judge_expected(SCALAR, [ok(3.0)], [3.0], ["ex"])[0]
    assert not checks.judge_expected(SCALAR, [ok(3.5)], [3.0], ["ex"])[0]


def test_a_tuple_spec_needs_a_name_per_part():
    with pytest.raises(ValueError, match="one name per element"):
        specs.FunctionSpec(name="f", signature="f()", returns=("array", "array"),
                           parts=("dx",), inputs=None, reference=None, describe=None,
                           deny=None)
    with pytest.raises(ValueError, match="returns must be one of"):
        specs.FunctionSpec(name="f", signature="f()", returns="list", inputs=None,
                           reference=None, describe=None, deny=None)


def test_an_assignment_may_give_its_cells_more_time():
    import types

    assert specs.cell_timeout(specs.load("a1")) == specs.DEFAULT_CELL_TIMEOUT == 60
    assert specs.cell_timeout(types.SimpleNamespace(CELL_TIMEOUT=180)) == 180


def test_a_non_finite_result_is_diagnosed_by_the_spec_first():
    import dataclasses

    spec = dataclasses.replace(SCALAR, name="vec", returns="array",
                               reference=lambda lib, args: np.exp(args[0]),
                               diagnose=lambda lib, args, value, ref: (
                                   "exp overflows for large inputs" if np.isinf(value).any()
                                   else None))
    configs, calls = checks.make_inputs(spec, 5, [{"x": [3]}])
    big = np.array([1.0, np.inf, 2.0])
    passed, report = checks.judge(spec, lib, configs, calls, [ok(big)])
    assert not passed and "exp overflows" in report
    plain = dataclasses.replace(spec, diagnose=None)
    passed, report = checks.judge(plain, lib, configs, calls, [ok(big)])
    assert not passed and "NaN or infinity" in report


def test_every_hint_that_fits_the_failures_is_shown():
    # One failing configuration is float32 with a non-square kernel and input, the passing
    # one none of these: naming only the first hint would blame the dtype alone.
    spec = specs.find("conv2d")
    configs, calls = checks.make_inputs(spec, 5, [
        dict(x=[1, 2, 6, 6], w=[2, 2, 3, 3]),
        dict(x=[1, 2, 7, 5], w=[2, 2, 2, 3], dtype="float32")])
    outcomes = [ok(spec.reference(lib, calls[0][0])), ok(spec.reference(lib, calls[1][0]) + 1)]
    passed, report = checks.judge(spec, lib, configs, calls, outcomes)
    assert not passed
    for words in ("float32 inputs", "non-square kernels", "non-square inputs"):
        assert words in report, report
    assert "any of them may be the cause" in report


def test_an_explanation_of_an_error_may_read_the_arguments():
    spec = specs.find("correlate2d")
    configs, calls = checks.make_inputs(spec, 5, [dict(image=[5, 8], kernel=[2, 3])])
    raised = {"kind": "raised", "detail": "raised ValueError: operands could not be "
              "broadcast together with shapes (2,2) (2,3) "}
    passed, report = checks.judge(spec, lib, configs, calls, [raised])
    # a 2 x 2 window may also be a 2 x 3 one cut short by the edge: both are named
    assert not passed and "the window is 2 x 2 but the kernel is 2 x 3" in report, report
    assert "ran past the edge" in report
    wider = dict(raised, detail=raised["detail"].replace("(2,2) (2,3)", "(3,3) (2,3)"))
    report = checks.judge(spec, lib, configs, calls, [wider])[1]
    assert "the window is 3 x 3" in report and "ran past the edge" not in report, report
    configs, calls = checks.make_inputs(spec, 5, [dict(image=[5, 8], kernel=[3, 3])])
    passed, report = checks.judge(spec, lib, configs, calls, [raised])
    assert "a window ran past the edge" in report, report


def test_a_visible_check_fails_a_warning_only_where_the_spec_says_so():
    import dataclasses

    spec = specs.find("sigmoid", "a2")
    want = np.array([1.0, 0.0])
    quiet, noisy = ok(want), dict(ok(want), warnings=["RuntimeWarning: overflow"])
    assert checks.judge_expected(spec, [quiet], [want], ["ex"])[0]
    passed, report = checks.judge_expected(spec, [noisy], [want], ["ex"])
    assert not passed and "emitted RuntimeWarning: overflow" in report, report
    assert spec.warning_message in report
    lenient = dataclasses.replace(spec, warning_message="")
    assert checks.judge_expected(lenient, [noisy], [want], ["ex"])[0]
    # hidden checks judge values only
    configs, calls = checks.make_inputs(spec, 5, [dict(x=[3])])
    value = spec.reference(lib, calls[0][0])
    assert checks.judge(spec, lib, configs, calls, [dict(ok(value), warnings=["W: w"])])[0]
