"""The classifier head's layers: flatten, fully connected (dense) and dropout.

Chapter 5 (the classifier head) teaches these.

Conventions
-----------
- Linear weights are ``(out_features, in_features)``, as in ``torch.nn.Linear``, so
  the layer computes ``x @ w.T + b``.
- ``out, cache = <op>_forward(...)``; the backward returns the gradients in the order
  of the forward's array arguments: ``(dx, dw, db)`` for ``linear_backward`` (``db``
  is ``None`` when the forward had no bias) and a single array ``dx`` for flatten and
  dropout, whose only array argument is ``x``.
- Arrays must share one floating dtype, which the outputs keep.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from ._utils import check_array, check_bool, check_dout, check_same_dtype, shape_str

__all__ = [
    "linear_forward", "linear_backward",
    "flatten_forward", "flatten_backward",
    "dropout_forward", "dropout_backward",
]

class LinearCache(NamedTuple):
    x: np.ndarray
    w: np.ndarray
    has_bias: bool


class FlattenCache(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype


class DropoutCache(NamedTuple):
    mask: np.ndarray | None  # 0 or 1/(1-p) per element; None when dropout is the identity
    shape: tuple[int, ...]
    dtype: np.dtype


def linear_forward(x, w, b=None):
    """Fully connected layer: ``out = x @ w.T + b``.

    Parameters
    ----------
    x : ndarray, shape (N, in_features)
        A batch of feature vectors; flatten images first with ``flatten_forward``.
    w : ndarray, shape (out_features, in_features)
    b : ndarray, shape (out_features,), or None for no bias

    Returns
    -------
    out : ndarray, shape (N, out_features)
    cache : LinearCache

    Notes
    -----
    Chapter 5. Every output is connected to every input, so the layer holds
    ``out_features * (in_features + 1)`` parameters with a bias.
    """
    check_array(x, "x")
    check_array(w, "w", ndim=2)
    if x.ndim != 2:
        raise ValueError(f"x must have 2 dimensions (N, in_features), got shape {shape_str(x)}; "
                         f"flatten images with flatten_forward first")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has shape {shape_str(x)} with {x.shape[1]} features but w has shape "
                         f"{shape_str(w)} and expects {w.shape[1]} (w is (out_features, "
                         f"in_features))")
    check_same_dtype(x, "x", w, "w")
    if b is not None:
        check_array(b, "b", ndim=1)
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"b has shape {shape_str(b)} but w has shape {shape_str(w)}; b must "
                             f"have shape ({w.shape[0]},)")
        check_same_dtype(x, "x", b, "b")
    out = x @ w.T  # (N, out_features)
    if b is not None:
        out += b
    return out, LinearCache(x, w, b is not None)


def linear_backward(dout, cache, *, need_dx=True):
    """Gradients of the fully connected layer.

    Parameters
    ----------
    dout : ndarray, shape (N, out_features)
    cache : LinearCache
    need_dx : bool
        ``False`` skips the input gradient (a network's first layer): ``dx`` is ``None``.

    Returns
    -------
    dx : ndarray, shape (N, in_features), or None when ``need_dx`` is False
    dw : ndarray, shape (out_features, in_features)
    db : ndarray, shape (out_features,), or None when the forward had no bias
        The bias is added to every row, so its gradient sums over the batch.

    Notes
    -----
    Chapter 5 (the classifier head).
    """
    x, w, has_bias = cache
    check_bool(need_dx, "need_dx")
    dout = check_dout(dout, (x.shape[0], w.shape[0]), x.dtype)
    dx = dout @ w if need_dx else None  # (N, in_features)
    dw = dout.T @ x  # (out_features, in_features)
    db = dout.sum(axis=0) if has_bias else None
    return dx, dw, db


def flatten_forward(x):
    """Flatten every sample to a vector: ``(N, d1, d2, ...) -> (N, d1*d2*...)``.

    Parameters
    ----------
    x : ndarray, shape (N, ...), at least 2 dimensions

    Returns
    -------
    out : ndarray, shape (N, prod(x.shape[1:]))
        A view of ``x`` when ``x`` is contiguous, so flattening costs nothing.
    cache : FlattenCache

    Notes
    -----
    Chapter 5. Samples are flattened in C order (channel, then row, then column for
    NCHW images), as ``torch.flatten(x, 1)`` does, so the weights of a following linear
    layer line up with PyTorch's.
    """
    check_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (N, ...), got shape {shape_str(x)}")
    out = x.reshape(x.shape[0], -1)  # (N, C*H*W) for images
    return out, FlattenCache(x.shape, x.dtype)


def flatten_backward(dout, cache):
    """Reshape the gradient back to the input's shape.

    Parameters
    ----------
    dout : ndarray, shape (N, C*H*W)
    cache : FlattenCache
        From the matching forward.

    Returns
    -------
    dx : ndarray, shape of ``x``

    Notes
    -----
    Chapter 5 (the classifier head).
    """
    shape = cache.shape
    dout = check_dout(dout, (shape[0], math.prod(shape[1:])), cache.dtype)
    return dout.reshape(shape)  # (N, C, H, W) for images


def dropout_forward(x, *, p=0.5, training=True, rng=None):
    """Inverted dropout: zero each element with probability ``p``, scale the rest.

    Parameters
    ----------
    x : ndarray, any shape, floating dtype
    p : float in [0, 1)
        Probability of dropping an element.
    training : bool
        In evaluation (``training=False``) dropout is the identity.
    rng : numpy.random.Generator
        Source of the random mask; required when ``training`` and ``p > 0``, so that a
        run is reproducible from its seed (``numpy.random.default_rng(0)``).

    Returns
    -------
    out : ndarray, same shape and dtype as ``x``
    cache : DropoutCache

    Notes
    -----
    Chapter 5. The kept elements are divided by ``1 - p`` during training, so the
    expected value of every output equals its input, and evaluation needs no
    rescaling: this is "inverted" dropout, what PyTorch does. (The older form scales
    the outputs by ``1 - p`` at test time instead; the two agree in expectation.)
    """
    check_array(x, "x")
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a real number in [0, 1), got {p!r}")
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1) (the probability of dropping an element), got {p}")
    check_bool(training, "training")
    active = training and p > 0.0
    if active and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator when training with p > 0, got "
                        f"{rng!r}; pass rng=numpy.random.default_rng(seed)")
    if not active:
        return x.copy(), DropoutCache(None, x.shape, x.dtype)
    keep = rng.random(x.shape) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, DropoutCache(mask, x.shape, x.dtype)


def dropout_backward(dout, cache):
    """Gradient flows only through the kept elements, scaled like them.

    Parameters
    ----------
    dout : ndarray, shape of the forward output
    cache : DropoutCache
        From the matching forward.

    Returns
    -------
    dx : ndarray, shape of ``x``

    Notes
    -----
    Chapter 5 (the classifier head).
    """
    dout = check_dout(dout, cache.shape, cache.dtype)
    if cache.mask is None:
        return dout.copy()
    return dout * cache.mask
