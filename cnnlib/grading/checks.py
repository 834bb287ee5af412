"""Inputs, comparison and diagnosis for the graded functions of Assignment 1.

Everything here runs inside the grader's reference process (see ``reference.py``), a
copy of the kernel made before any student cell ran, so nothing a student patches can
change a verdict. It holds machinery only: how to build inputs for a configuration the
hidden test names, how to compare with ``cnnlib``, and a library of *mistakes* (buggy
variants derived from the reference) used to tell a student which error their output
looks like. The configurations and seeds live in the hidden test cells.

Messages name the configuration, the shapes and the mistake; they never contain the
expected values.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["OPS", "make_inputs", "judge", "judge_expected", "describe_case", "RTOL", "ATOL"]

# float32 answers must pass (a sum of a few hundred float32 products is good to ~1e-6
# relative), while every mistake in the library below moves values by O(1).
RTOL = 1e-4
ATOL = 1e-4


def _close(student, ref):
    """True when ``student`` equals ``ref`` within the float32-friendly tolerance."""
    if student.shape != ref.shape:
        return False
    s = student.astype(np.float64)
    r = ref.astype(np.float64)
    if not np.isfinite(s).all():
        return False
    scale = max(1.0, float(np.abs(r).max(initial=0.0)))
    return bool((np.abs(s - r) <= ATOL * scale + RTOL * np.abs(r)).all())


# --------------------------------------------------------------------------- inputs

def _draw(rng, shape, dtype):
    return rng.standard_normal(tuple(shape)).astype(dtype)


def _size_cases(rng, random):
    out = []
    while len(out) < random:
        n = int(rng.integers(1, 41))
        p = int(rng.integers(0, 4))
        k = int(rng.integers(1, n + 2 * p + 1))
        s = int(rng.integers(1, 6))
        out.append({"n": n, "kernel_size": k, "stride": s, "padding": p})
    return out


def make_inputs(op, seed, cases, random=0):
    """Return ``(configs, calls)``: each call is ``(args, kwargs)`` for the student function.

    Parameters
    ----------
    op : str
        ``conv_output_size``, ``pad2d``, ``correlate2d`` or ``conv2d``.
    seed : int
        Seeds the generator; the hidden test cell chooses it.
    cases : list of dict
        Configurations from the hidden test cell (shapes, stride, padding, dtype).
    random : int
        For ``conv_output_size``: this many more configurations drawn from the seed.
    """
    rng = np.random.default_rng(seed)
    configs, calls = [], []
    if op == "conv_output_size":
        for c in list(cases) + _size_cases(rng, random):
            configs.append(dict(c))
            calls.append(((c["n"], c["kernel_size"], c.get("stride", 1), c.get("padding", 0)), {}))
    elif op == "pad2d":
        for c in cases:
            x = _draw(rng, c["x"], c.get("dtype", "float64"))
            configs.append(dict(c))
            calls.append(((x, c["padding"]), {}))
    elif op == "correlate2d":
        for c in cases:
            dtype = c.get("dtype", "float64")
            configs.append(dict(c))
            calls.append(((_draw(rng, c["image"], dtype), _draw(rng, c["kernel"], dtype)), {}))
    elif op == "conv2d":
        for c in cases:
            dtype = c.get("dtype", "float64")
            x, w = _draw(rng, c["x"], dtype), _draw(rng, c["w"], dtype)
            b = _draw(rng, (c["w"][0],), dtype)
            configs.append(dict(c))
            calls.append(((x, w, b, c.get("stride", 1), c.get("padding", 0)), {}))
    else:
        raise ValueError(f"unknown op {op!r}")
    return configs, calls


def describe_case(op, config):
    """One line naming a configuration, for messages (shapes and settings, no values)."""
    if op == "conv_output_size":
        return (f"n={config['n']}, kernel_size={config['kernel_size']}, "
                f"stride={config.get('stride', 1)}, padding={config.get('padding', 0)}")
    dtype = config.get("dtype", "float64")
    if op == "pad2d":
        return f"x of shape {tuple(config['x'])} ({dtype}), padding={config['padding']}"
    if op == "correlate2d":
        return (f"image {tuple(config['image'])}, kernel {tuple(config['kernel'])} ({dtype})")
    return (f"x {tuple(config['x'])}, w {tuple(config['w'])}, b ({config['w'][0]},), "
            f"stride={config.get('stride', 1)}, padding={config.get('padding', 0)} ({dtype})")


# --------------------------------------------------------------------------- references

def _reference(op, lib, args):
    if op == "conv_output_size":
        n, k, s, p = args
        return int(lib.conv_output_size(n, k, stride=s, padding=p))
    if op == "pad2d":
        x, p = args
        return lib.pad2d(x, p)
    if op == "correlate2d":
        image, kernel = args
        # (H, W) -> (1, 1, H, W): one image, one channel, one filter
        out, _ = lib.conv2d_forward(image[None, None].astype(np.float64),
                                    kernel[None, None].astype(np.float64))
        return out[0, 0]
    x, w, b, s, p = args
    out, _ = lib.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                b.astype(np.float64), stride=s, padding=p)
    return out


# --------------------------------------------------------------------------- mistakes
# Each diagnoser returns a message (the mistake, in words a student can act on) or None.

def _size_mistakes(n, k, s, p):
    return [
        ((n + 2 * p - k + 1) // s + 1,
         "the output-size formula looks like (n + 2p - k + 1)/s + 1: the +1 counts the first "
         "window position and belongs outside the division only, floor((n + 2p - k)/s) + 1"),
        (n + 2 * p - k + 1,
         "the stride is ignored: with stride s the window jumps s pixels, so divide "
         "(n + 2p - k) by s before adding 1"),
        ((n + p - k) // s + 1,
         "the padding is counted on one side only: p pixels are added on both sides, so 2p"),
        ((n - k) // s + 1, "the padding is ignored"),
        (-(-(n + 2 * p - k) // s) + 1,
         "the division rounds up: a window that would stick out past the padded input does "
         "not count, so round down (floor division)"),
        ((n + 2 * p - k) // s,
         "the +1 for the first window position is missing"),
        (round((n + 2 * p - k) / s) + 1,
         "the division is rounded to the nearest integer; it must round down"),
    ]


def _diagnose_size(args, value, ref):
    n, k, s, p = args
    for wrong, message in _size_mistakes(n, k, s, p):
        if wrong != ref and value == wrong:
            return message
    return None


def _diagnose_pad(args, out, ref):
    x, p = args
    if out.shape != ref.shape:
        if out.ndim != x.ndim:
            return (f"returned a {out.ndim}-D array for a {x.ndim}-D input: keep every axis "
                    "and pad only the last two")
        if p == 0 and 0 in out.shape[-2:]:
            return ("the result is empty at padding=0: a slice like p:-p selects nothing when "
                    "p is 0 (because -0 is 0); slice with p:p + H instead")
        if x.ndim == 4 and out.shape == tuple(d + 2 * p for d in x.shape):
            return "every axis was padded, including batch and channels: pad only H and W"
        if x.ndim == 4 and out.shape == (x.shape[0] + 2 * p, x.shape[1] + 2 * p) + x.shape[2:]:
            return "the first two axes (N, C) were padded instead of the last two (H, W)"
        if out.shape[:-2] == x.shape[:-2] and out.shape[-2:] == (x.shape[-2] + p,
                                                                 x.shape[-1] + p):
            return "only one side was padded: p rows/columns go on each of the four sides"
        return None
    if out.dtype.kind in "iub" and x.dtype.kind == "f":
        return ("integer truncation: the result has an integer dtype, so the values lost their "
                "fractions; create the padded array with the input's dtype")
    if p > 0:
        inner = out[..., p:-p, p:-p]
        if _close(inner, x):
            return ("the input is in the right place but the border is not zero: start from "
                    "an array of zeros, not np.empty")
    return None


def _diagnose_correlate(args, out, ref):
    image, kernel = args
    (H, W), (KH, KW) = image.shape, kernel.shape
    if out.shape != ref.shape:
        shapes = {
            (H, W): "the output has the input's size ('same'): a valid cross-correlation keeps "
                    "the kernel inside the image, so it has H - KH + 1 rows and W - KW + 1 "
                    "columns",
            (H + KH - 1, W + KW - 1): "the output is the 'full' size: a valid "
                                      "cross-correlation has H - KH + 1 rows",
            (H - KH, W - KW): "the output is one row and one column short: a range over "
                              "H - KH positions misses the last window; there are H - KH + 1",
            (W - KW + 1, H - KH + 1): "rows and columns are swapped in the output shape",
        }
        return shapes.get(out.shape)
    if out.dtype.kind in "iub":
        return ("integer truncation: the output array has an integer dtype, so the sums lost "
                "their fractions; create it as a float array")
    flipped = _reference("correlate2d", _Lib.current, (image, kernel[::-1, ::-1]))
    if _close(out, flipped):
        return ("this is a true convolution (kernel flipped): deep-learning 'convolution' is "
                "cross-correlation, so use the kernel as it is, without flipping it")
    if KH == KW:
        transposed = _reference("correlate2d", _Lib.current, (image, kernel.T))
        if _close(out, transposed):
            return "the kernel's rows and columns are swapped (kernel[j, i] used for kernel[i, j])"
    if _close(out, np.trunc(ref)):
        return ("integer truncation: the values lost their fractions; keep the output in "
                "floating point")
    return None


def _conv_variant(args, **change):
    x, w, b, s, p = args
    new = {"x": x, "w": w, "b": b, "s": s, "p": p}
    new.update(change)
    return _reference("conv2d", _Lib.current, (new["x"], new["w"], new["b"], new["s"], new["p"]))


def _diagnose_conv(args, out, ref):
    x, w, b, s, p = args
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape

    def size(n, k, fn):
        return fn(n, k)

    if out.shape != ref.shape:
        Ho, Wo = ref.shape[2:]
        if out.shape == (N, Ho, Wo, F):
            return ("the output is laid out as (N, H_out, W_out, F); the course uses NCHW, "
                    "so return (N, F, H_out, W_out)")
        if out.ndim != 4:
            return f"returned a {out.ndim}-D array; conv2d returns (N, F, H_out, W_out)"
        if out.shape[:2] != (N, F):
            if out.shape[0] == N + 2 * p or out.shape[1] == C + 2 * p:
                return "padding was applied to the batch or channel axis; pad only H and W"
            if out.shape[1] == C:
                return "the output has one map per input channel; it needs one per filter (F)"
            return f"the first two axes should be (N, F) = {(N, F)}"
        got = out.shape[2:]
        candidates = [
            (lambda n, k: n + 2 * p - k + 1,
             "the stride is ignored: the window must jump `stride` pixels between outputs"),
            (lambda n, k: (n + 2 * p - k + 1) // s + 1,
             "the output size looks like (n + 2p - k + 1)/s + 1; it is floor((n + 2p - k)/s) + 1"),
            (lambda n, k: -(-(n + 2 * p - k) // s) + 1,
             "the output size rounds up; it must round down: floor((n + 2p - k)/s) + 1"),
            (lambda n, k: (n - k) // s + 1,
             "the padding is ignored (or applied to the wrong axes): pad H and W by p on every "
             "side before sliding the window"),
            (lambda n, k: (n + p - k) // s + 1,
             "the padding is counted on one side only"),
        ]
        for fn, message in candidates:
            if got == (size(H, KH, fn), size(W, KW, fn)) and got != (Ho, Wo):
                return message
        if p == 0 and 0 in got:
            return ("the output is empty at padding=0: a slice like p:-p selects nothing when "
                    "p is 0; slice with p:p + H instead")
        if got == (Wo, Ho):
            return "the output's height and width are swapped"
        return None
    if out.dtype.kind in "iub":
        return ("integer truncation: the output array has an integer dtype, so the sums lost "
                "their fractions; create it as a float array")
    if ref.shape[1] == ref.shape[2] == ref.shape[3] and _close(out.transpose(0, 3, 1, 2), ref):
        return ("the output is laid out as (N, H_out, W_out, F); the course uses NCHW, "
                "so return (N, F, H_out, W_out)")
    mistakes = [
        (lambda: _conv_variant(args, w=w[..., ::-1, ::-1]),
         "this is a true convolution (kernel flipped): deep-learning 'convolution' is "
         "cross-correlation, so use the kernel as it is"),
        (lambda: _conv_variant(args, b=np.zeros_like(b)),
         "the bias is missing: add b[f] once to every output of filter f"),
        (lambda: _conv_variant(args, b=C * b),
         "the bias is added once per input channel (C times): add b[f] once, after summing "
         "over the channels"),
        (lambda: _conv_variant(args, x=x[:, -1:], w=w[:, -1:]),
         "the channels are not summed: only the last input channel counts (an = instead of "
         "+=?); each output sums over all C channels"),
        (lambda: _conv_variant(args, x=x[:, :1], w=w[:, :1]),
         "the channels are not summed: only the first input channel counts"),
        (lambda: _conv_variant(args, s=1)[:, :, :ref.shape[2], :ref.shape[3]],
         "the output has the right size but the window moves one pixel at a time: the window "
         "for output (i, j) starts at (i*stride, j*stride)"),
        (lambda: np.trunc(ref),
         "integer truncation: the values lost their fractions; keep the output in floating "
         "point"),
    ]
    for make, message in mistakes:
        try:
            wrong = make()
        except Exception:  # noqa: BLE001 - a variant that does not apply to this case
            continue
        if wrong.shape == ref.shape and not _close(wrong, ref) and _close(out, wrong):
            return message
    if C > 1 and _close(out, ref / C):
        return "the channels are averaged instead of summed"
    return None


class _Lib:
    """The reference library the running server uses (set once, in the server)."""

    current = None


OPS = {
    "conv_output_size": _diagnose_size,
    "pad2d": _diagnose_pad,
    "correlate2d": _diagnose_correlate,
    "conv2d": _diagnose_conv,
}

# Cross-case hints: when every failure shares a feature the passing cases lack.
_PATTERNS = [
    (lambda c: c.get("padding", 1) == 0,
     "it fails only with padding=0: a slice like p:-p is empty when p is 0 (because -0 is 0)"),
    (lambda c: c.get("stride", 1) > 1, "it fails only when stride > 1"),
    (lambda c: c.get("dtype", "float64") == "float32",
     "it fails only for float32 inputs: keep the input's floating dtype (or float64), "
     "never an integer one"),
    (lambda c: _nonsquare(c),
     "it fails only for non-square inputs or kernels: check that heights and widths (H and W, "
     "KH and KW) are each used in the right place"),
    (lambda c: "x" in c and len(c["x"]) == 4 and "w" in c and c["x"][1] > 1,
     "it fails only with more than one input channel"),
    (lambda c: "x" in c and "w" not in c and len(c["x"]) == 4,
     "it fails only for 4-D (N, C, H, W) inputs"),
]


def _nonsquare(c):
    for key in ("x", "image", "w", "kernel"):
        if key in c and c[key][-1] != c[key][-2]:
            return True
    return False


# --------------------------------------------------------------------------- verdicts

def _compare(op, args, outcome, ref):
    """(ok, message) for one call."""
    kind = outcome["kind"]
    if kind != "ok":
        if kind == "badtype" and outcome.get("type", "").startswith(("float", "numpy.float")):
            return False, "returned a float; the size is an int (use // for the division)"
        detail = outcome.get("detail", kind)
        if kind == "raised" and "broadcast" in detail:
            if "into shape" in detail and (",0)" in detail or ", 0)" in detail or "(0," in detail):
                detail += (" (the target slice is empty: a slice like p:-p selects nothing "
                           "when p is 0)")
            elif op in ("correlate2d", "conv2d") and "operands could not be broadcast" in detail:
                detail += (" (a window ran past the edge of the (padded) input: check the "
                           "output size, floor((n + 2p - k)/s) + 1, and where each window "
                           "starts)")
        return False, detail
    value, desc = outcome["value"], outcome["desc"]
    if op == "conv_output_size":
        if desc["kind"] == "float":
            if value == ref:
                return False, "returned a float; the size is an int (use // for the division)"
            return False, ("returned a float: use integer (floor) division //; "
                           + (_diagnose_size(args, math.floor(value), ref) or "the value differs"))
        if desc["kind"] != "int":
            return False, f"returned {desc['kind']}; conv_output_size returns an int"
        if value == ref:
            return True, ""
        return False, _diagnose_size(args, value, ref) or "the size differs from the reference"
    if desc["kind"] != "array":
        return False, f"returned {desc['kind']}; {op} returns a numpy.ndarray"
    if value.dtype.kind not in "f":
        mistake = OPS[op](args, value, ref)
        return False, mistake or (f"the result has dtype {value.dtype}; it must be a floating "
                                  "array")
    if _close(value, ref):
        return True, ""
    if value.shape != ref.shape:
        mistake = OPS[op](args, value, ref)
        what = f"output shape {value.shape}, expected {ref.shape}"
        return False, what + (f": {mistake}" if mistake else "")
    if not np.isfinite(value.astype(np.float64)).all():
        return False, "the output contains NaN or infinity (uninitialised memory from np.empty?)"
    mistake = OPS[op](args, value, ref)
    return False, "the shape is right but the values differ" + (f": {mistake}" if mistake
                                                                else "")


def judge(op, lib, configs, calls, outcomes, *, show=3):
    """Compare every outcome with the reference; return ``(passed, report)``.

    The report lists the first ``show`` failing configurations with the mistake each looks
    like, plus a hint when all the failures share a feature.
    """
    _Lib.current = lib
    results = []
    for config, (args, _), outcome in zip(configs, calls, outcomes):
        if outcome["kind"] in ("denied",):
            return False, (f"{op} earns no points here: while it ran it called "
                           f"{outcome['detail']}, which does the work {op} must do itself. "
                           "Write it with plain NumPy array operations.")
        ref = _reference(op, lib, args)
        ok, message = _compare(op, args, outcome, ref)
        results.append((config, ok, message))
    failed = [r for r in results if not r[1]]
    if not failed:
        return True, f"{op}: all {len(results)} configurations match the reference"
    lines = [f"{op}: {len(failed)} of {len(results)} configurations differ from the reference."]
    groups = {}  # the same mistake in several configurations is reported once
    for config, _, message in failed:
        groups.setdefault(message, []).append(config)
    for message, configs in list(groups.items())[:show]:
        more = f" (and {len(configs) - 1} more like it)" if len(configs) > 1 else ""
        lines.append(f"- {describe_case(op, configs[0])}{more}: {message}")
    if len(groups) > show:
        lines.append(f"- ... and {len(groups) - show} other kinds of difference")
    passed_configs = [r[0] for r in results if r[1]]
    if passed_configs:
        for pattern, hint in _PATTERNS:
            try:
                if all(pattern(c) for c, _, _ in failed) and not any(pattern(c)
                                                                      for c in passed_configs):
                    lines.append(f"Hint: {hint}.")
                    break
            except (KeyError, TypeError, IndexError):
                continue
    return False, "\n".join(lines)


def judge_expected(op, outcomes, expected, labels):
    """Compare outcomes with values written in a visible check (the worked examples)."""
    lines = []
    for outcome, want, label in zip(outcomes, expected, labels):
        want = np.asarray(want) if not isinstance(want, int) else want
        if outcome["kind"] != "ok":
            lines.append(f"- {label}: {outcome.get('detail', outcome['kind'])}")
            continue
        value, desc = outcome["value"], outcome["desc"]
        if isinstance(want, int):
            if desc["kind"] != "int" or value != want:
                lines.append(f"- {label}: got {value!r}, expected {want}")
            continue
        if desc["kind"] != "array":
            lines.append(f"- {label}: returned {desc['kind']}, expected an array")
        elif value.shape != want.shape:
            lines.append(f"- {label}: output shape {value.shape}, expected {want.shape}")
        elif value.dtype.kind != "f" or not _close(value, want.astype(np.float64)):
            lines.append(f"- {label}: values differ from the worked example (dtype {value.dtype})")
    if lines:
        return False, f"{op} fails the visible checks:\n" + "\n".join(lines)
    return True, f"{op}: visible checks pass"
