"""Elementwise activation functions and softmax, with their backward passes.

Chapter 4 (activations and pooling) teaches these; chapter 5 uses softmax in the
classifier head.

Conventions
-----------
- ``out, cache = <act>_forward(x, ...)`` and ``dx = <act>_backward(dout, cache)``.
  These ops have a single array argument, so the backward returns that one gradient
  as a plain array, not a 1-tuple.
- Every op works on arrays of any shape and keeps the floating dtype of ``x``
  (float32 in, float32 out); integer arrays are rejected with a TypeError, so that an
  integer image is never silently truncated.
- Gradients at the kink ``x = 0`` follow PyTorch: ReLU passes 0, leaky ReLU passes
  ``negative_slope``, ELU passes ``alpha``.
- ``sigmoid_forward`` and ``softmax`` never overflow: they only ever exponentiate
  non-positive numbers.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from ._utils import as_real, check_array, check_dout, shape_str

__all__ = [
    "relu_forward", "relu_backward",
    "leaky_relu_forward", "leaky_relu_backward",
    "elu_forward", "elu_backward",
    "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward",
    "softmax",
]


class ReluCache(NamedTuple):
    x: np.ndarray


class LeakyReluCache(NamedTuple):
    x: np.ndarray
    negative_slope: float


class EluCache(NamedTuple):
    x: np.ndarray
    out: np.ndarray
    alpha: float


class SigmoidCache(NamedTuple):
    out: np.ndarray


class TanhCache(NamedTuple):
    out: np.ndarray


def relu_forward(x):
    """Rectified linear unit, ``max(0, x)`` elementwise.

    Parameters
    ----------
    x : ndarray, any shape, floating dtype

    Returns
    -------
    out : ndarray, same shape and dtype as ``x``
    cache : ReluCache

    Notes
    -----
    Chapter 4 (activations and pooling).
    """
    check_array(x, "x")
    # maximum with a 0-d array of x's dtype keeps float32 inputs in float32
    return np.maximum(x, x.dtype.type(0)), ReluCache(x)


def relu_backward(dout, cache):
    """Pass the gradient where the input was positive, block it elsewhere.

    Parameters
    ----------
    dout : ndarray, shape of the forward output
    cache : ReluCache

    Returns
    -------
    dx : ndarray, shape of ``x``

    Notes
    -----
    Chapter 4 (activations and pooling) plots this derivative.
    """
    x = cache.x
    dout = check_dout(dout, x.shape, x.dtype)
    # x == 0 gets 0, the subgradient PyTorch picks
    return np.where(x > 0, dout, x.dtype.type(0))


def leaky_relu_forward(x, *, negative_slope=0.01):
    """Leaky ReLU: ``x`` for ``x > 0``, ``negative_slope * x`` otherwise.

    Parameters
    ----------
    x : ndarray, any shape, floating dtype
    negative_slope : float
        Slope of the negative part; 0 gives ReLU.

    Returns
    -------
    out : ndarray, same shape and dtype as ``x``
    cache : LeakyReluCache

    Notes
    -----
    Chapter 4. The small slope keeps a gradient flowing through units whose input is
    negative, so they cannot "die" the way ReLU units can.
    """
    check_array(x, "x")
    slope = as_real(negative_slope, "negative_slope")
    out = np.where(x > 0, x, x * x.dtype.type(slope))
    return out, LeakyReluCache(x, slope)


def leaky_relu_backward(dout, cache):
    """Gradient 1 where ``x > 0`` and ``negative_slope`` elsewhere (including 0).

    Parameters
    ----------
    dout : ndarray, shape of the forward output
    cache : LeakyReluCache
        From the matching forward.

    Returns
    -------
    dx : ndarray, shape of ``x``

    Notes
    -----
    Chapter 4 (activations and pooling) plots this derivative.
    """
    x = cache.x
    dout = check_dout(dout, x.shape, x.dtype)
    return np.where(x > 0, dout, dout * dout.dtype.type(cache.negative_slope))


def elu_forward(x, *, alpha=1.0):
    """Exponential linear unit: ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise.

    Parameters
    ----------
    x : ndarray, any shape, floating dtype
    alpha : float
        The value the negative part saturates to is ``-alpha``.

    Returns
    -------
    out : ndarray, same shape and dtype as ``x``
    cache : EluCache

    Notes
    -----
    Chapter 4. ``expm1`` is accurate for small ``|x|`` where ``exp(x) - 1`` cancels, and
    clipping its argument at 0 keeps large positive inputs (which take the other
    branch) from overflowing.
    """
    check_array(x, "x")
    a = as_real(alpha, "alpha")
    neg = x.dtype.type(a) * np.expm1(np.minimum(x, x.dtype.type(0)))
    out = np.where(x > 0, x, neg)
    return out, EluCache(x, out, a)


def elu_backward(dout, cache):
    """Gradient 1 where ``x > 0`` and ``alpha * exp(x) = out + alpha`` elsewhere.

    Parameters
    ----------
    dout : ndarray, shape of the forward output
    cache : EluCache
        From the matching forward.

    Returns
    -------
    dx : ndarray, shape of ``x``

    Notes
    -----
    Chapter 4 (activations and pooling) plots this derivative.
    """
    x = cache.x
    dout = check_dout(dout, x.shape, x.dtype)
    local = cache.out + cache.out.dtype.type(cache.alpha)
    return np.where(x > 0, dout, dout * local)


def sigmoid_forward(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, computed without overflow.

    Parameters
    ----------
    x : ndarray, any shape, floating dtype

    Returns
    -------
    out : ndarray, same shape and dtype as ``x``, values in [0, 1]
    cache : SigmoidCache

    Notes
    -----
    Chapter 4. The textbook formula overflows ``exp(-x)`` for ``x = -1000``. With
    ``e = exp(-|x|)``, which lies in (0, 1], the sigmoid is ``1 / (1 + e)`` for
    ``x >= 0`` and ``e / (1 + e)`` for ``x < 0``: the same function, no overflow.
    """
    check_array(x, "x")
    e = np.exp(-np.abs(x))
    one = x.dtype.type(1)
    out = np.where(x >= 0, one / (one + e), e / (one + e))
    return out, SigmoidCache(out)


