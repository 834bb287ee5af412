"""2-D convolution and transposed convolution, forward and backward, in NumPy.

Convolution here means cross-correlation, as in every deep-learning library: the kernel
is not flipped. Arrays are NCHW and conv weights ``(C_out, C_in, KH, KW)``, so every
function can be checked against ``torch.nn.functional.conv2d`` in float64.

Three ways to compute the same thing, from the definition to the fast one:

- ``conv2d_forward_naive``: loops, one output value at a time (chapter 2);
- ``conv2d_forward_im2col`` / ``conv2d_backward_im2col``: every window becomes a column
  of a matrix (``im2col``), so the convolution is one matrix product, and its backward
  pass two more, with ``col2im`` sending the columns' gradients back to the pixels
  (chapters 2 and 6);
- ``conv2d_forward`` / ``conv2d_backward``: the same products, computed by the private
  engine ``_conv_engine.py`` (chunks of images, threads, buffers kept between calls).
  Use these; the tests hold all three equal.

The transposed convolution is the adjoint of the convolution: its forward pass is the
convolution's input gradient (col2im) and its input gradient is a convolution (im2col).

Taught in chapters 2 (convolution), 3 (padding and stride) and 6 (backpropagation).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _conv_engine as engine
from ._conv_engine import Geometry
from ._utils import (
    as_int,
    as_pair,
    check_array,
    check_bool,
    check_dout,
    check_same_dtype,
    shape_str,
)

__all__ = [
    "Conv2dCache",
    "ConvTranspose2dCache",
    "conv_output_size",
    "conv_transpose_output_size",
    "padding_amounts",
    "pad2d",
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_forward_naive",
    "conv2d_forward_im2col",
    "conv2d_backward",
    "conv2d_backward_im2col",
    "conv_transpose2d_forward",
    "conv_transpose2d_forward_naive",
    "conv_transpose2d_backward",
]

_PADDING_MODES = ("valid", "same", "full")


class Conv2dCache(NamedTuple):
    """What ``conv2d_backward`` needs from the forward pass."""

    x: np.ndarray                      # (N, C_in, H, W)
    w: np.ndarray                      # (C_out, C_in, KH, KW)
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # (top, bottom, left, right)
    dilation: tuple[int, int]
    has_bias: bool


class ConvTranspose2dCache(NamedTuple):
    """What ``conv_transpose2d_backward`` needs from the forward pass."""

    x: np.ndarray                      # (N, C_in, H, W)
    w: np.ndarray                      # (C_in, C_out, KH, KW)
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    has_bias: bool


# --------------------------------------------------------------------------------------
# Sizes and padding
# --------------------------------------------------------------------------------------

def padding_amounts(padding, kernel_size: int, *, stride: int = 1,
                    dilation: int = 1) -> tuple[int, int]:
    """Zeros added ``(before, after)`` along one axis, for an int or a named padding.

    ``"valid"`` adds none, ``"full"`` adds ``d(k-1)`` on each side, and ``"same"``
    (stride 1 only) adds ``d(k-1)`` in all, the odd one after, as PyTorch does: an even
    kernel cannot be centred.

    Notes
    -----
    Taught in chapter 3 (padding and stride).
    """
    k = as_int(kernel_size, "kernel_size", minimum=1)
    s = as_int(stride, "stride", minimum=1)
    d = as_int(dilation, "dilation", minimum=1)
    if isinstance(padding, str):
        if padding not in _PADDING_MODES:
            raise ValueError(f"padding must be an int, a pair of ints or one of "
                             f"{_PADDING_MODES}, got {padding!r}")
        span = d * (k - 1)
        if padding == "valid":
            return (0, 0)
        if padding == "full":
            return (span, span)
        if s != 1:
            raise ValueError(f"padding='same' needs stride 1 (as in PyTorch), got stride={s}")
        return (span // 2, span - span // 2)
    p = as_int(padding, "padding", minimum=0)
    return (p, p)


def _output_length(n: int, k: int, s: int, d: int, before: int, after: int) -> int:
    """The one output-size formula; arguments already checked (see ``conv_output_size``)."""
    return (n + before + after - d * (k - 1) - 1) // s + 1


def conv_output_size(n: int, kernel_size: int, *, stride: int = 1, padding=0,
                     dilation: int = 1) -> int:
    """Length of a convolution's output along one spatial dimension.

    .. math:: n_{out} = \\left\\lfloor \\frac{n + 2p - d\\,(k - 1) - 1}{s} \\right\\rfloor + 1

    With ``d = 1`` this is the familiar ``floor((n + 2p - k) / s) + 1``: the last window
    that still fits starts at ``n + 2p - k``, and windows start every ``s`` positions.

    Parameters
    ----------
    n : int
        Input length (height or width), at least 1.
    kernel_size : int
        Kernel length ``k``, at least 1.
    stride : int
        Step ``s`` between windows, at least 1.
    padding : int or {"valid", "same", "full"}
        Zeros added on each side (``p``). ``"same"`` (stride 1 only) pads ``d(k-1)`` in
        total, the odd one after; ``"full"`` pads ``d(k-1)`` on each side.
    dilation : int
        Spacing ``d`` between kernel taps, at least 1.

    Returns
    -------
    int
        The output length, at least 1.

    Raises
    ------
    ValueError
        When the (dilated) kernel is longer than the padded input, ``stride < 1``,
        ``padding < 0`` or ``padding="same"`` with ``stride > 1``.

    Notes
    -----
    Taught in chapter 3 (padding and stride).
    """
    n = as_int(n, "n", minimum=1)
    k = as_int(kernel_size, "kernel_size", minimum=1)
    s = as_int(stride, "stride", minimum=1)
    d = as_int(dilation, "dilation", minimum=1)
    before, after = padding_amounts(padding, k, stride=s, dilation=d)
    span = d * (k - 1) + 1
    if span > n + before + after:
        raise ValueError(f"kernel_size={k} (dilated extent {span}) is larger than the padded "
                         f"input n={n} + padding {before}+{after} = {n + before + after}")
    return _output_length(n, k, s, d, before, after)


def conv_transpose_output_size(n: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
                               output_padding: int = 0) -> int:
    """Length of a transposed convolution's output along one spatial dimension.

    .. math:: n_{out} = (n - 1)\\,s - 2p + k + p_{out}

    The inverse of ``conv_output_size`` for the same ``k``, ``s`` and ``p``: several
    lengths give the same convolution output when ``s > 1``, and ``output_padding``
    (smaller than ``s``) picks one.

    Raises
    ------
    ValueError
        When ``output_padding >= stride`` or the padding removes the whole output.

    Notes
    -----
    Taught in chapter 6 (backpropagation), where the transposed convolution appears as
    the gradient of a convolution.
    """
    n = as_int(n, "n", minimum=1)
    k = as_int(kernel_size, "kernel_size", minimum=1)
    s = as_int(stride, "stride", minimum=1)
    p = as_int(padding, "padding", minimum=0)
    op = as_int(output_padding, "output_padding", minimum=0)
    if op >= s:
        raise ValueError(f"output_padding={op} must be smaller than stride={s}")
    out = _transposed_length(n, k, s, p, op)
    if out < 1:
        raise ValueError(f"padding={p} removes the whole output of a transposed convolution "
                         f"with n={n}, kernel_size={k}, stride={s} (size {out})")
    return out


def _transposed_length(n: int, k: int, s: int, p: int, op: int) -> int:
    """The one transposed output-size formula; arguments already checked."""
    return (n - 1) * s - 2 * p + k + op


def _pad_widths(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` from an int, a pair or a pair of pairs."""
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(
            isinstance(p, (tuple, list)) for p in padding):
        (top, bottom), (left, right) = (as_pair(p, "padding", minimum=0) for p in padding)
        return (top, bottom), (left, right)
    ph, pw = as_pair(padding, "padding", minimum=0)
    return (ph, ph), (pw, pw)


