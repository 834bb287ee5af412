"""Assignment 2 (pooling, activations and the classifier head): its twelve graded
functions, described once.

Machinery only: how to build inputs for a configuration a hidden cell names, the
reference call into ``cnnlib``, the known mistakes and their messages, the deny lists.
The seeds and configurations live in the hidden test cells of ``solutions/a2-pooling``.

Every graded function here is a forward pass that takes arrays and numbers and returns
one floating array; the references are computed in float64.
"""

from __future__ import annotations

import numpy as np

from .sandbox import DEFAULT_DENIED_MODULES, DenyList
from .specs import FunctionSpec, Hint, Mistake

ASSIGNMENT = "a2-pooling"

DEFAULT_STRIDE = None  # the pools' default: stride = kernel_size
DEFAULT_PADDING = 0
DEFAULT_DTYPE = "float64"
DEFAULT_NEGATIVE_SLOPE = 0.01
DEFAULT_ALPHA = 1.0
DEFAULT_P = 3.0
DEFAULT_EPS = 1e-6
DEFAULT_AXIS = -1
DEFAULT_SCALE = 1.0  # inputs are standard normal times this
# Beyond this |x|, exp(x) overflows in float32 (88.7); float64 overflows beyond 709.8.
LARGE = 50.0

# scipy.special has expit and softmax, scipy.ndimage the pooling filters.
_MODULES = tuple(DEFAULT_DENIED_MODULES) + ("scipy",)


def _deny(reason):
    return lambda: DenyList(modules=_MODULES, reason=reason)


def _dtype(case):
    return case.get("dtype", DEFAULT_DTYPE)


def _scale(case):
    return case.get("scale", DEFAULT_SCALE)


def _draw(rng, case, key="x"):
    x = _scale(case) * rng.standard_normal(tuple(case[key])) + case.get("shift", 0.0)
    return x.astype(_dtype(case))


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _shape(case, key="x"):
    return tuple(case[key])


_FLOAT32_HINT = Hint("it fails only for float32 inputs: keep a floating dtype, never an "
                     "integer one", lambda c: _dtype(c) == "float32")
_OVERFLOW = ("np.exp overflows to inf for large inputs (beyond about 88 in float32 and 710 in "
             "float64), and inf / inf is NaN; rewrite the formula so that exp only ever sees "
             "numbers <= 0")
_LARGE_HINT = ("it fails only for large inputs: look at what np.exp gives there (inf above "
               "about 88 in float32 and 710 in float64, 0 far below 0) and what the division "
               "then makes of it")


def _int_result(lib, args, out, ref):
    if out.dtype.kind in "iub":
        return ("integer truncation: the result has an integer dtype, so the values lost "
                "their fractions; keep a floating dtype")
    return None


# --------------------------------------------------------------------------- pooling

def _pool_stride(case):
    return case.get("stride", DEFAULT_STRIDE)


def _pool_padding(case):
    return case.get("padding", DEFAULT_PADDING)


def _pool_inputs(rng, c):
    return (_draw(rng, c), int(c["kernel_size"]), _pool_stride(c), _pool_padding(c))


def _pool_describe(c):
    return (f"x {_shape(c)}, kernel_size={c['kernel_size']}, stride={_pool_stride(c)}, "
            f"padding={_pool_padding(c)} ({_dtype(c)}"
            + (", mostly negative values)" if c.get("shift", 0) < 0 else ")"))


def _effective_stride(k, s):
    return k if s is None else s


