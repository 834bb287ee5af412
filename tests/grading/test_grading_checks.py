"""The judge (``cnnlib.grading.checks``) and the spec modules, on plain data only.

No student code and no process here: outcomes are built by hand, the way the sandbox
reports them, so these tests show that the judge decides from values alone and that
every known mistake of every spec module is named by its own message.
"""

from __future__ import annotations

import re

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
                           dict(x=[1, 2, 8, 8], kernel_size=2, stride=1)],
    "avgpool2d_backward": [dict(x=[2, 3, 7, 7], kernel_size=3, stride=2, padding=1),
                           dict(x=[1, 2, 8, 8], kernel_size=2, stride=1)],
    "predict": [dict(n=4)],
}


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
    if name != "conv_output_size":  # its inputs are the configuration itself
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
        if np.shape(wrong) != np.shape(ref) or checks.close(wrong, ref):
            continue
        earlier = []
        for m in spec.mistakes[:mistake_index]:
            try:
                earlier.append(m.variant(lib, args))
            except Exception:  # noqa: BLE001
                pass
        if any(np.shape(e) == np.shape(wrong) and checks.close(e, wrong) for e in earlier):
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
    # shapes and settings are integers: a decimal number would be data from the arrays
    assert re.search(r"\d\.\d", report) is None, report


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
