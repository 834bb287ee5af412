"""Assignment 3 (backpropagation through a CNN): its graded functions, described once.

Machinery only: how to build inputs for a configuration a hidden cell names, the
reference call into ``cnnlib``, the known mistakes and their messages, the deny lists.
The seeds and configurations live in the hidden test cells of ``solutions/a3-backprop``.

The students' backward functions take the forward's inputs, not a cache
(``conv2d_backward(dout, x, w, stride, padding)``); the references run the library's
forward pass to get its cache and call the library's backward pass with it.
"""

from __future__ import annotations

import builtins
import functools

import numpy as np

from .sandbox import DenyList
from .specs import FunctionSpec, Hint, Mistake

ASSIGNMENT = "a3-backprop"

# The training cell runs the student's own (possibly loop) backward passes over 800 digits
# for 12 epochs: about 31 s with loops over images, filters and positions on one busy core
# (tests/grading/a3_students.py, ``loops``), under a second vectorized. The kernel's guard
# stops a cell at 3/4 of this (``harness._guard_kernel``: 180 s, the limit the notebook
# states), which leaves room for slower loops; the sandbox's own interrupt comes at 240 s.
CELL_TIMEOUT = 240

DEFAULT_STRIDE = 1
DEFAULT_PADDING = 0


def _draw(rng, shape):
    return rng.standard_normal(tuple(shape))


def _deny(reason):
    return lambda: DenyList(reason=reason)


def _explain_numpy2(detail):
    """Extra words for what the NumPy that grades the notebook (2.x) raises and older code
    or tutorials still write."""
    if "has no attribute 'int'" in detail or "has no attribute 'float'" in detail:
        return ("np.int and np.float no longer exist in the NumPy 2 that grades this "
                "notebook: write int or float, or np.int64 or np.float64")
    if "only 0-dimensional arrays can be converted" in detail or (
            "only length-1 arrays can be converted" in detail):
        return ("in the NumPy 2 that grades this notebook, float() and int() take one number "
                "or a 0-d array only, and even an array of shape (1,) raises: reduce the "
                "array to one number (.sum(), .mean(), indexing) or use .item()")
    return None


def _warm_library():
    """Build what the library's convolution builds on its first call (threadpoolctl's
    controller, which loads the BLAS libraries with ctypes) before the student's code is
    watched: the sandbox counts a library loaded while it watches as the student's. The
    spec's adapters call it, unwatched, in the forked child that runs the student's code."""
    from cnnlib.numpy import _conv_engine

    _conv_engine.blas_threads()


def _out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def _same_shapes(value, ref):
    return (isinstance(value, tuple) and len(value) == len(ref)
            and all(np.shape(v) == np.shape(r) for v, r in zip(value, ref)))


# --------------------------------------------------------------------------- relu_backward

def _relu_ref(lib, args):
    dout, x = args
    return lib.relu_backward(dout, lib.relu_forward(x)[1])


RELU_BACKWARD = FunctionSpec(
    name="relu_backward",
    signature="relu_backward(dout, x)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c["x"]), _draw(rng, c["x"])),
    reference=_relu_ref,
    describe=lambda c: f"x and dout of shape {tuple(c['x'])}",
    deny=_deny("mask the upstream gradient yourself"),
    explain_error=_explain_numpy2,
    mistakes=(
        Mistake("the mask looks at dout instead of x: the gradient passes where the forward "
                "pass's input was positive, whatever the sign of dout",
                lambda lib, a: np.where(a[0] > 0, a[0], 0.0)),
        Mistake("the result is the mask alone (1 where x > 0): multiply it by the upstream "
                "gradient dout", lambda lib, a: (a[1] > 0).astype(np.float64)),
        Mistake("the result is relu(x) (the forward pass), not the gradient: pass dout where "
                "x > 0", lambda lib, a: np.maximum(a[1], 0.0)),
    ),
)


# --------------------------------------------------------------------------- linear_backward

def _linear_inputs(rng, c):
    n, d_in, d_out = c["n"], c["d_in"], c["d_out"]
    return (_draw(rng, (n, d_out)), _draw(rng, (n, d_in)), _draw(rng, (d_out, d_in)))


def _linear_ref(lib, args):
    dout, x, w = args
    b = np.zeros(w.shape[0])
    return tuple(lib.linear_backward(dout, lib.linear_forward(x, w, b)[1]))


def _with_part(ref_fn, index, make):
    """A variant equal to the reference except part ``index``, which ``make`` computes."""
    def variant(lib, args):
        ref = list(ref_fn(lib, args))
        ref[index] = make(lib, args, ref)
        return tuple(ref)
    return variant


