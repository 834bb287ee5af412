"""The fast convolution behind ``cnnlib.numpy.conv``: same results, more machinery.

``conv.py`` shows the idea in a few lines: im2col, one matrix product, col2im. This
module computes the same thing faster, and nothing in it changes a result beyond
floating-point rounding (``tests/numpy/test_conv_engine.py`` holds the plain route ==
this one on every path below). What it adds:

- chunks: the im2col matrix is built for a few images at a time, so it is still in
  cache when the product reads it, and rebuilt in the backward pass instead of kept;
- threads: each BLAS thread becomes a worker that takes whole chunks (im2col, product,
  col2im) while BLAS runs single-threaded, since NumPy's copies use one core;
- work buffers kept per thread, so each call does not pay fresh-memory page faults;
- two column orders, ``(image, y, x)`` or ``(y, x, image)``, whichever copies longer runs;
- one product per image, straight into ``out``, ``dout`` and ``dx``, for large images;
- the input gradient of a stride-1 convolution as a convolution of ``dout`` with the
  flipped kernel, when that matrix is the smaller one;
- BLAS thread control (threadpoolctl), so that idle BLAS threads do not spin on the
  cores the workers use.

The measurements behind each constant are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__: list[str] = []  # private: conv.py's public functions are the interface


# --------------------------------------------------------------------------------------
# BLAS threads
# --------------------------------------------------------------------------------------

# Longer than OpenBLAS spins after a product (about 0.1 s); see benchmarks/README.md.
RECENT_SECONDS = 0.5

_CONTROLLER = None
_LOCK = threading.Lock()  # held by the thread whose one_blas_thread() set the limit
_WORKERS_DONE = -float("inf")  # time.monotonic() when conv2d's workers last finished


def blas_threads():
    """``(controller, threads)`` for NumPy's BLAS; ``(None, 1)`` without threadpoolctl."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
            _CONTROLLER = ThreadpoolController().select(user_api="blas")
            _CONTROLLER = _CONTROLLER if _CONTROLLER.lib_controllers else False
        except (ImportError, AttributeError):  # pragma: no cover - no threadpoolctl >= 3
            _CONTROLLER = False
    if _CONTROLLER is False:
        return None, 1
    return _CONTROLLER, max(1, min(c.num_threads for c in _CONTROLLER.lib_controllers))


@contextmanager
def one_blas_thread():
    """Limit NumPy's BLAS to one thread inside the block.

    The limit is process-wide, so one thread at a time sets it and lifts it. A second
    thread that set it meanwhile would record the first one's limit as the count to
    restore, and leave BLAS on one thread for good; a thread that finds the limit taken
    runs its block as it is instead, on one BLAS thread or, once the owner leaves,
    several: the same result, at most a little slower.
    """
    controller, threads = blas_threads()
    if controller is None or threads == 1 or not _LOCK.acquire(blocking=False):
        yield
        return
    try:
        with controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _LOCK.release()


def note_workers_used() -> None:
    """Called by conv2d when its worker threads finish a batch."""
    global _WORKERS_DONE
    _WORKERS_DONE = time.monotonic()


def workers_recently_used() -> bool:
    """Whether conv2d's worker threads finished a batch in the last ``RECENT_SECONDS``."""
    return time.monotonic() - _WORKERS_DONE < RECENT_SECONDS


def small_products():
    """Context for a convolution too small for the workers: one BLAS thread while the
    workers are in use (an idle BLAS thread would spin on their core), BLAS's usual
    threads otherwise."""
    return one_blas_thread() if workers_recently_used() else nullcontext()


# --------------------------------------------------------------------------------------
# Chunks of images, threads and work buffers
# --------------------------------------------------------------------------------------

# Tuning constants, each measured on benchmarks/bench_conv.py (see benchmarks/README.md).
_CHUNK_BYTES = 2**21           # im2col matrix built at once: still in cache for the product
_PARALLEL_CHUNK_BYTES = 2**22  # larger chunks with several threads: longer calls overlap better
_PARALLEL_MIN_IMAGES = 2       # and at least two images a chunk
_PARALLEL_MIN_BYTES = 3 * 2**20  # a batch with less im2col matrix stays in the calling thread


class Geometry(NamedTuple):
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


