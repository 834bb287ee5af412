"""Tests of cnnlib.numpy.batchnorm: batch norm forward/backward and conv-bn folding."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlib.numpy import (
    batchnorm2d_backward,
    batchnorm2d_forward,
    conv2d_forward,
    fuse_conv_bn,
    numerical_gradient,
)


def _params(rng, c, dtype=np.float64):
    gamma = rng.uniform(0.5, 2.0, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    running_mean = rng.standard_normal(c).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, c).astype(dtype)
    return gamma, beta, running_mean, running_var


# --- worked example --------------------------------------------------------------------

def test_worked_example_one_channel():
    # one channel holding 1, 2, 3, 4 (two images of 1x2): mean 2.5, biased variance 1.25,
    # unbiased 5/3; with eps = 0 the normalized values are (v - 2.5) / sqrt(1.25)
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(2, 1, 1, 2)
    gamma, beta = np.array([2.0]), np.array([1.0])
    rm, rv = np.array([0.0]), np.array([1.0])
    out, _, new_rm, new_rv = batchnorm2d_forward(x, gamma, beta, rm, rv, training=True,
                                                 momentum=0.1, eps=0.0)
    x_hat = (np.array([1.0, 2.0, 3.0, 4.0]) - 2.5) / math.sqrt(1.25)
    np.testing.assert_allclose(out.ravel(), 2.0 * x_hat + 1.0, rtol=1e-15)
    np.testing.assert_allclose(new_rm, [0.9 * 0.0 + 0.1 * 2.5], rtol=1e-15)
    np.testing.assert_allclose(new_rv, [0.9 * 1.0 + 0.1 * 5 / 3], rtol=1e-15)
    # evaluation uses the running statistics: (x - 0) / sqrt(1 + 0) * 2 + 1
    out, *_ = batchnorm2d_forward(x, gamma, beta, rm, rv, training=False, eps=0.0)
    np.testing.assert_allclose(out.ravel(), [3.0, 5.0, 7.0, 9.0])


def test_worked_example_gradients():
    # evaluation mode is an affine map: dx = gamma / sqrt(var + eps) * dout
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(2, 1, 1, 2)
    gamma, beta = np.array([2.0]), np.array([1.0])
    out, cache, _, _ = batchnorm2d_forward(x, gamma, beta, np.array([1.0]), np.array([4.0]),
                                           training=False, eps=0.0)
    dout = np.array([1.0, 0.0, 0.0, -1.0]).reshape(x.shape)
    dx, dgamma, dbeta = batchnorm2d_backward(dout, cache)
    np.testing.assert_allclose(dx.ravel(), [1.0, 0.0, 0.0, -1.0])
    # x_hat = (x - 1) / 2 = 0, 0.5, 1, 1.5: dgamma = 0 - 1.5, dbeta = 1 - 1
    np.testing.assert_allclose(dgamma, [-1.5])
    np.testing.assert_allclose(dbeta, [0.0])
    # in training a gradient that is constant over the channel only shifts the mean,
    # which normalization removes: dx is 0
    _, cache, _, _ = batchnorm2d_forward(x, gamma, beta, np.array([0.0]), np.array([1.0]),
                                         training=True)
    dx, _, dbeta = batchnorm2d_backward(np.ones_like(x), cache)
    np.testing.assert_allclose(dx, 0.0, atol=1e-15)
    np.testing.assert_allclose(dbeta, [4.0])


def test_training_output_has_zero_mean_unit_variance_per_channel():
    rng = np.random.default_rng(0)
    x = 3.0 + 5.0 * rng.standard_normal((4, 3, 5, 6))
    c = 3
    out, *_ = batchnorm2d_forward(x, np.ones(c), np.zeros(c), np.zeros(c), np.ones(c),
                                  training=True, eps=0.0)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-14)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1.0, rtol=1e-12)


# --- running statistics are returned, never mutated ------------------------------------

@pytest.mark.parametrize("training", [True, False])
def test_inputs_are_not_modified(training):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 4))
    params = _params(rng, 3)
    before = [a.copy() for a in (x, *params)]
    out, cache, new_rm, new_rv = batchnorm2d_forward(x, *params, training=training)
    batchnorm2d_backward(np.ones_like(out), cache)
    for a, b in zip((x, *params), before):
        np.testing.assert_array_equal(a, b)
    assert new_rm is not params[2] and new_rv is not params[3]
    if not training:
        np.testing.assert_array_equal(new_rm, params[2])
        np.testing.assert_array_equal(new_rv, params[3])


# --- numerical gradients ---------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
def test_numerical_gradient(training):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 3, 2))
    gamma, beta, rm, rv = _params(rng, 3)
    dout = rng.standard_normal(x.shape)
    _, cache, _, _ = batchnorm2d_forward(x, gamma, beta, rm, rv, training=training)
    dx, dgamma, dbeta = batchnorm2d_backward(dout, cache)

    def f(x=x, gamma=gamma, beta=beta):
        return batchnorm2d_forward(x, gamma, beta, rm, rv, training=training)[0]

    np.testing.assert_allclose(dx, numerical_gradient(lambda a: f(x=a), x, dout),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dgamma, numerical_gradient(lambda a: f(gamma=a), gamma, dout),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dbeta, numerical_gradient(lambda a: f(beta=a), beta, dout),
                               rtol=1e-6, atol=1e-9)


# --- agreement with PyTorch ------------------------------------------------------------

@settings(max_examples=30)
@given(n=st.integers(1, 4), c=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5),
       training=st.booleans(), momentum=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
       eps=st.sampled_from([1e-5, 1e-3, 0.5]), seed=st.integers(0, 2**32 - 1))
def test_agrees_with_torch_float64(n, c, h, w, training, momentum, eps, seed):
    if training and n * h * w < 2:
        return  # training needs two values per channel (tested as an error below)
    rng = np.random.default_rng(seed)
    x = 2.0 + 3.0 * rng.standard_normal((n, c, h, w))
    gamma, beta, rm, rv = _params(rng, c)
    dout = rng.standard_normal(x.shape)
    out, cache, new_rm, new_rv = batchnorm2d_forward(x, gamma, beta, rm, rv, training=training,
                                                     momentum=momentum, eps=eps)
    dx, dgamma, dbeta = batchnorm2d_backward(dout, cache)

    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(gamma, requires_grad=True)
    bt = torch.tensor(beta, requires_grad=True)
    rmt, rvt = torch.tensor(rm), torch.tensor(rv)  # torch updates these in place
    out_t = F.batch_norm(xt, rmt, rvt, gt, bt, training=training, momentum=momentum, eps=eps)
    out_t.backward(torch.tensor(dout))
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out, out_t.detach().numpy(), **tol)
    np.testing.assert_allclose(new_rm, rmt.numpy(), **tol)
    np.testing.assert_allclose(new_rv, rvt.numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(dgamma, gt.grad.numpy(), **tol)
    np.testing.assert_allclose(dbeta, bt.grad.numpy(), **tol)


def test_float32_stays_float32():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    params = _params(rng, 3, np.float32)
    for training in (True, False):
        out, cache, new_rm, new_rv = batchnorm2d_forward(x, *params, training=training)
        grads = batchnorm2d_backward(np.ones_like(out), cache)
        assert all(a.dtype == np.float32 for a in (out, new_rm, new_rv, *grads))


# --- folding into the conv -------------------------------------------------------------

def _bn_eval(y, gamma, beta, rm, rv, eps):
    return batchnorm2d_forward(y, gamma, beta, rm, rv, training=False, eps=eps)[0]


def test_fuse_worked_example():
    # one 1x1 filter of weight 3 and bias 1; bn: gamma 2, beta 0.5, mean 4, var 3, eps 1
    # scale s = 2 / sqrt(3 + 1) = 1: w_fused = 3, b_fused = 1 * (1 - 4) + 0.5 = -2.5
    w = np.array([3.0]).reshape(1, 1, 1, 1)
    wf, bf = fuse_conv_bn(w, np.array([1.0]), np.array([2.0]), np.array([0.5]),
                          np.array([4.0]), np.array([3.0]), eps=1.0)
    np.testing.assert_allclose(wf.ravel(), [3.0])
    np.testing.assert_allclose(bf, [-2.5])


@settings(max_examples=20)
@given(n=st.integers(1, 2), c_in=st.integers(1, 3), c_out=st.integers(1, 4),
       k=st.integers(1, 3), size=st.integers(3, 6), stride=st.integers(1, 3),
       padding=st.integers(0, 1), bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_fused_conv_equals_conv_then_batchnorm(n, c_in, c_out, k, size, stride, padding, bias,
                                               seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, size, size + 1))
    w = rng.standard_normal((c_out, c_in, k, k))
    b = rng.standard_normal(c_out) if bias else None
    gamma, beta, rm, rv = _params(rng, c_out)
    eps = 1e-3
    wf, bf = fuse_conv_bn(w, b, gamma, beta, rm, rv, eps=eps)
    assert wf.shape == w.shape and bf.shape == (c_out,)

    expected = _bn_eval(conv2d_forward(x, w, b, stride=stride, padding=padding)[0],
                        gamma, beta, rm, rv, eps)
    fused = conv2d_forward(x, wf, bf, stride=stride, padding=padding)[0]
    np.testing.assert_allclose(fused, expected, rtol=1e-10, atol=1e-12)

    # and the same with PyTorch's conv and batch norm as the reference
    t = torch.tensor
    ref = F.batch_norm(F.conv2d(t(x), t(w), None if b is None else t(b), stride=stride,
                                padding=padding),
                       t(rm), t(rv), t(gamma), t(beta), training=False, eps=eps)
    fused_t = F.conv2d(t(x), t(wf), t(bf), stride=stride, padding=padding)
    np.testing.assert_allclose(fused_t.numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)


def test_fuse_linear_followed_by_batchnorm1d():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 6))
    w = rng.standard_normal((3, 6))
    b = rng.standard_normal(3)
    gamma, beta, rm, rv = _params(rng, 3)
    wf, bf = fuse_conv_bn(w, b, gamma, beta, rm, rv)
    t = torch.tensor
    ref = F.batch_norm(F.linear(t(x), t(w), t(b)), t(rm), t(rv), t(gamma), t(beta),
                       training=False, eps=1e-5)
    np.testing.assert_allclose(x @ wf.T + bf, ref.numpy(), rtol=1e-10, atol=1e-12)


def test_fuse_does_not_modify_inputs_and_keeps_dtype():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    params = _params(rng, 2, np.float32)
    before = [a.copy() for a in (w, *params)]
    wf, bf = fuse_conv_bn(w, None, *params)
    for a, b in zip((w, *params), before):
        np.testing.assert_array_equal(a, b)
    assert wf.dtype == np.float32 and bf.dtype == np.float32


# --- bad input -------------------------------------------------------------------------

def test_bad_inputs():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 4, 4))
    gamma, beta, rm, rv = _params(rng, 3)
    with pytest.raises(ValueError, match=r"x must have 4 dimensions.*\(3, 4, 4\)"):
        batchnorm2d_forward(x[0], gamma, beta, rm, rv, training=True)
    with pytest.raises(ValueError, match=r"gamma has shape \(2,\).*\(2, 3, 4, 4\).*3 channels"):
        batchnorm2d_forward(x, gamma[:2], beta, rm, rv, training=True)
    with pytest.raises(ValueError, match=r"running_var must have 1 dimensions"):
        batchnorm2d_forward(x, gamma, beta, rm, rv[None], training=True)
    with pytest.raises(TypeError, match="beta has dtype float32 but x has dtype float64"):
        batchnorm2d_forward(x, gamma, beta.astype(np.float32), rm, rv, training=True)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        batchnorm2d_forward(x.astype(int), gamma, beta, rm, rv, training=True)
    with pytest.raises(TypeError, match="training must be True or False"):
        batchnorm2d_forward(x, gamma, beta, rm, rv, training="yes")
    with pytest.raises(TypeError, match="training"):
        batchnorm2d_forward(x, gamma, beta, rm, rv)  # training has no default
    with pytest.raises(ValueError, match="momentum"):
        batchnorm2d_forward(x, gamma, beta, rm, rv, training=True, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        batchnorm2d_forward(x, gamma, beta, rm, rv, training=True, eps=0.0 - 1e-3)
    with pytest.raises(ValueError, match="running_var must be non-negative"):
        batchnorm2d_forward(x, gamma, beta, rm, -rv, training=False)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        batchnorm2d_forward(bad, gamma, beta, rm, rv, training=True)
    with pytest.raises(ValueError, match=r"more than one value per channel.*\(1, 3, 1, 1\)"):
        batchnorm2d_forward(x[:1, :, :1, :1], gamma, beta, rm, rv, training=True)
    _, cache, _, _ = batchnorm2d_forward(x, gamma, beta, rm, rv, training=True)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 3, 4, 3\).*\(2, 3, 4, 4\)"):
        batchnorm2d_backward(x[..., :3], cache)
    with pytest.raises(TypeError, match="dout has dtype float32"):
        batchnorm2d_backward(x.astype(np.float32), cache)


def test_fuse_bad_inputs():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3, 2, 3, 3))
    gamma, beta, rm, rv = _params(rng, 3)
    with pytest.raises(ValueError, match=r"b has shape \(2,\).*\(3, 2, 3, 3\).*3 output"):
        fuse_conv_bn(w, np.zeros(2), gamma, beta, rm, rv)
    with pytest.raises(ValueError, match=r"gamma has shape \(4,\)"):
        fuse_conv_bn(w, None, np.ones(4), beta, rm, rv)
    with pytest.raises(ValueError, match="w must have 2 or 3 or 4 dimensions"):
        fuse_conv_bn(w[0, 0, 0], None, gamma, beta, rm, rv)
    with pytest.raises(TypeError, match="running_mean has dtype float32"):
        fuse_conv_bn(w, None, gamma, beta, rm.astype(np.float32), rv)
    with pytest.raises(ValueError, match="eps"):
        fuse_conv_bn(w, None, gamma, beta, rm, rv, eps=-1e-5)
