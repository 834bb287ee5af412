"""Assignment 1 (convolution and padding): its four graded functions, described once.

Machinery only: how to build inputs for a configuration a hidden cell names, the
reference call into ``cnnlib``, the known mistakes and their messages, the deny lists.
The seeds and configurations live in the hidden test cells of
``solutions/a1-convolution``.
"""

from __future__ import annotations

import re

import numpy as np

from .checks import close
from .sandbox import DenyList
from .specs import FunctionSpec, Hint, Mistake

ASSIGNMENT = "a1-convolution"

DEFAULT_STRIDE = 1
DEFAULT_PADDING = 0
DEFAULT_DTYPE = "float64"


def _stride(case):
    return case.get("stride", DEFAULT_STRIDE)


def _padding(case):
    return case.get("padding", DEFAULT_PADDING)


def _dtype(case):
    return case.get("dtype", DEFAULT_DTYPE)


def _draw(rng, shape, dtype):
    return rng.standard_normal(tuple(shape)).astype(dtype)


def _conv_funcs():
    try:
        from numpy._core import multiarray as _ma
        c_corr = [_ma.correlate, _ma.correlate2]
    except (ImportError, AttributeError):  # older NumPy
        c_corr = []
    return [np.convolve, np.correlate, *c_corr]


# --------------------------------------------------------------------------- conv_output_size

def _size_random(rng, n_cases):
    out = []
    while len(out) < n_cases:
        n = int(rng.integers(1, 41))
        p = int(rng.integers(0, 4))
        k = int(rng.integers(1, n + 2 * p + 1))
        s = int(rng.integers(1, 6))
        out.append({"n": n, "kernel_size": k, "stride": s, "padding": p})
    return out


def _size_reference(lib, args):
    n, k, s, p = args
    return int(lib.conv_output_size(n, k, stride=s, padding=p))


def _size(fn):
    """A size mistake as a variant: ``fn(n, k, s, p)``."""
    return lambda lib, args: fn(*args)