def _linear_diagnose(lib, args, value, ref):
    if not isinstance(value, tuple) or len(value) != 3:
        return None
    dout, x, w = args
    dx, dw, db = (np.asarray(v) for v in value)
    n, d_in, d_out = x.shape[0], x.shape[1], w.shape[0]
    if db.shape == (n, d_out) and n != d_out:
        return ("db has one row per sample: the bias is added to every row of the batch, so "
                "its gradient sums dout over the batch (axis 0)")
    if dw.shape == (d_in, d_out) and d_in != d_out:
        return ("dw is transposed: w has shape (out_features, in_features), and so must dw "
                "(dout.T @ x)")
    if dx.shape == (n, d_out) and d_in != d_out:
        return "dx has dout's shape: the input gradient multiplies dout by w, (N, in_features)"
    return None


def _linear_dx_transposed(lib, args, ref):
    dout, x, w = args
    if w.shape[0] != w.shape[1]:
        raise ValueError("a transposed w of another shape is a shape error, diagnosed apart")
    return dout @ w.T


LINEAR_BACKWARD = FunctionSpec(
    name="linear_backward",
    signature="linear_backward(dout, x, w)",
    returns=("array", "array", "array"),
    parts=("dx", "dw", "db"),
    inputs=_linear_inputs,
    reference=_linear_ref,
    describe=lambda c: (f"x ({c['n']}, {c['d_in']}), w ({c['d_out']}, {c['d_in']}), "
                        f"dout ({c['n']}, {c['d_out']})"),
    deny=_deny("write the matrix products yourself"),
    diagnose=_linear_diagnose,
    explain_error=_explain_numpy2,
    mistakes=(
        Mistake("db is averaged over the batch instead of summed: the bias is added to every "
                "row, so each row's gradient adds up (any 1/N belongs to the loss)",
                _with_part(_linear_ref, 2, lambda lib, a, r: r[2] / a[0].shape[0])),
        Mistake("dw is divided by the batch size: dout already carries the loss's 1/N, so "
                "dw = dout.T @ x without another division",
                _with_part(_linear_ref, 1, lambda lib, a, r: r[1] / a[0].shape[0])),
        Mistake("dx multiplies dout by a transposed weight: with w of shape (out, in), "
                "dx = dout @ w",
                _with_part(_linear_ref, 0, _linear_dx_transposed)),
    ),
)


# --------------------------------------------------------------------------- conv2d_backward

def _stride(c):
    return c.get("stride", DEFAULT_STRIDE)


def _padding(c):
    return c.get("padding", DEFAULT_PADDING)


def _conv_inputs(rng, c):
    x = _draw(rng, c["x"])
    w = _draw(rng, c["w"])
    s, p = _stride(c), _padding(c)
    ho = _out_size(c["x"][2], c["w"][2], s, p)
    wo = _out_size(c["x"][3], c["w"][3], s, p)
    dout = _draw(rng, (c["x"][0], c["w"][0], ho, wo))
    return (dout, x, w, s, p)


def _conv_grads(lib, dout, x, w, s, p):
    b = np.zeros(w.shape[0])
    _, cache = lib.conv2d_forward(x, w, b, stride=s, padding=p)
    return tuple(lib.conv2d_backward(dout, cache))


def _conv_ref(lib, args):
    return _conv_grads(lib, *args)


def _conv_not_rotated(lib, args, ref):
    dout, x, w, s, p = args
    if w.shape[2] == 1 and w.shape[3] == 1:
        raise ValueError("a 1x1 kernel looks the same rotated")
    # Stamping the flipped kernel is the "full" correlation with the kernel as it is.
    return _conv_grads(lib, dout, x, w[:, :, ::-1, ::-1].copy(), s, p)[0]


def _conv_diagnose(lib, args, value, ref):
    if not isinstance(value, tuple) or len(value) != 3:
        return None
    dout, x, w, s, p = args
    dx, dw, db = (np.asarray(v) for v in value)
    n, f = dout.shape[:2]
    if db.shape == (n, f) and n != f:
        return ("db is summed over space but not over the batch: one bias per filter is added "
                "at every position of every image, so sum dout over axes (0, 2, 3)")
    if db.shape == dout.shape[1:]:
        return ("db is summed over the batch but not over space: the bias of filter f is "
                "added at every output position, so sum dout over axes (0, 2, 3)")
    if db.shape == dout.shape:
        return ("db has dout's shape: the bias is shared by every position and image, so its "
                "gradient is dout summed over axes (0, 2, 3), one number per filter")
    if dx.shape != x.shape and dx.ndim == 4 and dx.shape[:2] == x.shape[:2]:
        hp, wp = x.shape[2] + 2 * p, x.shape[3] + 2 * p
        if dx.shape[2:] == (hp, wp):
            return ("dx has the padded input's shape: crop the padding off "
                    "(dx_padded[:, :, p:p + H, p:p + W])")
        if p == 0 and 0 in dx.shape[2:]:
            return ("dx is empty at padding=0: a slice like p:-p selects nothing when p is 0; "
                    "crop with p:p + H instead")
    return None


def _conv_db_averaged(lib, args, ref):
    return ref[2] / args[0].shape[0]


