"""Tests of cnnlib/numpy/conv.py: conv2d, conv_transpose2d, pad2d, conv_output_size.

Four independent checks, as for every op of the course: worked examples from the course
notes (recomputed here by explicit sums, not by the library), float64 numerical
gradients, the loop version against the vectorized one, and torch.nn.functional in
float64 over shapes drawn by hypothesis. Then float32, dtypes, and bad input.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlib.numpy import _conv_engine as engine
from cnnlib.numpy import (
    col2im,
    conv2d_backward,
    conv2d_backward_im2col,
    conv2d_forward,
    conv2d_forward_im2col,
    conv2d_forward_naive,
    conv_output_size,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    conv_transpose2d_forward_naive,
    conv_transpose_output_size,
    im2col,
    numerical_gradient,
    pad2d,
    padding_amounts,
)

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _parallel_even_for_small_batches(monkeypatch):
    """Small batches too take the engine's multi-threaded path (when BLAS has threads)."""
    monkeypatch.setattr(engine, "_PARALLEL_MIN_BYTES", 0)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The reference convolutions are tiny: PyTorch's thread start-up would dominate them
    (tens of milliseconds each on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def correlate_by_hand(image, kernel, *, stride=1):
    """The definition with plain Python numbers: an oracle that shares no code with cnnlib."""
    image = [[float(v) for v in row] for row in image]
    kernel = [[float(v) for v in row] for row in kernel]
    kh, kw = len(kernel), len(kernel[0])
    rows = range(0, len(image) - kh + 1, stride)
    cols = range(0, len(image[0]) - kw + 1, stride)
    return [[sum(image[r + i][c + j] * kernel[i][j] for i in range(kh) for j in range(kw))
             for c in cols] for r in rows]


def as_nchw(a):
    """(H, W) -> (1, 1, H, W) float64."""
    return np.asarray(a, dtype=np.float64)[None, None]


def torch_padding(padding, kernel, dilation):
    """cnnlib's padding argument in a form F.conv2d accepts ("full" is not one of them)."""
    if padding == "full":
        return tuple(d * (k - 1) for k, d in zip(kernel, dilation))
    return padding


def torch_conv2d(x, w, b, stride, padding, dilation, dout):
    """Output and (dx, dw, db) from PyTorch autograd, as NumPy arrays."""
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    with warnings.catch_warnings():
        # PyTorch warns that "same" with an even kernel copies the input; that is fine here.
        warnings.simplefilter("ignore", UserWarning)
        out = F.conv2d(xt, wt, bt, stride=stride, dilation=dilation,
                       padding=torch_padding(padding, w.shape[2:], _pair(dilation)))
    if dout is None:
        return out.detach().numpy(), None
    out.backward(torch.tensor(dout))
    grads = (xt.grad.numpy(), wt.grad.numpy(), None if bt is None else bt.grad.numpy())
    return out.detach().numpy(), grads


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def assert_close(actual, expected, *, rtol=1e-10, atol=1e-10):
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------
# Worked examples from the course notes
# --------------------------------------------------------------------------------------

# The 7x7 input and 3x3 filter of the notes' convolution example (seed 004).
NOTES_IMAGE = [
    [6, 3, 4, 4, 5, 0, 3],
    [4, 7, 4, 0, 4, 0, 4],
    [7, 0, 2, 3, 4, 5, 2],
    [3, 7, 5, 0, 3, 0, 7],
    [5, 8, 1, 2, 5, 4, 2],
    [8, 0, 1, 0, 6, 0, 0],
    [6, 4, 1, 3, 0, 4, 5],
]
NOTES_FILTER = [[1, 0, 1], [1, 0, 0], [0, 0, 2]]


def test_notes_7x7_example_by_hand():
    out, _ = conv2d_forward(as_nchw(NOTES_IMAGE), as_nchw(NOTES_FILTER))
    assert out.shape == (1, 1, 5, 5)
    assert_close(out[0, 0], np.array(correlate_by_hand(NOTES_IMAGE, NOTES_FILTER)))


def test_notes_7x7_example_values_the_notes_get_right_and_wrong():
    out = conv2d_forward(as_nchw(NOTES_IMAGE), as_nchw(NOTES_FILTER))[0][0, 0]
    # The two sums the notes work through are right: 5+1+8+2*1 and 4+4+4+2*7.
    assert out[4, 0] == 5 * 1 + 1 * 1 + 8 * 1 + 1 * 2 == 16
    assert out[1, 4] == 4 * 1 + 4 * 1 + 4 * 1 + 7 * 2 == 26
    # Their output grid prints 16 at row 4, column 3; the window there gives 2+4+2*4 = 14.
    window = np.array(NOTES_IMAGE)[4:7, 3:6]
    assert out[4, 3] == np.sum(window * np.array(NOTES_FILTER)) == 2 + 4 + 2 * 4 == 14
    # Their "NumPy output" starts [16 26 18 ...]; the top-left window gives 18.
    assert out[0, 0] == 6 + 4 + 4 + 2 * 2 == 18


def test_notes_edge_filter_example():
    """The 6x6 image of the student notes with a horizontal-edge filter: a 4x4 map."""
    image = [[0, 0, 0, 0, 0, 0],
             [0, 0, 0, 0.7, 0, 0],
             [3, 0, 0, 0.4, 0.9, 0],
             [0, 0, 0, 0.9, 0, 0],
             [0, 0, 0, 0.9, 0, 0],
             [0, 0, 0.5, 0.9, 0.5, 0]]
    kernel = [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]
    out = conv2d_forward(as_nchw(image), as_nchw(kernel))[0][0, 0]
    assert out.shape == (4, 4)  # n - f + 1, not the 2x2 the notes sketch
    assert_close(out, np.array(correlate_by_hand(image, kernel)))


def test_notes_bias_example():
    """The notes' bias slide: a 3x3 input and 3x3 filter give ONE number, not a 3x3 map."""
    image = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    kernel = [[1, 0, -1]] * 3
    out, _ = conv2d_forward(as_nchw(image), as_nchw(kernel))
    assert out.shape == (1, 1, 1, 1)
    assert out.item() == (1 - 3) + (4 - 6) + (7 - 9) == -6  # not 0
    out_b, _ = conv2d_forward(as_nchw(image), as_nchw(kernel), np.array([1.0]))
    assert out_b.item() == -6 + 1
    # With "same" padding the map is 3x3: a border of zeros around the image.
    padded = [[0] * 5] + [[0, *row, 0] for row in image] + [[0] * 5]
    out_same, _ = conv2d_forward(as_nchw(image), as_nchw(kernel), np.array([1.0]),
                                 padding="same")
    assert_close(out_same[0, 0], np.array(correlate_by_hand(padded, kernel)) + 1)


def test_notes_stride_examples():
    """5x5 input, 3x3 filter: stride 1, 2, 3 give 3x3, 2x2, 1x1, the stride-1 map subsampled."""
    image = np.arange(1, 26, dtype=np.float64).reshape(5, 5)
    kernel = np.arange(9, dtype=np.float64).reshape(3, 3)
    full = np.array(correlate_by_hand(image, kernel))
    for s, size in [(1, 3), (2, 2), (3, 1)]:
        out = conv2d_forward(as_nchw(image), as_nchw(kernel), stride=s)[0][0, 0]
        assert out.shape == (size, size)
        assert_close(out, full[::s, ::s])
        assert_close(out, np.array(correlate_by_hand(image, kernel, stride=s)))


def test_output_size_formula():
    # floor((n + 2p - d(k-1) - 1) / s) + 1
    assert conv_output_size(7, 3) == 5
    assert conv_output_size(5, 3, padding=1) == 5          # the notes' formula says 6
    assert conv_output_size(5, 3, padding="same") == 5
    assert conv_output_size(5, 3, padding="full") == 7     # full padding grows the map
    assert conv_output_size(5, 3, stride=2) == 2
    assert conv_output_size(5, 3, stride=3) == 1
    assert conv_output_size(7, 3, stride=2) == 3           # the notes' formula gives 3.5
    assert conv_output_size(8, 3, stride=2, padding=1) == 4  # a floor, not a fraction
    assert conv_output_size(32, 5) == 28                   # LeNet-5 C1
    assert conv_output_size(7, 3, dilation=2) == 3         # a dilated 3-tap kernel spans 5
    assert conv_output_size(1, 1) == 1
    assert conv_output_size(4, 2, padding="same") == 4     # even kernel: 0 before, 1 after


@settings(max_examples=60)
@given(n=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 3),
       d=st.integers(1, 3))
