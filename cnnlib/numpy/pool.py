"""Pooling layers: max, min and average pooling, global pooling and GeM.

Every op follows the library's convention: ``out, cache = <op>_forward(x, ...)`` and
``dx = <op>_backward(dout, cache)``. Images are NCHW, settings are keyword-only with
PyTorch's names, and float32 stays float32.

The sliding-window pools have two forwards with the same signature and the same results:
``<op>_forward_naive`` loops over output positions and reads like the definition (a
second oracle for the tests), ``<op>_forward`` loops only over the ``KH*KW`` offsets inside a
window, each step touching every window at once through a strided view, which is what
makes it fast. Both return a cache that the one backward accepts.

Chapter 4 (*Activations and pooling*, ``book/part1/04-activations-pooling.md``) teaches
the forward passes; chapter 6 (*Backpropagation through convolution and pooling*,
``book/part1/06-backprop.md``) derives the backward passes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._utils import as_pair, as_real, check_array, check_dout, shape_str
from .conv import _output_length  # the one output-size formula (conv_output_size)

__all__ = [
    "PoolCache",
    "GlobalPoolCache",
    "GeMCache",
    "maxpool2d_forward",
    "maxpool2d_forward_naive",
    "maxpool2d_backward",
    "minpool2d_forward",
    "minpool2d_forward_naive",
    "minpool2d_backward",
    "avgpool2d_forward",
    "avgpool2d_forward_naive",
    "avgpool2d_backward",
    "global_avgpool_forward",
    "global_avgpool_backward",
    "global_maxpool_forward",
    "global_maxpool_backward",
    "gem_pool_forward",
    "gem_pool_backward",
]


class PoolCache(NamedTuple):
    """What a sliding-window pool's backward needs.

    ``argext`` holds, for max and min pooling, the row-major offset ``i * KW + j`` inside
    each window of the element that won, shape ``(N, C, H_out, W_out)``; it is ``None``
    for average pooling.
    """

    mode: str  # "max", "min" or "avg"
    x_shape: tuple[int, int, int, int]
    dtype: np.dtype
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    argext: np.ndarray | None


class GlobalPoolCache(NamedTuple):
    """What a global pool's backward needs; ``argmax`` (N, C) is flat ``h * W + w``."""

    mode: str  # "max" or "avg"
    x_shape: tuple[int, int, int, int]
    dtype: np.dtype
    argmax: np.ndarray | None


class GeMCache(NamedTuple):
    """Intermediate values of generalized-mean pooling, all in ``x``'s dtype.

    ``r = clamp(x, eps) / m`` with ``m`` the per-map maximum, so ``r ** p`` stays in
    ``(0, 1]`` and a large ``p`` cannot overflow.
    """

    x_shape: tuple[int, int, int, int]
    dtype: np.dtype
    p_dtype: np.dtype
    p_shape: tuple[int, ...]
    p: float
    passes: np.ndarray  # (N, C, H, W) bool: where x >= eps, the clamp passes the gradient
    r: np.ndarray  # (N, C, H, W)
    m: np.ndarray  # (N, C) per-map maximum of clamp(x, eps)
    mean_rp: np.ndarray  # (N, C) mean of r**p
    out: np.ndarray  # (N, C)


# ---------------------------------------------------------------------------------------
# Argument checking and shared pieces
# ---------------------------------------------------------------------------------------

class _Geometry(NamedTuple):
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    out_hw: tuple[int, int]


def _pool_geometry(x, kernel_size, stride, padding) -> _Geometry:
    """Check a pool's arguments and return its settings as pairs plus the output size."""
    check_array(x, "x", ndim=4)
    k = as_pair(kernel_size, "kernel_size", minimum=1)
    s = k if stride is None else as_pair(stride, "stride", minimum=1)
    p = as_pair(padding, "padding", minimum=0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding {p} must be at most half of kernel_size {k} "
                         f"(at most {(k[0] // 2, k[1] // 2)}), as in PyTorch: more padding "
                         f"would create windows that see only padding")
    h, w = x.shape[2:]
    hp, wp = h + 2 * p[0], w + 2 * p[1]
    if hp < k[0] or wp < k[1]:
        raise ValueError(f"kernel_size {k} is larger than the padded input: x has shape "
                         f"{shape_str(x)}, padding {p} makes it {hp}x{wp}")
    out_hw = (_output_length(h, k[0], s[0], 1, p[0], p[0]),
              _output_length(w, k[1], s[1], 1, p[1], p[1]))
    return _Geometry(k, s, p, out_hw)


