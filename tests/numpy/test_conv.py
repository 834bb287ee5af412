"""Tests of cnnlib/numpy/conv.py: conv2d, conv_transpose2d, pad2d, conv_output_size.

Four independent checks, as for every op of the course: worked examples from the course
notes (recomputed here by explicit sums, not by the library), float64 numerical
gradients, the loop version against the vectorized one, and torch.nn.functional in
float64 over shapes drawn by hypothesis. Then float32, dtypes, and bad input.
"""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlib.numpy import conv as conv_module
from cnnlib.numpy import (
    conv2d_backward,
    conv2d_forward,
    conv2d_forward_naive,
    conv_output_size,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    conv_transpose2d_forward_naive,
    numerical_gradient,
    pad2d,
)

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


# The batch size below which conv2d keeps to the calling thread, before the fixture below
# lowers it so that the small batches of these tests take the multi-threaded path too.
PARALLEL_MIN_BYTES = conv_module._PARALLEL_MIN_BYTES


@pytest.fixture(autouse=True)
def _parallel_even_for_small_batches(monkeypatch):
    monkeypatch.setattr(conv_module, "_PARALLEL_MIN_BYTES", 0)


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


def test_many_chunks_and_noncontiguous_input():
    """A batch split over several im2col chunks, passed as a non-contiguous view."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((40, 8, 24, 24))
    x = base.transpose(0, 1, 3, 2)[::2]            # (20, 8, 24, 24), not contiguous
    w = rng.standard_normal((5, 8, 3, 3))
    b = rng.standard_normal(5)
    out, cache = conv2d_forward(x, w, b, stride=1, padding=1)
    dout = rng.standard_normal(out.shape)
    ref_out, ref_grads = torch_conv2d(np.ascontiguousarray(x), w, b, 1, 1, 1, dout)
    assert_close(out, ref_out)
    for g, ref in zip(conv2d_backward(dout, cache), ref_grads):
        assert_close(g, ref)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kwargs", [
    dict(padding="same"),                        # 4x3 kernel: 1 row above, 2 below
    dict(padding=2, dilation=2),
    dict(padding=(2, 0), stride=(2, 1)),
    dict(padding="full", stride=1),
])
def test_padded_chunks_of_unequal_size_reuse_the_padding_buffer(monkeypatch, threads, kwargs):
    """Tiny chunks (the last one smaller) over one or two workers: the padded copy's
    border must stay zero from chunk to chunk, whatever the previous chunk held."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 3, 9, 8)) + 5.0  # no zeros: a stale border would show
    w = rng.standard_normal((4, 3, 4, 3))
    b = rng.standard_normal(4)
    ref_out, _ = conv2d_forward_naive(x, w, b, **kwargs)
    for name in ("_CHUNK_BYTES", "_PARALLEL_CHUNK_BYTES"):
        monkeypatch.setattr(conv_module, name, 2 * 3 * 12 * 9 * 8 * 8)  # ~2 images a chunk
    with threadpool_limits(limits=threads, user_api="blas"):
        out, cache = conv2d_forward(x, w, b, **kwargs)
        dout = rng.standard_normal(out.shape)
        grads = conv2d_backward(dout, cache)
    assert_close(out, ref_out)
    with threadpool_limits(limits=1, user_api="blas"):
        monkeypatch.setattr(conv_module, "_CHUNK_BYTES", 2**30)  # one chunk: the reference
        assert len(conv_module._chunks(7, 3 * 12 * 9 * 8 * 8, 1)) == 1
        ref_grads = conv2d_backward(dout, cache)
    for g, ref in zip(grads, ref_grads):
        assert_close(g, ref)