def test_output_size_matches_torch(n, k, s, p, d):
    if d * (k - 1) + 1 > n + 2 * p:
        with pytest.raises(ValueError, match="kernel_size"):
            conv_output_size(n, k, stride=s, padding=p, dilation=d)
        return
    out = F.conv1d(torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=s, padding=p, dilation=d)
    assert conv_output_size(n, k, stride=s, padding=p, dilation=d) == out.shape[-1]


@settings(max_examples=60)
@given(n=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 3),
       op=st.integers(0, 3))
def test_transposed_output_size_matches_torch(n, k, s, p, op):
    if op >= s:
        with pytest.raises(ValueError, match="output_padding"):
            conv_transpose_output_size(n, k, stride=s, padding=p, output_padding=op)
        return
    if (n - 1) * s - 2 * p + k + op < 1:
        with pytest.raises(ValueError, match="padding"):
            conv_transpose_output_size(n, k, stride=s, padding=p, output_padding=op)
        return
    out = F.conv_transpose1d(torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=s, padding=p,
                             output_padding=op)
    assert conv_transpose_output_size(n, k, stride=s, padding=p, output_padding=op) == (
        out.shape[-1])


@pytest.mark.parametrize("padding, k, stride, dilation, expected", [
    ("valid", 3, 1, 1, (0, 0)), ("full", 3, 2, 2, (4, 4)), ("same", 3, 1, 1, (1, 1)),
    ("same", 4, 1, 1, (1, 2)),  # an even kernel: the extra one after, as in PyTorch
    ("same", 3, 1, 3, (3, 3)), (2, 5, 3, 1, (2, 2)),
])
def test_padding_amounts(padding, k, stride, dilation, expected):
    assert padding_amounts(padding, k, stride=stride, dilation=dilation) == expected