def pad2d(x: np.ndarray, padding, *, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes of ``x`` with a constant.

    Parameters
    ----------
    x : ndarray, shape (..., H, W)
        Any array with at least two dimensions: an image ``(H, W)``, a batch
        ``(N, C, H, W)``, ...
    padding : int, (ph, pw) or ((top, bottom), (left, right))
        Rows and columns to add: the same on every side, the same top/bottom and
        left/right, or each side on its own. All non-negative.
    value : float
        The fill value (0 for convolution; max pooling pads with ``-inf``).

    Returns
    -------
    ndarray, shape (..., H + top + bottom, W + left + right)
        A new array with the dtype of ``x``.

    Notes
    -----
    Taught in chapter 3 (padding and stride).
    """
    x = check_array(x, "x", floating=False)
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., H, W), got shape {shape_str(x)}")
    (top, bottom), (left, right) = _pad_widths(padding)
    if not np.issubdtype(x.dtype, np.inexact) and not float(value).is_integer():
        # Storing -inf or 0.5 in an integer array would silently become something else.
        raise ValueError(f"value={value!r} cannot be stored in x's dtype {x.dtype} "
                         f"(shape {shape_str(x)})")
    h, w = x.shape[-2:]
    out = np.full(x.shape[:-2] + (h + top + bottom, w + left + right), value, dtype=x.dtype)
    out[..., top:top + h, left:left + w] = x
    return out


# --------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------

def _check_bias(b, n_out: int, w: np.ndarray) -> np.ndarray | None:
    if b is None:
        return None
    b = check_array(b, "b", ndim=1)
    if b.shape != (n_out,):
        raise ValueError(f"b must have shape ({n_out},), one value per output channel of w "
                         f"{shape_str(w)}, got shape {shape_str(b)}")
    check_same_dtype(b, "b", w, "w")
    return b


def _check_positive_sizes(x: np.ndarray, name: str) -> None:
    if 0 in x.shape:
        raise ValueError(f"{name} must not have an empty dimension, got shape {shape_str(x)}")


def _check_x_w(x, w, w_in_axis: int, w_layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Check a convolution's input and weights: rank, sizes, dtype and channel count.

    ``w_in_axis`` is the axis of ``w`` that counts input channels, ``w_layout`` its
    layout in words, for the error message.
    """
    x = check_array(x, "x", ndim=4)
    w = check_array(w, "w", ndim=4)
    _check_positive_sizes(x, "x")
    _check_positive_sizes(w, "w")
    check_same_dtype(x, "x", w, "w")
    if x.shape[1] != w.shape[w_in_axis]:
        raise ValueError(f"x has {x.shape[1]} channels (shape {shape_str(x)} is N, C_in, H, W) "
                         f"but w expects {w.shape[w_in_axis]} (shape {shape_str(w)} is "
                         f"{w_layout})")
    return x, w


def _check_conv2d(x, w, b, stride, padding, dilation):
    """Validate conv2d arguments; return them resolved, plus the output size."""
    x, w = _check_x_w(x, w, 1, "C_out, C_in, KH, KW")
    b = _check_bias(b, w.shape[0], w)
    stride = as_pair(stride, "stride", minimum=1)
    dilation = as_pair(dilation, "dilation", minimum=1)
    kh, kw = w.shape[2:]
    if isinstance(padding, str):
        (pt, pb), (pl, pr) = (padding_amounts(padding, k, stride=s, dilation=d)
                              for k, s, d in zip((kh, kw), stride, dilation))
    else:
        ph, pw = as_pair(padding, "padding", minimum=0)
        pt, pb, pl, pr = ph, ph, pw, pw
    h, wd = x.shape[2:]
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if span_h > h + pt + pb or span_w > wd + pl + pr:
        raise ValueError(f"kernel of w {shape_str(w)} (dilated extent {span_h}x{span_w}) is "
                         f"larger than the padded input {h + pt + pb}x{wd + pl + pr} "
                         f"(x {shape_str(x)}, padding {(pt, pb, pl, pr)} top/bottom/left/right)")
    pads = (pt, pb, pl, pr)
    return x, w, b, stride, pads, dilation, _conv2d_out_hw(x.shape, w.shape, stride, pads,
                                                            dilation)


def _conv2d_out_hw(x_shape, w_shape, stride, pads, dilation) -> tuple[int, int]:
    """``(H_out, W_out)`` of a conv2d whose settings are already checked."""
    (h, wd), (kh, kw) = x_shape[2:], w_shape[2:]
    return (_output_length(h, kh, stride[0], dilation[0], pads[0], pads[1]),
            _output_length(wd, kw, stride[1], dilation[1], pads[2], pads[3]))


def _check_conv2d_backward(dout, cache, need_dx):
    """Check a conv2d backward's arguments; return ``dout`` and the output size."""
    if not isinstance(cache, Conv2dCache):
        raise TypeError(f"cache must be the Conv2dCache returned by conv2d_forward, "
                        f"got {type(cache).__name__}")
    check_bool(need_dx, "need_dx")
    x, w, stride, pads, dilation, _ = cache
    out_hw = _conv2d_out_hw(x.shape, w.shape, stride, pads, dilation)
    dout = check_dout(dout, (x.shape[0], w.shape[0], *out_hw), x.dtype, ndim=4)
    return dout, out_hw




# --------------------------------------------------------------------------------------
# The idea: im2col, one matrix product, col2im
# --------------------------------------------------------------------------------------

def im2col(xp: np.ndarray, kernel_size, *, stride=1, dilation=1) -> np.ndarray:
    """Every window of a padded batch as one column of a matrix.

    Parameters
    ----------
    xp : ndarray, shape (N, C, Hp, Wp)
        The input, already padded (``pad2d``).
    kernel_size, stride, dilation : int or (int, int)

    Returns
    -------
    cols : ndarray, shape (C*KH*KW, N*H_out*W_out)
        Column ``(n, y, x)`` holds the window that output ``(y, x)`` of image ``n``
        reads; row ``(c, i, j)`` holds channel ``c`` seen through kernel tap ``(i, j)``.
        So ``w.reshape(C_out, -1) @ cols`` is the convolution.

    Notes
    -----
    Taught in chapter 2 (convolution).
    """
    n, c, hp, wp = xp.shape
    (kh, kw), (sh, sw), (dh, dw) = (as_pair(v, name, minimum=1) for v, name in (
        (kernel_size, "kernel_size"), (stride, "stride"), (dilation, "dilation")))
    ho, wo = conv_output_size(hp, kh, stride=sh, dilation=dh), conv_output_size(
        wp, kw, stride=sw, dilation=dw)
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            # Tap (i, j) of every window at once: a strided slice of the input.
            taps = xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                      j * dw:j * dw + sw * (wo - 1) + 1:sw]          # (N, C, H_out, W_out)
            cols[:, i, j] = taps.transpose(1, 0, 2, 3)               # (C, N, H_out, W_out)
    return cols.reshape(c * kh * kw, n * ho * wo)


