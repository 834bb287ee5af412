"""Tests of cnnlib.numpy.gradcheck: the oracle every other backward test relies on.

numerical_gradient is checked on functions whose derivatives are known in closed form,
so that a bug in it cannot hide a bug in a backward pass.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlib.numpy import numerical_gradient, rel_error


def test_numerical_gradient_of_a_square_matches_2x():
    x = np.array([[-1.5, 0.0, 2.0], [0.5, 3.0, -0.25]])
    dout = np.ones_like(x)
    grad = numerical_gradient(lambda x: x**2, x, dout)
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-8, atol=1e-9)


def test_numerical_gradient_weights_by_dout():
    # f(x) = sin(x) elementwise: the vector-Jacobian product is cos(x) * dout
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    dout = rng.standard_normal((2, 3, 4))
    grad = numerical_gradient(np.sin, x, dout)
    np.testing.assert_allclose(grad, np.cos(x) * dout, rtol=1e-7, atol=1e-9)


def test_numerical_gradient_of_a_matrix_product_with_a_different_output_shape():
    # f(x) = x @ a with x (2, 3), a (3, 4): d/dx sum(f * dout) = dout @ a.T
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3))
    a = rng.standard_normal((3, 4))
    dout = rng.standard_normal((2, 4))
    grad = numerical_gradient(lambda x: x @ a, x, dout)
    np.testing.assert_allclose(grad, dout @ a.T, rtol=1e-7, atol=1e-9)


def test_numerical_gradient_of_a_scalar_function():
    # f(x) = sum(x**3) returns a scalar; the gradient is 3 x**2 times the scalar dout
    x = np.array([1.0, -2.0, 0.5])
    grad = numerical_gradient(lambda x: np.sum(x**3), x, 2.0)
    np.testing.assert_allclose(grad, 2.0 * 3 * x**2, rtol=1e-7)


def test_numerical_gradient_restores_x_exactly_and_keeps_dtype():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 3))
    before = x.copy()
    grad = numerical_gradient(np.exp, x, np.ones((3, 3)))
    np.testing.assert_array_equal(x, before)
    assert grad.dtype == x.dtype and grad.shape == x.shape


def test_numerical_gradient_copes_with_f_returning_a_view_of_x():
    # f returns x itself: the gradient is dout, however f aliases its input
    x = np.array([1.0, 2.0, 3.0])
    dout = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(numerical_gradient(lambda x: x, x, dout), dout, rtol=1e-8)
    np.testing.assert_allclose(numerical_gradient(lambda x: x.reshape(3, 1), x,
                                                  dout.reshape(3, 1)), dout, rtol=1e-8)


def test_numerical_gradient_restores_x_when_f_raises():
    x = np.array([1.0, 2.0])
    calls = []

    def f(x):
        calls.append(1)
        if len(calls) == 2:  # the first perturbed call
            raise RuntimeError("boom")
        return x

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(f, x, np.ones(2))
    np.testing.assert_array_equal(x, [1.0, 2.0])


def test_numerical_gradient_bad_inputs():
    x = np.zeros(3)
    with pytest.raises(ValueError, match=r"dout has shape \(2,\).*f\(x\) has shape \(3,\)"):
        numerical_gradient(lambda x: x, x, np.ones(2))
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        numerical_gradient(lambda x: x, np.zeros(3, dtype=int), np.ones(3))
    with pytest.raises(TypeError, match="f must be callable"):
        numerical_gradient(None, x, np.ones(3))
    with pytest.raises(ValueError, match="h must be"):
        numerical_gradient(lambda x: x, x, np.ones(3), h=0.0)
    readonly = np.zeros(3)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        numerical_gradient(lambda x: x, readonly, np.ones(3))


def test_rel_error_known_values():
    # |1 - 1.1| / (1 + 1.1) = 0.1 / 2.1
    assert rel_error(np.array([1.0]), np.array([1.1])) == pytest.approx(0.1 / 2.1)
    # the maximum over elements is taken, not the mean
    assert rel_error(np.array([1.0, 3.0]), np.array([1.0, 1.0])) == pytest.approx(0.5)
    assert rel_error(np.zeros(4), np.zeros(4)) == 0.0
    # both near zero: the 1e-8 floor turns an absolute error of 1e-12 into 1e-4
    assert rel_error(np.array([1e-12]), np.array([0.0])) == pytest.approx(1e-4)
    assert rel_error(np.array([1.0, -1.0]), np.array([-1.0, 1.0])) == pytest.approx(1.0)


def test_rel_error_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), m=st.integers(1, 6))
def test_numerical_gradient_of_tanh_of_a_product(seed, n, m):
    # f(x) = tanh(x @ a): d/dx sum(f * dout) = ((1 - f**2) * dout) @ a.T
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, m))
    a = rng.standard_normal((m, 3))
    dout = rng.standard_normal((n, 3))
    f = np.tanh(x @ a)
    expected = ((1 - f**2) * dout) @ a.T
    grad = numerical_gradient(lambda x: np.tanh(x @ a), x, dout)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-9)
