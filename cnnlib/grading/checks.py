"""The judge: inputs for a configuration, comparison with the reference, diagnosis.

It knows no assignment: every graded function is a :class:`~cnnlib.grading.specs.FunctionSpec`
from the assignment's spec module. It works on plain data only: the inputs it builds,
the reference it computes from the library it is given, and the *outcomes* of the
student's calls (``{"kind": "ok", "value": <int, float or ndarray>, "desc": {...}}`` or
a failure kind with a ``detail``), so it runs the same wherever the student's code ran:
in a forked child of the kernel, or in a sandbox another process talks to.

Messages name the configuration, the shapes and the mistake; they never contain the
expected values.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

__all__ = ["make_inputs", "judge", "judge_expected", "close", "comparable", "same_result",
           "RTOL", "ATOL"]

# float32 answers must pass (a sum of a few hundred float32 products is good to ~1e-6
# relative), while every known mistake moves values by O(1).
RTOL = 1e-4
ATOL = 1e-4


def close(student, ref):
    """True when ``student`` equals ``ref`` within the float32-friendly tolerance."""
    student, ref = np.asarray(student), np.asarray(ref)
    if student.shape != ref.shape:
        return False
    s = student.astype(np.float64)
    r = ref.astype(np.float64)
    if not np.isfinite(s).all():
        return False
    scale = max(1.0, float(np.abs(r).max(initial=0.0)))
    return bool((np.abs(s - r) <= ATOL * scale + RTOL * np.abs(r)).all())


def make_inputs(spec, seed, cases, random=0):
    """Return ``(configs, calls)``: each call is ``(args, kwargs)`` for the student function.

    Parameters
    ----------
    spec : FunctionSpec
    seed : int
        Seeds the generator; the hidden test cell chooses it.
    cases : list of dict
        Configurations from the hidden test cell.
    random : int
        This many more configurations drawn from the seed (``spec.random_cases``).
    """
    rng = np.random.default_rng(seed)
    configs = [dict(c) for c in cases]
    if random:
        if spec.random_cases is None:
            raise ValueError(f"{spec.name} draws no random configurations; pass cases")
        configs += [dict(c) for c in spec.random_cases(rng, int(random))]
    calls = [(tuple(spec.inputs(rng, c)), {}) for c in configs]
    return configs, calls


# --------------------------------------------------------------------------- one call

def _same(kind, a, b):
    """Whether two values of one result kind agree (within the tolerance for floats)."""
    if kind == "int":
        return type(a) is type(b) and a == b
    if kind == "float":
        try:
            return close(float(a), float(b))
        except (TypeError, ValueError):
            return False
    return np.shape(a) == np.shape(b) and close(a, b)


def comparable(spec, a, b):
    """Whether two results have the same structure (kind, tuple length, array shapes)."""
    if not spec.is_tuple:
        return spec.returns != "array" or np.shape(a) == np.shape(b)
    return (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)
            == len(spec.returns) and all(k != "array" or np.shape(x) == np.shape(y)
                                         for k, x, y in zip(spec.returns, a, b)))


def same_result(spec, a, b):
    """Whether two whole results (tuples compared part by part) agree."""
    if not spec.is_tuple:
        return _same(spec.returns, a, b)
    return (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)
            == len(spec.returns) and all(_same(k, x, y) for k, x, y in zip(spec.returns, a, b)))


def _mistake(spec, lib, args, value, ref):
    """The first known mistake ``value`` looks like, or None."""
    if spec.diagnose is not None:
        message = spec.diagnose(lib, args, value, ref)
        if message:
            return message
    for mistake in spec.mistakes:
        try:
            wrong = mistake.variant(lib, args)
        except Exception:  # noqa: BLE001 - a variant that does not apply to this case
            continue
        if spec.returns == "int":
            if wrong != ref and value == wrong:
                return mistake.message
            continue
        if spec.is_tuple:
            try:
                if (not same_result(spec, wrong, ref) and isinstance(value, tuple)
                        and len(value) == len(wrong) and all(
                            _same(k, v, w) for k, v, w in zip(spec.returns, value, wrong))):
                    return mistake.message
            except (TypeError, ValueError):
                continue
            continue
        if spec.returns == "float":
            try:
                if not close(float(wrong), float(ref)) and close(float(value), float(wrong)):
                    return mistake.message
            except (TypeError, ValueError):
                pass
            continue
        wrong = np.asarray(wrong)
        if wrong.shape == np.shape(ref) and not close(wrong, ref) and close(value, wrong):
            return mistake.message
    return None


def _takes_args(fn):
    try:
        return len(inspect.signature(fn).parameters) >= 2
    except (TypeError, ValueError):
        return False


def _failure(spec, outcome, args=None):
    """The message for a call that returned no value."""
    kind = outcome["kind"]
    if kind == "badtype" and spec.returns == "int" and str(outcome.get("type", "")).startswith(
            ("float", "numpy.float")):
        return f"returned a float; {spec.name} returns an int (use // for the division)"
    detail = outcome.get("detail", kind)
    if kind == "raised" and spec.explain_error is not None:
        extra = (spec.explain_error(detail, args) if args is not None
                 and _takes_args(spec.explain_error) else spec.explain_error(detail))
        if extra:
            detail += f" ({extra})"
    return detail


def _compare_int(spec, lib, args, value, desc, ref):
    name = spec.name
    if desc["kind"] == "float":
        if value == ref:
            return False, f"returned a float; {name} returns an int (use // for the division)"
        floor = math.floor(value) if math.isfinite(value) else None
        return False, ("returned a float: use integer (floor) division //; "
                       + ((_mistake(spec, lib, args, floor, ref) if floor is not None
                           else None) or "the value differs"))
    if desc["kind"] != "int":
        return False, f"returned {desc['kind']}; {name} returns an int"
    if value == ref:
        return True, ""
    return False, (_mistake(spec, lib, args, value, ref)
                   or "the value differs from the reference")


def _as_float(value, desc):
    """A float result as a Python float, or None (an int or a 0-d float array counts)."""
    if desc["kind"] in ("float", "int"):
        return float(value)
    if desc["kind"] == "array" and value.ndim == 0 and value.dtype.kind == "f":
        return float(value)
    return None


def _part_problem(kind, what, value, desc, ref):
    """Why one value (a whole result, or one element of a tuple) is wrong, or None."""
    if kind == "int":
        if desc["kind"] != "int":
            return f"{what} is {desc['kind']}, not an int"
        return None if value == ref else f"{what} differs from the reference"
    if kind == "float":
        f = _as_float(value, desc)
        if f is None:
            shape = f" of shape {tuple(value.shape)}" if desc["kind"] == "array" else ""
            return f"{what} is {desc['kind']}{shape}, not a number (a float)"
        if not math.isfinite(f):
            return f"{what} is {f}"
        return None if close(f, float(ref)) else f"{what} differs from the reference"
    if desc["kind"] != "array":
        return f"{what} is {desc['kind']}, not a numpy.ndarray"
    if value.shape != np.shape(ref):
        return f"{what} has shape {value.shape}, expected {np.shape(ref)}"
    if value.dtype.kind != "f":
        return f"{what} has dtype {value.dtype}; it must be a floating array"
    if not np.isfinite(value.astype(np.float64)).all():
        return f"{what} contains NaN or infinity (uninitialised memory from np.empty?)"
    return None if close(value, ref) else f"{what} differs from the reference"


def _compare_tuple(spec, lib, args, value, desc, ref):
    n = len(spec.returns)
    if desc["kind"] != "tuple":
        return False, (f"returned {desc['kind']}; {spec.name} returns a tuple "
                       f"({', '.join(spec.parts)})")
    if len(value) != n:
        return False, (f"returned a tuple of {len(value)} elements; {spec.name} returns "
                       f"{n} ({', '.join(spec.parts)})")
    problems = [p for p in (_part_problem(k, name, v, d, r) for k, name, v, d, r in zip(
        spec.returns, spec.parts, value, desc["items"], ref)) if p]
    if not problems:
        return True, ""
    mistake = _mistake(spec, lib, args, value, ref)
    return False, "; ".join(problems) + (f": {mistake}" if mistake else "")


def _compare(spec, lib, args, outcome, ref):
    """(ok, message) for one call."""
    if outcome["kind"] != "ok":
        return False, _failure(spec, outcome, args)
    value, desc = outcome["value"], outcome["desc"]
    if spec.returns == "int":
        return _compare_int(spec, lib, args, value, desc, ref)
    if spec.is_tuple:
        return _compare_tuple(spec, lib, args, value, desc, ref)
    if spec.returns == "float":
        problem = _part_problem("float", "the result", value, desc, ref)
        if problem is None:
            return True, ""
        mistake = _mistake(spec, lib, args, _as_float(value, desc), ref) if _as_float(
            value, desc) is not None else None
        return False, problem + (f": {mistake}" if mistake else "")
    name = spec.name
    if desc["kind"] != "array":
        return False, f"returned {desc['kind']}; {name} returns a numpy.ndarray"
    if value.dtype.kind != "f":
        mistake = _mistake(spec, lib, args, value, ref)
        return False, mistake or f"the result has dtype {value.dtype}; it must be a floating array"
    if close(value, ref):
        return True, ""
    if value.shape != ref.shape:
        mistake = _mistake(spec, lib, args, value, ref)
        what = f"output shape {value.shape}, expected {ref.shape}"
        return False, what + (f": {mistake}" if mistake else "")
    if not np.isfinite(value.astype(np.float64)).all():
        # an overflow is a known mistake only a spec's diagnose can name (a variant that
        # overflows the same way gives NaN, and NaN matches nothing)
        mistake = spec.diagnose(lib, args, value, ref) if spec.diagnose is not None else None
        return False, mistake or ("the output contains NaN or infinity (uninitialised memory "
                                  "from np.empty?)")
    mistake = _mistake(spec, lib, args, value, ref)
    return False, "the shape is right but the values differ" + (f": {mistake}" if mistake else "")


# --------------------------------------------------------------------------- verdicts

def judge(spec, lib, configs, calls, outcomes, *, show=3):
    """Compare every outcome with the reference; return ``(passed, report)``.

    The report lists the first ``show`` kinds of failure, each with one configuration
    that shows it, plus every hint whose feature all the failures share (and no passing
    configuration has): when two features coincide in the failing configurations, naming
    one of them only could blame the wrong one.
    """
    name = spec.name
    if len(outcomes) != len(calls):
        return False, f"{name}: the grader received {len(outcomes)} results for {len(calls)} calls"
    results = []
    for config, (args, _), outcome in zip(configs, calls, outcomes):
        if outcome["kind"] == "denied":
            return False, (f"{name} earns no points here: while it ran it called "
                           f"{outcome['detail']}, which does the work {name} must do itself. "
                           "Write it with plain NumPy array operations.")
        ref = spec.reference(lib, args)
        ok, message = _compare(spec, lib, args, outcome, ref)
        results.append((config, ok, message))
    failed = [r for r in results if not r[1]]
    if not failed:
        return True, f"{name}: all {len(results)} configurations match the reference"
    lines = [f"{name}: {len(failed)} of {len(results)} configurations differ from the reference."]
    groups = {}  # the same mistake in several configurations is reported once
    for config, _, message in failed:
        groups.setdefault(message, []).append(config)
    for message, group in list(groups.items())[:show]:
        more = f" (and {len(group) - 1} more like it)" if len(group) > 1 else ""
        lines.append(f"- {spec.describe(group[0])}{more}: {message}")
    if len(groups) > show:
        lines.append(f"- ... and {len(groups) - show} other kinds of difference")
    passed_configs = [r[0] for r in results if r[1]]
    if passed_configs:
        hints = []
        for hint in spec.hints:
            try:
                if all(hint.applies(c) for c, _, _ in failed) and not any(
                        hint.applies(c) for c in passed_configs):
                    hints.append(hint.text)
            except (KeyError, TypeError, IndexError):
                continue
        if len(hints) == 1:
            lines.append(f"Hint: {hints[0]}.")
        elif hints:
            lines.append("Hint: the failing configurations, and no passing one, share "
                         f"{len(hints)} features; any of them may be the cause:")
            lines += [f"  * {text}." for text in hints]
    return False, "\n".join(lines)


def judge_expected(spec, outcomes, expected, labels):
    """Compare outcomes with values written in a visible check (the worked examples)."""
    lines = []
    for outcome, want, label in zip(outcomes, expected, labels):
        if not (isinstance(want, (int, tuple)) or spec.returns == "float"):
            want = np.asarray(want)
        if outcome["kind"] != "ok":
            lines.append(f"- {label}: {outcome.get('detail', outcome['kind'])}")
            continue
        value, desc = outcome["value"], outcome["desc"]
        if spec.warning_message and outcome.get("warnings"):
            lines.append(f"- {label}: the call emitted {outcome['warnings'][0]}: "
                         f"{spec.warning_message}")
        if spec.is_tuple or spec.returns == "float":
            problem = _expected_problem(spec, value, desc, want)
            if problem:
                lines.append(f"- {label}: {problem}")
            continue
        if isinstance(want, int):
            if desc["kind"] != "int" or value != want:
                lines.append(f"- {label}: got {value!r}, expected {want}")
            continue
        if desc["kind"] != "array":
            lines.append(f"- {label}: returned {desc['kind']}, expected an array")
        elif value.shape != want.shape:
            lines.append(f"- {label}: output shape {value.shape}, expected {want.shape}")
        elif value.dtype.kind != "f" or not close(value, want.astype(np.float64)):
            lines.append(f"- {label}: values differ from the worked example (dtype {value.dtype})")
    if lines:
        return False, f"{spec.name} fails the visible checks:\n" + "\n".join(lines)
    return True, f"{spec.name}: visible checks pass"


def _expected_problem(spec, value, desc, want):
    """Why a float or tuple result differs from a worked example, or None."""
    if not spec.is_tuple:
        return _part_problem("float", "the result", value, desc, want)
    if desc["kind"] != "tuple" or len(value) != len(spec.returns):
        return f"returned {desc['kind']}, expected a tuple ({', '.join(spec.parts)})"
    problems = [p for p in (_part_problem(k, name, v, d, np.asarray(w) if k == "array" else w)
                            for k, name, v, d, w in zip(spec.returns, spec.parts, value,
                                                        desc["items"], want)) if p]
    return "; ".join(problems).replace("the reference", "the worked example") or None