def col2im(dcols: np.ndarray, xp_shape, kernel_size, *, stride=1, dilation=1) -> np.ndarray:
    """The adjoint of ``im2col``: add every column entry back to the pixel it came from.

    A pixel that several overlapping windows read collects the sum of their gradients.

    Parameters
    ----------
    dcols : ndarray, shape (C*KH*KW, N*H_out*W_out)
    xp_shape : (N, C, Hp, Wp)
        The shape of the padded input that ``im2col`` read.

    Returns
    -------
    dxp : ndarray, shape (N, C, Hp, Wp)
        Crop the padding off to get the input's gradient.

    Notes
    -----
    Taught in chapter 6 (backpropagation through convolution).
    """
    n, c, hp, wp = xp_shape
    (kh, kw), (sh, sw), (dh, dw) = (as_pair(v, name, minimum=1) for v, name in (
        (kernel_size, "kernel_size"), (stride, "stride"), (dilation, "dilation")))
    ho, wo = conv_output_size(hp, kh, stride=sh, dilation=dh), conv_output_size(
        wp, kw, stride=sw, dilation=dw)
    dcols = dcols.reshape(c, kh, kw, n, ho, wo)
    dxp = np.zeros((n, c, hp, wp), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                j * dw:j * dw + sw * (wo - 1) + 1:sw] += dcols[:, i, j].transpose(1, 0, 2, 3)
    return dxp