def _pool_random(rng, n_cases):
    out = []
    while len(out) < n_cases:
        k = int(rng.integers(1, 5))
        p = int(rng.integers(0, k // 2 + 1))
        s = [None, 1, 2, 3][int(rng.integers(0, 4))]
        h = int(rng.integers(max(1, k - 2 * p), 12))
        w = int(rng.integers(max(1, k - 2 * p), 12))
        n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        out.append({"x": [n, c, h, w], "kernel_size": k, "stride": s, "padding": p,
                    "dtype": ["float64", "float32"][int(rng.integers(0, 2))]})
    return out


def _maxpool(lib, x, k, s, p):
    return lib.maxpool2d_forward(_f64(x), kernel_size=k, stride=s, padding=p)[0]


def _avgpool(lib, x, k, s, p):
    return lib.avgpool2d_forward(_f64(x), kernel_size=k, stride=s, padding=p)[0]


def _pool_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


_PADDING_IGNORED = "the padding is ignored: pad H and W by `padding` on every side first"
_NO_OVERLAP = ("the windows do not overlap: the step between windows is the stride, which "
               "may be smaller than the kernel")


def _pool_diagnose(pool):
    """The shape diagnosis of a pool (``pool(lib, x, k, s, p)``, the reference)."""
    def diagnose(lib, args, out, ref):
        return _pool_shape(lib, args, out, ref, pool)
    return diagnose


def _pool_shape(lib, args, out, ref, pool):
    x, k, s, p = args
    if out.shape == ref.shape:
        return _int_result(lib, args, out, ref)
    if out.ndim != 4:
        return (f"returned a {out.ndim}-D array; the pool returns (N, C, H_out, W_out), one "
                "map per input channel")
    if out.shape[:2] != x.shape[:2]:
        return "the first two axes must stay (N, C): pool each channel of each image on its own"
    H, W = x.shape[2:]
    stride = _effective_stride(k, s)
    got = out.shape[2:]

    def sizes(fn):
        return (fn(H), fn(W))

    if s is None and got == sizes(lambda n: _pool_size(n, k, 1, p)):
        return ("stride=None was taken as 1: as in PyTorch, a pool's default stride is the "
                "kernel size, so the windows do not overlap")
    if stride > 1 and got == sizes(lambda n: n + 2 * p - k + 1):
        return "the stride is ignored: the window must jump `stride` pixels between outputs"
    unpadded = p and got == sizes(lambda n: _pool_size(n, k, stride, 0))
    tiled = stride < k and got == sizes(lambda n: _pool_size(n, k, k, p))
    if unpadded and tiled:
        # both predict this shape: the values tell which (padding first, when they do not)
        from .checks import close
        if not close(out, pool(lib, x, k, stride, 0)) and close(out, pool(lib, x, k, k, p)):
            return _NO_OVERLAP
        return _PADDING_IGNORED
    if unpadded:
        return _PADDING_IGNORED
    if tiled:
        return _NO_OVERLAP
    if got == sizes(lambda n: -(-(n + 2 * p - k) // stride) + 1):
        return ("the output size rounds up; it rounds down: floor((n + 2p - k)/stride) + 1, a "
                "window that would stick out past the padded input does not count")
    if got == (ref.shape[3], ref.shape[2]):
        return "the output's height and width are swapped"
    return None


def _stride_ignored(pool):
    """Windows that step one pixel at a time, cropped to the right output size."""
    def variant(lib, args):
        x, k, s, p = args
        if _effective_stride(k, s) == 1:
            raise ValueError("applies to strides above 1 only")
        ref = pool(lib, x, k, s, p)
        return pool(lib, x, k, 1, p)[:, :, :ref.shape[2], :ref.shape[3]]
    return variant


def _zero_padded_max(lib, args):
    x, k, s, p = args
    if p == 0:
        raise ValueError("applies with padding only")
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * p, w + 2 * p))
    xp[:, :, p:p + h, p:p + w] = x
    return _maxpool(lib, xp, k, _effective_stride(k, s), 0)


def _avg_padding_not_counted(lib, args):
    x, k, s, p = args
    if p == 0:
        raise ValueError("applies with padding only")
    return _avgpool(lib, x, k, s, p) / _avgpool(lib, np.ones(x.shape), k, s, p)


# The notebook's own words for its padding conventions (a test checks that they are there).
MAX_PADDING_RULE = '"Max pooling therefore pads with $-\\infty$"'
AVG_PADDING_RULE = '"the padded zeros **count** in the mean"'

_WINDOW_PAST_EDGE = ("a window ran past the edge of the padded input: window (i, j) starts "
                     "at (i*stride, j*stride), and the step between windows is the stride, "
                     "not the kernel size")


def _pool_error(detail):
    if "zero-size array" in detail or "operands could not be broadcast" in detail:
        return _WINDOW_PAST_EDGE
    return None


_POOL_HINTS = (
    Hint("it fails only with padding > 0", lambda c: _pool_padding(c) > 0),
    Hint("it fails only when the stride is left at its default (None): the default stride "
         "is the kernel size", lambda c: _pool_stride(c) is None),
    Hint("it fails only for overlapping windows (stride < kernel_size)",
         lambda c: _effective_stride(c["kernel_size"], _pool_stride(c)) < c["kernel_size"]),
    Hint("it fails only for non-square maps (H != W): check that H sets the output's "
         "height and W its width", lambda c: c["x"][-1] != c["x"][-2]),
    _FLOAT32_HINT,
)

MAXPOOL2D = FunctionSpec(
    name="maxpool2d",
    signature="maxpool2d(x, kernel_size, stride=None, padding=0)",
    returns="array",
    inputs=_pool_inputs,
    reference=lambda lib, a: _maxpool(lib, *a),
    describe=_pool_describe,
    deny=_deny("slide the window yourself"),
    diagnose=_pool_diagnose(_maxpool),
    random_cases=_pool_random,
    mistakes=(
        Mistake("the padding is zeros: max pooling pads with -inf. This is the notebook's "
                "padding convention (section 1: " + MAX_PADDING_RULE + "), tested in every "
                "check with padding > 0, whatever the check is named", _zero_padded_max),
        Mistake("the output has the right size but the window moves one pixel at a time: the "
                "window for output (i, j) starts at (i*stride, j*stride)",
                _stride_ignored(_maxpool)),
    ),
    hints=_POOL_HINTS,
    explain_error=_pool_error,
    needs=("maxpool2d_forward",),
)

AVGPOOL2D = FunctionSpec(
    name="avgpool2d",
    signature="avgpool2d(x, kernel_size, stride=None, padding=0)",
    returns="array",
    inputs=_pool_inputs,
    reference=lambda lib, a: _avgpool(lib, *a),
    describe=_pool_describe,
    deny=_deny("slide the window yourself"),
    diagnose=_pool_diagnose(_avgpool),
    random_cases=_pool_random,
    mistakes=(
        Mistake("the padded zeros are left out of the mean: every window divides by "
                "kernel_size * kernel_size, padded zeros included. This is the notebook's "
                "padding convention (section 2: " + AVG_PADDING_RULE + "), tested in every "
                "check with padding > 0, whatever the check is named",
                _avg_padding_not_counted),
        Mistake("the output has the right size but the window moves one pixel at a time: the "
                "window for output (i, j) starts at (i*stride, j*stride)",
                _stride_ignored(_avgpool)),
        Mistake("the window sums are not divided by the window size (a sum pool, not an "
                "average)", lambda lib, a: _avgpool(lib, *a) * a[1] * a[1]),
    ),
    hints=_POOL_HINTS,
    explain_error=_pool_error,
    needs=("avgpool2d_forward",),
)


# --------------------------------------------------------------------------- global pools

def _global_diagnose(what):
    def diagnose(lib, args, out, ref):
        x = args[0]
        N, C = x.shape[:2]
        if out.shape == ref.shape:
            return _int_result(lib, args, out, ref)
        if out.shape == (N, C, 1, 1):
            return ("the result keeps two axes of size 1: return (N, C), one number per image "
                    "and channel (no keepdims)")
        return (f"the result must have shape (N, C): take the {what} over the last two axes "
                "(H and W) only")
    return diagnose


def _global_describe(c):
    return (f"x {_shape(c)} ({_dtype(c)}"
            + (", mostly negative values)" if c.get("shift", 0) < 0 else ")"))


GLOBAL_AVGPOOL = FunctionSpec(
    name="global_avgpool",
    signature="global_avgpool(x)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c),),
    reference=lambda lib, a: lib.global_avgpool_forward(_f64(a[0]))[0],
    describe=_global_describe,
    deny=_deny("compute the means yourself"),
    diagnose=_global_diagnose("mean"),
    mistakes=(
        Mistake("this is the sum of each map, not its mean: divide by H * W",
                lambda lib, a: _f64(a[0]).sum(axis=(2, 3))),
        Mistake("this is the maximum of each map, not its mean",
                lambda lib, a: _f64(a[0]).max(axis=(2, 3))),
    ),
    hints=(_FLOAT32_HINT,),
    needs=("global_avgpool_forward",),
)

def _all_negative(value, x):
    if not (x.max(axis=(2, 3)) < 0).any():
        raise ValueError("applies to maps whose values are all negative only")
    return value


GLOBAL_MAXPOOL = FunctionSpec(
    name="global_maxpool",
    signature="global_maxpool(x)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c),),
    reference=lambda lib, a: lib.global_maxpool_forward(_f64(a[0]))[0],
    describe=_global_describe,
    deny=_deny("compute the maxima yourself"),
    diagnose=_global_diagnose("maximum"),
    mistakes=(
        Mistake("this is the mean of each map, not its maximum",
                lambda lib, a: _f64(a[0]).mean(axis=(2, 3))),
        Mistake("this is the largest absolute value of each map: a maximum keeps its sign",
                lambda lib, a: np.abs(_f64(a[0])).max(axis=(2, 3))),
        Mistake("the running maximum starts at 0, so a map whose values are all negative "
                "gets 0: start from -inf or from the map's first value",
                lambda lib, a: _all_negative(np.maximum(_f64(a[0]).max(axis=(2, 3)), 0.0),
                                             a[0])),
    ),
    hints=(_FLOAT32_HINT,),
    needs=("global_maxpool_forward",),
)


# --------------------------------------------------------------------------- GeM

def _gem_p(case):
    return float(case.get("p", DEFAULT_P))


def _gem_eps(case):
    return float(case.get("eps", DEFAULT_EPS))


def _gem_inputs(rng, c):
    x = rng.standard_normal(_shape(c))
    # Feature maps after a ReLU are mostly positive; "positive" ones have no entry below
    # eps at all, so that the clamp changes nothing there.
    x = np.abs(x) + 0.1 if c.get("positive") else x + 0.5
    return (x.astype(_dtype(c)), _gem_p(c), _gem_eps(c))


def _gem(lib, x, p, eps):
    return lib.gem_pool_forward(_f64(x), np.asarray(p, dtype=np.float64), eps=eps)[0]


def _finite(fn):
    def variant(lib, args):
        out = fn(lib, args)
        if not np.isfinite(out).all():
            raise ValueError("NaN for these inputs: the judge names it by a hint instead")
        return out
    return variant


def _gem_unclamped(lib, args):
    x, p, eps = args
    with np.errstate(all="ignore"):
        return np.mean(_f64(x) ** p, axis=(2, 3)) ** (1.0 / p)


def _gem_no_root(lib, args):
    x, p, eps = args
    return np.mean(np.maximum(_f64(x), eps) ** p, axis=(2, 3))


def _gem_fixed_p(lib, args):
    x, p, eps = args
    if p == DEFAULT_P:
        raise ValueError("applies when p is not the default")
    return _gem(lib, x, DEFAULT_P, eps)


def _gem_clamp_zero(lib, args):
    x, p, eps = args
    with np.errstate(all="ignore"):
        return np.mean(np.maximum(_f64(x), 0.0) ** p, axis=(2, 3)) ** (1.0 / p)


GEM_POOL = FunctionSpec(
    name="gem_pool",
    signature="gem_pool(x, p=3.0, eps=1e-6)",
    returns="array",
    inputs=_gem_inputs,
    reference=lambda lib, a: _gem(lib, *a),
    describe=lambda c: (f"x {_shape(c)}, p={_gem_p(c):g}, eps={_gem_eps(c):g} ({_dtype(c)}"
                        + (", all entries above eps)" if c.get("positive") else
                           ", some entries negative)")),
    deny=_deny("compute the generalized mean yourself"),
    diagnose=_global_diagnose("generalized mean"),
    mistakes=(
        Mistake("GeM without the clamp: entries below eps must be raised to eps first "
                "(np.maximum(x, eps)) before the power", _finite(_gem_unclamped)),
        Mistake("the p-th root is missing: GeM is (mean of clamp(x, eps)**p) ** (1/p)",
                _gem_no_root),
        Mistake("the exponent p is ignored (3 is used whatever p is)", _gem_fixed_p),
        Mistake("the clamp is at 0 instead of eps: entries below eps become eps, not 0",
                _finite(_gem_clamp_zero)),
    ),
    hints=(
        Hint("it fails only when x has entries below eps: GeM without the clamp? entries "
             "below eps must be raised to eps first (np.maximum(x, eps)), since a negative "
             "number to a fractional power is NaN", lambda c: not c.get("positive")),
        _FLOAT32_HINT,
    ),
    needs=("gem_pool_forward",),
)


# --------------------------------------------------------------------------- activations

def _elementwise_describe(extra=None):
    def describe(c):
        words = f"x {_shape(c)}"
        if _scale(c) != DEFAULT_SCALE:
            words += f" with entries up to about {_scale(c):g} in size"
        if extra:
            words += ", " + extra(c)
        return words + f" ({_dtype(c)})"
    return describe


def _shape_diagnose(lib, args, out, ref):
    if out.shape != ref.shape:
        return "an elementwise function returns an array of its input's shape"
    return _int_result(lib, args, out, ref)


def _relu_diagnose(lib, args, out, ref):
    if out.shape != ref.shape and out.shape == ref.shape[1:]:
        return ("the first axis is gone: np.max(x, 0) is the largest entry along axis 0; "
                "the elementwise maximum of x and 0 is np.maximum(x, 0)")
    return _shape_diagnose(lib, args, out, ref)


RELU = FunctionSpec(
    name="relu",
    signature="relu(x)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c),),
    reference=lambda lib, a: lib.relu_forward(_f64(a[0]))[0],
    describe=_elementwise_describe(),
    deny=_deny("write the formula with NumPy"),
    diagnose=_relu_diagnose,
    hints=(_FLOAT32_HINT,),
    needs=("relu_forward",),
)


def _slope(case):
    return float(case.get("negative_slope", DEFAULT_NEGATIVE_SLOPE))


def _leaky(lib, x, slope):
    return lib.leaky_relu_forward(_f64(x), negative_slope=slope)[0]


def _leaky_fixed(lib, a):
    if a[1] == DEFAULT_NEGATIVE_SLOPE:
        raise ValueError("applies to other slopes only")
    return _leaky(lib, a[0], DEFAULT_NEGATIVE_SLOPE)


LEAKY_RELU = FunctionSpec(
    name="leaky_relu",
    signature="leaky_relu(x, negative_slope=0.01)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c), _slope(c)),
    reference=lambda lib, a: _leaky(lib, *a),
    describe=_elementwise_describe(lambda c: f"negative_slope={_slope(c):g}"),
    deny=_deny("write the formula with NumPy"),
    diagnose=_shape_diagnose,
    mistakes=(
        Mistake("the argument negative_slope is ignored (the default slope is used whatever "
                "it is)",
                _leaky_fixed),
        Mistake("the slope multiplies the positive entries instead of the negative ones",
                lambda lib, a: np.where(_f64(a[0]) > 0, a[1] * _f64(a[0]), _f64(a[0]))),
    ),
    hints=(_FLOAT32_HINT,),
    needs=("leaky_relu_forward",),
)


def _alpha(case):
    return float(case.get("alpha", DEFAULT_ALPHA))


def _elu(lib, x, alpha):
    return lib.elu_forward(_f64(x), alpha=alpha)[0]


def _elu_fixed(lib, a):
    if a[1] == DEFAULT_ALPHA:
        raise ValueError("applies to other alphas only")
    return _elu(lib, a[0], DEFAULT_ALPHA)


ELU = FunctionSpec(
    name="elu",
    signature="elu(x, alpha=1.0)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c), _alpha(c)),
    reference=lambda lib, a: _elu(lib, *a),
    describe=_elementwise_describe(lambda c: f"alpha={_alpha(c):g}"),
    deny=_deny("write the formula with NumPy"),
    diagnose=_shape_diagnose,
    mistakes=(
        Mistake("the argument alpha is ignored (the default, 1, is used whatever it is)",
                _elu_fixed),
        Mistake("the -1 is missing: for x <= 0, ELU is alpha * (exp(x) - 1), which tends to "
                "-alpha", lambda lib, a: np.where(_f64(a[0]) > 0, _f64(a[0]),
                                                  a[1] * np.exp(np.minimum(_f64(a[0]), 0)))),
    ),
    hints=(_FLOAT32_HINT,),
    needs=("elu_forward",),
)


def _large(case):
    return _scale(case) > LARGE


def _sigmoid_diagnose(lib, args, out, ref):
    (x,) = args
    if _not_finite(out, ref):
        with np.errstate(all="ignore"):
            e = np.exp(x)  # in the input's dtype, as the student's code ran
            if _nan_pattern_of(e / (1 + e), out):
                return _OVERFLOW
        return None
    return _shape_diagnose(lib, args, out, ref)


SIGMOID = FunctionSpec(
    name="sigmoid",
    signature="sigmoid(x)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c),),
    reference=lambda lib, a: lib.sigmoid_forward(_f64(a[0]))[0],
    describe=_elementwise_describe(),
    deny=_deny("write the formula with NumPy"),
    diagnose=_sigmoid_diagnose,
    mistakes=(
        Mistake("the sign of the exponent is flipped: this is sigmoid(-x) = 1 - sigmoid(x); "
                "the sigmoid is 1 / (1 + exp(-x))",
                lambda lib, a: lib.sigmoid_forward(-_f64(a[0]))[0]),
    ),
    hints=(Hint(_LARGE_HINT, _large), _FLOAT32_HINT),
    warning_message=("np.exp overflowed (a RuntimeWarning, here turned into a failure): the "
                     "values may still be right, but " + _OVERFLOW),
    needs=("sigmoid_forward",),
)


# --------------------------------------------------------------------------- softmax

def _axis(case):
    return int(case.get("axis", DEFAULT_AXIS))


def _softmax(lib, x, axis):
    return lib.softmax(_f64(x), axis=axis)


def _softmax_other_axis(target):
    def variant(lib, a):
        x, axis = a
        if x.ndim < 2:
            raise ValueError("one axis only")
        t = target(x)
        if t % x.ndim == axis % x.ndim:
            raise ValueError("the right axis")
        return _softmax(lib, x, t)
    return variant


def _softmax_whole(lib, a):
    x = _f64(a[0])
    if x.ndim < 2:
        raise ValueError("one axis only")
    e = np.exp(x - x.max())
    return e / e.sum()


def _softmax_no_keepdims(lib, a):
    x, axis = a
    x = _f64(x)
    if x.ndim != 2 or x.shape[0] != x.shape[1] or axis % 2 != 1:
        raise ValueError("applies to square 2-D inputs with axis=-1 only")
    e = np.exp(x - x.max(axis=1))  # (N,) broadcasts along the wrong axis
    return e / e.sum(axis=1)


def _not_finite(out, ref):
    return (out.shape == ref.shape and out.dtype.kind == "f"
            and not np.isfinite(out.astype(np.float64)).all())


def _nan_pattern_of(wrong, out):
    """Whether ``out`` has NaN exactly where ``wrong`` has, and agrees elsewhere."""
    from .checks import close
    wrong = np.asarray(wrong, dtype=np.float64)
    bad = ~np.isfinite(wrong)
    return bool(bad.any() and np.array_equal(bad, ~np.isfinite(out.astype(np.float64)))
            and close(out[~bad], wrong[~bad]))


def _softmax_global_max(x, axis):
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max())
        return e / e.sum(axis=axis, keepdims=True)


def _softmax_unshifted(x, axis):
    with np.errstate(all="ignore"):
        e = np.exp(x)
        return e / e.sum(axis=axis, keepdims=True)


_GLOBAL_MAX = ("the maximum subtracted is the whole array's (x.max()), not each slice's: a "
               "slice far below the largest entry of the array underflows to all zeros, and "
               "0 / 0 is NaN; subtract np.max(x, axis=axis, keepdims=True)")


def _softmax_diagnose(lib, args, out, ref):
    x, axis = args
    if _not_finite(out, ref):
        # in the input's dtype: float32 underflows and overflows much sooner than float64
        if _nan_pattern_of(_softmax_global_max(x, axis), out):
            return _GLOBAL_MAX
        if _nan_pattern_of(_softmax_unshifted(x, axis), out):
            return "the maximum is not subtracted first: " + _OVERFLOW
        return None
    return _shape_diagnose(lib, args, out, ref)


def _softmax_error(detail):
    if "could not be broadcast" in detail:
        return ("the maxima or sums lost their axis: compute them with keepdims=True so that "
                "each slice along `axis` is divided by its own sum")
    return None


SOFTMAX = FunctionSpec(
    name="softmax",
    signature="softmax(x, axis=-1)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c), _axis(c)),
    reference=lambda lib, a: _softmax(lib, *a),
    describe=_elementwise_describe(lambda c: f"axis={_axis(c)}"),
    deny=_deny("write the formula with NumPy"),
    diagnose=_softmax_diagnose,
    mistakes=(
        Mistake("softmax over the wrong axis: the argument axis is ignored (the last axis "
                "is used whatever it is)", _softmax_other_axis(lambda x: -1)),
        Mistake("softmax over the wrong axis (the first one, axis 0)",
                _softmax_other_axis(lambda x: 0)),
        Mistake("softmax over the whole array: each slice along `axis` must sum to 1 on its "
                "own", _softmax_whole),
        Mistake("the maxima or sums lost their axis (no keepdims), so each row was divided "
                "by another row's sum: use keepdims=True", _softmax_no_keepdims),
    ),
    hints=(Hint(_LARGE_HINT, _large), _FLOAT32_HINT),
    explain_error=_softmax_error,
    needs=("softmax",),
)


# --------------------------------------------------------------------------- flatten, linear

def _flatten_diagnose(lib, args, out, ref):
    (x,) = args
    if out.shape == ref.shape:
        return _int_result(lib, args, out, ref)
    if out.ndim == 1:
        return "the batch axis is gone: flatten each sample, returning (N, features)"
    if out.ndim == 2 and out.shape[1] == x.shape[0]:
        return "the result is transposed: (N, features), one row per sample"
    return "flatten returns (N, features): the product of every axis after the first"


def _channels_last(lib, a):
    x = _f64(a[0])
    if x.ndim != 4 or x.shape[1] == 1 or x.shape[2] * x.shape[3] == 1:
        raise ValueError("applies to several channels and pixels only")
    return x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1)  # (N, H*W*C)


