"""Numerical gradients by central differences, and the relative error used to compare them.

Chapter 6 (backpropagation through convolution and pooling) teaches gradient checking.

Typical use, checking a backward pass against its forward::

    out, cache = relu_forward(x)
    dout = rng.standard_normal(out.shape)
    dx = relu_backward(dout, cache)
    dx_num = numerical_gradient(lambda x: relu_forward(x)[0], x, dout)
    assert rel_error(dx, dx_num) < 1e-7
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._utils import check_array, shape_str

__all__ = ["numerical_gradient", "rel_error"]


def numerical_gradient(f, x, dout, *, h=1e-5):
    """Central-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray`` (or a scalar). It must read ``x`` afresh on every call.
    x : ndarray, any shape, floating dtype; float64 for meaningful results
        **Modified in place while this runs**: each element is set to ``x + h`` and
        ``x - h`` in turn, and restored to its exact original value afterwards (also
        when ``f`` raises). Pass a copy if another thread may read ``x``.
    dout : ndarray or float, shape of ``f(x)``
        The upstream gradient: with it the result is the vector-Jacobian product that
        a backward pass returns, ``dx = J^T dout``.
    h : float > 0
        Step size.

    Returns
    -------
    grad : ndarray, shape and dtype of ``x``

    Notes
    -----
    Chapter 6. ``(g(x + h) - g(x - h)) / 2h`` has error of order ``h**2`` for smooth
    ``g``, against ``h`` for the one-sided difference. In float64, ``h = 1e-5``
    balances that error against rounding (about ``1e-16 / h``). In float32 rounding
    dominates: check gradients in float64. Near a kink (ReLU at 0, a max with a tie)
    the difference straddles two branches and is wrong by design; draw inputs away
    from kinks.

    This costs ``2 * x.size + 1`` calls of ``f``.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    check_array(x, "x")
    if not x.flags.writeable:
        raise ValueError("x must be writeable: numerical_gradient perturbs it in place")
    if isinstance(h, bool) or not isinstance(h, numbers.Real) or not (
            math.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive finite number, got {h!r}")
    dout = np.asarray(dout)
    out_shape = np.shape(f(x))
    if dout.shape != out_shape:
        raise ValueError(f"dout has shape {shape_str(dout)} but f(x) has shape {out_shape}; "
                         f"they must be equal")

    grad = np.zeros_like(x)
    # nditer walks every index of x, whatever its rank; multi_index writes back into x
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        ix = it.multi_index
        old = x[ix]
        try:
            # copies, because f may return a view of x (flatten does)
            x[ix] = old + h
            plus = np.array(f(x), copy=True)
            x[ix] = old - h
            minus = np.array(f(x), copy=True)
        finally:
            x[ix] = old
        grad[ix] = np.sum((plus - minus) * dout) / (2 * h)
    return grad


def rel_error(a, b):
    """Largest elementwise relative error between two arrays.

    Parameters
    ----------
    a, b : array_like, same shape

    Returns
    -------
    float
        ``max |a - b| / max(1e-8, |a| + |b|)`` over the elements (the CS231n
        definition). The floor of ``1e-8`` keeps elements where both are (nearly) zero
        from dividing by zero: there it measures the absolute error scaled by ``1e8``.
        Correct float64 gradients usually give below ``1e-7``; ``1e-2`` or more means a
        bug.

    Notes
    -----
    Chapter 6 (backpropagation through convolution and pooling).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a has shape {shape_str(a)} but b has shape {shape_str(b)}; they "
                         f"must be equal")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))