def conv2d_forward_im2col(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *,
                          stride=1, padding=0, dilation=1) -> tuple[np.ndarray, Conv2dCache]:
    """2-D convolution as one matrix product: ``out = W @ im2col(x)``.

    Same parameters, results and cache as ``conv2d_forward``, which computes the same
    product faster (by chunks of images, on several threads).

    Notes
    -----
    Taught in chapter 2 (convolution).
    """
    x, w, b, stride, pads, dilation, (ho, wo) = _check_conv2d(x, w, b, stride, padding,
                                                             dilation)
    n, c_out = x.shape[0], w.shape[0]
    top, bottom, left, right = pads
    xp = pad2d(x, ((top, bottom), (left, right)))
    cols = im2col(xp, w.shape[2:], stride=stride, dilation=dilation)  # (C_in*KH*KW, N*H_out*W_out)
    out = w.reshape(c_out, -1) @ cols                                  # (C_out, N*H_out*W_out)
    if b is not None:
        out += b.reshape(c_out, 1)
    out = out.reshape(c_out, n, ho, wo).transpose(1, 0, 2, 3)          # (N, C_out, H_out, W_out)
    return np.ascontiguousarray(out), Conv2dCache(x, w, stride, pads, dilation, b is not None)


def conv2d_backward_im2col(dout: np.ndarray, cache: Conv2dCache, *, need_dx: bool = True):
    """Gradients of ``out = W @ cols``: ``dW = dout @ cols.T``, ``dcols = W.T @ dout``.

    ``dx`` is ``col2im(dcols)`` with the padding cropped off, and ``db`` sums ``dout``
    over everything but the channels. Same parameters and results as
    ``conv2d_backward``, which computes the same products faster.

    Notes
    -----
    Taught in chapter 6 (backpropagation through convolution and pooling).
    """
    dout, _ = _check_conv2d_backward(dout, cache, need_dx)
    x, w, stride, pads, dilation, has_bias = cache
    (h, wd), c_out = x.shape[2:], w.shape[0]
    top, bottom, left, right = pads
    xp = pad2d(x, ((top, bottom), (left, right)))
    cols = im2col(xp, w.shape[2:], stride=stride, dilation=dilation)  # (C_in*KH*KW, N*H_out*W_out)
    dout2 = dout.transpose(1, 0, 2, 3).reshape(c_out, -1)             # (C_out, N*H_out*W_out)
    dw = (dout2 @ cols.T).reshape(w.shape)
    db = dout2.sum(axis=1) if has_bias else None
    dx = None
    if need_dx:
        dcols = w.reshape(c_out, -1).T @ dout2                         # (C_in*KH*KW, N*H_out*W_out)
        dxp = col2im(dcols, xp.shape, w.shape[2:], stride=stride, dilation=dilation)
        dx = dxp[:, :, top:top + h, left:left + wd].copy()            # crop the padding off
    return dx, dw, db


