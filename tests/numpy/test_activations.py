"""Tests of cnnlib.numpy.activations.

Four ways: values worked out by hand, float64 numerical gradients, agreement with
torch.nn.functional (forward and autograd backward) over hypothesis-drawn shapes, and
bad input. Naive == vectorized does not apply to elementwise ops.
"""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from cnnlib.numpy import (
    elu_backward,
    elu_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    numerical_gradient,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax,
    tanh_backward,
    tanh_forward,
)

# name -> (numpy forward with settings, numpy backward, torch function with the same settings)
OPS = {
    "relu": (relu_forward, relu_backward, F.relu),
    "leaky_relu": (lambda x: leaky_relu_forward(x, negative_slope=0.2), leaky_relu_backward,
                   lambda t: F.leaky_relu(t, negative_slope=0.2)),
    "leaky_relu_default": (leaky_relu_forward, leaky_relu_backward, F.leaky_relu),
    "elu": (elu_forward, elu_backward, F.elu),
    "elu_alpha": (lambda x: elu_forward(x, alpha=0.7), elu_backward,
                  lambda t: F.elu(t, alpha=0.7)),
    "sigmoid": (sigmoid_forward, sigmoid_backward, torch.sigmoid),
    "tanh": (tanh_forward, tanh_backward, torch.tanh),
}


# --- worked examples -------------------------------------------------------------------

# the 3x3 feature map of the course notes' ReLU example
FEATURE_MAP = np.array([[-2.0, 3.0, -1.0], [4.0, -5.0, 6.0], [-7.0, 8.0, -9.0]])


def test_relu_worked_example():
    out, _ = relu_forward(FEATURE_MAP)
    np.testing.assert_array_equal(out, [[0, 3, 0], [4, 0, 6], [0, 8, 0]])


def test_leaky_relu_worked_example():
    out, _ = leaky_relu_forward(FEATURE_MAP)  # slope 0.01 on the negatives
    np.testing.assert_allclose(out, [[-0.02, 3, -0.01], [4, -0.05, 6], [-0.07, 8, -0.09]])
    out, _ = leaky_relu_forward(FEATURE_MAP, negative_slope=0.5)
    np.testing.assert_allclose(out, [[-1, 3, -0.5], [4, -2.5, 6], [-3.5, 8, -4.5]])


def test_elu_worked_example():
    # alpha * (exp(x) - 1) at x = ln(1/2) is -alpha/2; at x = ln(1/4) it is -3 alpha/4
    x = np.array([math.log(0.5), math.log(0.25), 0.0, 2.0])
    out, _ = elu_forward(x)
    np.testing.assert_allclose(out, [-0.5, -0.75, 0.0, 2.0], atol=1e-15)
    out, _ = elu_forward(x, alpha=2.0)
    np.testing.assert_allclose(out, [-1.0, -1.5, 0.0, 2.0], atol=1e-15)
    # it saturates at -alpha
    out, _ = elu_forward(np.array([-50.0]), alpha=2.0)
    np.testing.assert_allclose(out, [-2.0])


def test_sigmoid_and_tanh_worked_examples():
    # sigmoid(ln 3) = 1 / (1 + 1/3) = 3/4; sigmoid(-x) = 1 - sigmoid(x)
    out, _ = sigmoid_forward(np.array([0.0, math.log(3), -math.log(3)]))
    np.testing.assert_allclose(out, [0.5, 0.75, 0.25], rtol=1e-15)
    # tanh(ln 2) = (2 - 1/2) / (2 + 1/2) = 3/5
    out, _ = tanh_forward(np.array([0.0, math.log(2), -math.log(2)]))
    np.testing.assert_allclose(out, [0.0, 0.6, -0.6], rtol=1e-15, atol=1e-16)


def test_softmax_worked_example():
    # exp(0), exp(ln 2), exp(ln 3) = 1, 2, 3, so the probabilities are 1/6, 2/6, 3/6
    x = np.array([[0.0, math.log(2), math.log(3)], [5.0, 5.0, 5.0]])
    p = softmax(x)
    np.testing.assert_allclose(p, [[1 / 6, 2 / 6, 3 / 6], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-15)
    # along axis 0 the columns sum to 1 instead
    p0 = softmax(x, axis=0)
    np.testing.assert_allclose(p0.sum(axis=0), np.ones(3))
    e = math.exp(5.0)
    np.testing.assert_allclose(p0[:, 0], [1 / (1 + e), e / (1 + e)], rtol=1e-14)


def test_backward_worked_examples():
    x = np.array([-1.0, 0.0, 2.0])
    dout = np.array([3.0, 3.0, 3.0])
    # kinks at 0 take PyTorch's choice: relu 0, leaky relu the slope, elu alpha
    np.testing.assert_array_equal(relu_backward(dout, relu_forward(x)[1]), [0, 0, 3])
    np.testing.assert_allclose(
        leaky_relu_backward(dout, leaky_relu_forward(x, negative_slope=0.1)[1]), [0.3, 0.3, 3])
    # elu'(x) = alpha exp(x) for x <= 0: 2 exp(-1) at -1 and 2 at 0
    np.testing.assert_allclose(elu_backward(dout, elu_forward(x, alpha=2.0)[1]),
                               [6 * math.exp(-1), 6, 3])
    # sigmoid'(0) = 1/4, sigmoid'(ln 3) = 3/4 * 1/4; tanh'(0) = 1, tanh'(ln 2) = 1 - 0.36
    s_cache = sigmoid_forward(np.array([0.0, math.log(3)]))[1]
    np.testing.assert_allclose(sigmoid_backward(np.ones(2), s_cache), [0.25, 0.1875])
    t_cache = tanh_forward(np.array([0.0, math.log(2)]))[1]
    np.testing.assert_allclose(tanh_backward(np.ones(2), t_cache), [1.0, 0.64])


# --- numerical gradients ---------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OPS))
def test_backward_matches_numerical_gradient(name):
    forward, backward, _ = OPS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    # keep away from the kink at 0, where central differences straddle two branches
    x += np.where(x >= 0, 0.05, -0.05)
    dout = rng.standard_normal(x.shape)
    dx = backward(dout, forward(x)[1])
    dx_num = numerical_gradient(lambda x: forward(x)[0], x, dout)
    np.testing.assert_allclose(dx, dx_num, rtol=1e-6, atol=1e-9)


# --- agreement with PyTorch ------------------------------------------------------------

shapes = array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)