def _conv_stride_ignored(lib, args, ref):
    dout, x, w, s, p = args
    if s == 1:
        raise ValueError("applies to strides above 1")
    # Windows placed one pixel apart: the output of stride 1 with dout in its first cells.
    ho1 = _out_size(x.shape[2], w.shape[2], 1, p)
    wo1 = _out_size(x.shape[3], w.shape[3], 1, p)
    d1 = np.zeros(dout.shape[:2] + (ho1, wo1))
    d1[:, :, :dout.shape[2], :dout.shape[3]] = dout
    return _conv_grads(lib, d1, x, w, 1, p)


CONV2D_BACKWARD = FunctionSpec(
    name="conv2d_backward",
    signature="conv2d_backward(dout, x, w, stride=1, padding=0)",
    returns=("array", "array", "array"),
    parts=("dx", "dw", "db"),
    inputs=_conv_inputs,
    reference=_conv_ref,
    describe=lambda c: (f"x {tuple(c['x'])}, w {tuple(c['w'])}, stride={_stride(c)}, "
                        f"padding={_padding(c)}"),
    deny=_deny("compute the gradients of the convolution yourself"),
    diagnose=_conv_diagnose,
    explain_error=_explain_numpy2,
    mistakes=(
        Mistake("dx uses the kernel as it is: the input gradient is the 'full' convolution of "
                "dout with the kernel rotated by 180 degrees (or, stamping, each dout value "
                "adds w itself, unflipped, onto its window)",
                _with_part(_conv_ref, 0, _conv_not_rotated)),
        Mistake("db is averaged over the batch instead of summed: the bias is added at every "
                "position of every image, so its gradient is the plain sum of dout over axes "
                "(0, 2, 3)", _with_part(_conv_ref, 2, _conv_db_averaged)),
        Mistake("the windows are placed one pixel apart: with stride s the window of output "
                "(i, j) starts at (i*s, j*s), so its gradient goes back there",
                lambda lib, a: _conv_stride_ignored(lib, a, None)),
        Mistake("dw is divided by the batch size: dout already carries the loss's 1/N",
                _with_part(_conv_ref, 1, lambda lib, a, r: r[1] / a[0].shape[0])),
    ),
    hints=(
        Hint("it fails only when stride > 1", lambda c: _stride(c) > 1),
        Hint("it fails only with padding > 0: compute the gradient of the padded input, then "
             "crop the border off", lambda c: _padding(c) > 0),
        Hint("it fails only with padding=0: a slice like p:-p is empty when p is 0",
             lambda c: _padding(c) == 0),
        Hint("it fails only with more than one image in the batch", lambda c: c["x"][0] > 1),
        Hint("it fails only with several input channels or filters",
             lambda c: c["x"][1] > 1 or c["w"][0] > 1),
    ),
)


# --------------------------------------------------------------------------- pooling

def _pool_stride(c):
    return c.get("stride")  # None: the stride is the kernel size


def _pool_inputs(rng, c):
    """``ties=True`` draws x from the small integers -2 .. 2, so most windows hold a tied
    maximum (standard normal inputs never tie)."""
    if c.get("ties"):
        x = rng.integers(-2, 3, size=tuple(c["x"])).astype(np.float64)
    else:
        x = _draw(rng, c["x"])
    k, s, p = c["kernel_size"], _pool_stride(c), c.get("padding", 0)
    st = k if s is None else s
    dout = _draw(rng, (c["x"][0], c["x"][1], _out_size(c["x"][2], k, st, p),
                       _out_size(c["x"][3], k, st, p)))
    return (dout, x, k, s, p)


def _pool_ref(kind):
    def reference(lib, args):
        dout, x, k, s, p = args
        forward = getattr(lib, f"{kind}pool2d_forward")
        backward = getattr(lib, f"{kind}pool2d_backward")
        _, cache = forward(x, kernel_size=k, stride=s, padding=p)
        return backward(dout, cache)
    return reference


def _windows(args):
    """(n, c, i, j, rows, cols) for every window of the padded input, in row-major order."""
    dout, x, k, s, p = args
    s = k if s is None else s
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            yield i, j, slice(i * s, i * s + k), slice(j * s, j * s + k)


def _padded(x, p, value):
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * p, w + 2 * p), value)
    xp[:, :, p:p + h, p:p + w] = x
    return xp


def _crop(dxp, x, p):
    return dxp[:, :, p:p + x.shape[2], p:p + x.shape[3]]


def _max_overwritten(lib, args):
    dout, x, k, s, p = args
    if (k if s is None else s) >= k:
        raise ValueError("applies to overlapping windows only")
    xp = _padded(x, p, -np.inf)
    dxp = np.zeros_like(xp)
    for i, j, rows, cols in _windows(args):
        win = xp[:, :, rows, cols].reshape(x.shape[0], x.shape[1], -1)
        arg = win.argmax(axis=2)
        for n in range(x.shape[0]):
            for ch in range(x.shape[1]):
                a, b = divmod(int(arg[n, ch]), k)
                dxp[n, ch, rows.start + a, cols.start + b] = dout[n, ch, i, j]
    return _crop(dxp, x, p)


