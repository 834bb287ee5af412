"""Tests of cnnlib.numpy.losses.softmax_cross_entropy."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlib.numpy import numerical_gradient, softmax_cross_entropy


def test_worked_example():
    # row 0: scores 0, ln 2, ln 3 give probabilities 1/6, 2/6, 3/6; label 2: -ln(1/2)
    # row 1: equal scores, probability 1/3 each; label 0: -ln(1/3)
    scores = np.array([[0.0, math.log(2), math.log(3)], [1.0, 1.0, 1.0]])
    y = np.array([2, 0])
    loss, dscores = softmax_cross_entropy(scores, y)
    assert loss == pytest.approx((math.log(2) + math.log(3)) / 2, rel=1e-14)
    # gradient: (p - onehot) / N
    expected = np.array([[1 / 6, 2 / 6, 3 / 6 - 1], [1 / 3 - 1, 1 / 3, 1 / 3]]) / 2
    np.testing.assert_allclose(dscores, expected, rtol=1e-14, atol=1e-16)


def test_uniform_scores_give_log_c():
    # a model that knows nothing scores every class equally: loss ln C, a sanity check
    # the book uses at the start of training
    for c in (2, 10, 1000):
        loss, _ = softmax_cross_entropy(np.zeros((4, c)), np.zeros(4, dtype=int))
        assert loss == pytest.approx(math.log(c), rel=1e-14)


def test_numerical_gradient():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((5, 4))
    y = rng.integers(0, 4, 5)
    _, dscores = softmax_cross_entropy(scores, y)
    num = numerical_gradient(lambda s: softmax_cross_entropy(s, y)[0], scores, 1.0)
    np.testing.assert_allclose(dscores, num, rtol=1e-6, atol=1e-10)


@settings(max_examples=40)
@given(n=st.integers(1, 8), c=st.integers(1, 10), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.01, 1.0, 50.0]), label_dtype=st.sampled_from(
           [np.int64, np.int32, np.uint8]))
def test_agrees_with_torch_float64(n, c, seed, scale, label_dtype):
    rng = np.random.default_rng(seed)
    scores = scale * rng.standard_normal((n, c))
    y = rng.integers(0, c, n).astype(label_dtype)
    loss, dscores = softmax_cross_entropy(scores, y)
    st_ = torch.tensor(scores, requires_grad=True)
    loss_t = F.cross_entropy(st_, torch.tensor(y.astype(np.int64)))
    loss_t.backward()
    assert loss == pytest.approx(loss_t.item(), rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(dscores, st_.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_extreme_scores(dtype):
    # confidently wrong and confidently right at once: no overflow, a finite loss
    scores = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], dtype=dtype)
    y = np.array([1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"):
            loss, dscores = softmax_cross_entropy(scores, y)
    # row 0: -log softmax = 2000; row 1: 0; the mean is 1000
    assert loss == pytest.approx(1000.0, rel=1e-6)
    assert loss.dtype == dtype and dscores.dtype == dtype
    np.testing.assert_allclose(dscores, np.array([[0.5, -0.5], [0.0, 0.0]]), atol=1e-6)


def test_inputs_are_not_modified():
    scores = np.array([[1.0, 2.0], [3.0, 0.0]])
    y = np.array([0, 1])
    before = scores.copy()
    softmax_cross_entropy(scores, y)
    np.testing.assert_array_equal(scores, before)


def test_bad_inputs():
    scores = np.zeros((3, 4))
    y = np.array([0, 1, 3])
    with pytest.raises(ValueError, match=r"y contains label 4, outside 0..3.*\(3, 4\)"):
        softmax_cross_entropy(scores, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="y contains label -1"):
        softmax_cross_entropy(scores, np.array([0, -1, 1]))
    with pytest.raises(TypeError, match="y must have an integer dtype.*float64"):
        softmax_cross_entropy(scores, y.astype(float))
    with pytest.raises(TypeError, match="y must have an integer dtype.*bool"):
        softmax_cross_entropy(scores, np.array([True, False, True]))
    with pytest.raises(TypeError, match="y must be a numpy.ndarray"):
        softmax_cross_entropy(scores, [0, 1, 3])
    with pytest.raises(ValueError, match=r"y has shape \(3, 1\).*\(3, 4\).*\(3,\)"):
        softmax_cross_entropy(scores, y[:, None])
    with pytest.raises(ValueError, match=r"y has shape \(2,\)"):
        softmax_cross_entropy(scores, y[:2])
    with pytest.raises(ValueError, match=r"scores must have 2 dimensions.*\(4,\)"):
        softmax_cross_entropy(scores[0], y[:1])
    with pytest.raises(TypeError, match="scores must have a floating dtype"):
        softmax_cross_entropy(scores.astype(int), y)
    with pytest.raises(ValueError, match="at least one row"):
        softmax_cross_entropy(np.zeros((0, 4)), np.zeros(0, dtype=int))
    bad = scores.copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="scores contains NaN or infinity"):
        softmax_cross_entropy(bad, y)