def test_padding_amounts_same_needs_stride_one():
    with pytest.raises(ValueError, match="stride"):
        padding_amounts("same", 3, stride=2)


# --------------------------------------------------------------------------------------
# pad2d
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (2, 1, 3, 4), (1, 2, 1, 3, 4)])
@pytest.mark.parametrize("padding, widths", [
    (1, ((1, 1), (1, 1))),
    ((2, 0), ((2, 2), (0, 0))),
    (((0, 1), (2, 3)), ((0, 1), (2, 3))),
])
def test_pad2d_matches_np_pad(shape, padding, widths):
    x = np.random.default_rng(0).standard_normal(shape)
    lead = ((0, 0),) * (len(shape) - 2)
    out = pad2d(x, padding, value=-2.5)
    assert_close(out, np.pad(x, lead + widths, constant_values=-2.5), rtol=0, atol=0)
    assert out.dtype == x.dtype


def test_pad2d_notes_example():
    """The notes' 5x5 image padded by one zero on every side: 7x7 with the image inside."""
    x = np.arange(1, 26).reshape(5, 5)
    out = pad2d(x, 1)
    assert out.shape == (7, 7) and out.dtype == x.dtype
    assert out[0].sum() == out[-1].sum() == out[:, 0].sum() == out[:, -1].sum() == 0
    np.testing.assert_array_equal(out[1:-1, 1:-1], x)
    assert pad2d(np.ones((2, 2), np.float32), 0).dtype == np.float32


def test_pad2d_with_minus_inf():
    out = pad2d(np.zeros((1, 1, 2, 2)), 1, value=-np.inf)
    assert np.isneginf(out).sum() == 16 - 4


# --------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------