def _taps(g: Geometry) -> list:
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
    # Sizes differ by at most one image, the larger first, so that dealing the chunks out
    # in turn (chunks[k::n_workers]) gives every worker the same work, give or take one.
    small, extra = divmod(n_images, pieces)
    bounds = [0]
    for k in range(pieces):
        bounds.append(bounds[-1] + small + (k < extra))
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


# NumPy's copies use one core: each BLAS thread becomes a worker taking whole chunks.
_EXECUTOR = None
_PARALLEL_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    # A forked child (the grading sandbox forks) inherits the executor and the locks but
    # not the threads: work sent to them would wait forever, so the child starts afresh.
    global _EXECUTOR, _PARALLEL_LOCK, _LOCK
    _EXECUTOR = None
    _PARALLEL_LOCK = threading.Lock()
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _in_parallel(work, n_images: int, bytes_per_image: int) -> list:
    """Run ``work(chunks)`` on the batch's chunks, split over the BLAS threads."""
    _, n_workers = blas_threads()
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
        _, threads = blas_threads()
        limit = _PARALLEL_CHUNK_BYTES if threads > 1 else _CHUNK_BYTES
        return [work(_chunks(n_images, bytes_per_image, 1, limit))]


# Work buffers kept per thread between calls (fresh memory costs page faults), bounded:
# a few padded geometries, and at most _SCRATCH_KEEP_BYTES of each kind.
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


def _pad_buffer(g: Geometry, channels: int, images: int, dtype,
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


def _images_minor(g: Geometry, images: int) -> bool:
    """Whether chunks of ``images`` images order their columns ``(y, x, image)`` rather
    than ``(image, y, x)``.

    im2col and col2im copy runs of contiguous values: ``W_out`` long in the first
    order, ``images`` long (``images*W_out`` with stride 1) in the second, which costs
    transposing the input, output and gradients in and out. The second order is the
    faster one when ``2*images >= W_out`` (measurements in benchmarks/README.md).
    """
    return 2 * images >= g.out_hw[1]


# Output pixels per image from which each image gets its own matrix products.
_DIRECT_MIN_COLUMNS = 2048


def _per_image_products(g: Geometry, minor: bool) -> bool:
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


def _im2col(x, g: Geometry, buf, pad_buf, minor: bool = False):
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


def _col2im_order(g: Geometry, taps) -> tuple[list, bool]:
    """The taps in the order ``_col2im`` adds them, and whether the first one covers
    every input pixel (then it is assigned and ``dx`` need not be zeroed first)."""
    (h, w) = g.in_hw
    for k, tap in enumerate(taps):
        rows, cols = tap[6], tap[7]
        if (rows.start, rows.stop, rows.step, cols.start, cols.stop, cols.step) == (
                0, h, 1, 0, w, 1):  # e.g. the centre of a 3x3 kernel with padding 1
            return [tap] + taps[:k] + taps[k + 1:], True
    return taps, False


def _col2im(dcols, dx, g: Geometry, order, minor: bool = False,
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


def _flipped_geometry(g: Geometry) -> Geometry | None:
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
    return Geometry(g.kernel, (1, 1), pads, g.dilation, g.out_hw, g.in_hw)


def conv_forward(x, w2, g: Geometry, bias=None):
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


def conv_backward(dout, w2, g: Geometry, x_shape, *, x=None, need_dx=True,
                   need_db=False):
    """Input, weight and bias gradients of ``conv_forward``, a chunk of images at a time.

    ``dw`` (as ``(F, C*KH*KW)``) is computed when ``x`` is given. The im2col matrix is
    rebuilt per chunk rather than kept from the forward pass: rebuilding a chunk in
    cache is cheaper than storing the whole matrix, nine times the input for a 3x3
    kernel, and reading it back from main memory.

    ``dx`` is ``col2im(W.T @ dout)``, one strided addition per kernel tap. With stride 1
    it is also a convolution of ``dout`` with the flipped kernel (``_flipped_geometry``),
    one copy and one matrix product; that way is taken when its im2col matrix is no
    larger than the one col2im reads (``C_out*H*W <= C_in*H_out*W_out``, as in a
    "same" 3x3 layer that keeps its channel count).

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
                # dW transposed, cols @ dout.T: the faster orientation for OpenBLAS.
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