# Stride-1 geometries whose dx is computed as a convolution of dout with the flipped
# kernel (C_out*H*W <= C_in*H_out*W_out): (x shape, w shape, keyword arguments).
FLIPPED_CASES = [
    ((2, 4, 7, 8), (3, 4, 3, 3), dict(padding=1)),
    ((2, 3, 8, 6), (3, 3, 4, 2), dict(padding="same")),          # uneven padding
    ((1, 3, 9, 9), (2, 3, 3, 3), dict(padding="same", dilation=2)),
    ((2, 4, 5, 6), (4, 4, 3, 2), dict(padding="full")),
    ((3, 5, 4, 4), (5, 5, 1, 1), {}),
    ((9, 6, 12, 12), (6, 6, 3, 3), dict(padding=(1, 2))),        # several chunks, 2 threads
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", FLIPPED_CASES)
def test_input_gradient_as_flipped_convolution(monkeypatch, threads, x_shape, w_shape, kwargs):
    """Both routes to dx (the flipped-kernel convolution and col2im) agree with torch, and
    the flipped one is really taken for these geometries."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), None
    out, cache = conv2d_forward(x, w, b, **kwargs)
    dout = rng.standard_normal(out.shape)
    taken = []
    flipped_geometry = conv_module._flipped_geometry
    monkeypatch.setattr(conv_module, "_flipped_geometry",
                        lambda g: taken.append(flipped_geometry(g)) or taken[-1])
    monkeypatch.setattr(conv_module, "_CHUNK_BYTES", 2**14)  # several chunks
    monkeypatch.setattr(conv_module, "_PARALLEL_CHUNK_BYTES", 2**14)
    with threadpool_limits(limits=threads, user_api="blas"):
        flipped = conv2d_backward(dout, cache)
        assert taken and all(g is not None for g in taken)
        monkeypatch.setattr(conv_module, "_flipped_geometry", lambda g: None)
        by_col2im = conv2d_backward(dout, cache)
    _, ref = torch_conv2d(x, w, b, 1, kwargs.get("padding", 0), kwargs.get("dilation", 1),
                          dout)
    for mine, other, theirs in zip(flipped[:2], by_col2im[:2], ref[:2]):
        assert_close(mine, theirs)
        assert_close(other, theirs)


def test_transposed_convolution_through_the_flipped_route_matches_torch(monkeypatch):
    """conv_transpose2d's forward pass is conv2d's input gradient, so with stride 1 and
    more output than input channels it takes the flipped route too."""
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((3, 2, 6, 5)), rng.standard_normal((2, 7, 3, 3)), None
    taken = []
    flipped_geometry = conv_module._flipped_geometry
    monkeypatch.setattr(conv_module, "_flipped_geometry",
                        lambda g: taken.append(flipped_geometry(g)) or taken[-1])
    out, _ = conv_transpose2d_forward(x, w, b, padding=1)
    assert taken and taken[0] is not None
    expected = F.conv_transpose2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    assert_close(out, expected)


@pytest.mark.parametrize("threads", [1, 2])
def test_results_never_share_memory_with_the_work_buffers(threads):
    """Work buffers are kept per thread between calls: a second call must not change
    what the first one returned."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(10)
    w, b = rng.standard_normal((6, 6, 3, 3)), rng.standard_normal(6)
    with threadpool_limits(limits=threads, user_api="blas"):
        results = []
        for _ in range(2):
            x = rng.standard_normal((16, 6, 20, 20))
            out, cache = conv2d_forward(x, w, b, padding=1)
            results.append((out, *conv2d_backward(rng.standard_normal(out.shape), cache)))
            t_out, _ = conv_transpose2d_forward(x, w, padding=1)
            results[-1] += (t_out,)
        kept = [a.copy() for a in results[0]]
        x = rng.standard_normal((16, 6, 20, 20))
        out, cache = conv2d_forward(x, w, b, padding=1)
        conv2d_backward(rng.standard_normal(out.shape), cache)
        conv_transpose2d_forward(x, w, padding=1)
    for a, k in zip(results[0], kept):
        np.testing.assert_array_equal(a, k)
    assert not np.array_equal(results[0][0], results[1][0])


def test_padded_work_buffers_are_bounded_and_keep_a_zero_border():
    """Many geometries in turn, twice round: each thread keeps only the last few padded
    buffers, and a kept one still has a zero border when its geometry comes back."""
    rng = np.random.default_rng(11)
    geometries = [((2, 3, 6 + i % 4, 7), (2, 3, 3, 2 + i % 3), dict(padding=(1 + i % 2, i % 3)))
                  for i in range(12)]
    for _ in range(2):
        for x_shape, w_shape, kwargs in geometries:
            x = rng.standard_normal(x_shape) + 5.0  # no zeros: a stale border would show
            w = rng.standard_normal(w_shape)
            out, _ = conv2d_forward(x, w, **kwargs)
            assert_close(out, conv2d_forward_naive(x, w, **kwargs)[0])
    assert 0 < len(conv_module._SCRATCH.padded) <= conv_module._SCRATCH_PADDED


@pytest.mark.parametrize("threads", [1, 2])
def test_work_buffers_kept_between_calls_stay_under_the_limit(monkeypatch, threads):
    """A layer whose buffers exceed _SCRATCH_KEEP_BYTES gets them per call: nothing that
    large stays behind in the thread, and the results are unchanged."""
    from threadpoolctl import threadpool_limits

    limit = 40_000
    monkeypatch.setattr(conv_module, "_SCRATCH_KEEP_BYTES", limit)
    monkeypatch.setattr(conv_module, "_SCRATCH", threading.local())
    rng = np.random.default_rng(14)
    for x_shape, w_shape in (((3, 4, 9, 9), (2, 4, 3, 3)), ((4, 8, 16, 16), (8, 8, 3, 3))):
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        with threadpool_limits(limits=threads, user_api="blas"):
            out, cache = conv2d_forward(x, w, padding=1)
            grads = conv2d_backward(np.ones_like(out), cache)
        ref_out, ref_grads = torch_conv2d(x, w, None, 1, 1, 1, np.ones_like(out))
        assert_close(out, ref_out)
        for g, ref in zip(grads[:2], ref_grads[:2]):
            assert_close(g, ref)
    kept = list(conv_module._SCRATCH.flat.values())
    assert kept and all(b.nbytes <= limit for b in kept)  # the small layer's were kept
    assert sum(b.nbytes for b in conv_module._SCRATCH.padded.values()) <= limit


# Geometries for the two column orders of the im2col matrix: (x shape, w shape, kwargs).
LAYOUT_CASES = [
    ((7, 3, 9, 8), (4, 3, 3, 3), dict(padding=1)),
    ((6, 2, 11, 10), (3, 2, 4, 3), dict(stride=2, padding=(2, 1))),
    ((5, 3, 10, 9), (2, 3, 3, 2), dict(padding="same", dilation=2)),
    ((9, 6, 14, 14), (16, 6, 5, 5), {}),                          # LeNet's C3, smaller
    ((4, 2, 7, 7), (5, 2, 3, 3), dict(stride=(1, 3), padding="full")),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("minor, products_per_image",
                         [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", LAYOUT_CASES)
def test_both_column_orders_match_torch(monkeypatch, threads, minor, products_per_image,
                                        x_shape, w_shape, kwargs):
    """Columns ordered (image, y, x) or (y, x, image), forced either way, and in the
    first order one product per image or per chunk (_per_image_products), over chunks
    of unequal size: conv2d's output and gradients, and the transposed convolution's,
    agree with torch."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(12)
    x, w, b = (rng.standard_normal(x_shape), rng.standard_normal(w_shape),
               rng.standard_normal(w_shape[0]))
    stride = kwargs.get("stride", 1)
    monkeypatch.setattr(conv_module, "_images_minor", lambda g, images: minor)
    monkeypatch.setattr(conv_module, "_DIRECT_MIN_COLUMNS", 1 if products_per_image else 10**9)
    g_seen = []
    choose = conv_module._per_image_products
    monkeypatch.setattr(conv_module, "_per_image_products",
                        lambda g, m: g_seen.append(choose(g, m)) or g_seen[-1])
    per_image = x_shape[1] * w_shape[2] * w_shape[3] * x_shape[2] * x_shape[3] * 8
    for name in ("_CHUNK_BYTES", "_PARALLEL_CHUNK_BYTES"):
        monkeypatch.setattr(conv_module, name, 2 * per_image)  # chunks of about 2 images
    with threadpool_limits(limits=threads, user_api="blas"):
        out, cache = conv2d_forward(x, w, b, **kwargs)
        dout = rng.standard_normal(out.shape)
        grads = conv2d_backward(dout, cache)
        # The transposed convolution maps out's shape back up (w read as (C_in, C_out)).
        t_out, t_cache = conv_transpose2d_forward(dout, w, stride=stride)
        t_dout = rng.standard_normal(t_out.shape)
        t_grads = conv_transpose2d_backward(t_dout, t_cache)
    ref_out, ref_grads = torch_conv2d(x, w, b, stride, kwargs.get("padding", 0),
                                      kwargs.get("dilation", 1), dout)
    assert_close(out, ref_out)
    for g, ref in zip(grads, ref_grads):
        assert_close(g, ref)
    dt, wt = torch.tensor(dout, requires_grad=True), torch.tensor(w, requires_grad=True)
    t_ref = F.conv_transpose2d(dt, wt, stride=stride)
    t_ref.backward(torch.tensor(t_dout))
    assert_close(t_out, t_ref.detach().numpy())
    assert_close(t_grads[0], dt.grad.numpy())
    assert_close(t_grads[1], wt.grad.numpy())
    assert g_seen and set(g_seen) == {products_per_image}  # the path we meant


def test_per_image_products_only_for_large_images_in_the_first_column_order():
    """The first VGG-like layer (64x64 outputs) takes one product per image; 32x32
    outputs, and any chunk in the (y, x, image) order, one product per chunk."""
    def geometry(out_hw):
        return conv_module._Geometry((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), out_hw, out_hw)
    assert conv_module._per_image_products(geometry((64, 64)), False)
    assert not conv_module._per_image_products(geometry((64, 64)), True)
    assert not conv_module._per_image_products(geometry((32, 32)), False)


def test_column_order_follows_images_per_chunk_against_output_width():
    """(y, x, image) columns when a chunk holds at least half as many images as an
    output row has pixels, as measured faster; (image, y, x) otherwise."""
    def geometry(out_w):
        return conv_module._Geometry((3, 3), (1, 1), (0, 0, 0, 0), (1, 1), (9, out_w + 2),
                                     (7, out_w))
    assert conv_module._images_minor(geometry(10), 64)     # LeNet's C3
    assert conv_module._images_minor(geometry(10), 5)
    assert not conv_module._images_minor(geometry(10), 4)
    assert not conv_module._images_minor(geometry(32), 1)  # one VGG-like image a chunk


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


# --------------------------------------------------------------------------------------
# The thread-parallel path (one worker per BLAS thread) and forked children
# --------------------------------------------------------------------------------------

def _conv_both_ways(x, w, b, dout, **kwargs):
    """Every output of conv2d and conv_transpose2d with 1 and with 2 BLAS threads."""
    from threadpoolctl import threadpool_limits

    results = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            assert conv_module._blas_threads()[1] == threads  # else this tests nothing
            conv_module._EXECUTOR = None
            out, cache = conv2d_forward(x, w, b, **kwargs)
            assert (conv_module._EXECUTOR is not None) == (threads > 1)  # the path we meant
            # Same w as a transposed conv maps dout's shape back to x's (the adjoint).
            t_out, t_cache = conv_transpose2d_forward(dout, w, **kwargs)
            results.append((out, *conv2d_backward(dout, cache), t_out,
                            *conv_transpose2d_backward(x, t_cache)))
    return results


def test_parallel_path_matches_sequential_and_torch():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 4, 30, 30))  # several chunks, an odd number of images
    w = rng.standard_normal((3, 4, 3, 3))
    b = rng.standard_normal(3)
    dout = rng.standard_normal((7, 3, 30, 30))
    one, two = _conv_both_ways(x, w, b, dout, stride=1, padding=1)
    for a, c in zip(one, two):
        if a is not None:
            assert_close(c, a)
    ref_out, ref_grads = torch_conv2d(x, w, b, 1, 1, 1, dout)
    assert_close(two[0], ref_out)
    for g, ref in zip(two[1:4], ref_grads):
        assert_close(g, ref)


def test_small_batches_stay_in_the_calling_thread(monkeypatch):
    """Below _PARALLEL_MIN_BYTES of im2col matrix the worker threads are not used, above
    it they are; both give the same result."""
    from threadpoolctl import threadpool_limits

    monkeypatch.setattr(conv_module, "_PARALLEL_MIN_BYTES", PARALLEL_MIN_BYTES)
    rng = np.random.default_rng(13)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    per_image = 16 * 9 * 16 * 16 * 4  # bytes of im2col matrix for one 16x16 image
    big = PARALLEL_MIN_BYTES // per_image + 1
    x = rng.standard_normal((big, 16, 16, 16)).astype(np.float32)
    with threadpool_limits(limits=2, user_api="blas"):
        assert conv_module._blas_threads()[1] == 2  # else this tests nothing
        for n, parallel in ((big - 2, False), (big, True)):
            monkeypatch.setattr(conv_module, "_EXECUTOR", None)
            out, _ = conv2d_forward(x[:n], w, padding=1)
            assert (conv_module._EXECUTOR is not None) == parallel
            expected = conv2d_forward(x[:n].astype(np.float64), w.astype(np.float64),
                                      padding=1)[0]
            assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c_in, c_out, k, stride, padding", [
    (4, 3, 3, 1, 1),   # dx by the flipped kernel (C_out*H*W <= C_in*H_out*W_out)
    (2, 5, 3, 1, 0),   # dx by col2im
    (3, 4, 3, 2, 1),   # strided: col2im
])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("per_image", [False, True])
def test_backward_without_dx_gives_the_same_weight_and_bias_gradients(
        monkeypatch, c_in, c_out, k, stride, padding, threads, per_image):
    """need_dx=False returns dx=None and exactly the dw and db of the full call."""
    from threadpoolctl import threadpool_limits

    monkeypatch.setattr(conv_module, "_DIRECT_MIN_COLUMNS", 1 if per_image else 10**9)
    monkeypatch.setattr(conv_module, "_images_minor", lambda g, images: False)

    rng = np.random.default_rng(21)
    x = rng.standard_normal((9, c_in, 11, 10)).astype(np.float32)
    w = rng.standard_normal((c_out, c_in, k, k)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        out, cache = conv2d_forward(x, w, b, stride=stride, padding=padding)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        dx, dw, db = conv2d_backward(dout, cache)
        none, dw2, db2 = conv2d_backward(dout, cache, need_dx=False)
    assert dx is not None and none is None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)
    with pytest.raises(TypeError, match="need_dx"):
        conv2d_backward(dout, cache, need_dx="no")


def test_small_batch_in_the_calling_thread_uses_one_blas_thread_while_workers_are_in_use(
        monkeypatch):
    """A small batch stays in the calling thread. With 2 BLAS threads and the workers
    idle for a while, its products use both BLAS threads and its chunks follow
    _PARALLEL_CHUNK_BYTES (here forced small, so there are several, the last one
    shorter); right after the workers ran, it runs on one BLAS thread, with
    _CHUNK_BYTES chunks, as it does with 1 thread; all agree with torch, and the limit
    is lifted afterwards."""
    from threadpoolctl import threadpool_limits

    from cnnlib.numpy import _blas

    monkeypatch.setattr(conv_module, "_PARALLEL_MIN_BYTES", 2**40)
    rng = np.random.default_rng(15)
    x, w, b = (rng.standard_normal((7, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3)),
               rng.standard_normal(4))
    per_image = 3 * 9 * 9 * 8 * 8  # bytes of im2col matrix for one image, float64
    seen = []  # (largest chunk, BLAS threads while the chunks run)
    chunks = conv_module._chunks

    def record(*a):
        cs = chunks(*a)
        seen.append((max(c.stop - c.start for c in cs), conv_module._blas_threads()[1]))
        return cs

    monkeypatch.setattr(conv_module, "_chunks", record)
    monkeypatch.setattr(conv_module, "_PARALLEL_CHUNK_BYTES", 3 * per_image)
    monkeypatch.setattr(conv_module, "_CHUNK_BYTES", 2 * per_image)
    for threads, workers_ago, expected in ((2, 1e9, (3, 2)), (2, 0.0, (2, 1)),
                                           (1, 1e9, (2, 1))):
        seen.clear()
        with threadpool_limits(limits=threads, user_api="blas"):
            assert conv_module._blas_threads()[1] == threads  # else this tests nothing
            monkeypatch.setattr(_blas, "_WORKERS_DONE", time.monotonic() - workers_ago)
            out, cache = conv2d_forward(x, w, b, padding=1)
            dout = rng.standard_normal(out.shape)
            grads = conv2d_backward(dout, cache)
            assert conv_module._blas_threads()[1] == threads
        assert len(seen) == 2 and set(seen) == {expected}
        ref_out, ref_grads = torch_conv2d(x, w, b, 1, 1, 1, dout)
        assert_close(out, ref_out)
        for g, ref in zip(grads, ref_grads):
            assert_close(g, ref)


def test_worker_path_notes_its_use():
    """The worker path records when it last ran, which keeps small products that follow
    on one BLAS thread (cnnlib/numpy/_blas.py)."""
    from threadpoolctl import threadpool_limits

    from cnnlib.numpy import _blas

    x = np.random.default_rng(16).standard_normal((6, 4, 12, 12))
    w = np.ones((3, 4, 3, 3))
    with threadpool_limits(limits=2, user_api="blas"):
        before = time.monotonic()
        conv2d_forward(x, w, padding=1)  # the fixture sends any batch to the workers
        assert _blas._WORKERS_DONE >= before and _blas.workers_recently_used()
        assert conv_module._blas_threads()[1] == 2


@settings(max_examples=200, deadline=None)
@given(n_images=st.integers(1, 300), bytes_per_image=st.integers(1, 2**24),
       n_workers=st.integers(1, 4))
def test_chunks_cover_the_batch_and_share_it_evenly(n_images, bytes_per_image, n_workers):
    """Chunks tile the batch in order, none over the size limit unless one image is, and
    dealt out in turn (as _in_parallel does) give the workers equal numbers of images,
    give or take one: a short last chunk would leave one thread waiting for the other."""
    chunks = conv_module._chunks(n_images, bytes_per_image, n_workers)
    assert [c.start for c in chunks] == [0] + [c.stop for c in chunks[:-1]]
    assert chunks[-1].stop == n_images and all(c.stop > c.start for c in chunks)
    if n_workers == 1:
        per = max(1, conv_module._CHUNK_BYTES // bytes_per_image)
    else:
        per = max(conv_module._PARALLEL_MIN_IMAGES,
                  conv_module._PARALLEL_CHUNK_BYTES // bytes_per_image)
    assert max(c.stop - c.start for c in chunks) <= per
    shares = [sum(c.stop - c.start for c in chunks[k::n_workers]) for k in range(n_workers)]
    assert max(shares) - min(shares) <= 1


def test_worker_chunks_hold_two_images_even_when_one_fills_the_size_limit():
    """The VGG-like benchmark layer, 32 images of 2.4 MB of im2col matrix: with 2 workers
    chunks of two images (measured faster than one), with 1 worker one image a chunk."""
    per_image = 64 * 9 * 32 * 32 * 4
    assert per_image > conv_module._PARALLEL_CHUNK_BYTES // 2
    assert [c.stop - c.start for c in conv_module._chunks(32, per_image, 2)] == [2] * 16
    assert [c.stop - c.start for c in conv_module._chunks(32, per_image, 1)] == [1] * 32
    assert [c.stop - c.start for c in conv_module._chunks(2, per_image, 2)] == [1, 1]


def test_chunks_of_the_strided_benchmark_layer_are_even():
    """The case that showed the imbalance: 32 images of 576 KB of im2col matrix."""
    chunks = conv_module._chunks(32, 64 * 9 * 16 * 16 * 4, 2)
    assert [c.stop - c.start for c in chunks] == [6, 6, 5, 5, 5, 5]


def test_conv_in_a_forked_child_after_parallel_use():
    """The grading sandbox forks; a child must not wait on the parent's worker threads."""
    import multiprocessing

    from threadpoolctl import threadpool_limits

    x = np.random.default_rng(7).standard_normal((8, 8, 24, 24))  # big enough to go parallel
    w = np.ones((2, 8, 3, 3))
    with threadpool_limits(limits=2, user_api="blas"):
        expected = conv2d_forward(x, w)[0]  # starts the worker threads
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:
            result = pool.apply_async(_forward_sum, (x, w)).get(timeout=60)
    assert result == pytest.approx(expected.sum())


def _forward_sum(x, w):
    return float(conv2d_forward(x, w)[0].sum())