def _max_everywhere(lib, args):
    dout, x, k, s, p = args
    xp = _padded(x, p, -np.inf)
    dxp = np.zeros_like(xp)
    for i, j, rows, cols in _windows(args):
        dxp[:, :, rows, cols] += dout[:, :, i, j][:, :, None, None]
    return _crop(dxp, x, p)


def _max_tie_variant(pick):
    """Max pooling's gradient with a tie rule of its own: ``pick(mask)`` chooses, from the
    mask of a window's maxima (flattened, row-major), the entries that get the gradient."""
    def variant(lib, args):
        dout, x, k, s, p = args
        xp = _padded(x, p, -np.inf)
        dxp = np.zeros_like(xp)
        for i, j, rows, cols in _windows(args):
            win = xp[:, :, rows, cols].reshape(x.shape[0], x.shape[1], -1)
            mask = pick(win == win.max(axis=2, keepdims=True))
            dxp[:, :, rows, cols] += (mask * dout[:, :, i, j][:, :, None]).reshape(
                x.shape[0], x.shape[1], k, k)
        return _crop(dxp, x, p)
    return variant


def _last_only(mask):
    """Keep the last True of each row of ``mask`` (N, C, k*k)."""
    last = mask.shape[2] - 1 - np.argmax(mask[:, :, ::-1], axis=2)
    return np.arange(mask.shape[2]) == last[:, :, None]


_TIE_RULE = ("the notebook's rule is 'If two inputs of a window tie, the first in row-major "
             "order wins, as in PyTorch'")


def _avg_overwritten(lib, args):
    dout, x, k, s, p = args
    if (k if s is None else s) >= k:
        raise ValueError("applies to overlapping windows only")
    dxp = np.zeros(_padded(x, p, 0.0).shape)
    for i, j, rows, cols in _windows(args):
        dxp[:, :, rows, cols] = dout[:, :, i, j][:, :, None, None] / (k * k)
    return _crop(dxp, x, p)