@st.composite
def conv_cases(draw, *, max_n=2, max_c=3):
    """A valid conv2d configuration: odd and even, square and non-square kernels, any
    padding mode, strides larger than the kernel, dilation, and outputs down to 1x1."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    mode = draw(st.sampled_from(["int", "pair", "valid", "same", "full"]))
    stride = 1 if mode == "same" else draw(
        st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    dilation = draw(st.one_of(st.just(1), st.integers(1, 2),
                              st.tuples(st.integers(1, 2), st.integers(1, 2))))
    dh, dw = _pair(dilation)
    if mode == "int":
        padding = draw(st.integers(0, 2))
        pads = (padding, padding, padding, padding)
    elif mode == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        pads = (padding[0], padding[0], padding[1], padding[1])
    else:
        padding = mode
        sh_, sw_ = dh * (kh - 1), dw * (kw - 1)
        pads = {"valid": (0, 0, 0, 0), "full": (sh_, sh_, sw_, sw_),
                "same": (sh_ // 2, sh_ - sh_ // 2, sw_ // 2, sw_ - sw_ // 2)}[mode]
    # Smallest input the kernel fits in, plus a little: extra 0 makes a one-pixel output.
    h = max(1, dh * (kh - 1) + 1 - pads[0] - pads[1]) + draw(st.integers(0, 5))
    w = max(1, dw * (kw - 1) + 1 - pads[2] - pads[3]) + draw(st.integers(0, 5))
    n, c_in, c_out = draw(st.integers(1, max_n)), draw(st.integers(1, max_c)), draw(
        st.integers(1, max_c))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, h, w))
    wt = rng.standard_normal((c_out, c_in, kh, kw))
    b = rng.standard_normal(c_out) if draw(st.booleans()) else None
    return x, wt, b, dict(stride=stride, padding=padding, dilation=dilation), rng


@st.composite
def conv_transpose_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    oph, opw = draw(st.integers(0, sh - 1)), draw(st.integers(0, sw - 1))
    # Smallest input whose output is at least one pixel.
    h0 = max(1, -(-(2 * ph - kh - oph + 1) // sh) + 1)
    w0 = max(1, -(-(2 * pw - kw - opw + 1) // sw) + 1)
    h, w = h0 + draw(st.integers(0, 3)), w0 + draw(st.integers(0, 3))
    n, c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c_in, h, w))
    wt = rng.standard_normal((c_in, c_out, kh, kw))
    b = rng.standard_normal(c_out) if draw(st.booleans()) else None
    kwargs = dict(stride=(sh, sw), padding=(ph, pw), output_padding=(oph, opw))
    return x, wt, b, kwargs, rng


# --------------------------------------------------------------------------------------
# Agreement with PyTorch (float64) and naive == vectorized
# --------------------------------------------------------------------------------------

@settings(max_examples=120)
@given(case=conv_cases())
def test_conv2d_matches_torch(case):
    x, w, b, kwargs, rng = case
    out, cache = conv2d_forward(x, w, b, **kwargs)
    dout = rng.standard_normal(out.shape)
    ref_out, (ref_dx, ref_dw, ref_db) = torch_conv2d(x, w, b, **kwargs, dout=dout)
    assert_close(out, ref_out)
    dx, dw, db = conv2d_backward(dout, cache)
    assert_close(dx, ref_dx)
    assert_close(dw, ref_dw)
    if b is None:
        assert db is None
    else:
        assert_close(db, ref_db)


EDGE_CASES = [
    # (x shape, w shape, bias, settings): always checked, whatever hypothesis draws.
    ((1, 2, 3, 3), (2, 2, 3, 3), False, dict(padding=0)),                 # one-pixel output
    ((2, 1, 7, 9), (3, 1, 2, 2), True, dict(stride=5, padding=1)),        # stride > kernel
    ((1, 2, 4, 6), (2, 2, 1, 4), True, dict(padding="same")),             # even width, "same"
    ((1, 1, 5, 4), (1, 1, 2, 3), False, dict(padding="full", dilation=(2, 3))),
    ((2, 3, 2, 3), (2, 3, 1, 1), True, dict(padding=2)),                  # padding > kernel
    ((1, 1, 9, 1), (1, 1, 3, 1), True, dict(stride=(2, 1), padding=(1, 0))),  # 1-pixel wide
]


@pytest.mark.parametrize("x_shape, w_shape, bias, kwargs", EDGE_CASES)
def test_edge_cases_match_torch_and_naive(x_shape, w_shape, bias, kwargs):
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0]) if bias else None
    kwargs = {"stride": 1, "dilation": 1, **kwargs}
    out, cache = conv2d_forward(x, w, b, **kwargs)
    assert_close(conv2d_forward_naive(x, w, b, **kwargs)[0], out)
    dout = rng.standard_normal(out.shape)
    ref_out, ref_grads = torch_conv2d(x, w, b, **kwargs, dout=dout)
    assert_close(out, ref_out)
    for g, ref in zip(conv2d_backward(dout, cache), ref_grads):
        assert (g is None) == (ref is None)
        if g is not None:
            assert_close(g, ref)


@settings(max_examples=40)
@given(case=conv_cases())
def test_naive_matches_vectorized(case):
    x, w, b, kwargs, rng = case
    out, cache = conv2d_forward(x, w, b, **kwargs)
    out_naive, cache_naive = conv2d_forward_naive(x, w, b, **kwargs)
    assert_close(out_naive, out)
    # Both caches drive the same backward pass.
    dout = rng.standard_normal(out.shape)
    for g, g_naive in zip(conv2d_backward(dout, cache), conv2d_backward(dout, cache_naive)):
        if g is None:
            assert g_naive is None
        else:
            assert_close(g_naive, g)


@settings(max_examples=40)
@given(case=conv_cases())
def test_im2col_route_matches_naive_and_vectorized(case):
    """The plain im2col route, the loops and the engine: three ways, one result."""
    x, w, b, kwargs, rng = case
    out, cache = conv2d_forward_im2col(x, w, b, **kwargs)
    assert_close(out, conv2d_forward_naive(x, w, b, **kwargs)[0])
    fast_out, fast_cache = conv2d_forward(x, w, b, **kwargs)
    assert_close(out, fast_out)
    dout = rng.standard_normal(out.shape)
    need_dx = bool(rng.integers(2))
    plain = conv2d_backward_im2col(dout, cache, need_dx=need_dx)
    for mine, fast in zip(plain, conv2d_backward(dout, fast_cache, need_dx=need_dx)):
        assert (mine is None) == (fast is None)
        if fast is not None:
            assert_close(mine, fast)


def test_im2col_columns_are_the_windows():
    """Column (n, y, x) is the window under output (y, x), read in (c, i, j) order."""
    x = np.arange(2 * 2 * 5 * 4, dtype=float).reshape(2, 2, 5, 4)
    cols = im2col(x, (3, 2), stride=(2, 1), dilation=(1, 2))
    assert cols.shape == (2 * 3 * 2, 2 * 2 * 2)  # (C*KH*KW, N*H_out*W_out)
    for n in range(2):
        for y in range(2):
            for xx in range(2):
                window = x[n, :, 2 * y:2 * y + 3, xx:xx + 3:2]
                np.testing.assert_array_equal(cols[:, (n * 2 + y) * 2 + xx], window.ravel())


def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), c> == <x, col2im(c)>: overlapping windows add their gradients."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = im2col(x, 3, stride=2, dilation=1)
    c = rng.standard_normal(cols.shape)
    back = col2im(c, x.shape, 3, stride=2)
    assert np.vdot(cols, c) == pytest.approx(np.vdot(x, back), rel=1e-12)


@settings(max_examples=80)
@given(case=conv_transpose_cases())
def test_conv_transpose2d_matches_torch(case):
    x, w, b, kwargs, rng = case
    out, cache = conv_transpose2d_forward(x, w, b, **kwargs)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    ref = F.conv_transpose2d(xt, wt, bt, **kwargs)
    assert_close(out, ref.detach().numpy())
    dout = rng.standard_normal(out.shape)
    ref.backward(torch.tensor(dout))
    dx, dw, db = conv_transpose2d_backward(dout, cache)
    assert_close(dx, xt.grad.numpy())
    assert_close(dw, wt.grad.numpy())
    if b is None:
        assert db is None
    else:
        assert_close(db, bt.grad.numpy())


@settings(max_examples=60)
@given(case=conv_transpose_cases())
def test_conv_transpose2d_is_the_adjoint_of_conv2d(case):
    """<conv2d(z), y> == <z, conv_transpose2d(y)> for the same w, stride and padding."""
    y, w, _, kwargs, rng = case
    out, _ = conv_transpose2d_forward(y, w, **kwargs)
    z = rng.standard_normal(out.shape)  # z lives where conv_transpose2d's output lives
    # The conv2d that maps z back to y's shape: w is (C_in, C_out, KH, KW) = (its C_out, its C_in).
    conv_z, _ = conv2d_forward(z, w, stride=kwargs["stride"], padding=kwargs["padding"])
    assert conv_z.shape == y.shape
    lhs, rhs = np.sum(conv_z * y), np.sum(z * out)
    assert abs(lhs - rhs) <= 1e-10 * (1 + np.sum(np.abs(conv_z * y)))


@settings(max_examples=60)
@given(case=conv_transpose_cases())
def test_conv_transpose2d_naive_matches_vectorized(case):
    x, w, b, kwargs, rng = case
    out, cache = conv_transpose2d_forward(x, w, b, **kwargs)
    out_naive, cache_naive = conv_transpose2d_forward_naive(x, w, b, **kwargs)
    assert_close(out_naive, out)
    dout = rng.standard_normal(out.shape)
    for g, g_naive in zip(conv_transpose2d_backward(dout, cache),
                          conv_transpose2d_backward(dout, cache_naive)):
        if g is None:
            assert g_naive is None
        else:
            assert_close(g_naive, g)


def test_conv_transpose2d_paints_kernel_copies():
    """Independent oracle: every input pixel adds x * kernel at (stride * position)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 3, 2))
    w = rng.standard_normal((2, 3, 2, 3))
    out, _ = conv_transpose2d_forward(x, w, stride=(2, 3))
    full = np.zeros((1, 3, (3 - 1) * 2 + 2, (2 - 1) * 3 + 3))
    for c in range(2):
        for i in range(3):
            for j in range(2):
                full[0, :, 2 * i:2 * i + 2, 3 * j:3 * j + 3] += x[0, c, i, j] * w[c]
    assert_close(out, full)
    cropped, _ = conv_transpose2d_forward(x, w, stride=(2, 3), padding=(1, 1))
    assert_close(cropped, full[:, :, 1:-1, 1:-1])


