"""Tests of cnnlib.numpy.linear: fully connected layer, flatten and dropout."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from cnnlib.numpy import (
    dropout_backward,
    dropout_forward,
    flatten_backward,
    flatten_forward,
    linear_backward,
    linear_forward,
    numerical_gradient,
)

# --- linear ----------------------------------------------------------------------------


def test_linear_worked_example():
    # two samples, three features, two outputs: each output is a dot product plus bias
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]])
    w = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    b = np.array([10.0, -1.0])
    out, cache = linear_forward(x, w, b)
    # row 0: 1 - 3 + 10 = 8, (1 + 2 + 3) / 2 - 1 = 2; row 1: -1 - 1 + 10 = 8, 0 - 1 = -1
    np.testing.assert_array_equal(out, [[8.0, 2.0], [8.0, -1.0]])
    dx, dw, db = linear_backward(np.array([[1.0, 0.0], [0.0, 2.0]]), cache)
    # dx = dout @ w; dw = dout.T @ x; db sums dout over the batch
    np.testing.assert_array_equal(dx, [[1.0, 0.0, -1.0], [1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(dw, [[1.0, 2.0, 3.0], [-2.0, 0.0, 2.0]])
    np.testing.assert_array_equal(db, [1.0, 2.0])


def test_linear_without_bias_returns_db_none():
    x = np.ones((2, 3))
    w = np.ones((4, 3))
    out, cache = linear_forward(x, w)
    np.testing.assert_array_equal(out, np.full((2, 4), 3.0))
    dx, dw, db = linear_backward(np.ones((2, 4)), cache)
    assert db is None
    np.testing.assert_array_equal(dx, np.full((2, 3), 4.0))
    np.testing.assert_array_equal(dw, np.full((4, 3), 2.0))


def test_linear_numerical_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5))
    w = rng.standard_normal((3, 5))
    b = rng.standard_normal(3)
    dout = rng.standard_normal((4, 3))
    dx, dw, db = linear_backward(dout, linear_forward(x, w, b)[1])
    np.testing.assert_allclose(dx, numerical_gradient(lambda x: linear_forward(x, w, b)[0],
                                                      x, dout), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dw, numerical_gradient(lambda w: linear_forward(x, w, b)[0],
                                                      w, dout), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(db, numerical_gradient(lambda b: linear_forward(x, w, b)[0],
                                                      b, dout), rtol=1e-7, atol=1e-9)


@settings(max_examples=30)
@given(n=st.integers(1, 7), fin=st.integers(1, 9), fout=st.integers(1, 6),
       bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_linear_agrees_with_torch_float64(n, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, fin))
    w = rng.standard_normal((fout, fin))
    b = rng.standard_normal(fout) if bias else None
    dout = rng.standard_normal((n, fout))
    out, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(dout, cache)

    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    out_t = F.linear(xt, wt, bt)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-12, atol=1e-12)
    else:
        assert db is None


def test_linear_float32_stays_float32():
    x = np.ones((2, 3), dtype=np.float32)
    w = np.ones((4, 3), dtype=np.float32)
    b = np.ones(4, dtype=np.float32)
    out, cache = linear_forward(x, w, b)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in linear_backward(np.ones_like(out), cache))


def test_linear_bad_inputs():
    x, w, b = np.ones((2, 3)), np.ones((4, 3)), np.ones(4)
    with pytest.raises(ValueError, match=r"x must have 2 dimensions.*\(2, 3, 1\).*flatten"):
        linear_forward(np.ones((2, 3, 1)), w, b)
    with pytest.raises(ValueError, match=r"w must have 2 dimensions.*\(4, 3, 1\)"):
        linear_forward(x, np.ones((4, 3, 1)), b)
    with pytest.raises(ValueError, match=r"x has shape \(2, 5\).*w has shape \(4, 3\)"):
        linear_forward(np.ones((2, 5)), w, b)
    with pytest.raises(ValueError, match=r"b has shape \(3,\).*w has shape \(4, 3\)"):
        linear_forward(x, w, np.ones(3))
    with pytest.raises(TypeError, match="x must have a floating dtype.*int"):
        linear_forward(np.ones((2, 3), dtype=int), w, b)
    with pytest.raises(TypeError, match="x has dtype float32.*w has dtype float64"):
        linear_forward(x.astype(np.float32), w, b)
    with pytest.raises(TypeError, match="b has dtype float32"):
        linear_forward(x, w, b.astype(np.float32))
    _, cache = linear_forward(x, w, b)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 3\).*\(2, 4\)"):
        linear_backward(np.ones((2, 3)), cache)


# --- flatten ---------------------------------------------------------------------------

def test_flatten_worked_example_is_channel_then_row_then_column():
    x = np.arange(2 * 2 * 2 * 3, dtype=np.float64).reshape(2, 2, 2, 3)
    out, cache = flatten_forward(x)
    assert out.shape == (2, 12)
    # sample 1 starts at 12; within a sample channel 0's rows come first
    np.testing.assert_array_equal(out[1], np.arange(12, 24))
    dout = np.arange(24, dtype=np.float64).reshape(2, 12) * 2
    np.testing.assert_array_equal(flatten_backward(dout, cache), 2 * x)


@settings(max_examples=25)
@given(shape=array_shapes(min_dims=2, max_dims=5, min_side=1, max_side=5),
       seed=st.integers(0, 2**32 - 1))
def test_flatten_agrees_with_torch_and_round_trips(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    out, cache = flatten_forward(x)
    np.testing.assert_array_equal(out, torch.flatten(torch.tensor(x), 1).numpy())
    dout = rng.standard_normal(out.shape)
    dx = flatten_backward(dout, cache)
    xt = torch.tensor(x, requires_grad=True)
    torch.flatten(xt, 1).backward(torch.tensor(dout))
    np.testing.assert_array_equal(dx, xt.grad.numpy())


def test_flatten_numerical_gradient():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 2, 2))
    dout = rng.standard_normal((2, 12))
    dx = flatten_backward(dout, flatten_forward(x)[1])
    np.testing.assert_allclose(dx, numerical_gradient(lambda x: flatten_forward(x)[0], x, dout),
                               rtol=1e-8, atol=1e-10)


def test_flatten_bad_inputs():
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*\(5,\)"):
        flatten_forward(np.ones(5))
    with pytest.raises(TypeError, match="floating"):
        flatten_forward(np.ones((2, 2), dtype=np.uint8))
    _, cache = flatten_forward(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"dout has shape \(2, 3, 4\).*\(2, 12\)"):
        flatten_backward(np.ones((2, 3, 4)), cache)


# --- dropout ---------------------------------------------------------------------------

def test_dropout_worked_example_with_a_known_mask():
    # the mask comes from rng.random(shape) >= p; replay the same generator to know it
    x = np.arange(1.0, 9.0).reshape(2, 4)
    out, cache = dropout_forward(x, p=0.25, rng=np.random.default_rng(7))
    keep = np.random.default_rng(7).random((2, 4)) >= 0.25
    np.testing.assert_allclose(out, np.where(keep, x / 0.75, 0.0), rtol=1e-15)
    dx = dropout_backward(np.ones_like(x), cache)
    np.testing.assert_allclose(dx, np.where(keep, 1 / 0.75, 0.0), rtol=1e-15)


def test_dropout_keeps_the_expected_value_and_drops_a_fraction_p():
    x = np.ones((400, 500))
    out, _ = dropout_forward(x, p=0.3, rng=np.random.default_rng(0))
    dropped = np.mean(out == 0)
    # 200 000 Bernoulli(0.3) draws: the standard error of the fraction is about 0.001
    assert abs(dropped - 0.3) < 0.005
    assert abs(out.mean() - 1.0) < 0.01
    np.testing.assert_allclose(out[out != 0], 1 / 0.7, rtol=1e-15)


def test_dropout_is_reproducible_from_the_seed():
    x = np.random.default_rng(0).standard_normal((3, 5))
    a, _ = dropout_forward(x, p=0.5, rng=np.random.default_rng(42))
    b, _ = dropout_forward(x, p=0.5, rng=np.random.default_rng(42))
    c, _ = dropout_forward(x, p=0.5, rng=np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dropout_is_the_identity_in_evaluation_and_with_p_zero():
    x = np.random.default_rng(0).standard_normal((3, 4))
    dout = np.random.default_rng(1).standard_normal((3, 4))
    for kwargs in ({"training": False, "p": 0.9}, {"p": 0.0}):
        out, cache = dropout_forward(x, **kwargs)  # no rng needed
        np.testing.assert_array_equal(out, x)
        assert out is not x
        np.testing.assert_array_equal(dropout_backward(dout, cache), dout)


def test_dropout_numerical_gradient_with_a_fixed_mask():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 2))
    dout = rng.standard_normal(x.shape)
    dx = dropout_backward(dout, dropout_forward(x, p=0.4, rng=np.random.default_rng(5))[1])
    # the same seed on every call replays the same mask, so f is a fixed linear map
    num = numerical_gradient(
        lambda x: dropout_forward(x, p=0.4, rng=np.random.default_rng(5))[0], x, dout)
    np.testing.assert_allclose(dx, num, rtol=1e-8, atol=1e-10)


@settings(max_examples=20)
@given(shape=array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6),
       p=st.sampled_from([0.0, 0.1, 0.5, 0.9]), seed=st.integers(0, 2**32 - 1))
def test_dropout_matches_torch_given_the_same_mask(shape, p, seed):
    # torch draws its mask with its own generator; recover the mask from our output and
    # check that torch's formula (x * mask / (1 - p)) gives the same output and gradient
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) + 5.0  # nonzero, so zeros in out mark dropped elements
    out, cache = dropout_forward(x, p=p, rng=np.random.default_rng(seed + 1))
    keep = torch.tensor(out != 0)
    xt = torch.tensor(x, requires_grad=True)
    out_t = xt * keep / (1 - p)
    dout = rng.standard_normal(shape)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-15)
    np.testing.assert_allclose(dropout_backward(dout, cache), xt.grad.numpy(), rtol=1e-15)
    # and F.dropout in evaluation is the identity, as ours is
    np.testing.assert_array_equal(dropout_forward(x, p=p, training=False)[0],
                                  F.dropout(torch.tensor(x), p=p, training=False).numpy())


def test_dropout_float32_stays_float32():
    x = np.ones((3, 3), dtype=np.float32)
    out, cache = dropout_forward(x, p=0.5, rng=np.random.default_rng(0))
    assert out.dtype == np.float32
    assert dropout_backward(np.ones_like(x), cache).dtype == np.float32
    np.testing.assert_array_equal(np.unique(out), np.array([0.0, 2.0], dtype=np.float32))


def test_dropout_bad_inputs():
    x = np.ones((2, 3))
    rng = np.random.default_rng(0)
    for p in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
            dropout_forward(x, p=p, rng=rng)
    with pytest.raises(TypeError, match="p must be a real number"):
        dropout_forward(x, p="0.5", rng=rng)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        dropout_forward(x, p=0.5)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        dropout_forward(x, p=0.5, rng=np.random.RandomState(0))
    with pytest.raises(TypeError, match="training must be True or False"):
        dropout_forward(x, p=0.5, training=1, rng=rng)
    with pytest.raises(TypeError, match="floating"):
        dropout_forward(np.ones((2, 3), dtype=int), p=0.5, rng=rng)
    _, cache = dropout_forward(x, p=0.5, rng=rng)
    with pytest.raises(ValueError, match=r"dout has shape \(3, 2\).*\(2, 3\)"):
        dropout_backward(np.ones((3, 2)), cache)


def test_linear_backward_without_dx():
    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal((6, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    out, cache = linear_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = linear_backward(dout, cache)
    none, dw2, db2 = linear_backward(dout, cache, need_dx=False)
    assert dx is not None and none is None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)
    with pytest.raises(TypeError, match="need_dx"):
        linear_backward(dout, cache, need_dx=None)