# --------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------

def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *, stride=1,
                   padding=0, dilation=1) -> tuple[np.ndarray, Conv2dCache]:
    """2-D convolution (cross-correlation) of a batch, vectorized with im2col.

    ``out[n, f, y, x] = b[f] + sum_{c,i,j} w[f, c, i, j] * xp[n, c, y*s + i*d, x*s + j*d]``
    where ``xp`` is ``x`` zero-padded.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
        Input, float32 or float64.
    w : ndarray, shape (C_out, C_in, KH, KW)
        Filters, same dtype as ``x``.
    b : ndarray, shape (C_out,), optional
        One bias per filter; ``None`` for no bias.
    stride : int or (int, int)
        Step between windows, at least 1.
    padding : int, (int, int) or {"valid", "same", "full"}
        Zeros added on each side. ``"same"`` keeps ``H, W`` (stride 1 only; an even
        kernel gets the extra row/column at the bottom/right); ``"full"`` pads
        ``dilation*(k-1)`` on every side.
    dilation : int or (int, int)
        Spacing between kernel taps, at least 1.

    Returns
    -------
    out : ndarray, shape (N, C_out, H_out, W_out)
        ``H_out = conv_output_size(H, KH, stride=..., padding=..., dilation=...)``,
        likewise ``W_out``. Same dtype as ``x``.
    cache : Conv2dCache
        For ``conv2d_backward``: the inputs and the resolved settings.

    Notes
    -----
    Taught in chapters 2 and 3. The loop version is ``conv2d_forward_naive``, the
    matrix-product idea ``conv2d_forward_im2col``; this one computes that product in the
    engine (``_conv_engine.py``), on as many threads as NumPy's BLAS uses
    (``threadpoolctl.threadpool_limits`` changes both).
    """
    x, w, b, stride, pads, dilation, out_hw = _check_conv2d(x, w, b, stride, padding, dilation)
    g = Geometry(w.shape[2:], stride, pads, dilation, x.shape[2:], out_hw)
    # The product of conv2d_forward_im2col, computed by the engine.
    out = engine.conv_forward(x, w.reshape(w.shape[0], -1), g, b)
    return out, Conv2dCache(x, w, stride, pads, dilation, b is not None)