def _fortran_order(lib, a):
    x = _f64(a[0])
    if x.ndim < 3:
        raise ValueError("one feature axis only")
    return x.reshape(x.shape[0], -1, order="F")


FLATTEN = FunctionSpec(
    name="flatten",
    signature="flatten(x)",
    returns="array",
    inputs=lambda rng, c: (_draw(rng, c),),
    reference=lambda lib, a: lib.flatten_forward(_f64(a[0]))[0],
    describe=lambda c: f"x {_shape(c)} ({_dtype(c)})",
    deny=_deny("reshape the array yourself"),
    diagnose=_flatten_diagnose,
    mistakes=(
        Mistake("the features are in (H, W, C) order: flatten each sample in C order, "
                "channel first, then row, then column, as torch.flatten(x, 1) does",
                _channels_last),
        Mistake("the features are in Fortran (column-major) order: flatten in C order, the "
                "last axis varying fastest", _fortran_order),
    ),
    hints=(_FLOAT32_HINT,),
    needs=("flatten_forward",),
)


def _linear_inputs(rng, c):
    n, d_in = c["x"]
    x = _draw(rng, c)
    w = _draw(rng, {**c, "x": [c["out"], d_in]})
    b = _draw(rng, {**c, "x": [c["out"]]})
    return (x, w, b)


