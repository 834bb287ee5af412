"""Tests of cnnlib/numpy/pool.py, four ways.

1. Worked examples from the course notes, with the expected outputs recomputed here by
   hand (and checked again by a plain-Python reference that shares no code with cnnlib).
2. Float64 central-difference gradients (cnnlib's numerical_gradient, itself checked
   against closed forms in test_gradcheck.py).
3. Naive (loop over output positions) == vectorized (loop over window offsets).
4. Agreement with torch.nn.functional in float64 over shapes drawn by hypothesis:
   overlapping windows, padding 0 and > 0, odd and non-square sizes, stride larger than
   the kernel, one-pixel outputs; and small-integer inputs, so ties are everywhere and
   the gradient must go to the same tied position as in PyTorch.
Plus every bad input: the right exception type, naming the argument.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlib.numpy import numerical_gradient, pool

SLIDING = {
    "max": (pool.maxpool2d_forward, pool.maxpool2d_forward_naive, pool.maxpool2d_backward),
    "min": (pool.minpool2d_forward, pool.minpool2d_forward_naive, pool.minpool2d_backward),
    "avg": (pool.avgpool2d_forward, pool.avgpool2d_forward_naive, pool.avgpool2d_backward),
}


# ---------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------

def python_pool(grid, k, s, reduce):
    """Pool one 2-D list of numbers with plain Python: no NumPy, no padding."""
    rows, cols = len(grid), len(grid[0])
    return [[reduce([grid[r][c] for r in range(i, i + k) for c in range(j, j + k)])
             for j in range(0, cols - k + 1, s)]
            for i in range(0, rows - k + 1, s)]


def mean(values):
    return Fraction(sum(values), len(values))


def torch_pool(mode, x, kernel_size, stride, padding):
    if mode == "max":
        return F.max_pool2d(x, kernel_size, stride, padding)
    if mode == "min":
        return -F.max_pool2d(-x, kernel_size, stride, padding)
    return F.avg_pool2d(x, kernel_size, stride, padding)  # count_include_pad=True


def torch_forward_backward(mode, x, dout, kernel_size, stride, padding):
    xt = torch.tensor(x, requires_grad=True)
    out = torch_pool(mode, xt, kernel_size, stride, padding)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), xt.grad.numpy()


# ---------------------------------------------------------------------------------------
# 1. Worked examples from the notes
# ---------------------------------------------------------------------------------------

# Student notes: a 4x4 map pooled with size (2, 2), stride (2, 2).
NOTES_4X4_A = [[3, 1, 1, 3],
               [2, 5, 0, 2],
               [1, 4, 2, 1],
               [7, 4, 2, 4]]
# Unit slides: another 4x4 map, 2x2 max pooling with stride 2. The slides print the
# pooled output as a 4x2 table; a 2x2 pool of a 4x4 map has a 2x2 output.
NOTES_4X4_B = [[1, 3, 2, 4],
               [5, 6, 1, 8],
               [9, 2, 7, 3],
               [4, 5, 6, 1]]
# Unit slides: a 6x6 map, 2x2 max pooling with stride 2.
NOTES_6X6 = [[1, 3, 2, 4, 8, 6],
             [5, 6, 1, 8, 7, 3],
             [9, 2, 7, 3, 6, 5],
             [4, 5, 6, 1, 9, 2],
             [8, 3, 4, 7, 2, 1],
             [5, 7, 9, 2, 3, 6]]
# In-depth blog: the global pooling example.
NOTES_3X3 = [[2, 4, 3],
             [1, 5, 6],
             [8, 2, 9]]

# Expected values worked by hand, window by window (top-left window first).
WORKED = [
    # grid, mode, expected
    (NOTES_4X4_A, "max", [[5, 3], [7, 4]]),  # max(3,1,2,5), max(1,3,0,2), ...
    (NOTES_4X4_A, "avg", [[2.75, 1.5], [4.0, 2.25]]),  # 11/4, 6/4, 16/4, 9/4
    (NOTES_4X4_A, "min", [[1, 0], [1, 1]]),
    (NOTES_4X4_B, "max", [[6, 8], [9, 7]]),
    (NOTES_4X4_B, "avg", [[3.75, 3.75], [5.0, 4.25]]),  # 15/4, 15/4, 20/4, 17/4
    (NOTES_6X6, "max", [[6, 8, 8], [9, 7, 9], [8, 9, 6]]),
    (NOTES_6X6, "min", [[1, 1, 3], [2, 1, 2], [3, 2, 1]]),
    (NOTES_6X6, "avg", [[3.75, 3.75, 6.0], [5.0, 4.25, 5.5], [5.75, 5.5, 3.0]]),
]


@pytest.mark.parametrize("grid, mode, expected", WORKED)
@pytest.mark.parametrize("naive", [False, True], ids=["vectorized", "naive"])
def test_worked_examples_from_the_notes(grid, mode, expected, naive):
    reduce = {"max": max, "min": min, "avg": mean}[mode]
    # The hand-worked numbers and a plain-Python pool agree before cnnlib is asked.
    assert python_pool(grid, 2, 2, reduce) == expected
    forward = SLIDING[mode][1 if naive else 0]
    x = np.array(grid, dtype=np.float64)[None, None]  # (H, W) -> (1, 1, H, W)
    out, _ = forward(x, kernel_size=2, stride=2)
    np.testing.assert_array_equal(out[0, 0], np.array(expected, dtype=np.float64))


def test_worked_example_overlapping_3x3_stride_1():
    x = np.array(NOTES_4X4_B, dtype=np.float64)[None, None]  # (1, 1, 4, 4)
    out, _ = pool.maxpool2d_forward(x, kernel_size=3, stride=1)
    # Windows at rows 0-2 / 1-3 and columns 0-2 / 1-3 all contain the 9 or the 8.
    assert out[0, 0].tolist() == [[9, 8], [9, 8]] == python_pool(NOTES_4X4_B, 3, 1, max)


def test_worked_example_6x6_gradient_lands_on_the_winners():
    x = np.array(NOTES_6X6, dtype=np.float64)[None, None]  # (1, 1, 6, 6)
    out, cache = pool.maxpool2d_forward(x, kernel_size=2, stride=2)
    dout = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # (9,) -> (1, 1, 3, 3)
    dx = pool.maxpool2d_backward(dout, cache)[0, 0]
    # Winners found by hand: 6 at (1,1), 8 at (1,3), 8 at (0,4), 9 at (2,0), 7 at (2,2),
    # 9 at (3,4), 8 at (4,0), 9 at (5,2), 6 at (5,5).
    winners = [(1, 1), (1, 3), (0, 4), (2, 0), (2, 2), (3, 4), (4, 0), (5, 2), (5, 5)]
    expected = np.zeros((6, 6))
    for g, (r, c) in enumerate(winners, start=1):
        expected[r, c] = g
    np.testing.assert_array_equal(dx, expected)


def test_worked_example_global_pooling():
    x = np.array(NOTES_3X3, dtype=np.float64)[None, None]  # (1, 1, 3, 3)
    out_max, _ = pool.global_maxpool_forward(x)
    out_avg, _ = pool.global_avgpool_forward(x)
    assert out_max.shape == out_avg.shape == (1, 1)
    assert out_max[0, 0] == 9
    # (2 + 4 + 3 + 1 + 5 + 6 + 8 + 2 + 9) / 9 = 40 / 9 = 4.444..., which the notes round.
    assert out_avg[0, 0] == pytest.approx(40 / 9, rel=1e-15)
    assert Fraction(sum(sum(row) for row in NOTES_3X3), 9) == Fraction(40, 9)


def test_ties_send_the_gradient_to_the_first_maximum_only():
    x = np.array([[[[1.0, 7.0, 7.0],
                    [7.0, 0.0, 7.0],
                    [2.0, 7.0, 3.0]]]])  # (1, 1, 3, 3)
    _, cache = pool.maxpool2d_forward(x, kernel_size=2, stride=1)
    dx = pool.maxpool2d_backward(np.ones((1, 1, 2, 2)), cache)
    # Each window's first 7 in row-major order: (0,1), (0,1), (1,0), (1,2).
    expected = np.array([[0, 2, 0], [1, 0, 1], [0, 0, 0]], dtype=np.float64)
    np.testing.assert_array_equal(dx[0, 0], expected)


# ---------------------------------------------------------------------------------------
# 2. Float64 numerical gradients
# ---------------------------------------------------------------------------------------

GRAD_CONFIGS = [
    # (N, C, H, W), kernel_size, stride, padding
    ((2, 2, 5, 5), 2, None, 0),  # non-overlapping, odd size leaves a row unused
    ((1, 2, 5, 6), 3, 1, 1),  # overlapping with padding
    ((2, 1, 7, 5), (3, 2), (2, 1), (1, 0)),  # non-square everything
    ((1, 2, 7, 7), 2, 3, 1),  # stride larger than the kernel
    ((1, 1, 3, 4), (3, 4), 1, 0),  # one-pixel output
    ((1, 2, 7, 6), (3, 2), (1, 2), (1, 0)),  # windows overlap along H only
    ((1, 2, 4, 7), (2, 3), (2, 1), (0, 1)),  # windows overlap along W only
]


def distinct_values(shape, rng):
    """Values at least 0.01 apart, so no two tie within +-h of a central difference."""
    values = rng.permutation(np.prod(shape)).astype(np.float64) / 100 - 1
    return values.reshape(shape)  # (prod,) -> shape


@pytest.mark.parametrize("mode", ["max", "min", "avg"])
@pytest.mark.parametrize("shape, k, s, p", GRAD_CONFIGS)
def test_numerical_gradient(mode, shape, k, s, p):
    rng = np.random.default_rng(0)
    forward, _, backward = SLIDING[mode]
    x = distinct_values(shape, rng)
    out, cache = forward(x, kernel_size=k, stride=s, padding=p)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    num = numerical_gradient(lambda v: forward(v, kernel_size=k, stride=s, padding=p)[0],
                             x, dout)
    np.testing.assert_allclose(dx, num, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_global_pool_numerical_gradient(kind):
    rng = np.random.default_rng(1)
    forward = getattr(pool, f"global_{kind}pool_forward")
    backward = getattr(pool, f"global_{kind}pool_backward")
    x = distinct_values((2, 3, 3, 5), rng)
    out, cache = forward(x)
    dout = rng.standard_normal(out.shape)
    num = numerical_gradient(lambda v: forward(v)[0], x, dout)
    np.testing.assert_allclose(backward(dout, cache), num, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("p_value", [1.0, 2.5, 7.0])
def test_gem_numerical_gradient_for_x_and_p(p_value):
    rng = np.random.default_rng(2)
    x = rng.uniform(0.1, 2.0, size=(2, 3, 3, 4))
    x[0, 0, 0, 0] = -0.5  # clamped to eps: no gradient reaches it
    p = np.array([p_value])
    out, cache = pool.gem_pool_forward(x, p)
    dout = rng.standard_normal(out.shape)
    dx, dp = pool.gem_pool_backward(dout, cache)
    num_x = numerical_gradient(lambda v: pool.gem_pool_forward(v, p)[0], x, dout)
    num_p = numerical_gradient(lambda q: pool.gem_pool_forward(x, q)[0], p.copy(), dout)
    np.testing.assert_allclose(dx, num_x, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dp, num_p, rtol=1e-6, atol=1e-9)
    assert dx[0, 0, 0, 0] == 0
    assert dp.shape == p.shape and dp.dtype == p.dtype


# ---------------------------------------------------------------------------------------
# Shapes drawn by hypothesis
# ---------------------------------------------------------------------------------------

@st.composite
def pool_configs(draw):
    """A valid pooling configuration: kernel, stride (maybe None), padding, input shape.

    Kernels up to 4, strides up to 5 (so also larger than the kernel), padding up to
    half the kernel, and input sizes from the smallest allowed (one-pixel output) up.
    """
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 5), st.integers(1, 5))))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    square = draw(st.booleans())
    kernel = kh if square and kh == kw else (kh, kw)
    padding = ph if ph == pw else (ph, pw)
    return (n, c, h, w), kernel, stride, padding


def draw_input(shape, seed, ties):
    rng = np.random.default_rng(seed)
    if ties:  # small integers: most windows hold a tie
        return rng.integers(-2, 3, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


# ---------------------------------------------------------------------------------------
# 3. Naive == vectorized
# ---------------------------------------------------------------------------------------

@settings(max_examples=60)
@given(config=pool_configs(), seed=st.integers(0, 2**32 - 1), ties=st.booleans(),
       mode=st.sampled_from(["max", "min", "avg"]))
def test_naive_equals_vectorized(config, seed, ties, mode):
    shape, k, s, p = config
    forward, naive, backward = SLIDING[mode]
    x = draw_input(shape, seed, ties)
    out, cache = forward(x, kernel_size=k, stride=s, padding=p)
    out_n, cache_n = naive(x, kernel_size=k, stride=s, padding=p)
    np.testing.assert_allclose(out_n, out, rtol=1e-12, atol=1e-12)
    if mode != "avg":
        np.testing.assert_array_equal(cache_n.argext, cache.argext)
        assert cache_n.argext.dtype == cache.argext.dtype
    dout = np.random.default_rng(seed + 1).standard_normal(out.shape)
    np.testing.assert_allclose(backward(dout, cache_n), backward(dout, cache), rtol=1e-12)


# ---------------------------------------------------------------------------------------
# 4. Agreement with torch.nn.functional, float64
# ---------------------------------------------------------------------------------------

@settings(max_examples=80)
@given(config=pool_configs(), seed=st.integers(0, 2**32 - 1), ties=st.booleans(),
       mode=st.sampled_from(["max", "min", "avg"]))
def test_matches_torch(config, seed, ties, mode):
    shape, k, s, p = config
    forward, _, backward = SLIDING[mode]
    x = draw_input(shape, seed, ties)
    out, cache = forward(x, kernel_size=k, stride=s, padding=p)
    dout = np.random.default_rng(seed + 1).standard_normal(out.shape)
    dx = backward(dout, cache)
    stride_t = k if s is None else s  # torch reads stride=None the same way
    out_t, dx_t = torch_forward_backward(mode, x, dout, k, stride_t, p)
    assert out.shape == out_t.shape
    assert dx.shape == x.shape and dx.dtype == x.dtype
    np.testing.assert_allclose(out, out_t, rtol=1e-12, atol=1e-12)
    # With ties, a gradient routed to a different tied position shows up here.
    np.testing.assert_allclose(dx, dx_t, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["max", "min", "avg"])
@pytest.mark.parametrize("shape, k, s, p", GRAD_CONFIGS)
def test_matches_torch_on_listed_configs(mode, shape, k, s, p):
    # The hypothesis test's cases vary from run to run; these are always checked.
    x = draw_input(shape, 0, ties=True)
    forward, _, backward = SLIDING[mode]
    out, cache = forward(x, kernel_size=k, stride=s, padding=p)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    out_t, dx_t = torch_forward_backward(mode, x, dout, k, k if s is None else s, p)
    np.testing.assert_allclose(out, out_t, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(backward(dout, cache), dx_t, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("k, s, p", [(3, 2, 1), (2, 1, 1), ((3, 2), (2, 1), (1, 1))])
def test_non_finite_inputs_route_like_torch(mode, k, s, p):
    # NaN wins a window (the last NaN if several); a window whose real values are all
    # -inf (+inf for min) sends its gradient to its first real position, not the padding.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 6, 6))
    big = -np.inf if mode == "max" else np.inf
    x[:, :, :2, :2] = big
    x[:, :, 4:, :] = big
    x[0, 0, 2, 3] = x[0, 0, 2, 4] = x[1, 1, 3, 3] = np.nan
    forward, _, backward = SLIDING[mode]
    out, cache = forward(x, kernel_size=k, stride=s, padding=p)
    dout = rng.standard_normal(out.shape)
    out_t, dx_t = torch_forward_backward(mode, x, dout, k, s, p)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_allclose(backward(dout, cache), dx_t, rtol=1e-12, atol=1e-12)


@settings(max_examples=40)
@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 7), w=st.integers(1, 7),
       seed=st.integers(0, 2**32 - 1), ties=st.booleans())
def test_global_pools_match_torch_adaptive_pools(n, c, h, w, seed, ties):
    x = draw_input((n, c, h, w), seed, ties)
    dout = np.random.default_rng(seed + 1).standard_normal((n, c))
    for kind, torch_pool_fn in [("avg", F.adaptive_avg_pool2d), ("max", F.adaptive_max_pool2d)]:
        out, cache = getattr(pool, f"global_{kind}pool_forward")(x)
        dx = getattr(pool, f"global_{kind}pool_backward")(dout, cache)
        xt = torch.tensor(x, requires_grad=True)
        out_t = torch_pool_fn(xt, 1)  # (N, C, 1, 1)
        out_t.backward(torch.tensor(dout)[:, :, None, None])
        assert out.shape == (n, c)
        np.testing.assert_allclose(out[:, :, None, None], out_t.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_global_max_routes_nan_like_torch():
    x = np.random.default_rng(10).standard_normal((2, 2, 3, 3))
    x[0, 0, 0, 1] = x[0, 0, 2, 0] = x[1, 1, 1, 1] = np.nan
    out, cache = pool.global_maxpool_forward(x)
    dout = np.random.default_rng(11).standard_normal((2, 2))
    xt = torch.tensor(x, requires_grad=True)
    out_t = F.adaptive_max_pool2d(xt, 1)  # (N, C, 1, 1)
    out_t.backward(torch.tensor(dout)[:, :, None, None])
    np.testing.assert_array_equal(out, out_t.detach().numpy()[:, :, 0, 0])
    np.testing.assert_array_equal(pool.global_maxpool_backward(dout, cache), xt.grad.numpy())


def torch_gem(x, p, eps):
    return x.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


@settings(max_examples=40)
@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 6), w=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1), p_value=st.floats(0.5, 12.0),
       p_shape=st.sampled_from([(), (1,)]))
def test_gem_matches_torch(n, c, h, w, seed, p_value, p_shape):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.5, 3.0, size=(n, c, h, w))  # some values below eps get clamped
    p = np.full(p_shape, p_value)
    out, cache = pool.gem_pool_forward(x, p, eps=1e-6)
    dout = rng.standard_normal((n, c))
    dx, dp = pool.gem_pool_backward(dout, cache)
    xt = torch.tensor(x, requires_grad=True)
    pt = torch.tensor(p, requires_grad=True)
    out_t = torch_gem(xt, pt, 1e-6)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dp, pt.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert dp.shape == p.shape


def test_gem_p1_is_average_pooling():
    x = np.random.default_rng(4).uniform(0.01, 5.0, size=(2, 3, 4, 5))
    out, _ = pool.gem_pool_forward(x, np.array(1.0))
    np.testing.assert_allclose(out, x.mean(axis=(2, 3)), rtol=1e-13)


def test_gem_tends_to_max_pooling_as_p_grows():
    x = np.random.default_rng(5).uniform(0.01, 5.0, size=(2, 3, 7, 7))
    top = x.max(axis=(2, 3))
    gaps = []
    for p_value in [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0]:
        out, _ = pool.gem_pool_forward(x, np.array([p_value]))
        # Power means are bounded: max * (1 / (H*W)) ** (1/p) <= GeM <= max.
        assert np.all(out <= top * (1 + 1e-12))
        assert np.all(out >= top * (1 / 49) ** (1 / p_value) * (1 - 1e-12))
        gaps.append(np.max(top - out))
    assert all(a > b for a, b in zip(gaps, gaps[1:]))  # the gap shrinks as p grows
    assert gaps[-1] < 5 * (1 - 49 ** (-1 / 1024))


def test_gem_large_p_does_not_overflow_in_float32():
    x = np.random.default_rng(6).uniform(0.5, 4.0, size=(2, 2, 5, 5)).astype(np.float32)
    out, cache = pool.gem_pool_forward(x, np.array([500.0], dtype=np.float32))
    dx, dp = pool.gem_pool_backward(np.ones((2, 2), dtype=np.float32), cache)
    assert out.dtype == dx.dtype == dp.dtype == np.float32
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx)) and np.all(np.isfinite(dp))
    np.testing.assert_allclose(out, x.max(axis=(2, 3)), rtol=0.01)


# ---------------------------------------------------------------------------------------
# Dtypes and shapes
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["max", "min", "avg"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(mode, dtype):
    forward, naive, backward = SLIDING[mode]
    x = np.random.default_rng(7).standard_normal((2, 3, 7, 6)).astype(dtype)
    for fwd in (forward, naive):
        out, cache = fwd(x, kernel_size=3, stride=2, padding=1)
        assert out.dtype == dtype and out.shape == (2, 3, 4, 3)
        dx = backward(np.ones(out.shape, dtype=dtype), cache)
        assert dx.dtype == dtype and dx.shape == x.shape
        # As in conv2d and linear: a gradient in another precision is a bug upstream.
        other = np.float64 if dtype == np.float32 else np.float32
        with pytest.raises(TypeError, match=r"dout has dtype .* forward pass ran in"):
            backward(np.ones(out.shape, dtype=other), cache)


@pytest.mark.parametrize("name", ["global_avgpool", "global_maxpool", "gem_pool"])
def test_global_backward_rejects_dout_of_another_dtype(name):
    x = np.random.default_rng(9).uniform(0.5, 2.0, size=(2, 3, 4, 5)).astype(np.float32)
    forward, backward = getattr(pool, f"{name}_forward"), getattr(pool, f"{name}_backward")
    out, cache = forward(x, np.array([3.0], np.float32)) if name == "gem_pool" else forward(x)
    with pytest.raises(TypeError, match=r"dout has dtype float64 but the forward pass ran in "
                                        r"float32"):
        backward(np.ones(out.shape), cache)


def test_global_pool_shapes_and_keepdims_recipe():
    x = np.random.default_rng(8).standard_normal((2, 3, 4, 5)).astype(np.float32)
    out, _ = pool.global_avgpool_forward(x)
    assert out.shape == (2, 3) and out.dtype == np.float32
    out4, _ = pool.avgpool2d_forward(x, kernel_size=(4, 5))
    np.testing.assert_allclose(out[:, :, None, None], out4, rtol=1e-6)


def test_max_backward_conserves_gradient_without_overlap():
    # Each window sends its whole gradient to exactly one input, ties or not.
    x = np.zeros((2, 3, 6, 6))
    _, cache = pool.maxpool2d_forward(x, kernel_size=2)
    dx = pool.maxpool2d_backward(np.ones((2, 3, 3, 3)), cache)
    assert dx.sum() == 2 * 3 * 9 and np.count_nonzero(dx) == 2 * 3 * 9


def test_large_kernel_uses_a_wider_index_type():
    x = np.random.default_rng(9).standard_normal((1, 2, 20, 20))
    out, cache = pool.maxpool2d_forward(x, kernel_size=17, stride=3)
    assert cache.argext.dtype == np.uint16  # 289 offsets do not fit in uint8
    dout = np.ones(out.shape)
    _, dx_t = torch_forward_backward("max", x, dout, 17, 3, 0)
    np.testing.assert_allclose(pool.maxpool2d_backward(dout, cache), dx_t)


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------

X = np.zeros((2, 3, 6, 6))
FORWARDS = [f for triple in SLIDING.values() for f in triple[:2]]


@pytest.mark.parametrize("forward", FORWARDS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("x, kwargs, error, names", [
    (np.zeros((3, 6, 6)), {"kernel_size": 2}, ValueError, ["x", "(3, 6, 6)"]),
    (np.zeros((1, 2, 3, 6, 6)), {"kernel_size": 2}, ValueError, ["x", "(1, 2, 3, 6, 6)"]),
    (np.zeros((2, 3, 6, 6), dtype=np.int64), {"kernel_size": 2}, TypeError, ["x", "int64"]),
    ([[[[1.0]]]], {"kernel_size": 1}, TypeError, ["x"]),
    (X, {"kernel_size": 7}, ValueError, ["kernel_size", "(2, 3, 6, 6)"]),
    (X, {"kernel_size": (3, 7), "padding": (1, 0)}, ValueError, ["kernel_size", "8x6"]),
    (np.zeros((1, 1, 2, 9)), {"kernel_size": 3}, ValueError, ["kernel_size", "(1, 1, 2, 9)"]),
    (X, {"kernel_size": 2, "stride": 0}, ValueError, ["stride"]),
    (X, {"kernel_size": 2, "stride": (1, -1)}, ValueError, ["stride"]),
    (X, {"kernel_size": 0}, ValueError, ["kernel_size"]),
    (X, {"kernel_size": 2.0}, TypeError, ["kernel_size"]),
    (X, {"kernel_size": (2, 2, 2)}, ValueError, ["kernel_size"]),
    (X, {"kernel_size": 2, "padding": -1}, ValueError, ["padding"]),
    (X, {"kernel_size": 3, "padding": 2}, ValueError, ["padding", "kernel_size"]),
    (X, {"kernel_size": (4, 2), "padding": (2, 2)}, ValueError, ["padding", "(4, 2)"]),
    (X, {"kernel_size": (2, 4), "padding": (2, 1)}, ValueError, ["padding", "(2, 4)"]),
    (X, {"kernel_size": 2, "padding": "same"}, TypeError, ["padding"]),
])
def test_bad_input_is_rejected(forward, x, kwargs, error, names):
    with pytest.raises(error) as info:
        forward(x, **kwargs)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize("mode", ["max", "min", "avg"])
def test_backward_rejects_bad_dout_and_cache(mode):
    forward, _, backward = SLIDING[mode]
    out, cache = forward(X, kernel_size=2)
    with pytest.raises(ValueError, match=r"dout.*\(2, 3, 2, 3\).*\(2, 3, 3, 3\)"):
        backward(np.zeros((2, 3, 2, 3)), cache)
    with pytest.raises(ValueError, match="dout"):
        backward(np.zeros((2, 3, 9)), cache)
    with pytest.raises(TypeError, match="dout"):
        backward(np.zeros(out.shape, dtype=np.int32), cache)
    with pytest.raises(TypeError, match="cache"):
        backward(np.zeros(out.shape), (cache.x_shape,))
    other = "avg" if mode != "avg" else "max"
    _, wrong = SLIDING[other][0](X, kernel_size=2)
    with pytest.raises(ValueError, match="cache"):
        backward(np.zeros(out.shape), wrong)


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_global_pools_reject_bad_input(kind):
    forward = getattr(pool, f"global_{kind}pool_forward")
    backward = getattr(pool, f"global_{kind}pool_backward")
    with pytest.raises(ValueError, match=r"x .*\(3, 4\)"):
        forward(np.zeros((3, 4)))
    with pytest.raises(TypeError, match="x .*int"):
        forward(np.zeros((1, 1, 2, 2), dtype=int))
    _, cache = forward(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"dout .*\(2, 3, 1, 1\).*\(2, 3\)"):
        backward(np.zeros((2, 3, 1, 1)), cache)
    with pytest.raises(ValueError, match=r"dout .*\(3, 2\)"):
        backward(np.zeros((3, 2)), cache)


@pytest.mark.parametrize("p, kwargs, error, pattern", [
    (np.array([[3.0]]), {}, ValueError, r"p .*\(1, 1\)"),
    (np.array([3.0, 3.0]), {}, ValueError, r"p .*\(2,\)"),
    (np.array([3]), {}, TypeError, "p .*int"),
    (3.0, {}, TypeError, "p must be a numpy.ndarray"),
    (np.array([0.0]), {}, ValueError, "p must be finite and positive"),
    (np.array([-2.0]), {}, ValueError, "p must be finite and positive"),
    (np.array(np.inf), {}, ValueError, "p must be finite and positive"),
    (np.array(3.0), {"eps": 0.0}, ValueError, "eps"),
    (np.array(3.0), {"eps": "tiny"}, TypeError, "eps"),
])
def test_gem_rejects_bad_p_and_eps(p, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        pool.gem_pool_forward(np.ones((1, 2, 3, 3)), p, **kwargs)


def test_gem_rejects_bad_x_and_dout():
    with pytest.raises(ValueError, match=r"x .*\(2, 3, 3\)"):
        pool.gem_pool_forward(np.ones((2, 3, 3)), np.array(3.0))
    _, cache = pool.gem_pool_forward(np.ones((2, 3, 3, 3)), np.array(3.0))
    with pytest.raises(ValueError, match=r"dout .*\(3, 2\)"):
        pool.gem_pool_backward(np.ones((3, 2)), cache)
    with pytest.raises(TypeError, match="cache"):
        pool.gem_pool_backward(np.ones((2, 3)), None)