def conv2d_forward_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *,
                         stride=1, padding=0, dilation=1) -> tuple[np.ndarray, Conv2dCache]:
    """2-D convolution with explicit loops: the definition, one output value at a time.

    ``out[n, f, i, j] = b[f] + sum(window * w[f])``, where ``window`` is the
    ``(C_in, KH, KW)`` patch of the zero-padded input that filter ``f`` covers at output
    position ``(i, j)``. Same parameters, results and cache type as ``conv2d_forward``,
    which is the one to use for anything but reading.

    Notes
    -----
    Taught in chapter 2 (convolution).
    """
    x, w, b, stride, pads, dilation, (h_out, w_out) = _check_conv2d(x, w, b, stride, padding,
                                                                     dilation)
    (sh, sw), (dh, dw) = stride, dilation
    top, bottom, left, right = pads
    xp = pad2d(x, ((top, bottom), (left, right)))
    n_images, c_out = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    out = np.zeros((n_images, c_out, h_out, w_out), dtype=x.dtype)
    for n in range(n_images):
        for f in range(c_out):
            for i in range(h_out):
                for j in range(w_out):
                    # The window's corner moves by the stride; dilation spaces out its taps.
                    r, c = i * sh, j * sw
                    window = xp[n, :, r:r + dh * (kh - 1) + 1:dh, c:c + dw * (kw - 1) + 1:dw]
                    out[n, f, i, j] = np.sum(window * w[f])
            if b is not None:
                out[n, f] += b[f]
    return out, Conv2dCache(x, w, stride, pads, dilation, b is not None)


def conv2d_backward(dout: np.ndarray, cache: Conv2dCache, *, need_dx: bool = True):
    """Gradients of a convolution with respect to its input, filters and bias.

    With ``cols`` the im2col matrix of ``x`` and ``W = w.reshape(C_out, -1)``, the
    forward pass is ``out = W @ cols``, so ``dW = dout @ cols.T``, ``db`` is ``dout``
    summed over everything but channels, and ``dx = col2im(W.T @ dout)``: each output's
    gradient spread back over the window it read, a transposed convolution of ``dout``.

    Parameters
    ----------
    dout : ndarray, shape (N, C_out, H_out, W_out)
        Gradient of the loss with respect to the forward output; same dtype.
    cache : Conv2dCache
        From ``conv2d_forward`` or ``conv2d_forward_naive``.
    need_dx : bool
        ``False`` skips the input gradient, as PyTorch does for an input that does not
        require one (a network's images): ``dx`` is then ``None``, and ``dw`` and ``db``
        are the same as with it, to the last bit.

    Returns
    -------
    dx : ndarray, shape (N, C_in, H, W), or None when ``need_dx`` is False
    dw : ndarray, shape (C_out, C_in, KH, KW)
    db : ndarray, shape (C_out,), or None
        ``None`` when the forward pass had no bias.

    Notes
    -----
    Taught in chapter 6 (backpropagation through convolution and pooling).
    """
    dout, out_hw = _check_conv2d_backward(dout, cache, need_dx)
    x, w, stride, pads, dilation, has_bias = cache
    g = Geometry(w.shape[2:], stride, pads, dilation, x.shape[2:], out_hw)
    # The products of conv2d_backward_im2col, computed by the engine.
    dx, dw2, db = engine.conv_backward(dout, w.reshape(w.shape[0], -1), g, x.shape, x=x,
                                       need_dx=need_dx, need_db=has_bias)
    return dx, dw2.reshape(w.shape), db