def _linear(lib, x, w, b):
    return lib.linear_forward(_f64(x), _f64(w), _f64(b))[0]


def _linear_untransposed(lib, a):
    x, w, b = (_f64(v) for v in a)
    if w.shape[0] != w.shape[1]:
        raise ValueError("applies to square weights only")
    return x @ w + b


def _linear_diagnose(lib, args, out, ref):
    x, w, b = args
    if out.shape == ref.shape:
        return _int_result(lib, args, out, ref)
    if out.shape == ref.shape[::-1]:
        return "the result is transposed: it has one row per sample, (N, out_features)"
    return f"the result must have shape (N, out_features) = {ref.shape}"


def _linear_error(detail):
    if "mismatch" in detail or "not aligned" in detail or "could not be broadcast" in detail:
        return ("w has shape (out_features, in_features), as in PyTorch: the product is "
                "x @ w.T")
    return None


LINEAR = FunctionSpec(
    name="linear",
    signature="linear(x, w, b)",
    returns="array",
    inputs=_linear_inputs,
    reference=lambda lib, a: _linear(lib, *a),
    describe=lambda c: (f"x {_shape(c)}, w ({c['out']}, {c['x'][1]}), b ({c['out']},) "
                        f"({_dtype(c)})"),
    deny=_deny("multiply the matrices with NumPy"),
    diagnose=_linear_diagnose,
    mistakes=(
        Mistake("the bias is missing: add b to every row of x @ w.T",
                lambda lib, a: _f64(a[0]) @ _f64(a[1]).T),
        Mistake("w is used as (in_features, out_features): in PyTorch and in this course it "
                "is (out_features, in_features), so the product is x @ w.T",
                _linear_untransposed),
    ),
    hints=(Hint("it fails only when w is square (in_features == out_features)",
                lambda c: c["out"] == c["x"][1]), _FLOAT32_HINT),
    explain_error=_linear_error,
    needs=("linear_forward",),
)


FUNCTIONS = {spec.name: spec for spec in (
    MAXPOOL2D, AVGPOOL2D, GLOBAL_AVGPOOL, GLOBAL_MAXPOOL, GEM_POOL,
    RELU, LEAKY_RELU, ELU, SIGMOID, SOFTMAX, FLATTEN, LINEAR)}
REFERENCE_NEEDS = tuple(dict.fromkeys(n for spec in FUNCTIONS.values() for n in spec.needs))