@pytest.mark.parametrize("name", sorted(OPS))
@settings(max_examples=15)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_agrees_with_torch_float64(name, shape, seed, scale):
    forward, backward, torch_fn = OPS[name]
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal(shape)
    x.flat[0] = 0.0  # the kink, where the subgradient conventions must agree
    dout = rng.standard_normal(shape)
    out, cache = forward(x)
    dx = backward(dout, cache)

    xt = torch.tensor(x, requires_grad=True)
    out_t = torch_fn(xt)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


@settings(max_examples=25)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), data=st.data(),
       scale=st.sampled_from([1.0, 100.0]))
def test_softmax_agrees_with_torch_float64(shape, seed, data, scale):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    x = scale * np.random.default_rng(seed).standard_normal(shape)
    expected = F.softmax(torch.tensor(x), dim=axis).numpy()
    np.testing.assert_allclose(softmax(x, axis=axis), expected, rtol=1e-12, atol=1e-300)


# --- dtypes and numerical stability ----------------------------------------------------

@pytest.mark.parametrize("name", sorted(OPS))
def test_float32_stays_float32(name):
    forward, backward, _ = OPS[name]
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    out, cache = forward(x)
    assert out.dtype == np.float32
    assert backward(np.ones_like(x), cache).dtype == np.float32
    assert softmax(x).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_at_extreme_inputs(dtype):
    x = np.array([-1000.0, -30.0, 0.0, 100.0, 1000.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"):
            out, cache = sigmoid_forward(x)
            dx = sigmoid_backward(np.ones_like(x), cache)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(out[[0, 2, 4]], [0.0, 0.5, 1.0], atol=0)
    # sigmoid(-30) = exp(-30) / (1 + exp(-30)), tiny but not rounded to 0 (the naive
    # 1 - sigmoid(30) would give exactly 0 in float32)
    np.testing.assert_allclose(out[1], math.exp(-30) / (1 + math.exp(-30)), rtol=1e-6)
    assert out[3] == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_elu_are_stable_at_extreme_inputs(dtype):
    x = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, -1000.0],
                  [-1000.0, -1000.0, -1000.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"):
            p = softmax(x)
            out, _ = elu_forward(x)
            t, _ = tanh_forward(x)
    np.testing.assert_array_equal(p, np.array([[1, 0, 0], [0.5, 0.5, 0], [1 / 3] * 3],
                                              dtype=dtype))
    np.testing.assert_array_equal(out[0], np.array([1000.0, 0.0, -1.0], dtype=dtype))
    np.testing.assert_array_equal(t[0], np.array([1.0, 0.0, -1.0], dtype=dtype))


def test_forward_does_not_modify_its_input():
    x = np.array([-1.0, 0.5, 2.0])
    before = x.copy()
    for forward, _, _ in OPS.values():
        forward(x)
    softmax(x)
    np.testing.assert_array_equal(x, before)


# --- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OPS))
def test_bad_inputs(name):
    forward, backward, _ = OPS[name]
    with pytest.raises(TypeError, match=r"x must have a floating dtype.*int64.*\(2, 2\)"):
        forward(np.ones((2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="x must be a numpy.ndarray, got list"):
        forward([1.0, 2.0])
    _, cache = forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dout has shape \(3, 2\).*\(2, 3\)"):
        backward(np.ones((3, 2)), cache)
    with pytest.raises(TypeError, match="dout has dtype float32.*float64"):
        backward(np.ones((2, 3), dtype=np.float32), cache)


def test_bad_settings():
    x = np.ones(3)
    with pytest.raises(TypeError, match="negative_slope"):
        leaky_relu_forward(x, negative_slope="0.1")
    with pytest.raises(ValueError, match="negative_slope"):
        leaky_relu_forward(x, negative_slope=math.nan)
    with pytest.raises(TypeError, match="alpha"):
        elu_forward(x, alpha=None)
    with pytest.raises(ValueError, match=r"axis 1 is out of range.*\(3,\)"):
        softmax(x, axis=1)
    with pytest.raises(TypeError, match="axis"):
        softmax(x, axis=0.0)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        softmax(np.array(1.0))
