"""2-D convolution and transposed convolution, forward and backward, in NumPy.

Convolution here means cross-correlation, as in every deep-learning library: the kernel
is not flipped. Arrays are NCHW and conv weights ``(C_out, C_in, KH, KW)``, so every
function can be checked against ``torch.nn.functional.conv2d`` in float64.

The vectorized ops use im2col: the input patches become the columns of a matrix, so a
convolution is a matrix product, and its backward pass is two more. Where the time goes
is memory traffic, not arithmetic, hence:

- ``cols`` has shape ``(C_in*KH*KW, M*H_out*W_out)``: the reduction axis comes first, so
  every operand of the three products is contiguous or a plain transpose, which BLAS
  reads without a copy.
- It is built for a few images at a time (about 2 MB), consumed by the matrix product
  while still in cache, and rebuilt in the backward pass instead of being stored.
- im2col is one strided copy per chunk, from a sliding-window view of the (padded)
  input: few large NumPy calls, which is what lets two threads work at once (NumPy
  holds the GIL around every call, and calls of a few microseconds do not overlap).
  The padded copy lives in a per-thread buffer whose border is zeroed once.
- col2im adds one kernel tap ``(i, j)`` at a time into the gradient, clipped at the
  border, so the gradient of the padding is never formed.
- The transposed convolution is the adjoint of the convolution: its forward pass is the
  convolution's input-gradient (col2im) and its input-gradient is a convolution (im2col).

Taught in chapters 2 (convolution), 3 (padding and stride) and 6 (backpropagation).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._blas import blas_threads as _blas_threads
from ._blas import note_workers_used, one_blas_thread, small_products
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
    "pad2d",
    "conv2d_forward",
    "conv2d_forward_naive",
    "conv2d_backward",
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

def _padding_1d(padding, kernel_size: int, stride: int, dilation: int,
                name: str = "padding") -> tuple[int, int]:
    """Resolve one dimension's padding to ``(before, after)``."""
    if isinstance(padding, str):
        if padding not in _PADDING_MODES:
            raise ValueError(f"{name} must be an int, a pair of ints or one of "
                             f"{_PADDING_MODES}, got {padding!r}")
        span = dilation * (kernel_size - 1)
        if padding == "valid":
            return (0, 0)
        if padding == "full":
            return (span, span)
        if stride != 1:
            raise ValueError(f"{name}='same' needs stride 1 (as in PyTorch), got stride={stride}")
        # An even kernel cannot be centred: the extra row/column goes after, as in PyTorch.
        return (span // 2, span - span // 2)
    p = as_int(padding, name, minimum=0)
    return (p, p)


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
    before, after = _padding_1d(padding, k, s, d)
    span = d * (k - 1) + 1
    if span > n + before + after:
        raise ValueError(f"kernel_size={k} (dilated extent {span}) is larger than the padded "
                         f"input n={n} + padding {before}+{after} = {n + before + after}")
    return (n + before + after - span) // s + 1


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
        (pt, pb), (pl, pr) = (_padding_1d(padding, k, s, d)
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
    out_hw = ((h + pt + pb - span_h) // stride[0] + 1, (wd + pl + pr - span_w) // stride[1] + 1)
    return x, w, b, stride, (pt, pb, pl, pr), dilation, out_hw


# --------------------------------------------------------------------------------------
# im2col / col2im, a chunk of images at a time
# --------------------------------------------------------------------------------------

# Bytes of im2col matrix built at once. A chunk this size is still in the core's cache
# when the matrix product reads it, so the patches never travel to main memory. Building
# the whole batch's matrix at once and keeping it for the backward pass was measured
# 1.4x slower (forward 1.8x) on the VGG-like layer of benchmarks/bench_conv.py.
_CHUNK_BYTES = 2**21
# With several worker threads, chunks are larger, and hold at least two images: each
# NumPy call has to take the GIL back when it ends, so the threads only overlap when each
# call runs long enough, and each chunk costs a dozen calls whatever its size. With 2
# threads, two VGG-like images a chunk (4.7 MB) instead of one took a step from 56.5 to
# 52.1 ms; larger chunks slowed the strided layer (27.7 ms at 4 MB, 31.3 at 6 MB) and
# helped no other shape of benchmarks/bench_conv.py.
# A batch that stays in the calling thread with several BLAS threads (one large image,
# or a small batch while the workers have not run for a while) takes chunks of this
# size too: BLAS shares larger products out better, and fewer chunks make fewer short
# calls (col2im's). With 2 threads, LeNet-5's C3 at batch 128 took 5.8-6.2 ms instead
# of 6.4-6.7 (then below _PARALLEL_MIN_BYTES). One BLAS thread keeps the cache-sized
# chunks.
_PARALLEL_CHUNK_BYTES = 2**22
_PARALLEL_MIN_IMAGES = 2
# Below this much im2col matrix for the whole batch, the calling thread does all the
# chunks: two workers gain nothing on so little work. With 2 threads, fresh inputs each
# step, a forward + backward step of LeNet-5's C1 and C3 took (calling thread ->
# workers) at batch 32 (2.5 and 1.9 MB) 2.65 -> 2.56 and 1.69 -> 1.99 ms, at batch 64
# (5.0 and 3.8 MB) 4.70 -> 3.56 and 3.05 -> 2.79, at batch 128 8.29 -> 6.66 and
# 6.03 -> 4.20. Inside a training loop the workers only pay when no BLAS thread spins
# on their core, hence small products on one BLAS thread while they are in use
# (cnnlib/numpy/_blas.py). A LeNet-5 epoch on the digits with 2 threads, this limit
# against the earlier 16 MB (which kept LeNet's layers in the calling thread),
# alternating in one process: 0.283 against 0.280 s at batch 32, 0.244 against 0.248
# at 64, 0.208 against 0.236 at 128. With the workers but the small products left on
# two BLAS threads, batch 128 took 0.265 s (0.234 in the calling thread, same run).
_PARALLEL_MIN_BYTES = 3 * 2**20


class _Geometry(NamedTuple):
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # (top, bottom, left, right)
    dilation: tuple[int, int]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]


def _valid_range(offset: int, stride: int, n_out: int, n_in: int) -> tuple[int, int, slice]:
    """Outputs ``[o0, o1)`` whose tap ``offset + o*stride`` lands inside ``[0, n_in)``.

    Also returns the slice of input indices those outputs read.
    """
    o0 = (-offset + stride - 1) // stride if offset < 0 else 0  # ceil(-offset / stride)
    o1 = max(o0, min(n_out, (n_in - 1 - offset) // stride + 1))
    first = offset + o0 * stride
    return o0, o1, slice(first, first + stride * (o1 - o0 - 1) + 1, stride) if o1 > o0 else (
        slice(0, 0))


def _taps(g: _Geometry) -> list:
    """For each kernel tap ``(i, j)``: the outputs that read real input, and which input.

    Entries are ``(i, j, y0, y1, x0, x1, rows, cols)``: outputs ``[y0, y1) x [x0, x1)``
    read input ``[rows, cols]``. The other outputs read padding, i.e. zero, so col2im
    drops their gradient.
    """
    (kh, kw), (sh, sw), (pt, _, pl, _), (dh, dw) = g.kernel, g.stride, g.padding, g.dilation
    (h, w), (ho, wo) = g.in_hw, g.out_hw
    taps = []
    for i in range(kh):
        y0, y1, rows = _valid_range(i * dh - pt, sh, ho, h)
        for j in range(kw):
            x0, x1, cols = _valid_range(j * dw - pl, sw, wo, w)
            taps.append((i, j, y0, y1, x0, x1, rows, cols))
    return taps


def _chunks(n_images: int, bytes_per_image: int, n_workers: int,
            limit: int | None = None) -> list[slice]:
    """Split the batch into chunks of at most ``limit`` (default ``_CHUNK_BYTES``) of
    im2col matrix (for several workers ``_PARALLEL_CHUNK_BYTES`` or
    ``_PARALLEL_MIN_IMAGES`` images, whichever is more), in a multiple of ``n_workers``
    pieces (or one image each) of nearly equal size, so no worker idles at the end."""
    if n_workers == 1:
        per = max(1, (_CHUNK_BYTES if limit is None else limit) // max(1, bytes_per_image))
    else:
        per = max(_PARALLEL_MIN_IMAGES, _PARALLEL_CHUNK_BYTES // max(1, bytes_per_image))
    per = min(per, n_images)
    pieces = min(n_images, -(-n_images // (per * n_workers)) * n_workers)
    # Sizes differ by at most one image, the larger ones first, so that dealing the
    # chunks out in turn (chunks[k::n_workers]) gives each worker the same number of
    # images, give or take one. Rounding the size up instead left the last chunk short:
    # on the strided layer of benchmarks/bench_conv.py one thread took 6+6+6 images and
    # the other 6+6+2, then waited; a step took 27.0-28.0 ms instead of 28.5-28.8.
    small, extra = divmod(n_images, pieces)
    bounds = [0]
    for k in range(pieces):
        bounds.append(bounds[-1] + small + (k < extra))
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


# NumPy's copies run on one core, so im2col and col2im would leave the other cores idle
# while BLAS threads sit between matrix products. Instead each BLAS thread becomes a
# worker that takes whole chunks, im2col to matrix product to col2im, with BLAS itself
# single-threaded meanwhile (threadpoolctl); NumPy and BLAS release the GIL. On a busy
# machine this also avoids BLAS threads spinning at a barrier for a descheduled partner.
_EXECUTOR = None
_PARALLEL_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    # A forked child (the grading sandbox forks) inherits the executor but not its
    # threads: work sent to it would wait forever, so the child starts afresh.
    global _EXECUTOR, _PARALLEL_LOCK
    _EXECUTOR = None
    _PARALLEL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _in_parallel(work, n_images: int, bytes_per_image: int) -> list:
    """Run ``work(chunks)`` on the batch's chunks, split over the BLAS threads."""
    _, n_workers = _blas_threads()
    small = n_images * bytes_per_image < _PARALLEL_MIN_BYTES
    if n_workers > 1 and n_images > 1 and not small and _PARALLEL_LOCK.acquire(blocking=False):
        try:
            chunks = _chunks(n_images, bytes_per_image, n_workers)
            groups = [chunks[k::n_workers] for k in range(n_workers) if chunks[k::n_workers]]
            global _EXECUTOR
            if _EXECUTOR is None:
                _EXECUTOR = ThreadPoolExecutor(thread_name_prefix="cnnlib-conv")
            with one_blas_thread():
                futures = [_EXECUTOR.submit(work, group) for group in groups[1:]]
                results = [work(groups[0])]
                return results + [f.result() for f in futures]
        finally:
            note_workers_used()
            _PARALLEL_LOCK.release()
    # The calling thread does it all: a small batch (see _PARALLEL_MIN_BYTES), on one
    # BLAS thread while the workers are in use (cnnlib/numpy/_blas.py); or one large
    # image, or a batch while the workers serve another thread's convolution.
    with small_products() if small else nullcontext():
        _, threads = _blas_threads()
        limit = _PARALLEL_CHUNK_BYTES if threads > 1 else _CHUNK_BYTES
        return [work(_chunks(n_images, bytes_per_image, 1, limit))]


# Work buffers (im2col matrices, products, padded copies) are kept per thread between
# calls instead of allocated per call: a fresh buffer of a few megabytes is fresh memory
# from the operating system, whose first touch costs page faults. On LeNet's first layer
# (benchmarks/bench_conv.py) a forward + backward step took 8.5 ms instead of 11.2 with
# one thread, and 10.0 instead of 11.8 with two. The buffers live as long as the thread,
# so what is kept is bounded: one buffer of each kind, and padded buffers for the last
# few geometries, each kind at most _SCRATCH_KEEP_BYTES per thread. A layer whose single
# image needs more (a 3x3 layer with 64 channels on 224x224 images: 116 MB of im2col
# matrix) allocates its buffers per call, as the time to fill them dwarfs the faults.
_SCRATCH = threading.local()
_SCRATCH_PADDED = 8
_SCRATCH_KEEP_BYTES = 2**26


def _scratch(name: str, size: int, dtype) -> np.ndarray:
    """This thread's work buffer ``name``: ``size`` elements of ``dtype``, contents
    undefined. It is reused by the next call, so it must never be returned."""
    dtype = np.dtype(dtype)
    if size * dtype.itemsize > _SCRATCH_KEEP_BYTES:
        return np.empty(size, dtype=dtype)
    bufs = _SCRATCH.__dict__.setdefault("flat", {})
    key = (name, dtype)
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        buf = bufs[key] = np.empty(size, dtype=dtype)
    return buf[:size]


def _pad_buffer(g: _Geometry, channels: int, images: int, dtype,
                minor: bool = False) -> np.ndarray | None:
    """A ``(images, C, H + pads, W + pads)`` buffer with a zero border for ``_im2col``,
    or ``None`` without padding; ``(C, H + pads, W + pads, images)`` when ``minor``
    (then also without padding: the images are transposed into it).

    Only its interior is ever written, so the border stays zero; it is kept per thread
    for each of the last few shapes and paddings, so two requests for the same geometry
    get the same buffer: use one before the next.
    """
    pt, pb, pl, pr = g.padding
    if not (pt or pb or pl or pr or minor):
        return None
    (h, w) = g.in_hw
    hp, wp = h + pt + pb, w + pl + pr
    shape = (channels, hp, wp, images) if minor else (images, channels, hp, wp)
    padded = _SCRATCH.__dict__.setdefault("padded", {})
    key = (shape, g.padding, minor, np.dtype(dtype))
    buf = padded.pop(key, None)
    if buf is None:
        buf = np.zeros(shape, dtype=dtype)
    padded[key] = buf  # now the most recently used
    while len(padded) > _SCRATCH_PADDED or (
            sum(b.nbytes for b in padded.values()) > _SCRATCH_KEEP_BYTES):
        del padded[next(iter(padded))]  # the least recently used, at last this one
    return buf


def _images_minor(g: _Geometry, images: int) -> bool:
    """Whether chunks of ``images`` images order their columns ``(y, x, image)`` rather
    than ``(image, y, x)``.

    im2col and col2im copy runs of contiguous values: ``W_out`` long in the first
    order, ``images`` long (``images*W_out`` with stride 1) in the second, which costs
    transposing the input, output and gradients in and out. Measured on
    benchmarks/bench_conv.py's shapes and others, the second order is the faster one
    when ``2*images >= W_out``: on LeNet's C3 (64 images of 10x10 outputs a chunk) it
    made im2col 2.4 and col2im 2.2 times faster, and the whole forward + backward step
    8.7 -> 5.6 ms on one thread. The VGG-like layers, with one to eight images of 16 to
    64 output columns a chunk, keep the first order.
    """
    return 2 * images >= g.out_hw[1]


# Output pixels per image from which each image gets its own matrix products. On the
# first VGG-like layer of benchmarks/bench_conv.py (64x64 outputs, 32 filters) a step
# took 22.8 ms instead of 25.0 with one thread and 12.3 instead of 13.3 with two (the
# forward pass 6.9 instead of 7.9 ms with one): the copies saved outweigh the smaller
# products. With 32x32 outputs (the VGG-like 3x3 layer) it made no difference, and
# with 16x16 (the strided layer) two threads were slower (29.1 against 26.8 ms).
_DIRECT_MIN_COLUMNS = 2048


def _per_image_products(g: _Geometry, minor: bool) -> bool:
    """Whether each image's products read and write its own block of ``out``, ``dout``
    and ``dx`` directly, one matrix product per image, instead of one product for the
    chunk and a transposing copy between ``(M, F, H, W)`` and ``(F, M*H*W)``.

    Only in the ``(image, y, x)`` column order, where an image's columns are one block,
    and with at least ``_DIRECT_MIN_COLUMNS`` output pixels per image.
    """
    return not minor and g.out_hw[0] * g.out_hw[1] >= _DIRECT_MIN_COLUMNS


def _to_columns(a, minor: bool):
    """``(M, K, H, W)`` as ``(K, M*H*W)`` (``(K, H*W*M)`` when ``minor``), a copy."""
    return a.transpose((1, 2, 3, 0) if minor else (1, 0, 2, 3)).reshape(a.shape[1], -1)


def _from_columns(a, m: int, hw: tuple[int, int], minor: bool):
    """Inverse of ``_to_columns``: ``(K, columns)`` as an ``(M, K, H, W)`` view."""
    if minor:
        return a.reshape(a.shape[0], *hw, m).transpose(3, 0, 1, 2)
    return a.reshape(a.shape[0], m, *hw).transpose(1, 0, 2, 3)


def _im2col(x, g: _Geometry, buf, pad_buf, minor: bool = False):
    """Patches of ``x`` as columns, written into ``buf``: ``(C*KH*KW, M*H_out*W_out)``.

    Row ``(c, i, j)`` holds input channel ``c`` shifted by tap ``(i, j)`` for every
    output position, so ``w.reshape(C_out, -1) @ cols`` is the convolution. Columns are
    ordered ``(image, y, x)``, or ``(y, x, image)`` when ``minor`` (``_images_minor``).
    The patches are a strided view of the input (copied into ``pad_buf``'s interior
    first when there is padding or ``minor``), and one copy lays them out.
    """
    m, c, h, w = x.shape
    (kh, kw), (ho, wo) = g.kernel, g.out_hw
    (sh, sw), (dh, dw) = g.stride, g.dilation
    top, _, left, _ = g.padding
    cols = buf[:c * kh * kw * m * ho * wo]
    if minor:
        xp = pad_buf[..., :m]                                   # (C, H + pads, W + pads, M)
        xp[:, top:top + h, left:left + w] = x.transpose(1, 2, 3, 0)
        sc, sy, sx, sn = xp.strides
        # patches[c, i, j, y, x, n] = xp[c, y*sh + i*dh, x*sw + j*dw, n]
        shape, strides = (c, kh, kw, ho, wo, m), (sc, sy * dh, sx * dw, sy * sh, sx * sw, sn)
    else:
        xp = x if pad_buf is None else pad_buf[:m]              # (M, C, H + pads, W + pads)
        if pad_buf is not None:
            xp[:, :, top:top + h, left:left + w] = x
        sn, sc, sy, sx = xp.strides
        # patches[c, i, j, n, y, x] = xp[n, c, y*sh + i*dh, x*sw + j*dw]
        shape, strides = (c, kh, kw, m, ho, wo), (sc, sy * dh, sx * dw, sn, sy * sh, sx * sw)
    np.copyto(cols.reshape(shape), as_strided(xp, shape=shape, strides=strides,
                                               writeable=False))
    return cols.reshape(c * kh * kw, m * ho * wo)  # no copy


def _col2im_order(g: _Geometry, taps) -> tuple[list, bool]:
    """The taps in the order ``_col2im`` adds them, and whether the first one covers
    every input pixel (then it is assigned and ``dx`` need not be zeroed first)."""
    (h, w) = g.in_hw
    for k, tap in enumerate(taps):
        rows, cols = tap[6], tap[7]
        if (rows.start, rows.stop, rows.step, cols.start, cols.stop, cols.step) == (
                0, h, 1, 0, w, 1):  # e.g. the centre of a 3x3 kernel with padding 1
            return [tap] + taps[:k] + taps[k + 1:], True
    return taps, False


def _col2im(dcols, dx, g: _Geometry, order, minor: bool = False,
            image_major: bool = False) -> None:
    """Adjoint of ``_im2col``: send each column entry back to the pixel it was copied
    from, writing all of ``dx`` (``(M, C, H, W)``).

    A pixel read by several overlapping windows collects the sum of their gradients;
    entries that were padding are dropped. ``order`` comes from ``_col2im_order``;
    ``minor`` is the column order ``dcols`` was built with (``_im2col``);
    ``image_major`` means ``dcols`` is ``(M, C*KH*KW, H_out*W_out)`` instead, one block
    per image (``_per_image_products``).
    """
    taps, covering = order
    m, c, h, w = dx.shape
    (kh, kw), (ho, wo) = g.kernel, g.out_hw
    if minor:
        # (C, KH, KW, H_out, W_out, M) added into (C, H, W, M), then transposed into dx.
        dcols = dcols.reshape(c, kh, kw, ho, wo, m).transpose(0, 1, 2, 5, 3, 4)
        acc = _scratch("col2im", c * h * w * m, dx.dtype).reshape(c, h, w, m)
        acc_t = acc.transpose(0, 3, 1, 2)  # (C, M, H, W) view
    else:
        if image_major:
            dcols = dcols.reshape(m, c, kh, kw, ho, wo).transpose(1, 2, 3, 0, 4, 5)
        else:
            dcols = dcols.reshape(c, kh, kw, m, ho, wo)  # (C, KH, KW, M, H_out, W_out)
        acc_t = dx.transpose(1, 0, 2, 3)  # (C, M, H, W) view, writes land in dx
    if covering:
        i, j, y0, y1, x0, x1, _, _ = taps[0]
        acc_t[...] = dcols[:, i, j, :, y0:y1, x0:x1]
        taps = taps[1:]
    else:
        acc_t[...] = 0
    for i, j, y0, y1, x0, x1, rows, cs in taps:
        acc_t[:, :, rows, cs] += dcols[:, i, j, :, y0:y1, x0:x1]
    if minor:
        dx[...] = acc.transpose(3, 0, 1, 2)


def _flipped_geometry(g: _Geometry) -> _Geometry | None:
    """Geometry of ``dx`` as a convolution of ``dout`` with the flipped kernel, or ``None``.

    With stride 1, ``dx[c, y, x] = sum_{f,i,j} w[f, c, i, j] * dout[f, y + pt - i*d,
    x + pl - j*d]``: a stride-1 convolution of ``dout``, padded by ``(K - 1)*d - p`` on
    each side, with the kernel flipped and its channel axes swapped. ``None`` when the
    stride is larger than 1 or a padding exceeds ``(K - 1)*d`` (``dout`` would need
    cropping); col2im handles those.
    """
    if g.stride != (1, 1):
        return None
    (kh, kw), (dh, dw) = g.kernel, g.dilation
    pt, pb, pl, pr = g.padding
    pads = ((kh - 1) * dh - pt, (kh - 1) * dh - pb, (kw - 1) * dw - pl, (kw - 1) * dw - pr)
    if min(pads) < 0:
        return None
    return _Geometry(g.kernel, (1, 1), pads, g.dilation, g.out_hw, g.in_hw)


def _conv_out(x, w2, g: _Geometry, bias=None):
    """Convolution ``(N, C, H, W) -> (N, F, H_out, W_out)`` with ``w2 = w.reshape(F, -1)``."""
    n, f = x.shape[0], w2.shape[0]
    (ho, wo), ckk = g.out_hw, w2.shape[1]
    out = np.empty((n, f, ho, wo), dtype=x.dtype)

    def work(chunks):
        per = max(sl.stop - sl.start for sl in chunks)
        cols_buf = _scratch("cols", ckk * per * ho * wo, x.dtype)
        prod_buf = _scratch("prod", f * per * ho * wo, x.dtype)
        minor = _images_minor(g, per)
        pad_buf = _pad_buffer(g, x.shape[1], per, x.dtype, minor)
        direct = _per_image_products(g, minor)
        for sl in chunks:
            m = sl.stop - sl.start
            cols = _im2col(x[sl], g, cols_buf, pad_buf, minor)      # (C*KH*KW, M*H_out*W_out)
            if direct:
                hw = ho * wo
                out3 = out[sl].reshape(m, f, hw)
                for k in range(m):  # image k's columns, straight into its output
                    np.matmul(w2, cols[:, k * hw:(k + 1) * hw], out=out3[k])
                if bias is not None:
                    out3 += bias.reshape(1, f, 1)
                continue
            prod = np.matmul(w2, cols, out=prod_buf[:f * m * ho * wo].reshape(f, -1))
            prod = _from_columns(prod, m, (ho, wo), minor)          # (M, F, H_out, W_out) view
            if bias is None:
                out[sl] = prod
            else:
                np.add(prod, bias.reshape(1, f, 1, 1), out=out[sl])

    _in_parallel(work, n, ckk * ho * wo * x.itemsize)
    return out


def _conv_backward(dout, w2, g: _Geometry, x_shape, *, x=None, need_dx=True,
                   need_db=False):
    """Input, weight and bias gradients of ``_conv_out``, a chunk of images at a time.

    ``dw`` (as ``(F, C*KH*KW)``) is computed when ``x`` is given. The im2col matrix is
    rebuilt per chunk rather than kept from the forward pass: rebuilding a chunk in
    cache is cheaper than storing the whole matrix, nine times the input for a 3x3
    kernel, and reading it back from main memory.

    ``dx`` is ``col2im(W.T @ dout)``, one strided addition per kernel tap. With stride 1
    it is also a convolution of ``dout`` with the flipped kernel (``_flipped_geometry``),
    one copy and one matrix product; that way is taken when its im2col matrix is no
    larger than the one col2im reads (``C_out*H*W <= C_in*H_out*W_out``, as in a
    "same" 3x3 layer that keeps its channel count). On the VGG-like layer of
    benchmarks/bench_conv.py it took the input gradient from 34.6 to 30.6 ms with one
    thread.

    Either way ``dx`` reads a matrix no larger than ``x``'s im2col matrix, so the batch
    is split the same whether or not ``dx`` is computed, and ``dw`` and ``db``, summed
    chunk by chunk, come out the same to the last bit.
    """
    n, f = dout.shape[:2]
    (ho, wo), ckk = g.out_hw, w2.shape[1]
    c, (h, w) = x_shape[1], g.in_hw
    dtype = dout.dtype
    dx = np.empty(x_shape, dtype=dtype) if need_dx else None
    flipped = _flipped_geometry(g) if need_dx and f * h * w <= c * ho * wo else None
    if flipped is not None:
        kh, kw = g.kernel
        # (C, F*KH*KW): row c holds the filters' channel c, flipped in both directions.
        w2_flip = np.ascontiguousarray(
            w2.reshape(f, c, kh, kw)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(c, -1)
    else:
        order = _col2im_order(g, _taps(g)) if need_dx else None
    # The flipped route's matrix, F*KH*KW*H*W per image, is no larger (its condition).
    bytes_per_image = ckk * ho * wo * dtype.itemsize

    def work(chunks):
        per = max(sl.stop - sl.start for sl in chunks)
        buf = _scratch("cols", ckk * ho * wo * per, dtype)
        minor = _images_minor(g, per)
        pad_buf = None if x is None else _pad_buffer(g, c, per, dtype, minor)
        direct = _per_image_products(g, minor)
        if flipped is not None:
            dout_pad = _pad_buffer(flipped, f, per, dtype, minor)
            if not direct:  # per image, the products land in dx itself
                dx_buf = _scratch("prod", c * per * h * w, dtype)
        dw2t = np.zeros((ckk, f), dtype=dtype) if x is not None else None  # dw2 transposed
        db = np.zeros(f, dtype=dtype) if need_db else None
        for sl in chunks:
            m = sl.stop - sl.start
            if direct:
                # Each image's block of dout, cols and dx, one product per image (see
                # _per_image_products): no transposing copies of dout and dx.
                hw = ho * wo
                dout3 = dout[sl].reshape(m, f, hw)
                if db is not None:
                    db += dout3.sum(axis=(0, 2))
                if dw2t is not None:
                    cols = _im2col(x[sl], g, buf, pad_buf, minor)       # (C*KH*KW, M*H_out*W_out)
                    for k in range(m):
                        dw2t += cols[:, k * hw:(k + 1) * hw] @ dout3[k].T
                if dx is None:
                    continue
                if flipped is not None:
                    dcols = _im2col(dout[sl], flipped, buf, dout_pad, minor)  # (F*KH*KW, M*H*W)
                    dx3 = dx[sl].reshape(m, c, h * w)
                    for k in range(m):
                        np.matmul(w2_flip, dcols[:, k * h * w:(k + 1) * h * w], out=dx3[k])
                else:
                    dcols3 = buf[:ckk * m * hw].reshape(m, ckk, hw)
                    for k in range(m):
                        np.matmul(w2.T, dout3[k], out=dcols3[k])
                    _col2im(dcols3, dx[sl], g, order, minor, image_major=True)
                continue
            # (F, M*H_out*W_out); the flipped route to dx reads dout directly, so a
            # transposed convolution's forward pass does not need it.
            if db is not None or dw2t is not None or flipped is None:
                dout_t = _to_columns(dout[sl], minor)
            if db is not None:
                db += dout_t.sum(axis=1)
            if dw2t is not None:
                cols = _im2col(x[sl], g, buf, pad_buf, minor)       # (C*KH*KW, M*H_out*W_out)
                # dW transposed, cols @ dout.T: OpenBLAS ran this orientation 6 % faster
                # for the whole step of the VGG-like layer on one thread (9 % on LeNet's C1).
                dw2t += cols @ dout_t.T                             # (C*KH*KW, F)
            if dx is None:
                continue
            if flipped is not None:
                dcols = _im2col(dout[sl], flipped, buf, dout_pad, minor)  # (F*KH*KW, M*H*W)
                prod = np.matmul(w2_flip, dcols, out=dx_buf[:c * m * h * w].reshape(c, -1))
                dx[sl] = _from_columns(prod, m, (h, w), minor)
            else:
                dcols = np.matmul(w2.T, dout_t, out=buf[:ckk * m * ho * wo].reshape(ckk, -1))
                _col2im(dcols, dx[sl], g, order, minor)
        return dw2t, db

    parts = _in_parallel(work, n, bytes_per_image)
    dw2 = None if x is None else (sum(p[0] for p in parts[1:]) + parts[0][0]).T
    db = None if not need_db else sum(p[1] for p in parts[1:]) + parts[0][1]
    return dx, dw2, db


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
    Taught in chapters 2 and 3; the loop version is ``conv2d_forward_naive``. Forward and
    backward use as many threads as NumPy's BLAS (``threadpoolctl.threadpool_limits``
    changes both), splitting the batch between them.
    """
    x, w, b, stride, pads, dilation, out_hw = _check_conv2d(x, w, b, stride, padding, dilation)
    g = _Geometry(w.shape[2:], stride, pads, dilation, x.shape[2:], out_hw)
    out = _conv_out(x, w.reshape(w.shape[0], -1), g, b)  # (C_out, C_in*KH*KW) filters as rows
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
    if not isinstance(cache, Conv2dCache):
        raise TypeError(f"cache must be the Conv2dCache returned by conv2d_forward, "
                        f"got {type(cache).__name__}")
    x, w, stride, pads, dilation, has_bias = cache
    n, c_out = x.shape[0], w.shape[0]
    (h, wd), (kh, kw) = x.shape[2:], w.shape[2:]
    out_hw = ((h + pads[0] + pads[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
              (wd + pads[2] + pads[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1)
    check_bool(need_dx, "need_dx")
    dout = check_dout(dout, (n, c_out, *out_hw), x.dtype, ndim=4)
    g = _Geometry((kh, kw), stride, pads, dilation, (h, wd), out_hw)
    dx, dw2, db = _conv_backward(dout, w.reshape(c_out, -1), g, x.shape, x=x,
                                 need_dx=need_dx, need_db=has_bias)
    # dw2: (C_out, C_in*KH*KW)
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
    (h, wd), (kh, kw) = x.shape[2:], w.shape[2:]
    out_hw = tuple((n - 1) * s - 2 * p + k + op for n, s, p, k, op
                   in zip((h, wd), stride, padding, (kh, kw), output_padding))
    if min(out_hw) < 1:
        raise ValueError(f"padding={padding} removes the whole output: x {shape_str(x)} and "
                         f"w {shape_str(w)} with stride={stride} give size {out_hw}")
    return x, w, b, stride, padding, output_padding, out_hw


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
    g = _Geometry(kernel, stride, (padding[0], padding[0], padding[1], padding[1]), (1, 1),
                  out_hw, x.shape[2:])
    out, _, _ = _conv_backward(x, w.reshape(c_in, -1), g, (x.shape[0], c_out, *out_hw))
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
    out_hw = tuple((m - 1) * s - 2 * p + k + op for m, s, p, k, op
                   in zip(x.shape[2:], stride, padding, kernel, output_padding))
    dout = check_dout(dout, (n, c_out, *out_hw), x.dtype, ndim=4)
    g = _Geometry(kernel, stride, (padding[0], padding[0], padding[1], padding[1]), (1, 1),
                  out_hw, x.shape[2:])
    w2 = w.reshape(c_in, -1)  # (C_in, C_out*KH*KW): the adjoint convolution's filters as rows
    dx = _conv_out(dout, w2, g)  # (N, C_in, H, W)
    # The weight gradient of the adjoint convolution, whose input is dout and output x.
    _, dw2, _ = _conv_backward(x, w2, g, dout.shape, x=dout, need_dx=False)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw2.reshape(w.shape), db