# --------------------------------------------------------------------------------------
# Transposed convolution
# --------------------------------------------------------------------------------------

def _check_conv_transpose2d(x, w, b, stride, padding, output_padding):
    x, w = _check_x_w(x, w, 0, "C_in, C_out, KH, KW for a transposed convolution")
    b = _check_bias(b, w.shape[1], w)
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int or a pair of ints for a transposed "
                         f"convolution, got {padding!r}")
    stride = as_pair(stride, "stride", minimum=1)
    padding = as_pair(padding, "padding", minimum=0)
    output_padding = as_pair(output_padding, "output_padding", minimum=0)
    if output_padding[0] >= stride[0] or output_padding[1] >= stride[1]:
        raise ValueError(f"output_padding={output_padding} must be smaller than "
                         f"stride={stride} in each dimension")
    out_hw = _transposed_out_hw(x.shape, w.shape, stride, padding, output_padding)
    if min(out_hw) < 1:
        raise ValueError(f"padding={padding} removes the whole output: x {shape_str(x)} and "
                         f"w {shape_str(w)} with stride={stride} give size {out_hw}")
    return x, w, b, stride, padding, output_padding, out_hw


def _transposed_out_hw(x_shape, w_shape, stride, padding, output_padding) -> tuple[int, int]:
    """``(H_out, W_out)`` of a transposed convolution whose settings are already checked."""
    return tuple(_transposed_length(n, k, s, p, op) for n, k, s, p, op in zip(
        x_shape[2:], w_shape[2:], stride, padding, output_padding))


def conv_transpose2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *,
                             stride=1, padding=0, output_padding=0):
    """Transposed convolution: each input pixel paints a weighted copy of the kernel.

    It is the adjoint of ``conv2d`` with the same ``w``, ``stride`` and ``padding``: for
    every ``z`` and ``x`` of the right shapes, ``<conv2d(z, w), x> == <z,
    conv_transpose2d(x, w)>``. So it is computed exactly as conv2d's input-gradient,
    ``col2im(W.T @ x)``, and it undoes the shape change of that convolution (a stride-2
    convolution halves the size, this doubles it); it does not undo its values.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
    w : ndarray, shape (C_in, C_out, KH, KW)
        PyTorch's layout for transposed convolutions (input channels first).
    b : ndarray, shape (C_out,), optional
    stride : int or (int, int)
        Spacing of the painted copies in the output, at least 1.
    padding : int or (int, int)
        Rows/columns cropped from each side of the full output.
    output_padding : int or (int, int)
        Extra rows/columns at the bottom/right, smaller than ``stride``: several output
        sizes map to the same convolution output, and this picks one.

    Returns
    -------
    out : ndarray, shape (N, C_out, H_out, W_out)
        ``H_out = (H - 1)*stride - 2*padding + KH + output_padding``, likewise ``W_out``.
    cache : ConvTranspose2dCache

    Notes
    -----
    Taught in chapter 6 (backpropagation), where it appears as the gradient of a
    convolution.
    """
    x, w, b, stride, padding, output_padding, out_hw = _check_conv_transpose2d(
        x, w, b, stride, padding, output_padding)
    c_in, c_out = w.shape[:2]
    kernel = w.shape[2:]
    # The convolution this is the adjoint of maps (N, C_out, H_out, W_out) to x's shape.
    g = Geometry(kernel, stride, (padding[0], padding[0], padding[1], padding[1]), (1, 1),
                 out_hw, x.shape[2:])
    out, _, _ = engine.conv_backward(x, w.reshape(c_in, -1), g, (x.shape[0], c_out, *out_hw))
    if b is not None:
        out += b.reshape(1, c_out, 1, 1)
    return out, ConvTranspose2dCache(x, w, stride, padding, output_padding, b is not None)