# --------------------------------------------------------------------------------------
# Numerical gradients (float64)
# --------------------------------------------------------------------------------------

GRAD_CASES = [
    dict(stride=1, padding=0, dilation=1),
    dict(stride=2, padding=1, dilation=1),
    dict(stride=(1, 3), padding="same", dilation=1),
    dict(stride=(2, 1), padding=(0, 2), dilation=(2, 1)),
    dict(stride=1, padding="full", dilation=2),
]


@pytest.mark.parametrize("kwargs", GRAD_CASES)
def test_conv2d_numerical_gradient(kwargs):
    if kwargs["padding"] == "same":
        kwargs = {**kwargs, "stride": 1}
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((2, 3, 3, 2))
    b = rng.standard_normal(2)
    out, cache = conv2d_forward(x, w, b, **kwargs)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)
    num_dx = numerical_gradient(lambda t: conv2d_forward(t, w, b, **kwargs)[0], x, dout)
    num_dw = numerical_gradient(lambda t: conv2d_forward(x, t, b, **kwargs)[0], w, dout)
    num_db = numerical_gradient(lambda t: conv2d_forward(x, w, t, **kwargs)[0], b, dout)
    for analytic, numeric in [(dx, num_dx), (dw, num_dw), (db, num_db)]:
        assert_close(analytic, numeric, rtol=1e-7, atol=1e-8)