CONV_OUTPUT_SIZE = FunctionSpec(
    name="conv_output_size",
    signature="conv_output_size(n, kernel_size, stride=1, padding=0)",
    returns="int",
    inputs=lambda rng, c: (c["n"], c["kernel_size"], _stride(c), _padding(c)),
    reference=_size_reference,
    describe=lambda c: (f"n={c['n']}, kernel_size={c['kernel_size']}, stride={_stride(c)}, "
                        f"padding={_padding(c)}"),
    deny=lambda: DenyList(reason="compute the size with integer arithmetic"),
    random_cases=_size_random,
    mistakes=(
        Mistake("the output-size formula looks like (n + 2p - k + 1)/s + 1: the +1 counts the "
                "first window position and belongs outside the division only, "
                "floor((n + 2p - k)/s) + 1",
                _size(lambda n, k, s, p: (n + 2 * p - k + 1) // s + 1)),
        Mistake("the stride is ignored: with stride s the window jumps s pixels, so divide "
                "(n + 2p - k) by s before adding 1",
                _size(lambda n, k, s, p: n + 2 * p - k + 1)),
        Mistake("the padding is counted on one side only: p pixels are added on both sides, "
                "so 2p", _size(lambda n, k, s, p: (n + p - k) // s + 1)),
        Mistake("the padding is ignored", _size(lambda n, k, s, p: (n - k) // s + 1)),
        Mistake("the division rounds up: a window that would stick out past the padded input "
                "does not count, so round down (floor division)",
                _size(lambda n, k, s, p: -(-(n + 2 * p - k) // s) + 1)),
        Mistake("the +1 for the first window position is missing",
                _size(lambda n, k, s, p: (n + 2 * p - k) // s)),
    ),
    hints=(Hint("it fails only when stride > 1", lambda c: _stride(c) > 1),),
)


# --------------------------------------------------------------------------- pad2d

def _pad_diagnose(lib, args, out, ref):
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
    if p > 0 and close(out[..., p:-p, p:-p], x):
        return ("the input is in the right place but the border is not zero: start from "
                "an array of zeros, not np.empty")
    return None


PAD2D = FunctionSpec(
    name="pad2d",
    signature="pad2d(x, padding)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c["x"], _dtype(c)), c["padding"]),
    reference=lambda lib, args: lib.pad2d(args[0], args[1]),
    describe=lambda c: f"x of shape {tuple(c['x'])} ({_dtype(c)}), padding={c['padding']}",
    deny=lambda: DenyList(functions=[np.pad], reason="build the padded array yourself"),
    diagnose=_pad_diagnose,
    explain_error=lambda detail: _empty_slice_error(detail),
    hints=(
        Hint("it fails only with padding=0: a slice like p:-p is empty when p is 0 (because "
             "-0 is 0)", lambda c: c["padding"] == 0),
        Hint("it fails only for float32 inputs: keep the input's floating dtype, never an "
             "integer one", lambda c: _dtype(c) == "float32"),
        Hint("it fails only for 4-D (N, C, H, W) inputs", lambda c: len(c["x"]) == 4),
    ),
)


# --------------------------------------------------------------------------- correlate2d

def _correlate(lib, image, kernel):
    # (H, W) -> (1, 1, H, W): one image, one channel, one filter
    out, _ = lib.conv2d_forward(image[None, None].astype(np.float64),
                                kernel[None, None].astype(np.float64))
    return out[0, 0]


def _corr_diagnose(lib, args, out, ref):
    image, kernel = args
    (H, W), (KH, KW) = image.shape, kernel.shape
    if out.shape != ref.shape:
        return {
            (H, W): "the output has the input's size ('same'): a valid cross-correlation keeps "
                    "the kernel inside the image, so it has H - KH + 1 rows and W - KW + 1 "
                    "columns",
            (H + KH - 1, W + KW - 1): "the output is the 'full' size: a valid "
                                      "cross-correlation has H - KH + 1 rows",
            (H - KH, W - KW): "the output is one row and one column short: a range over "
                              "H - KH positions misses the last window; there are H - KH + 1",
            (W - KW + 1, H - KH + 1): "rows and columns are swapped in the output shape",
        }.get(out.shape) or _size_mixup(out.shape, H, W, KH, KW, lambda n, k: n - k + 1)
    if out.dtype.kind in "iub":
        return ("integer truncation: the output array has an integer dtype, so the sums lost "
                "their fractions; create it as a float array")
    return None


def _square_only(fn):
    def variant(lib, args):
        if args[1].shape[0] != args[1].shape[1]:
            raise ValueError("applies to square kernels only")
        return fn(lib, args)
    return variant


_WINDOW_PAST_EDGE = ("a window ran past the edge of the (padded) input: check the output "
                     "size, floor((n + 2p - k)/s) + 1, and where each window starts")


def _empty_slice_error(detail):
    if "broadcast" in detail and "into shape" in detail and (
            ",0)" in detail or ", 0)" in detail or "(0," in detail):
        return "the target slice is empty: a slice like p:-p selects nothing when p is 0"
    return None


_SQUARE_WINDOW = ("the window is {k} x {k} but the kernel is {KH} x {KW}: kernels need not be "
                  "square, so a window is KH rows high and KW columns wide")


def _window_error(detail, args=None):
    if _empty_slice_error(detail):
        return _empty_slice_error(detail)
    if "operands could not be broadcast" in detail:
        if args is not None:
            KH, KW = np.shape(args[1])[-2:]
            # a square window cut from a non-square kernel's height or width
            shapes = [tuple(int(d) for d in m.split(",") if d.strip())
                      for m in re.findall(r"\(([\d,\s]+)\)", detail)]
            squares = [t[-1] for t in shapes if len(t) >= 2 and t[-2] == t[-1] in (KH, KW)]
            if KH != KW and squares:
                words = _SQUARE_WINDOW.format(k=squares[0], KH=KH, KW=KW)
                # a window cut short by the edge is never larger than the kernel
                return words if squares[0] == max(KH, KW) else (
                    f"either {words}, or {_WINDOW_PAST_EDGE}")
        return _WINDOW_PAST_EDGE
    return None


def _size_mixup(got, H, W, KH, KW, size):
    """Words for an output shape computed with a height where a width belongs (or the
    other way round), or None. ``size(n, k)`` is the output size along one axis."""
    if got == (size(H, KH), size(W, KW)):
        return None
    causes = []
    if KH != KW and got in ((size(H, KH), size(W, KH)), (size(H, KW), size(W, KW))):
        causes.append("the kernel was taken to be square (the output's height comes from KH "
                      "and its width from KW, and a kernel may be KH x KW with KH != KW)")
    if H != W and got in ((size(H, KH), size(H, KW)), (size(W, KH), size(W, KW))):
        causes.append("the input was taken to be square (the output's height comes from H "
                      "and its width from W, and an input may be H x W with H != W)")
    if len(causes) == 2:
        return "either " + causes[0] + ", or " + causes[1] + ": both give this shape"
    return causes[0] if causes else None


def _nonsquare_kernel(c):
    return any(key in c and c[key][-1] != c[key][-2] for key in ("w", "kernel"))


def _nonsquare_input(c):
    return any(key in c and c[key][-1] != c[key][-2] for key in ("x", "image"))


_NONSQUARE_HINTS = (
    Hint("it fails only for non-square kernels (KH != KW): check that KH sets the window's "
         "height and the output's height, and KW its width", _nonsquare_kernel),
    Hint("it fails only for non-square inputs (H != W): check that H sets the output's "
         "height and W its width", _nonsquare_input),
)
_FLOAT32_HINT = Hint("it fails only for float32 inputs: keep the input's floating dtype (or "
                     "float64), never an integer one", lambda c: _dtype(c) == "float32")

CORRELATE2D = FunctionSpec(
    name="correlate2d",
    signature="correlate2d(image, kernel)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c["image"], _dtype(c)), _draw(rng, c["kernel"], _dtype(c))),
    reference=lambda lib, args: _correlate(lib, *args),
    describe=lambda c: f"image {tuple(c['image'])}, kernel {tuple(c['kernel'])} ({_dtype(c)})",
    deny=lambda: DenyList(functions=_conv_funcs(), reason="slide the kernel yourself"),
    diagnose=_corr_diagnose,
    mistakes=(
        Mistake("this is a true convolution (kernel flipped): deep-learning 'convolution' is "
                "cross-correlation, so use the kernel as it is, without flipping it",
                lambda lib, a: _correlate(lib, a[0], a[1][::-1, ::-1])),
        Mistake("the kernel's rows and columns are swapped (kernel[j, i] used for kernel[i, j])",
                _square_only(lambda lib, a: _correlate(lib, a[0], a[1].T))),
        Mistake("integer truncation: the values lost their fractions; keep the output in "
                "floating point", lambda lib, a: np.trunc(_correlate(lib, *a))),
    ),
    hints=(_FLOAT32_HINT, *_NONSQUARE_HINTS),
    explain_error=_window_error,
)


# --------------------------------------------------------------------------- conv2d

def _conv(lib, x, w, b, s, p):
    out, _ = lib.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                b.astype(np.float64), stride=s, padding=p)
    return out


def _conv_inputs(rng, c):
    dtype = _dtype(c)
    x, w = _draw(rng, c["x"], dtype), _draw(rng, c["w"], dtype)
    b = _draw(rng, (c["w"][0],), dtype)
    return (x, w, b, _stride(c), _padding(c))


def _conv_diagnose(lib, args, out, ref):
    x, w, b, s, p = args
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
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
        for fn, message in [
            (lambda n, k: n + 2 * p - k + 1,
             "the stride is ignored: the window must jump `stride` pixels between outputs"),
            (lambda n, k: (n + 2 * p - k + 1) // s + 1,
             "the output size looks like (n + 2p - k + 1)/s + 1; it is floor((n + 2p - k)/s) + 1"),
            (lambda n, k: -(-(n + 2 * p - k) // s) + 1,
             "the output size rounds up; it must round down: floor((n + 2p - k)/s) + 1"),
            (lambda n, k: (n - k) // s + 1,
             "the padding is ignored (or applied to the wrong axes): pad H and W by p on every "
             "side before sliding the window"),
            (lambda n, k: (n + p - k) // s + 1, "the padding is counted on one side only"),
        ]:
            if got == (fn(H, KH), fn(W, KW)) and got != (Ho, Wo):
                return message
        if p == 0 and 0 in got:
            return ("the output is empty at padding=0: a slice like p:-p selects nothing when "
                    "p is 0; slice with p:p + H instead")
        if got == (Wo, Ho):
            return "the output's height and width are swapped"
        return _size_mixup(got, H, W, KH, KW, lambda n, k: (n + 2 * p - k) // s + 1)
    if out.dtype.kind in "iub":
        return ("integer truncation: the output array has an integer dtype, so the sums lost "
                "their fractions; create it as a float array")
    if ref.shape[1] == ref.shape[2] == ref.shape[3] and close(out.transpose(0, 3, 1, 2), ref):
        return ("the output is laid out as (N, H_out, W_out, F); the course uses NCHW, "
                "so return (N, F, H_out, W_out)")
    return None


def _channels_averaged(lib, a):
    if a[0].shape[1] < 2:
        raise ValueError("applies to several channels only")
    return _conv(lib, *a) / a[0].shape[1]


CONV2D = FunctionSpec(
    name="conv2d",
    signature="conv2d(x, w, b, stride=1, padding=0)",
    returns="array",
    inputs=_conv_inputs,
    reference=lambda lib, args: _conv(lib, *args),
    describe=lambda c: (f"x {tuple(c['x'])}, w {tuple(c['w'])}, b ({c['w'][0]},), "
                        f"stride={_stride(c)}, padding={_padding(c)} ({_dtype(c)})"),
    deny=lambda: DenyList(functions=_conv_funcs(), reason="slide the filters yourself"),
    diagnose=_conv_diagnose,
    mistakes=(
        Mistake("this is a true convolution (kernel flipped): deep-learning 'convolution' is "
                "cross-correlation, so use the kernel as it is",
                lambda lib, a: _conv(lib, a[0], a[1][..., ::-1, ::-1], *a[2:])),
        Mistake("the bias is missing: add b[f] once to every output of filter f",
                lambda lib, a: _conv(lib, a[0], a[1], np.zeros_like(a[2]), *a[3:])),
        Mistake("the bias is added once per input channel (C times): add b[f] once, after "
                "summing over the channels",
                lambda lib, a: _conv(lib, a[0], a[1], a[0].shape[1] * a[2], *a[3:])),
        Mistake("the channels are not summed: only the last input channel counts (an = "
                "instead of +=?); each output sums over all C channels",
                lambda lib, a: _conv(lib, a[0][:, -1:], a[1][:, -1:], *a[2:])),
        Mistake("the channels are not summed: only the first input channel counts",
                lambda lib, a: _conv(lib, a[0][:, :1], a[1][:, :1], *a[2:])),
        Mistake("the output has the right size but the window moves one pixel at a time: the "
                "window for output (i, j) starts at (i*stride, j*stride)",
                lambda lib, a: _conv(lib, *a[:3], 1, a[4])[
                    :, :, :_conv_output(a, 2), :_conv_output(a, 3)]),
        Mistake("integer truncation: the values lost their fractions; keep the output in "
                "floating point", lambda lib, a: np.trunc(_conv(lib, *a))),
        Mistake("the channels are averaged instead of summed", _channels_averaged),
    ),
    hints=(
        Hint("it fails only with padding=0: a slice like p:-p is empty when p is 0 (because "
             "-0 is 0)", lambda c: _padding(c) == 0),
        Hint("it fails only when stride > 1", lambda c: _stride(c) > 1),
        _FLOAT32_HINT,
        *_NONSQUARE_HINTS,
        Hint("it fails only with more than one input channel", lambda c: c["x"][1] > 1),
    ),
    explain_error=_window_error,
)


def _conv_output(args, axis):
    x, w, _, s, p = args
    return (x.shape[axis] + 2 * p - w.shape[axis]) // s + 1


FUNCTIONS = {spec.name: spec for spec in (CONV_OUTPUT_SIZE, PAD2D, CORRELATE2D, CONV2D)}
REFERENCE_NEEDS = ("conv_output_size", "pad2d", "conv2d_forward")