def sigmoid_backward(dout, cache):
    """Local gradient ``s * (1 - s)`` from the saved output ``s``.

    Parameters
    ----------
    dout : ndarray, shape of the forward output
    cache : SigmoidCache
        From the matching forward.

    Returns
    -------
    dx : ndarray, shape of ``x``

    Notes
    -----
    Chapter 4 (activations and pooling) plots this derivative.
    """
    s = cache.out
    dout = check_dout(dout, s.shape, s.dtype)
    return dout * s * (s.dtype.type(1) - s)


def tanh_forward(x):
    """Hyperbolic tangent, elementwise.

    Parameters
    ----------
    x : ndarray, any shape, floating dtype

    Returns
    -------
    out : ndarray, same shape and dtype as ``x``, values in [-1, 1]
    cache : TanhCache

    Notes
    -----
    Chapter 4. ``tanh(x) = 2 * sigmoid(2x) - 1``: a sigmoid stretched to (-1, 1) and
    centred on zero.
    """
    check_array(x, "x")
    out = np.tanh(x)
    return out, TanhCache(out)


def tanh_backward(dout, cache):
    """Local gradient ``1 - tanh(x)**2`` from the saved output.

    Parameters
    ----------
    dout : ndarray, shape of the forward output
    cache : TanhCache
        From the matching forward.

    Returns
    -------
    dx : ndarray, shape of ``x``

    Notes
    -----
    Chapter 4 (activations and pooling) plots this derivative.
    """
    t = cache.out
    dout = check_dout(dout, t.shape, t.dtype)
    return dout * (t.dtype.type(1) - t * t)


def softmax(x, *, axis=-1):
    """Softmax along ``axis``: ``exp(x_i) / sum_j exp(x_j)``.

    Parameters
    ----------
    x : ndarray, at least 1 dimension, floating dtype
    axis : int
        The axis that holds the classes.

    Returns
    -------
    p : ndarray, same shape and dtype as ``x``; sums to 1 along ``axis``

    Notes
    -----
    Chapter 5 (the classifier head). Softmax does not change when the same constant is
    subtracted from every entry, so subtracting the maximum first makes every exponent
    <= 0: nothing overflows, and the largest term is exactly 1, so the sum is never 0.
    For a loss, use ``softmax_cross_entropy``, which also returns the gradient.
    """
    check_array(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have at least 1 dimension, got a 0-d array")
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for x with shape {shape_str(x)}")
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)