def test_conv_transpose2d_numerical_gradient():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 3, 4))
    w = rng.standard_normal((2, 3, 3, 2))
    b = rng.standard_normal(3)
    kwargs = dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2))
    out, cache = conv_transpose2d_forward(x, w, b, **kwargs)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv_transpose2d_backward(dout, cache)
    num_dx = numerical_gradient(lambda t: conv_transpose2d_forward(t, w, b, **kwargs)[0],
                                x, dout)
    num_dw = numerical_gradient(lambda t: conv_transpose2d_forward(x, t, b, **kwargs)[0],
                                w, dout)
    num_db = numerical_gradient(lambda t: conv_transpose2d_forward(x, w, t, **kwargs)[0],
                                b, dout)
    for analytic, numeric in [(dx, num_dx), (dw, num_dw), (db, num_db)]:
        assert_close(analytic, numeric, rtol=1e-7, atol=1e-8)


# --------------------------------------------------------------------------------------
# float32, dtypes, batches larger than one im2col chunk
# --------------------------------------------------------------------------------------

@settings(max_examples=30)
@given(case=conv_cases(max_n=3))
def test_float32_matches_torch_and_keeps_dtype(case):
    x, w, b, kwargs, rng = case
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    b32 = None if b is None else b.astype(np.float32)
    out, cache = conv2d_forward(x32, w32, b32, **kwargs)
    assert out.dtype == np.float32
    dout = rng.standard_normal(out.shape).astype(np.float32)
    grads = conv2d_backward(dout, cache)
    _, ref_grads = torch_conv2d(x, w, b, **kwargs, dout=dout.astype(np.float64))
    ref_out, _ = torch_conv2d(x, w, b, **kwargs, dout=None)
    assert_close(out, ref_out, rtol=1e-4, atol=1e-4)
    for g, ref in zip(grads, ref_grads):
        if ref is None:
            assert g is None
            continue
        assert g.dtype == np.float32
        assert_close(g, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("forward", [conv_transpose2d_forward, conv_transpose2d_forward_naive])
def test_float32_transposed_keeps_dtype(forward):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = np.zeros(2, np.float32)
    out, cache = forward(x, w, b, stride=2)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in conv_transpose2d_backward(np.ones_like(out), cache))