def _pool_stride_is_kernel(kind):
    def variant(lib, args):
        dout, x, k, s, p = args
        if s is None or s == k:
            raise ValueError("applies when the stride differs from the kernel size")
        dxp = np.zeros(_padded(x, p, 0.0).shape)
        for i in range(min(dout.shape[2], (x.shape[2] + 2 * p) // k)):
            for j in range(min(dout.shape[3], (x.shape[3] + 2 * p) // k)):
                rows, cols = slice(i * k, i * k + k), slice(j * k, j * k + k)
                if kind == "avg":
                    dxp[:, :, rows, cols] += dout[:, :, i, j][:, :, None, None] / (k * k)
                else:
                    xp = _padded(x, p, -np.inf)
                    win = xp[:, :, rows, cols].reshape(x.shape[0], x.shape[1], -1)
                    arg = win.argmax(axis=2)
                    for n in range(x.shape[0]):
                        for ch in range(x.shape[1]):
                            a, b = divmod(int(arg[n, ch]), k)
                            dxp[n, ch, rows.start + a, cols.start + b] += dout[n, ch, i, j]
        return _crop(dxp, x, p)
    return variant


def _pool_describe(c):
    s = _pool_stride(c)
    return (f"x {tuple(c['x'])}, kernel_size={c['kernel_size']}, "
            f"stride={'None' if s is None else s}, padding={c.get('padding', 0)}"
            + (", small integers with tied maxima" if c.get("ties") else ""))


def _pool_diagnose(lib, args, value, ref):
    dout, x, k, s, p = args
    value = np.asarray(value)
    if value.shape == dout.shape and dout.shape != x.shape:
        return "dx has dout's shape: the gradient flows back to the input, of x's shape"
    if value.shape[:2] == x.shape[:2] and value.shape[2:] == (x.shape[2] + 2 * p,
                                                               x.shape[3] + 2 * p) and p > 0:
        return "dx has the padded input's shape: crop the padding off"
    return None


_POOL_HINTS = (
    Hint("it fails only for overlapping windows (stride < kernel_size)",
         lambda c: _pool_stride(c) is not None and _pool_stride(c) < c["kernel_size"]),
    Hint("it fails only with padding > 0", lambda c: c.get("padding", 0) > 0),
    Hint("it fails only when the stride differs from the kernel size",
         lambda c: _pool_stride(c) not in (None, c["kernel_size"])),
    Hint("it fails only when stride is None: then the stride is the kernel size",
         lambda c: _pool_stride(c) is None),
)

MAXPOOL2D_BACKWARD = FunctionSpec(
    name="maxpool2d_backward",
    signature="maxpool2d_backward(dout, x, kernel_size, stride=None, padding=0)",
    returns="array",
    inputs=_pool_inputs,
    reference=_pool_ref("max"),
    describe=_pool_describe,
    deny=_deny("route the gradients yourself"),
    diagnose=_pool_diagnose,
    explain_error=_explain_numpy2,
    mistakes=(
        Mistake("every element of a window gets the window's gradient: only the element that "
                "won the max (the first largest, in row-major order) gets it, the others 0",
                _max_everywhere),
        Mistake("overlapping windows overwrite each other's gradient: an input that wins "
                "several windows collects the sum of their gradients (+=, not =)",
                _max_overwritten),
        Mistake("the windows are placed kernel_size apart whatever the stride: window (i, j) "
                "starts at (i*stride, j*stride)", _pool_stride_is_kernel("max")),
        Mistake("when a window's maximum is tied, every tied entry gets the window's gradient "
                f"(a mask x == max): {_TIE_RULE}, so only that one entry gets it",
                _max_tie_variant(lambda mask: mask)),
        Mistake("when a window's maximum is tied, the last tied entry gets the gradient (a "
                f"comparison >= instead of >): {_TIE_RULE}",
                _max_tie_variant(_last_only)),
    ),
    hints=_POOL_HINTS + (
        Hint("it fails only when a window's maximum is tied: the first maximum in row-major "
             "order takes the whole gradient", lambda c: bool(c.get("ties"))),),
)

AVGPOOL2D_BACKWARD = FunctionSpec(
    name="avgpool2d_backward",
    signature="avgpool2d_backward(dout, x, kernel_size, stride=None, padding=0)",
    returns="array",
    inputs=_pool_inputs,
    reference=_pool_ref("avg"),
    describe=_pool_describe,
    deny=_deny("spread the gradients yourself"),
    diagnose=_pool_diagnose,
    explain_error=_explain_numpy2,
    mistakes=(
        Mistake("the gradient is not divided by the window size: each of the k*k inputs of a "
                "window gets dout / (k*k), the padded zeros included in the count",
                lambda lib, a: _pool_ref("avg")(lib, a) * a[2] * a[2]),
        Mistake("overlapping windows overwrite each other's gradient: an input in several "
                "windows collects the sum of their shares (+=, not =)", _avg_overwritten),
        Mistake("the windows are placed kernel_size apart whatever the stride: window (i, j) "
                "starts at (i*stride, j*stride)", _pool_stride_is_kernel("avg")),
    ),
    hints=_POOL_HINTS,
)


# --------------------------------------------------------------------------- softmax_cross_entropy

def _sce_inputs(rng, c):
    n, k = c["n"], c["classes"]
    scores = _draw(rng, (n, k)) * c.get("scale", 1.0)
    y = rng.integers(0, k, size=n).astype(np.int64)
    return (scores, y)


def _sce_ref(lib, args):
    loss, dscores = lib.softmax_cross_entropy(*args)
    return float(loss), dscores


def _sce_unstable(lib, args):
    scores, y = args
    if np.abs(scores).max() < 700:
        raise ValueError("applies where exp overflows")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(scores)
        prob = e / e.sum(axis=1, keepdims=True)
        loss = float(-np.log(prob[np.arange(len(y)), y]).mean())
    d = prob.copy()
    d[np.arange(len(y)), y] -= 1
    return loss, d / len(y)


_SCE_OVERFLOW = ("the result holds NaN or infinity: exp overflows for large scores; subtract "
                 "each row's maximum before exp (softmax does not change)")
_SCE_GLOBAL_MAX = ("the result holds NaN or infinity in the rows whose scores lie far below "
                   "the largest score of the whole batch: subtracting that one global maximum "
                   "makes exp underflow to 0 for a whole row (0 / 0, log 0); subtract each "
                   "row's own maximum (scores.max(axis=1, keepdims=True))")


def _sce_bad_rows(scores, shift):
    """Rows whose exp(scores - shift) overflows or sums to 0: where a softmax computed
    that way holds NaN or infinity."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        e = np.exp(scores - shift)
    return ~np.isfinite(e).all(axis=1) | (e.sum(axis=1) == 0)


def _sce_diagnose(lib, args, value, ref):
    if not isinstance(value, tuple) or len(value) != 2:
        return None
    loss, dscores = value
    if not (isinstance(loss, float) and not np.isfinite(loss) or (
            isinstance(dscores, np.ndarray) and not np.isfinite(dscores).all())):
        return None
    scores = args[0]
    if isinstance(dscores, np.ndarray) and dscores.shape == scores.shape:
        bad = ~np.isfinite(dscores.astype(np.float64)).all(axis=1)
        unshifted = _sce_bad_rows(scores, 0.0)
        global_max = _sce_bad_rows(scores, scores.max())
        if bad.any() and (bad == global_max).all() and not (bad == unshifted).all():
            return _SCE_GLOBAL_MAX
        if bad.any() and (bad == unshifted).all():
            return _SCE_OVERFLOW
    return ("the result holds NaN or infinity: for large scores exp overflows, or underflows "
            "to 0 for a whole row; subtract each row's own maximum before exp (softmax does "
            "not change)")


SOFTMAX_CROSS_ENTROPY = FunctionSpec(
    name="softmax_cross_entropy",
    signature="softmax_cross_entropy(scores, y)",
    returns=("float", "array"),
    parts=("loss", "dscores"),
    inputs=_sce_inputs,
    reference=_sce_ref,
    describe=lambda c: (f"scores ({c['n']}, {c['classes']})"
                        + (f" of magnitude about {c['scale']:g}" if "scale" in c else "")),
    deny=_deny("compute the softmax and the loss yourself"),
    diagnose=_sce_diagnose,
    explain_error=_explain_numpy2,
    mistakes=(
        Mistake("dscores is missing the 1/N: the loss is the mean over the batch, so its "
                "gradient divides by N too",
                lambda lib, a: (_sce_ref(lib, a)[0], _sce_ref(lib, a)[1] * len(a[1]))),
        Mistake("the loss is summed over the batch, not averaged: divide by N",
                lambda lib, a: (_sce_ref(lib, a)[0] * len(a[1]), _sce_ref(lib, a)[1])),
        Mistake("dscores is the softmax alone: subtract 1 at each row's correct class, "
                "softmax - onehot(y), then divide by N",
                lambda lib, a: (_sce_ref(lib, a)[0], lib.softmax(a[0], axis=1) / len(a[1]))),
        Mistake(_SCE_OVERFLOW, _sce_unstable),
    ),
    hints=(Hint("it fails only for large scores: exp overflows beyond about 709 and "
                "underflows to 0 below about -745", lambda c: c.get("scale", 1.0) > 100),
           Hint("it fails only with more than one sample", lambda c: c["n"] > 1)),
)


# --------------------------------------------------------------------------- numerical_gradient

# The functions a hidden check differentiates, by name: NumPy only, compiled from source
# with globals and a file name of their own, so that when the student's numerical_gradient
# calls them under the grader's watch, their code belongs to no denied package (cnnlib
# itself is denied while graded code runs).
F_SOURCES = {
    "tanh": "def f(x):\n    return np.tanh(x * p)\n",
    "affine": "def f(x):\n    return np.sin(x @ p)\n",
    "softplus_rows": "def f(x):\n    return np.log1p(np.exp(x * p)).sum(axis=-1)\n",
}
F_FILENAME = "<a3-backprop: the function f>"


def make_f(name, p):
    """The function ``f(x)`` called ``name`` with parameter array ``p`` (see F_SOURCES)."""
    if name not in F_SOURCES:
        raise ValueError(f"unknown function {name!r}; expected one of {sorted(F_SOURCES)}")
    namespace = {"__name__": "a3_function_f", "__builtins__": builtins, "np": np, "p": p}
    exec(compile(F_SOURCES[name], F_FILENAME, "exec"), namespace)  # noqa: S102 - fixed source
    return namespace["f"]


def _f_shapes(c):
    """(x shape, p shape, output shape) of a configuration."""
    x = tuple(c["x"])
    if c["f"] == "affine":
        return x, (x[-1], c.get("out", 3)), x[:-1] + (c.get("out", 3),)
    if c["f"] == "softplus_rows":
        return x, x, x[:-1]
    return x, x, x


def _ng_inputs(rng, c):
    xs, ps, outs = _f_shapes(c)
    x = _draw(rng, xs)
    p = _draw(rng, ps) * 0.5
    dout = _draw(rng, outs)
    return (c["f"], p, x, dout, float(c.get("h", 1e-5)))


def numerical_gradient_adapter(student, watch, fname, p, x, dout, h):
    """Run in the student's kernel: build ``f`` from its name, call the student's
    ``numerical_gradient(f, x, dout, h)`` under the watch, return the gradient."""
    f = make_f(fname, p)
    return watch(student, f, x, dout, h)


def _ng_ref(lib, args):
    fname, p, x, dout, h = args
    return lib.numerical_gradient(make_f(fname, p), x.copy(), dout, h=h)


def _ng_variant(kind):
    def variant(lib, args):
        fname, p, x, dout, h = args
        f = make_f(fname, p)
        x = x.copy()
        grad = np.zeros_like(x)
        base = np.array(f(x), copy=True)
        for ix in np.ndindex(x.shape):
            old = x[ix]
            x[ix] = old + h
            plus = np.array(f(x), copy=True)
            x[ix] = old - h
            minus = np.array(f(x), copy=True)
            x[ix] = old
            if kind == "one_sided":
                grad[ix] = np.sum((plus - base) * dout) / h
            elif kind == "no_two":
                grad[ix] = np.sum((plus - minus) * dout) / h
            else:  # dout ignored
                grad[ix] = np.sum(plus - minus) / (2 * h)
        return grad
    return variant


NUMERICAL_GRADIENT = FunctionSpec(
    name="numerical_gradient",
    signature="numerical_gradient(f, x, dout, h=1e-5)",
    returns="array",
    inputs=_ng_inputs,
    adapter=numerical_gradient_adapter,
    reference=_ng_ref,
    describe=lambda c: f"f = {c['f']}, x {tuple(c['x'])}, h={c.get('h', 1e-5):.0e}",
    deny=_deny("perturb x and call f yourself"),
    explain_error=_explain_numpy2,
    mistakes=(
        Mistake("the difference is divided by h: the central difference (f(x + h) - f(x - h)) "
                "spans 2h", _ng_variant("no_two")),
        Mistake("this is the one-sided difference (f(x + h) - f(x)) / h: use the central "
                "difference (f(x + h) - f(x - h)) / 2h, whose error shrinks like h squared",
                _ng_variant("one_sided")),
        Mistake("dout is ignored: the result is the gradient of sum(dout * f(x)), so weight "
                "each difference by dout before summing", _ng_variant("no_dout")),
    ),
    hints=(Hint("it fails only for a larger step h", lambda c: c.get("h", 1e-5) > 1e-4),),
)


# --------------------------------------------------------------------------- train_step

# The notebook's network (section 8): conv 3x3 (8 filters, padding 1), ReLU, max pool 2x2,
# flatten, dense 128 -> 10. Its forward pass comes from the library (the notebook's own
# ``forward``); the backward pass and the update are the student's.
TRAIN_PARAMS = (("w1", (8, 1, 3, 3)), ("b1", (8,)), ("w2", (10, 128)), ("b2", (10,)))


def _train_inputs(rng, c):
    """Parameters as the notebook initialises them, but with nonzero biases, a batch of
    8x8 images in (0, 1) and labels: (w1, b1, w2, b2, x, y, lr). No value of the ReLU's
    input is exactly 0, so the step does not depend on the gradient's convention there
    (``relu_backward``'s visible check covers it)."""
    b = c.get("batch", 16)
    w1 = _draw(rng, (8, 1, 3, 3)) * np.sqrt(2.0 / 9)
    b1 = _draw(rng, (8,)) * 0.1
    w2 = _draw(rng, (10, 128)) * np.sqrt(1.0 / 128)
    b2 = _draw(rng, (10,)) * 0.1
    x = rng.uniform(0.0, 1.0, size=(b, 1, 8, 8))
    y = rng.integers(0, 10, size=b).astype(np.int64)
    return (w1, b1, w2, b2, x, y, float(c.get("lr", 0.1)))


def train_step_adapter(student, watch, w1, b1, w2, b2, x, y, lr):
    """Run in the student's kernel: build the parameter dict, call the student's
    ``train_step(params, x, y, lr)`` once under the watch, return ``(loss, w1, b1, w2,
    b2)`` as the dict holds them afterwards."""
    _warm_library()
    params = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    loss = watch(student, params, x, y, lr)
    return (loss,) + tuple(params[name] for name, _ in TRAIN_PARAMS)


def _train_grads(lib, w1, b1, w2, b2, x, y):
    """The loss and (dw1, db1, dw2, db2) of one batch, all from the library."""
    z1, conv_cache = lib.conv2d_forward(x, w1, b1, padding=1)  # (B, 8, 8, 8)
    a1, relu_cache = lib.relu_forward(z1)
    p1, pool_cache = lib.maxpool2d_forward(a1, kernel_size=2)  # (B, 8, 4, 4)
    f = p1.reshape(len(x), -1)  # (B, 128)
    scores, fc_cache = lib.linear_forward(f, w2, b2)
    loss, dscores = lib.softmax_cross_entropy(scores, y)
    df, dw2, db2 = lib.linear_backward(dscores, fc_cache)
    da1 = lib.maxpool2d_backward(df.reshape(p1.shape), pool_cache)
    dz1 = lib.relu_backward(da1, relu_cache)
    _, dw1, db1 = lib.conv2d_backward(dz1, conv_cache)
    return float(loss), (dw1, db1, dw2, db2)


def _train_step_variant(update):
    """One step whose parameter ``i`` becomes ``update(i, param, grad, lr)``."""
    def variant(lib, args):
        *params, x, y, lr = args
        loss, grads = _train_grads(lib, *params, x, y)
        return (loss,) + tuple(update(i, w, g, lr) for i, (w, g) in
                               enumerate(zip(params, grads)))
    return variant


_train_ref = _train_step_variant(lambda i, w, g, lr: w - lr * g)

_TRAIN_MISTAKES = (
    Mistake("the parameters move up the gradient (w += lr * dw): gradient descent subtracts "
            "it, params[name] -= lr * grad", _train_step_variant(lambda i, w, g, lr: w + lr * g)),
    Mistake("the biases b1 and b2 are not updated: every parameter takes a step, the biases "
            "too", _train_step_variant(lambda i, w, g, lr: w if i % 2 else w - lr * g)),
    Mistake("the step ignores the learning rate: params[name] -= lr * grad",
            _train_step_variant(lambda i, w, g, lr: w - g)),
)


def _train_diagnose(lib, args, value, ref):
    """When no known mistake of train_step itself explains the step, say where else it can
    come from: the backward functions train_step calls."""
    from .checks import same_result

    for mistake in _TRAIN_MISTAKES:
        if same_result(TRAIN_STEP, value, mistake.variant(lib, args)):
            return None
    return ("one step of your train_step differs from a step of gradient descent with the "
            "library's gradients. train_step runs your own softmax_cross_entropy and backward "
            "functions, so a mistake in any of them shows here too (the parameters that "
            "differ say where: the step of w2 and b2 needs softmax_cross_entropy and "
            "linear_backward; that of w1 and b1 also maxpool2d_backward, relu_backward and "
            "conv2d_backward); then check the order of the backward pass and the update")


@functools.lru_cache(maxsize=1)
def _library_backward_functions():
    """Every function and method of ``cnnlib.numpy`` that computes a gradient: the
    backward passes (public, private and the layers' methods) and col2im. The forward
    passes stay allowed: the notebook's ``forward`` uses them."""
    import importlib
    import inspect
    import pkgutil

    import cnnlib.numpy as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) and ("backward" in name or "col2im" in name):
                found.append(obj)
            elif inspect.isclass(obj):
                found += [m for n, m in vars(obj).items()
                          if inspect.isfunction(m) and "backward" in n]
    return tuple(found)


# What train_step may not call: the library's gradients, its losses, update rules, trainer
# and numerical gradient, and every other framework. Its forward passes are allowed.
TRAIN_STEP_DENIED_MODULES = (
    "cnnlib.numpy.losses", "cnnlib.numpy.optim", "cnnlib.numpy.trainer",
    "cnnlib.numpy.gradcheck", "cnnlib.torch", "cnnlib.grading", "torch", "torchvision",
    "scipy.signal", "scipy.ndimage", "skimage", "sklearn", "tensorflow", "keras", "jax")


TRAIN_STEP = FunctionSpec(
    name="train_step",
    signature="train_step(params, x, y, lr)",
    returns=("float", "array", "array", "array", "array"),
    parts=("the returned loss",) + tuple(f"params[{name!r}] after the step"
                                         for name, _ in TRAIN_PARAMS),
    inputs=_train_inputs,
    adapter=train_step_adapter,
    reference=_train_ref,
    describe=lambda c: (f"one step on a batch of {c.get('batch', 16)} images, "
                        f"lr={c.get('lr', 0.1):g}"),
    deny=lambda: DenyList(modules=TRAIN_STEP_DENIED_MODULES,
                          functions=_library_backward_functions(),
                          reason="train with your own backward passes"),
    diagnose=_train_diagnose,
    explain_error=_explain_numpy2,
    mistakes=_TRAIN_MISTAKES,
)


# --------------------------------------------------------------------------- predict

def _predict_inputs(rng, c):
    return (rng.uniform(0.0, 1.0, size=(c.get("n", 4), 1, 8, 8)),)


def predict_adapter(student, watch, x):
    """Run in the student's kernel: ``predict(x)`` under the watch, after the library's
    convolution has built what it builds once (``_warm_library``): ``predict`` may use the
    library's forward passes."""
    _warm_library()
    return watch(student, x)


PREDICT = FunctionSpec(
    name="predict",
    signature="predict(x)",
    returns="array",
    inputs=_predict_inputs,
    adapter=predict_adapter,
    # No value to compare with: the trained network is judged by its accuracy on digits the
    # hidden test cell chooses (``GRADER.run``); the shape is all a reference can say.
    reference=lambda lib, args: np.zeros((args[0].shape[0], 10)),
    describe=lambda c: f"x ({c.get('n', 4)}, 1, 8, 8)",
    deny=lambda: DenyList(
        modules=("cnnlib.torch", "cnnlib.grading", "torch", "torchvision", "sklearn",
                 "tensorflow", "keras", "jax"),
        reason="predict with the network your own backward passes trained"),
)


FUNCTIONS = {spec.name: spec for spec in (
    RELU_BACKWARD, LINEAR_BACKWARD, CONV2D_BACKWARD, MAXPOOL2D_BACKWARD, AVGPOOL2D_BACKWARD,
    SOFTMAX_CROSS_ENTROPY, NUMERICAL_GRADIENT, TRAIN_STEP, PREDICT)}
REFERENCE_NEEDS = ("relu_forward", "relu_backward", "linear_forward", "linear_backward",
                   "conv2d_forward", "conv2d_backward", "maxpool2d_forward",
                   "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward",
                   "softmax", "softmax_cross_entropy", "numerical_gradient")