def conv_transpose2d_forward_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                                   *, stride=1, padding=0, output_padding=0):
    """Transposed convolution with explicit loops: every input pixel paints the kernel.

    Input pixel ``x[n, c, i, j]`` adds ``x[n, c, i, j] * w[c]``, a ``(C_out, KH, KW)``
    block, to the output at rows ``i*stride ...`` and columns ``j*stride ...``; where the
    painted blocks overlap their contributions add up. ``padding`` then crops rows and
    columns from every side of this full output, and ``output_padding`` keeps extra ones
    at the bottom and right. Same parameters, results and cache type as
    ``conv_transpose2d_forward``, which is the one to use for anything but reading.

    Notes
    -----
    Taught in chapter 6 (backpropagation), where this painting is the gradient of a
    convolution with respect to its input.
    """
    x, w, b, stride, padding, output_padding, (h_out, w_out) = _check_conv_transpose2d(
        x, w, b, stride, padding, output_padding)
    (sh, sw), (ph, pw) = stride, padding
    n_images, c_in, h, wd = x.shape
    c_out, kh, kw = w.shape[1:]
    # The uncropped output: the last pixel's block ends at (h - 1)*sh + kh, plus the rows
    # that output_padding keeps (they only ever receive the bias).
    full = np.zeros((n_images, c_out, (h - 1) * sh + kh + output_padding[0],
                     (wd - 1) * sw + kw + output_padding[1]), dtype=x.dtype)
    for n in range(n_images):
        for c in range(c_in):
            for i in range(h):
                for j in range(wd):
                    full[n, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += x[n, c, i, j] * w[c]
    out = full[:, :, ph:ph + h_out, pw:pw + w_out].copy()
    if b is not None:
        out += b.reshape(1, c_out, 1, 1)
    return out, ConvTranspose2dCache(x, w, stride, padding, output_padding, b is not None)


def conv_transpose2d_backward(dout: np.ndarray, cache: ConvTranspose2dCache):
    """Gradients of a transposed convolution: its input-gradient is a plain convolution.

    Parameters
    ----------
    dout : ndarray, shape (N, C_out, H_out, W_out)
    cache : ConvTranspose2dCache

    Returns
    -------
    dx : ndarray, shape (N, C_in, H, W)
        ``conv2d(dout, w, stride=stride, padding=padding)``.
    dw : ndarray, shape (C_in, C_out, KH, KW)
    db : ndarray, shape (C_out,), or None

    Notes
    -----
    Taught in chapter 6 (backpropagation through convolution and pooling).
    """
    if not isinstance(cache, ConvTranspose2dCache):
        raise TypeError(f"cache must be the ConvTranspose2dCache returned by "
                        f"conv_transpose2d_forward, got {type(cache).__name__}")
    x, w, stride, padding, output_padding, has_bias = cache
    n, (c_in, c_out), kernel = x.shape[0], w.shape[:2], w.shape[2:]
    out_hw = _transposed_out_hw(x.shape, w.shape, stride, padding, output_padding)
    dout = check_dout(dout, (n, c_out, *out_hw), x.dtype, ndim=4)
    g = Geometry(kernel, stride, (padding[0], padding[0], padding[1], padding[1]), (1, 1),
                 out_hw, x.shape[2:])
    w2 = w.reshape(c_in, -1)  # (C_in, C_out*KH*KW): the adjoint convolution's filters as rows
    dx = engine.conv_forward(dout, w2, g)  # (N, C_in, H, W)
    # The weight gradient of the adjoint convolution, whose input is dout and output x.
    _, dw2, _ = engine.conv_backward(x, w2, g, dout.shape, x=dout, need_dx=False)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw2.reshape(w.shape), db