def _pad(x: np.ndarray, padding: tuple[int, int], value: float) -> np.ndarray:
    """Pad the last two axes by ``padding`` on both sides with ``value``."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    # Filling a new buffer and copying the interior is several times faster than np.pad.
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    return xp


def _windows(xp: np.ndarray, g: _Geometry) -> np.ndarray:
    """A read-only view of every pooling window, no copy."""
    kh, kw = g.kernel_size
    sh, sw = g.stride
    ho, wo = g.out_hw
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    # (N, C, H_p-KH+1, W_p-KW+1, KH, KW) -> (N, C, H_out, W_out, KH, KW)
    return win[:, :, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw]


def _offset_view(buf: np.ndarray, g: _Geometry, i: int, j: int) -> np.ndarray:
    """The (N, C, H_out, W_out) view of ``buf`` that offset (i, j) of every window reads."""
    sh, sw = g.stride
    ho, wo = g.out_hw
    return buf[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]


def _check_pool_cache(cache, mode: str, func: str) -> PoolCache:
    if not isinstance(cache, PoolCache):
        raise TypeError(f"cache must be the PoolCache returned by the matching forward, "
                        f"got {type(cache).__name__}")
    if cache.mode != mode:
        raise ValueError(f"cache comes from a {cache.mode} pool; {func} needs the cache of "
                         f"a {mode} pool")
    return cache


def _index_dtype(n: int) -> np.dtype:
    """The smallest unsigned integer type that holds 0 .. n-1: argmax caches stay small."""
    return np.min_scalar_type(max(n - 1, 0))


def _first_valid_offset(g: _Geometry) -> np.ndarray:
    """(H_out, W_out): row-major offset of the first non-padding element of each window."""
    kh, kw = g.kernel_size
    sh, sw = g.stride
    ph, pw = g.padding
    ho, wo = g.out_hw
    row = np.maximum(ph - sh * np.arange(ho), 0)
    col = np.maximum(pw - sw * np.arange(wo), 0)
    return row[:, None] * kw + col[None, :]


# ---------------------------------------------------------------------------------------
# Max and min pooling
# ---------------------------------------------------------------------------------------

def _extreme_forward(x, kernel_size, stride, padding, mode: str):
    g = _pool_geometry(x, kernel_size, stride, padding)
    kh, kw = g.kernel_size
    fill = -np.inf if mode == "max" else np.inf
    beats, keep = (np.greater, np.maximum) if mode == "max" else (np.less, np.minimum)
    win = _windows(_pad(x, g.padding, fill), g)  # (N, C, H_out, W_out, KH, KW)

    out = win[..., 0, 0].copy()  # (N, C, H_out, W_out)
    arg = np.zeros(out.shape, dtype=_index_dtype(kh * kw))
    wins = np.empty(out.shape, dtype=bool)
    for offset in range(1, kh * kw):
        v = win[..., offset // kw, offset % kw]
        # Strictly better, so a tie keeps the earlier position: the first extremum in
        # row-major window order wins, which is PyTorch's rule.
        beats(v, out, out=wins)
        keep(out, v, out=out)
        # arg = offset where wins, else arg; in modular unsigned arithmetic, because a
        # masked assignment costs ten times as much.
        arg += wins.view(np.uint8) * (arg.dtype.type(offset) - arg)
    if np.isnan(out).any():
        # The comparisons above skip a NaN; PyTorch lets a NaN win (the last one, if
        # several). Only then do we pay for the slower pass that follows that rule.
        arg = _nan_aware_arg(win, beats, out.shape, arg.dtype)
    if g.padding != (0, 0):
        # A window whose real values all equal the fill value (-inf for max) ties with
        # its padding; PyTorch then names the window's first real position, and so must
        # the argmax, or the gradient would land in the padding and vanish.
        stuck = out == fill
        if stuck.any():
            first = np.broadcast_to(_first_valid_offset(g), out.shape)
            arg[stuck] = first[stuck]
    cache = PoolCache(mode, x.shape, x.dtype, g.kernel_size, g.stride, g.padding, arg)
    return out, cache


def _extreme_forward_naive(x, kernel_size, stride, padding, mode: str):
    """Max or min pooling as a loop over output positions: the definition, for teaching."""
    g = _pool_geometry(x, kernel_size, stride, padding)
    n, c = x.shape[:2]
    kh, kw = g.kernel_size
    sh, sw = g.stride
    h_out, w_out = g.out_hw
    fill, pick, arg_pick = ((-np.inf, np.max, np.argmax) if mode == "max"
                            else (np.inf, np.min, np.argmin))
    xp = _pad(x, g.padding, fill)
    out = np.empty((n, c, h_out, w_out), dtype=x.dtype)
    arg = np.empty((n, c, h_out, w_out), dtype=_index_dtype(kh * kw))
    for i in range(h_out):
        for j in range(w_out):
            window = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            window = window.reshape(n, c, kh * kw)  # (N, C, KH*KW), row-major order
            # argmax/argmin return the first of tied extrema, which is PyTorch's choice too.
            arg[:, :, i, j] = arg_pick(window, axis=2)
            out[:, :, i, j] = pick(window, axis=2)
    cache = PoolCache(mode, x.shape, x.dtype, g.kernel_size, g.stride, g.padding, arg)
    return out, cache


def _nan_aware_arg(win, beats, shape, dtype) -> np.ndarray:
    """The winning offsets under PyTorch's rule ``v beats best or v is NaN``."""
    kh, kw = win.shape[-2:]
    best = win[..., 0, 0].copy()
    arg = np.zeros(shape, dtype=dtype)
    for offset in range(1, kh * kw):
        v = win[..., offset // kw, offset % kw]
        wins = beats(v, best) | np.isnan(v)
        best = np.where(wins, v, best)
        arg[wins] = offset
    return arg


def _extreme_backward(dout, cache: PoolCache) -> np.ndarray:
    n, c, h, w = cache.x_shape
    kh, kw = cache.kernel_size
    sh, sw = cache.stride
    ph, pw = cache.padding
    g = _Geometry(cache.kernel_size, cache.stride, cache.padding, cache.argext.shape[2:])
    check_dout(dout, cache.argext.shape, cache.dtype,
               context=f" (x had shape {cache.x_shape})")
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cache.dtype)
    overlapping = sh < kh or sw < kw
    won = np.empty(dout.shape, dtype=bool)
    share = np.empty(dout.shape, dtype=cache.dtype)
    for offset in range(kh * kw):
        np.equal(cache.argext, offset, out=won)
        target = _offset_view(dxp, g, offset // kw, offset % kw)
        # A multiply by the 0/1 mask, because masked ufuncs and copies are much slower.
        if overlapping:
            # Within one offset the targets are distinct, so an in-place add is safe;
            # different offsets may hit the same input, and those contributions add up.
            np.multiply(dout, won, out=share)
            target += share
        else:
            # Each input sits in at most one window at one offset: write, do not add.
            np.multiply(dout, won, out=target)
    if ph or pw:
        return dxp[:, :, ph : ph + h, pw : pw + w].copy()
    return dxp


def maxpool2d_forward(x, *, kernel_size, stride=None, padding=0):
    """Max pooling: the largest value of every ``KH x KW`` window.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
        Input feature maps.
    kernel_size : int or (int, int)
        Window size ``(KH, KW)``.
    stride : int or (int, int), optional
        Step between windows; ``None`` (the default) means ``stride = kernel_size``.
        A stride below the kernel size makes windows overlap.
    padding : int or (int, int), default 0
        Rows and columns of -inf added on each side (so padding never wins); at most
        half the kernel, as in PyTorch.

    Returns
    -------
    out : ndarray, shape (N, C, H_out, W_out), dtype of ``x``
        ``H_out = floor((H + 2*padding - KH) / stride) + 1``, likewise ``W_out``.
    cache : PoolCache
        Holds the row-major offset of each window's winner, for
        :func:`maxpool2d_backward`.

    Notes
    -----
    Matches ``torch.nn.functional.max_pool2d`` (``ceil_mode=False``, no dilation),
    including which position wins a tie (the first in row-major window order) and NaN
    propagation. Loops over the ``KH*KW`` offsets of a window, never over pixels.
    Chapter 4 (*Activations and pooling*).
    """
    return _extreme_forward(x, kernel_size, stride, padding, "max")


def maxpool2d_forward_naive(x, *, kernel_size, stride=None, padding=0):
    """Max pooling as a loop over output positions: the definition, for teaching.

    Same arguments, results and cache as :func:`maxpool2d_forward` (for inputs without
    NaN or -inf, where the fast version follows PyTorch's extra rules). Chapter 4
    (*Activations and pooling*).
    """
    return _extreme_forward_naive(x, kernel_size, stride, padding, "max")


def maxpool2d_backward(dout, cache):
    """Route each upstream gradient to the position that won the max.

    Overlapping windows add their contributions, so the same input can collect gradient
    from several outputs; inputs that won no window get zero. When several positions
    tie for the max, only the one the forward recorded receives the gradient: the first
    in row-major window order, as in PyTorch.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H_out, W_out), the dtype of the forward input
        Gradient of the loss with respect to the forward's output.
    cache : PoolCache
        From :func:`maxpool2d_forward` or :func:`maxpool2d_forward_naive`.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), dtype of the forward's ``x``

    Notes
    -----
    One pass over ``dout`` per window offset, writing into a padded buffer whose border
    is cropped at the end. Chapter 6 (*Backpropagation through convolution and
    pooling*).
    """
    return _extreme_backward(dout, _check_pool_cache(cache, "max", "maxpool2d_backward"))


def minpool2d_forward(x, *, kernel_size, stride=None, padding=0):
    """Min pooling: the smallest value of every ``KH x KW`` window.

    PyTorch has no min pool; this equals ``-max_pool2d(-x)``, gradients and tie-breaking
    included (the first minimum in row-major window order wins).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        ``None`` (the default) means ``stride = kernel_size``.
    padding : int or (int, int), default 0
        Rows and columns of +inf on each side (so padding never wins); at most half the
        kernel.

    Returns
    -------
    out : ndarray, shape (N, C, H_out, W_out), dtype of ``x``
        ``H_out = floor((H + 2*padding - KH) / stride) + 1``, likewise ``W_out``.
    cache : PoolCache
        For :func:`minpool2d_backward`.

    Notes
    -----
    Chapter 4 (*Activations and pooling*).
    """
    return _extreme_forward(x, kernel_size, stride, padding, "min")


def minpool2d_forward_naive(x, *, kernel_size, stride=None, padding=0):
    """Min pooling as a loop over output positions (for teaching, and as an oracle).

    Same arguments, results and cache as :func:`minpool2d_forward` for inputs without
    NaN or +inf. Chapter 4 (*Activations and pooling*).
    """
    return _extreme_forward_naive(x, kernel_size, stride, padding, "min")


def minpool2d_backward(dout, cache):
    """Route each upstream gradient to the position that held the window's minimum.

    Overlapping windows add their contributions; one position per window, the first
    minimum in row-major order, receives the gradient.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H_out, W_out), the dtype of the forward input
    cache : PoolCache
        From :func:`minpool2d_forward` or :func:`minpool2d_forward_naive`.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), dtype of the forward's ``x``

    Notes
    -----
    Chapter 6 (*Backpropagation through convolution and pooling*).
    """
    return _extreme_backward(dout, _check_pool_cache(cache, "min", "minpool2d_backward"))


# ---------------------------------------------------------------------------------------
# Average pooling
# ---------------------------------------------------------------------------------------

def avgpool2d_forward(x, *, kernel_size, stride=None, padding=0):
    """Average pooling: the mean of every ``KH x KW`` window.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        ``None`` (the default) means ``stride = kernel_size``.
    padding : int or (int, int), default 0
        Rows and columns of zeros on each side; at most half the kernel.

    Returns
    -------
    out : ndarray, shape (N, C, H_out, W_out), dtype of ``x``
        ``H_out = floor((H + 2*padding - KH) / stride) + 1``, likewise ``W_out``.
    cache : PoolCache
        For :func:`avgpool2d_backward`.

    Notes
    -----
    Padded zeros count in the mean (the divisor is always ``KH*KW``), as with PyTorch's
    default ``count_include_pad=True``. Chapter 4 (*Activations and pooling*).
    """
    g = _pool_geometry(x, kernel_size, stride, padding)
    kh, kw = g.kernel_size
    win = _windows(_pad(x, g.padding, 0.0), g)  # (N, C, H_out, W_out, KH, KW)
    out = win[..., 0, 0].copy()  # (N, C, H_out, W_out)
    for offset in range(1, kh * kw):
        out += win[..., offset // kw, offset % kw]
    out /= kh * kw
    return out, PoolCache("avg", x.shape, x.dtype, g.kernel_size, g.stride, g.padding, None)


def avgpool2d_forward_naive(x, *, kernel_size, stride=None, padding=0):
    """Average pooling as a loop over output positions (for teaching, and as an oracle).

    Same arguments, results and cache as :func:`avgpool2d_forward`. Chapter 4
    (*Activations and pooling*).
    """
    g = _pool_geometry(x, kernel_size, stride, padding)
    n, c = x.shape[:2]
    kh, kw = g.kernel_size
    sh, sw = g.stride
    h_out, w_out = g.out_hw
    xp = _pad(x, g.padding, 0.0)
    out = np.empty((n, c, h_out, w_out), dtype=x.dtype)
    for i in range(h_out):
        for j in range(w_out):
            window = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            # Divide by KH*KW even where the window covers padding (count_include_pad).
            out[:, :, i, j] = window.sum(axis=(2, 3)) / (kh * kw)
    return out, PoolCache("avg", x.shape, x.dtype, g.kernel_size, g.stride, g.padding, None)


def avgpool2d_backward(dout, cache):
    """Share each upstream gradient equally among the ``KH*KW`` positions of its window.

    Overlapping windows add their shares. Shares that fall on padding are dropped,
    which is why inputs near the border of a padded pool receive less.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H_out, W_out), the dtype of the forward input
    cache : PoolCache
        From :func:`avgpool2d_forward` or :func:`avgpool2d_forward_naive`.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), dtype of the forward's ``x``

    Notes
    -----
    Chapter 6 (*Backpropagation through convolution and pooling*).
    """
    cache = _check_pool_cache(cache, "avg", "avgpool2d_backward")
    n, c, h, w = cache.x_shape
    kh, kw = cache.kernel_size
    sh, sw = cache.stride
    ph, pw = cache.padding
    h_out = _output_length(h, kh, sh, 1, ph, ph)
    w_out = _output_length(w, kw, sw, 1, pw, pw)
    g = _Geometry(cache.kernel_size, cache.stride, cache.padding, (h_out, w_out))
    check_dout(dout, (n, c, h_out, w_out), cache.dtype,
               context=f" (x had shape {cache.x_shape})")
    share = dout / (kh * kw)
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cache.dtype)
    overlapping = sh < kh or sw < kw
    for offset in range(kh * kw):
        target = _offset_view(dxp, g, offset // kw, offset % kw)
        if overlapping:
            target += share
        else:
            target[...] = share
    if ph or pw:
        return dxp[:, :, ph : ph + h, pw : pw + w].copy()
    return dxp


# ---------------------------------------------------------------------------------------
# Global pooling
# ---------------------------------------------------------------------------------------

def _check_global_cache(cache, mode: str, func: str) -> GlobalPoolCache:
    if not isinstance(cache, GlobalPoolCache):
        raise TypeError(f"cache must be the GlobalPoolCache returned by the matching "
                        f"forward, got {type(cache).__name__}")
    if cache.mode != mode:
        raise ValueError(f"cache comes from a global {cache.mode} pool; {func} needs the "
                         f"cache of a global {mode} pool")
    return cache


def global_avgpool_forward(x):
    """Global average pooling: the mean of each whole feature map.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64

    Returns
    -------
    out : ndarray, shape (N, C), dtype of ``x``
        One number per channel, ready for a linear layer. For the ``(N, C, 1, 1)`` that
        ``torch.nn.AdaptiveAvgPool2d(1)`` returns, use ``out[:, :, None, None]``.
    cache : GlobalPoolCache

    Notes
    -----
    Equals ``avgpool2d_forward(x, kernel_size=(H, W))`` without its trailing 1x1 axes.
    Chapter 4 (*Activations and pooling*).
    """
    check_array(x, "x", ndim=4)
    if x.shape[2] * x.shape[3] == 0:
        raise ValueError(f"x must have at least one pixel per map, got shape {shape_str(x)}")
    out = x.mean(axis=(2, 3))  # (N, C)
    return out, GlobalPoolCache("avg", x.shape, x.dtype, None)


def global_avgpool_backward(dout, cache):
    """Spread each channel's gradient evenly over its ``H*W`` positions.

    Parameters
    ----------
    dout : ndarray, shape (N, C), the dtype of the forward input
    cache : GlobalPoolCache
        From :func:`global_avgpool_forward`.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), dtype of the forward's ``x``

    Notes
    -----
    Chapter 6 (*Backpropagation through convolution and pooling*).
    """
    cache = _check_global_cache(cache, "avg", "global_avgpool_backward")
    n, c, h, w = cache.x_shape
    check_dout(dout, (n, c), cache.dtype,
               context=f" (x had shape {cache.x_shape})")
    share = dout / (h * w)
    # (N, C) -> (N, C, 1, 1), then broadcast to (N, C, H, W) and materialize.
    return np.broadcast_to(share[:, :, None, None], cache.x_shape).copy()


def global_maxpool_forward(x):
    """Global max pooling: the largest value of each whole feature map.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64

    Returns
    -------
    out : ndarray, shape (N, C), dtype of ``x``
        For the ``(N, C, 1, 1)`` of ``torch.nn.AdaptiveMaxPool2d(1)``, use
        ``out[:, :, None, None]``.
    cache : GlobalPoolCache
        Holds the flat ``h * W + w`` position of each maximum.

    Notes
    -----
    Ties go to the first maximum in row-major order and a NaN wins (the last NaN if
    there are several), as in PyTorch's adaptive max pooling. Chapter 4 (*Activations
    and pooling*).
    """
    check_array(x, "x", ndim=4)
    n, c, h, w = x.shape
    if h * w == 0:
        raise ValueError(f"x must have at least one pixel per map, got shape {shape_str(x)}")
    flat = x.reshape(n, c, h * w)  # (N, C, H*W)
    arg = np.argmax(flat, axis=2)  # first of tied maxima, and first NaN
    nan = np.isnan(flat)
    if nan.any():
        last_nan = h * w - 1 - np.argmax(nan[:, :, ::-1], axis=2)
        arg = np.where(nan.any(axis=2), last_nan, arg)
    out = np.take_along_axis(flat, arg[:, :, None], axis=2)[:, :, 0]  # (N, C)
    return out, GlobalPoolCache("max", x.shape, x.dtype, arg)


def global_maxpool_backward(dout, cache):
    """Send each channel's gradient to the one position that held its maximum.

    Parameters
    ----------
    dout : ndarray, shape (N, C), the dtype of the forward input
    cache : GlobalPoolCache
        From :func:`global_maxpool_forward`.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), dtype of the forward's ``x``

    Notes
    -----
    Chapter 6 (*Backpropagation through convolution and pooling*).
    """
    cache = _check_global_cache(cache, "max", "global_maxpool_backward")
    n, c, h, w = cache.x_shape
    check_dout(dout, (n, c), cache.dtype,
               context=f" (x had shape {cache.x_shape})")
    dx = np.zeros((n, c, h * w), dtype=cache.dtype)  # (N, C, H*W)
    np.put_along_axis(dx, cache.argmax[:, :, None], dout[:, :, None], axis=2)
    return dx.reshape(cache.x_shape)  # (N, C, H*W) -> (N, C, H, W)


# ---------------------------------------------------------------------------------------
# Generalized-mean (GeM) pooling
# ---------------------------------------------------------------------------------------

def gem_pool_forward(x, p, *, eps=1e-6):
    """Generalized-mean pooling over each whole feature map, with a learnable exponent.

    ``out[n, c] = (mean over h, w of clamp(x[n, c, h, w], eps) ** p) ** (1 / p)``
    (Radenovic, Tolias and Chum, 2018). ``p = 1`` is average pooling, and as ``p`` grows
    the result tends to max pooling, so training ``p`` lets a network choose between them.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
    p : ndarray, shape () or (1,), floating
        The exponent; must be finite and positive. Learnable, so it is an array and
        :func:`gem_pool_backward` returns its gradient.
    eps : float, default 1e-6
        Values below ``eps`` are raised to it, so that ``x ** p`` is defined for
        negative inputs and the gradient of ``p`` (which needs ``log x``) stays finite.

    Returns
    -------
    out : ndarray, shape (N, C), dtype of ``x``
        Use ``out[:, :, None, None]`` for the ``(N, C, 1, 1)`` of a PyTorch GeM layer.
    cache : GeMCache

    Notes
    -----
    Computed as ``m * mean((x_c / m) ** p) ** (1 / p)`` with ``m`` the map's maximum of
    ``x_c = clamp(x, eps)``: the same value, but no power exceeds 1, so ``p = 500`` does
    not overflow even in float32. Chapter 4 (*Activations and pooling*).
    """
    check_array(x, "x", ndim=4)
    check_array(p, "p", ndim=(0, 1))
    if p.shape not in ((), (1,)):
        raise ValueError(f"p must be a scalar array of shape () or (1,), got shape "
                         f"{shape_str(p)}")
    p_val = float(p.item())
    if not np.isfinite(p_val) or p_val <= 0:
        raise ValueError(f"p must be finite and positive, got {p_val} (shape {shape_str(p)})")
    eps = as_real(eps, "eps")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    n, c, h, w = x.shape
    if h * w == 0:
        raise ValueError(f"x must have at least one pixel per map, got shape {shape_str(x)}")

    xc = np.maximum(x, x.dtype.type(eps))  # (N, C, H, W)
    m = xc.max(axis=(2, 3))  # (N, C)
    r = xc / m[:, :, None, None]  # (N, C, H, W), values in (0, 1]
    mean_rp = (r ** x.dtype.type(p_val)).mean(axis=(2, 3))  # (N, C), at least 1/(H*W)
    out = m * mean_rp ** x.dtype.type(1.0 / p_val)
    cache = GeMCache(x.shape, x.dtype, p.dtype, p.shape, p_val, x >= eps, r, m, mean_rp, out)
    return out, cache


def gem_pool_backward(dout, cache):
    """Gradients of generalized-mean pooling for the input and for the exponent ``p``.

    With ``x_c = clamp(x, eps)``, ``s = mean(x_c ** p)`` and ``y = s ** (1/p)``:

    - ``dy/dx_c = y * x_c ** (p - 1) / (H * W * s)``, and the clamp lets it through only
      where ``x >= eps``;
    - ``dy/dp = y * (mean(x_c ** p * log x_c) / (p * s) - log(s) / p**2)``.

    Both are evaluated on ``r = x_c / max(x_c)`` (the ``log max`` terms cancel), so they
    stay finite for large ``p``.

    Parameters
    ----------
    dout : ndarray, shape (N, C), the dtype of the forward input
    cache : GeMCache
        From :func:`gem_pool_forward`.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), dtype of ``x``
    dp : ndarray, shape and dtype of ``p``
        Summed over the batch and channels, since one ``p`` serves them all.

    Notes
    -----
    Chapter 6 (*Backpropagation through convolution and pooling*).
    """
    if not isinstance(cache, GeMCache):
        raise TypeError(f"cache must be the GeMCache returned by gem_pool_forward, "
                        f"got {type(cache).__name__}")
    n, c, h, w = cache.x_shape
    check_dout(dout, (n, c), cache.dtype,
               context=f" (x had shape {cache.x_shape})")
    dt = cache.dtype.type
    p = cache.p
    # (N, C) -> (N, C, 1, 1) factors that multiply every pixel of the map.
    scale = (dout * cache.out / (cache.m * cache.mean_rp * (h * w)))[:, :, None, None]
    dx = scale * cache.r ** dt(p - 1) * cache.passes
    rp = cache.r ** dt(p)
    mean_rp_log_r = (rp * np.log(cache.r)).mean(axis=(2, 3))  # (N, C)
    dy_dp = cache.out * (mean_rp_log_r / (p * cache.mean_rp) - np.log(cache.mean_rp) / p**2)
    dp = np.full(cache.p_shape, np.sum(dout * dy_dp, dtype=np.float64), dtype=cache.p_dtype)
    return dx.astype(cache.dtype, copy=False), dp