# --------------------------------------------------------------------------------------
# Bad input: the right error type, a message naming the argument, before any work
# --------------------------------------------------------------------------------------

X = np.zeros((2, 3, 5, 5))
W = np.zeros((4, 3, 3, 3))


@pytest.mark.parametrize("forward", [conv2d_forward, conv2d_forward_naive])
@pytest.mark.parametrize("args, kwargs, error, match", [
    ((np.zeros((3, 5, 5)), W), {}, ValueError, r"x must have 4 dimensions.*\(3, 5, 5\)"),
    ((X, np.zeros((3, 3, 3))), {}, ValueError, r"w must have 4 dimensions"),
    ((X, np.zeros((4, 2, 3, 3))), {}, ValueError, r"x has 3 channels.*w expects 2"),
    ((X, W, np.zeros(3)), {}, ValueError, r"b must have shape \(4,\).*\(3,\)"),
    ((X, W, np.zeros((4, 1))), {}, ValueError, r"b must have 1 dimensions"),
    ((X, np.zeros((4, 3, 6, 6))), {}, ValueError, r"kernel of w \(4, 3, 6, 6\).*larger"),
    ((X, W), {"dilation": 3}, ValueError, r"kernel.*dilated extent 7x7.*larger"),
    ((X, W), {"stride": 0}, ValueError, r"stride must be >= 1"),
    ((X, W), {"stride": (1, -1)}, ValueError, r"stride must be >= 1"),
    ((X, W), {"dilation": 0}, ValueError, r"dilation must be >= 1"),
    ((X, W), {"padding": -1}, ValueError, r"padding must be >= 0"),
    ((X, W), {"padding": "same", "stride": 2}, ValueError, r"padding='same' needs stride 1"),
    ((X, W), {"padding": "half"}, ValueError, r"padding must be .*'valid', 'same', 'full'"),
    ((X, W), {"padding": (1, 1, 1)}, ValueError, r"padding must be an int or a pair"),
    ((X, W), {"stride": 1.5}, TypeError, r"stride must be an int"),
    ((X.astype(int), W), {}, TypeError, r"x must have a floating dtype.*int"),
    ((X, W.astype(np.float32)), {}, TypeError, r"x has dtype float64 but w has dtype float32"),
    ((X, W, np.zeros(4, np.float32)), {}, TypeError, r"b has dtype float32"),
    ((X.tolist(), W), {}, TypeError, r"x must be a numpy.ndarray"),
    ((np.zeros((0, 3, 5, 5)), W), {}, ValueError, r"x must not have an empty dimension"),
])
def test_conv2d_bad_input(forward, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        forward(*args, **kwargs)


@pytest.mark.parametrize("dout, error, match", [
    (np.zeros((2, 4, 3, 4)), ValueError, r"dout has shape \(2, 4, 3, 4\) but the forward "
                                         r"output had shape \(2, 4, 3, 3\)"),
    (np.zeros((2, 4, 9)), ValueError, r"dout must have 4 dimensions"),
    (np.zeros((2, 4, 3, 3), np.float32), TypeError, r"dout has dtype float32.*float64"),
    (np.zeros((2, 4, 3, 3), int), TypeError, r"dout must have a floating dtype"),
])
def test_conv2d_backward_bad_dout(dout, error, match):
    _, cache = conv2d_forward(X, W)
    with pytest.raises(error, match=match):
        conv2d_backward(dout, cache)
    with pytest.raises(TypeError, match="cache must be the Conv2dCache"):
        conv2d_backward(np.zeros((2, 4, 3, 3)), (X, W))


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((X, np.zeros((4, 3, 3, 3))), {}, ValueError, r"x has 3 channels.*w expects 4"),
    ((X, np.zeros((3, 2, 3, 3)), np.zeros(3)), {}, ValueError, r"b must have shape \(2,\)"),
    ((X, np.zeros((3, 2, 3, 3))), {"output_padding": 1}, ValueError,
     r"output_padding=\(1, 1\) must be smaller than stride=\(1, 1\)"),
    ((X, np.zeros((3, 2, 3, 3))), {"padding": "same"}, ValueError, r"padding must be an int"),
    ((X, np.zeros((3, 2, 3, 3))), {"padding": -1}, ValueError, r"padding must be >= 0"),
    ((X, np.zeros((3, 2, 3, 3))), {"stride": 0}, ValueError, r"stride must be >= 1"),
    ((np.zeros((2, 3, 1, 1)), np.zeros((3, 2, 1, 1))), {"padding": 1}, ValueError,
     r"padding=\(1, 1\) removes the whole output"),
    ((X.astype(np.float32), np.zeros((3, 2, 3, 3))), {}, TypeError, r"x has dtype float32"),
    ((X[0], np.zeros((3, 2, 3, 3))), {}, ValueError, r"x must have 4 dimensions"),
])
@pytest.mark.parametrize("forward", [conv_transpose2d_forward, conv_transpose2d_forward_naive])
def test_conv_transpose2d_bad_input(args, kwargs, error, match, forward):
    with pytest.raises(error, match=match):
        forward(*args, **kwargs)


def test_conv_transpose2d_backward_bad_dout():
    _, cache = conv_transpose2d_forward(X, np.zeros((3, 2, 3, 3)), stride=2)  # out (2, 2, 11, 11)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 2, 10, 10\) but the forward "
                                         r"output had shape \(2, 2, 11, 11\)"):
        conv_transpose2d_backward(np.zeros((2, 2, 10, 10)), cache)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((5, 7), {}, ValueError, r"kernel_size=7.*larger than the padded input n=5"),
    ((5, 3), {"stride": 0}, ValueError, r"stride must be >= 1"),
    ((5, 3), {"padding": -2}, ValueError, r"padding must be >= 0"),
    ((5, 3), {"padding": "same", "stride": 2}, ValueError, r"padding='same' needs stride 1"),
    ((5, 3), {"dilation": 0}, ValueError, r"dilation must be >= 1"),
    ((0, 3), {}, ValueError, r"n must be >= 1"),
    ((5.0, 3), {}, TypeError, r"n must be an int"),
])
def test_conv_output_size_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        conv_output_size(*args, **kwargs)


@pytest.mark.parametrize("x, padding, kwargs, error, match", [
    (np.zeros(3), 1, {}, ValueError, r"x must have at least 2 dimensions.*\(3,\)"),
    (np.zeros((3, 3)), -1, {}, ValueError, r"padding must be >= 0"),
    (np.zeros((3, 3)), ((1, 1), (1, -1)), {}, ValueError, r"padding must be >= 0"),
    (np.zeros((3, 3)), (1, 2, 3), {}, ValueError, r"padding must be an int or a pair"),
    (np.zeros((3, 3), int), 1, {"value": -np.inf}, ValueError, r"value=-inf cannot be stored"),
    ([[1.0]], 1, {}, TypeError, r"x must be a numpy.ndarray"),
])
def test_pad2d_bad_input(x, padding, kwargs, error, match):
    with pytest.raises(error, match=match):
        pad2d(x, padding, **kwargs)
