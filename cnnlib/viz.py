"""Figures and interactive explorers used by the book.

Every function returns a :class:`matplotlib.figure.Figure` (or, for the explorers, an
ipywidgets widget), takes its options as keywords, never calls ``plt.show()`` and works
headless. Figures are built with :class:`~matplotlib.figure.Figure` directly rather than
through ``pyplot``: they are not registered with a pyplot backend, so a notebook shows a
returned figure exactly once (as the cell's value) and a long session does not pile up
open figures. When imported inside IPython, this module registers a PNG formatter for
figures so they display even when the kernel runs with the Agg backend (as the book
build does).

The numbers a figure shows (pooled outputs, routed gradients, activation derivatives,
convolution outputs) are computed by :mod:`cnnlib.numpy`, so a figure never disagrees
with the library it illustrates.
"""

from __future__ import annotations

import io
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = [
    "DEFAULT_KERNELS",
    "FIGURE_DPI",
    "ConvExplorer",
    "PoolingExplorer",
    "conv_explorer",
    "conv_explorer_static",
    "figure_to_png",
    "gradient_routing_diagram",
    "NetworkBlock",
    "html_table",
    "network_blocks",
    "network_diagram",
    "padding_stride_diagram",
    "plot_activations",
    "plot_confusion_matrix",
    "plot_history",
    "pooling_diagram",
    "pooling_explorer",
    "show_feature_maps",
    "show_images",
    "show_kernels",
    "show_matrix",
    "show_misclassified",
]

# Window outlines cycle through these; chosen to stay distinct on white, grey and "Blues".
_WINDOW_COLOURS = ("#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                   "#17becf", "#bcbd22")

DEFAULT_KERNELS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float64),
    "box blur 3x3": np.full((3, 3), 1 / 9),
    "gaussian 5x5": np.outer(*(2 * [np.array([1, 4, 6, 4, 1]) / 16.0])),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64),
    "sobel x (vertical edges)": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64),
    "sobel y (horizontal edges)": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
                                           dtype=np.float64),
    "laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64),
}


# --------------------------------------------------------------------------- helpers


def _cnp():
    # Imported on use: cnnlib.numpy is imported by the chapters anyway, and importing it
    # lazily keeps `import cnnlib.viz` cheap and free of import cycles.
    import cnnlib.numpy as cnp

    return cnp


def _first(grads):
    """Backward functions return a tuple of gradients; the input's comes first."""
    return grads[0] if isinstance(grads, (tuple, list)) else grads


def _shape(x) -> str:
    return str(tuple(np.shape(x)))


# Figures display at this resolution in notebooks and the book: sharp on high-resolution
# screens (the book's pages scale images to the text width).
FIGURE_DPI = 150


def figure_to_png(fig: Figure, *, dpi: int = FIGURE_DPI) -> bytes:
    """Render a figure to PNG bytes (used by the notebook display, the explorers and the tests)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _new_figure(nrows: int, ncols: int, figsize, *, squeeze: bool = False, **kw):
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kw)
    return fig, axes


def _to_display(img: np.ndarray, name: str) -> np.ndarray:
    """One image as (H, W) or (H, W, 3) for imshow; CHW is moved to HWC."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)  # (C, H, W) -> (H, W, C)
    elif img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] in (1, 3) \
            and img.shape[0] != img.shape[-1]:
        img = np.moveaxis(img, 0, -1)  # (C, H, W) -> (H, W, C), tiny images
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]  # (H, W, 1) -> (H, W)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3):
        raise ValueError(f"{name} must hold images of shape (H, W), (C, H, W) or (H, W, C) "
                         f"with C in (1, 3); got an image of shape {_shape(img)}")
    if img.ndim == 3:
        integer = np.issubdtype(img.dtype, np.integer)
        img = img.astype(np.float64)
        lo, hi = float(img.min()), float(img.max())
        # RGB is shown as-is when it is a valid image, else stretched to [0, 1].
        if integer:
            img = img / 255.0
        elif lo < 0 or hi > 1:
            img = (img - lo) / (hi - lo if hi > lo else 1.0)
    return img


def _as_image_list(images, name: str) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        if images.ndim in (3, 4):
            return [images[i] for i in range(images.shape[0])]
        if images.ndim == 2:
            return [images]
        raise ValueError(f"{name} must have shape (N, H, W) or (N, C, H, W), "
                         f"got {_shape(images)}")
    if isinstance(images, Sequence) and len(images) > 0:
        return [np.asarray(im) for im in images]
    raise TypeError(f"{name} must be an array (N, H, W) / (N, C, H, W) or a non-empty list "
                    f"of images, got {type(images).__name__}")


def _check_titles(titles, n: int) -> list[str | None]:
    if titles is None:
        return [None] * n
    titles = list(titles)
    if len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries but there are {n} images")
    return titles


def _grid(n: int, ncols: int) -> tuple[int, int]:
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    ncols = min(ncols, n)
    return math.ceil(n / ncols), ncols


def _image_grid(images, titles, ncols, cmap, figsize, *, symmetric=False, colorbar=False,
                cell=1.6):
    n = len(images)
    nrows, ncols = _grid(n, ncols)
    if figsize is None:
        figsize = (cell * ncols + (0.6 if colorbar else 0), cell * nrows + 0.25)
    fig, axes = _new_figure(nrows, ncols, figsize)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        img = images[k]
        kw = {}
        if img.ndim == 2:
            kw["cmap"] = cmap
            if symmetric:
                m = float(np.max(np.abs(img))) or 1.0
                kw.update(vmin=-m, vmax=m)
        im = ax.imshow(img, interpolation="nearest", **kw)
        if titles[k] is not None:
            ax.set_title(str(titles[k]), fontsize=9)
        if colorbar and img.ndim == 2:
            fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


# --------------------------------------------------------------------------- images


def show_images(images, *, titles=None, ncols=8, cmap="gray", figsize=None) -> Figure:
    """Show a batch of images in a grid.

    Parameters
    ----------
    images : ndarray (N, H, W) or (N, C, H, W) with C in (1, 3), or a list of images
        A list may mix sizes (an image next to its filtered, smaller output); each item is
        (H, W), (C, H, W) or (H, W, C). Channels-first images are moved to channels-last.
    titles : sequence of str, optional
        One title per image.
    ncols : int
        Images per row.
    cmap : str
        Colour map for single-channel images; each image uses its own value range.
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    imgs = [_to_display(im, "images") for im in _as_image_list(images, "images")]
    return _image_grid(imgs, _check_titles(titles, len(imgs)), ncols, cmap, figsize)


def show_kernels(w, *, titles=None, cmap="RdBu_r", ncols=8, figsize=None) -> Figure:
    """Show convolution kernels with a colour scale centred on zero.

    Parameters
    ----------
    w : ndarray (C_out, C_in, KH, KW) or (K, KH, KW)
        With ``C_in > 1`` each row of the grid is one filter and each column one input
        channel (see the chapter on convolution, RGB inputs and filter depth). With
        ``C_in == 1`` the filters are laid out ``ncols`` to a row.
    titles : sequence of str, optional
        One per filter.
    cmap : str
        A diverging map: red is positive, blue negative, white zero.

    Returns
    -------
    matplotlib.figure.Figure
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 4 and w.shape[1] == 1:
        w = w[:, 0]  # (C_out, 1, KH, KW) -> (C_out, KH, KW)
    if w.ndim == 3:
        imgs = list(w)
        return _image_grid(imgs, _check_titles(titles, len(imgs)), ncols, cmap, figsize,
                           symmetric=True, cell=1.2)
    if w.ndim != 4:
        raise ValueError(f"w must have shape (C_out, C_in, KH, KW) or (K, KH, KW), "
                         f"got {_shape(w)}")
    c_out, c_in = w.shape[:2]
    titles = _check_titles(titles, c_out)
    if figsize is None:
        figsize = (1.2 * c_in + 0.8, 1.2 * c_out + 0.3)
    fig, axes = _new_figure(c_out, c_in, figsize)
    for i in range(c_out):
        m = float(np.max(np.abs(w[i]))) or 1.0  # one scale per filter, shared by its channels
        for j in range(c_in):
            ax = axes[i, j]
            ax.imshow(w[i, j], cmap=cmap, vmin=-m, vmax=m, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"channel {j}", fontsize=9)
            if j == 0:
                ax.set_ylabel(titles[i] if titles[i] is not None else f"filter {i}",
                              fontsize=9)
    return fig


def show_feature_maps(maps, *, titles=None, ncols=8, cmap="viridis", figsize=None) -> Figure:
    """Show the channels of one feature map side by side.

    Parameters
    ----------
    maps : ndarray (C, H, W) (or (1, C, H, W))
        Each channel uses its own colour range, so weak maps stay visible.
    titles : sequence of str, optional
        One per channel; default ``"map 0"``, ``"map 1"``, ...

    Returns
    -------
    matplotlib.figure.Figure
    """
    maps = np.asarray(maps)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]  # (1, C, H, W) -> (C, H, W)
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (C, H, W), got {_shape(maps)}")
    if titles is None:
        titles = [f"map {c}" for c in range(maps.shape[0])]
    imgs = [np.asarray(m, dtype=np.float64) for m in maps]
    return _image_grid(imgs, _check_titles(titles, len(imgs)), ncols, cmap, figsize)


# --------------------------------------------------------------------------- grids of numbers


def _normalise_windows(highlight):
    if highlight is None:
        return []
    if isinstance(highlight, tuple) and len(highlight) == 2 and all(
            isinstance(s, slice) for s in highlight):
        return [highlight]
    windows = list(highlight)
    for win in windows:
        if not (isinstance(win, tuple) and len(win) == 2
                and all(isinstance(s, slice) for s in win)):
            raise TypeError("highlight must be a (row slice, col slice) pair or a list of "
                            f"them, got {highlight!r}")
    return windows


def _draw_window(ax, rows: slice, cols: slice, colour, *, inset=0.0, lw=2.5, ls="-"):
    r0, r1 = rows.start or 0, rows.stop
    c0, c1 = cols.start or 0, cols.stop
    ax.add_patch(Rectangle((c0 - 0.5 + inset, r0 - 0.5 + inset), c1 - c0 - 2 * inset,
                           r1 - r0 - 2 * inset, fill=False, edgecolor=colour, lw=lw, ls=ls,
                           zorder=3))


def _matrix_on_ax(ax, a, *, title=None, fmt="{:g}", cmap="Blues", windows=(), vmin=None,
                  vmax=None, mask=None, fontsize=None, window_colour=None):
    a = np.asarray(a, dtype=np.float64)
    h, w = a.shape
    shown = np.ma.masked_array(a, mask=mask) if mask is not None else a
    finite = a[np.isfinite(a)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi == lo:
        hi = lo + 1.0
    image = ax.imshow(shown, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    if fontsize is None:
        fontsize = max(6, min(12, int(60 / max(h, w, 1)) + 4))
    for i in range(h):
        for j in range(w):
            v = a[i, j]
            # White text on dark cells, whichever end of the colour map is dark.
            r, g, b_, _ = image.cmap(image.norm(v)) if np.isfinite(v) else (1, 1, 1, 1)
            dark = 0.299 * r + 0.587 * g + 0.114 * b_ < 0.5
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")
    ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
    ax.grid(which="minor", color="0.6", lw=0.8)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    # A thin grid drawn with lines, since the ticks above are hidden.
    for k in range(h + 1):
        ax.axhline(k - 0.5, color="0.55", lw=0.6, zorder=2)
    for k in range(w + 1):
        ax.axvline(k - 0.5, color="0.55", lw=0.6, zorder=2)
    for k, (rows, cols) in enumerate(windows):
        colour = window_colour or _WINDOW_COLOURS[k % len(_WINDOW_COLOURS)]
        _draw_window(ax, rows, cols, colour, inset=0.0 if window_colour else 0.06 * (k % 3))
    if title is not None:
        ax.set_title(title, fontsize=10)


def show_matrix(a, *, title=None, fmt="{:g}", highlight=None, cmap="Blues", ax=None,
                highlight_color=None, symmetric=False, vmin=None, vmax=None) -> Figure:
    """Draw a small 2-D array as a grid with every value written in its cell.

    Parameters
    ----------
    a : ndarray (H, W)
    title : str, optional
    fmt : str
        Format applied to every value, e.g. ``"{:.2f}"``.
    highlight : (slice, slice) or list of them, optional
        Windows to outline, e.g. ``(slice(0, 3), slice(0, 3))`` for the first 3x3 window
        of a worked convolution example.
    cmap : str
    ax : matplotlib Axes, optional
        Draw into this axes (its figure is returned) instead of a new figure.
    highlight_color : str, optional
        One colour for every outlined window (e.g. to mark wrong values); by default
        each window gets its own colour.
    symmetric : bool
        Centre the colour scale on zero (from ``-max|a|`` to ``max|a|``), for signed
        values such as gradients shown with a diverging map like ``"RdBu_r"``.
    vmin, vmax : float, optional
        Fixed ends of the colour scale, to give several panels one scale. With
        ``symmetric=True`` only ``vmax`` is used, as the half-range.

    Returns
    -------
    matplotlib.figure.Figure
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"a must be a 2-D array, got shape {_shape(a)}")
    limits = {"vmin": vmin, "vmax": vmax}
    if symmetric:
        finite = np.abs(a[np.isfinite(a)])
        m = vmax if vmax is not None else (
            float(finite.max()) if finite.size and finite.max() > 0 else 1.0)
        limits = {"vmin": -abs(m), "vmax": abs(m)}
    windows = _normalise_windows(highlight)
    if ax is None:
        h, w = a.shape
        fig, axes = _new_figure(1, 1, (0.45 * w + 0.4, 0.45 * h + 0.5))
        ax = axes[0, 0]
    else:
        fig = ax.figure
    _matrix_on_ax(ax, a, title=title, fmt=fmt, cmap=cmap, windows=windows,
                  window_colour=highlight_color, **limits)
    return fig


# --------------------------------------------------------------------------- padding / stride


def padding_stride_diagram(n, kernel_size, *, padding=0, stride=1, dilation=1,
                           max_windows=3, fig=None) -> Figure:
    """Draw what padding adds and where a kernel's windows land.

    The padded input is drawn as a grid with the padded border shaded, the first
    ``max_windows`` window positions along the top row (and the first one on the next
    row of outputs) outlined, dilated taps marked with dots, and the output grid beside
    it. The output size in the title is ``floor((n + p_before + p_after - d (k - 1) - 1) / s)
    + 1`` (see the chapter on padding and stride).

    Parameters
    ----------
    n : int
        Height and width of the (square) input.
    kernel_size : int
    padding : int or {"valid", "same", "full"}
    stride : int
    dilation : int
    max_windows : int
        How many window positions of the first output row to outline.
    fig : Figure or SubFigure, optional
        Draw into this (e.g. one of ``Figure.subfigures``, to put several diagrams side
        by side) instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure (or the SubFigure passed as ``fig``)
    """
    cnp = _cnp()
    # The library's own checks and formulas: the diagram draws what conv2d computes.
    out = cnp.conv_output_size(n, kernel_size, stride=stride, padding=padding,
                               dilation=dilation)
    n, k, s, d = int(n), int(kernel_size), int(stride), int(dilation)
    before, after = cnp.padding_amounts(padding, k, stride=s, dilation=d)
    total = n + before + after
    span = d * (k - 1) + 1

    grid = np.zeros((total, total))
    grid[:before, :] = grid[total - after:, :] = 1
    grid[:, :before] = grid[:, total - after:] = 1
    if fig is None:
        fig, axes = _new_figure(1, 2, (0.32 * total + 0.32 * out + 1.6, 0.32 * total + 0.9),
                                width_ratios=[total, max(out, 1)])
    else:
        axes = fig.subplots(1, 2, squeeze=False, width_ratios=[total, max(out, 1)])
    ax, ax_out = axes[0]
    ax.imshow(grid, cmap="Greys", vmin=0, vmax=2.5, interpolation="nearest")
    for t in range(total + 1):
        ax.axhline(t - 0.5, color="0.6", lw=0.5)
        ax.axvline(t - 0.5, color="0.6", lw=0.5)
    ax.add_patch(Rectangle((before - 0.5, before - 0.5), n, n, fill=False, edgecolor="black",
                           lw=1.5))
    positions = [(0, j) for j in range(min(max_windows, out))]
    if out > 1:
        positions.append((1, 0))
    out_colours = np.full((out, out), np.nan)
    for idx, (i, j) in enumerate(positions):
        colour = _WINDOW_COLOURS[idx % len(_WINDOW_COLOURS)]
        r0, c0 = i * s, j * s
        _draw_window(ax, slice(r0, r0 + span), slice(c0, c0 + span), colour,
                     inset=0.08 * (idx % 3), lw=2)
        taps = np.arange(k) * d
        rr, cc = np.meshgrid(r0 + taps, c0 + taps, indexing="ij")
        ax.scatter(cc.ravel(), rr.ravel(), s=10, color=colour, zorder=4)
        out_colours[i, j] = idx
    ax.set_xticks([])
    ax.set_yticks([])
    pad_txt = f"{padding!r}" if isinstance(padding, str) else str(padding)
    ax.set_title(f"input {n}x{n}, padded {total}x{total}", fontsize=9)
    ax_out.imshow(np.zeros((out, out)), cmap="Greys", vmin=0, vmax=1)
    for t in range(out + 1):
        ax_out.axhline(t - 0.5, color="0.6", lw=0.5)
        ax_out.axvline(t - 0.5, color="0.6", lw=0.5)
    for idx, (i, j) in enumerate(positions):
        ax_out.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1,
                                   color=_WINDOW_COLOURS[idx % len(_WINDOW_COLOURS)]))
    ax_out.set_xticks([])
    ax_out.set_yticks([])
    ax_out.set_title(f"output {out}x{out}", fontsize=9)
    fig.suptitle(f"n={n}, k={k}, p={pad_txt}, s={s}, d={d}\noutput size {out}x{out}",
                 fontsize=10)
    return fig


# --------------------------------------------------------------------------- pooling


_POOL_MODES = ("max", "avg", "min")


def _pool_forward(x2, kernel_size, stride, mode):
    cnp = _cnp()
    if mode not in _POOL_MODES:
        raise ValueError(f"mode must be one of {_POOL_MODES}, got {mode!r}")
    fwd = getattr(cnp, f"{mode}pool2d_forward")
    out, cache = fwd(x2[None, None], kernel_size=kernel_size, stride=stride)
    return out[0, 0], cache, getattr(cnp, f"{mode}pool2d_backward")


def _pool_windows(cache, n_out):
    """(rows, cols) slices of every window, in row-major output order, from a PoolCache."""
    (kh, kw), (sh, sw) = cache.kernel_size, cache.stride
    return [(slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw))
            for i in range(n_out[0]) for j in range(n_out[1])]


def _outline_output_cells(ax, n_cells: int, ow: int) -> None:
    """Outline output cell k in the colour of window k."""
    for k in range(n_cells):
        i, j = divmod(k, ow)
        _draw_window(ax, slice(i, i + 1), slice(j, j + 1),
                     _WINDOW_COLOURS[k % len(_WINDOW_COLOURS)], inset=0.05)


def _check_2d(x, name):
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (H, W), got shape {_shape(x)}")
    return x.astype(np.float64)


def pooling_diagram(x, *, kernel_size, stride=None, mode="max", fmt="{:g}") -> Figure:
    """The input grid with its pooling windows outlined, and the pooled output beside it.

    Each window and the output cell it produces share a colour. With ``mode="max"`` (or
    ``"min"``) the winning input of every window is circled. The output is computed by
    ``cnnlib.numpy.<mode>pool2d_forward`` (see the chapter on activations and pooling).

    Parameters
    ----------
    x : ndarray (H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: the kernel size.
    mode : {"max", "avg", "min"}

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = _check_2d(x, "x")
    out, cache, _ = _pool_forward(x, kernel_size, stride, mode)
    windows = _pool_windows(cache, out.shape)
    h, w = x.shape
    oh, ow = out.shape
    fig, axes = _new_figure(1, 2, (0.5 * (w + ow) + 1.2, 0.5 * max(h, oh) + 0.8),
                            width_ratios=[w, ow])
    ax, ax_out = axes[0]
    _matrix_on_ax(ax, x, title=f"input {h}x{w}", fmt=fmt, cmap="Greys", windows=windows,
                  vmin=float(x.min()) - 1e-9, vmax=float(x.max()) * 3 + 1)
    if mode in ("max", "min"):
        # The winners the forward pass recorded: row-major offsets inside each window.
        offsets = cache.argext[0, 0].ravel()  # (H_out, W_out) -> (H_out*W_out,)
        kw = cache.kernel_size[1]
        for k, (rows, cols) in enumerate(windows):
            r, c = divmod(int(offsets[k]), kw)
            ax.add_patch(_winner_circle((cols.start + c, rows.start + r),
                                        _WINDOW_COLOURS[k % len(_WINDOW_COLOURS)]))
    _matrix_on_ax(ax_out, out, title=f"{mode} pool -> {oh}x{ow}", fmt=fmt, cmap="Greys",
                  vmin=float(out.min()) - 1e-9, vmax=float(out.max()) * 3 + 1)
    _outline_output_cells(ax_out, len(windows), ow)
    s_txt = "kernel size" if stride is None else str(stride)
    fig.suptitle(f"{mode} pooling, kernel {kernel_size}, stride {s_txt}", fontsize=10)
    return fig


def _winner_circle(centre, colour):
    """A circle patch marking the winner of a pooling window (internal helper)."""
    from matplotlib.patches import Circle

    return Circle(centre, 0.38, fill=False, edgecolor=colour, lw=2, zorder=4)


def gradient_routing_diagram(x, dout, *, kernel_size, stride=None, mode="max",
                             fmt="{:g}") -> Figure:
    """Where the upstream gradients of a pooling layer land in its input.

    Three panels: the input with its windows, the upstream gradient ``dout`` and the
    input gradient ``dx`` computed by ``cnnlib.numpy.<mode>pool2d_backward``. With
    overlapping windows an input can win several windows and collect the sum of their
    gradients (see the chapter on backpropagation). ``dout`` and ``dx`` are drawn with a
    diverging colour scale centred on zero (red positive, blue negative, white zero).

    Parameters
    ----------
    x : ndarray (H, W)
    dout : ndarray (H_out, W_out)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
    mode : {"max", "avg", "min"}

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = _check_2d(x, "x")
    dout = _check_2d(dout, "dout")
    out, cache, backward = _pool_forward(x, kernel_size, stride, mode)
    if dout.shape != out.shape:
        raise ValueError(f"dout must have the pooled output's shape {_shape(out)} for x of "
                         f"shape {_shape(x)}, got {_shape(dout)}")
    dx = _first(backward(dout[None, None], cache))[0, 0]
    windows = _pool_windows(cache, out.shape)
    h, w = x.shape
    oh, ow = out.shape
    fig, axes = _new_figure(1, 3, (0.5 * (2 * w + ow) + 1.6, 0.5 * max(h, oh) + 0.8),
                            width_ratios=[w, ow, w])
    ax_x, ax_d, ax_dx = axes[0]
    _matrix_on_ax(ax_x, x, title="input x", fmt=fmt, cmap="Greys", windows=windows,
                  vmin=float(x.min()) - 1e-9, vmax=float(x.max()) * 3 + 1)
    # Gradients are signed: diverging colour scales centred on zero.
    dx = dx + 0.0  # -0 (a zero share of a negative gradient) prints as 0
    m_d = float(np.abs(dout).max()) or 1.0
    m_dx = float(np.abs(dx).max()) or 1.0
    _matrix_on_ax(ax_d, dout, title="upstream dout", fmt=fmt, cmap="RdBu_r", vmin=-m_d,
                  vmax=m_d)
    _outline_output_cells(ax_d, len(windows), ow)
    _matrix_on_ax(ax_dx, dx, title="dx (gradients routed and summed)", fmt=fmt,
                  cmap="RdBu_r", vmin=-m_dx, vmax=m_dx)
    fig.suptitle(f"{mode} pooling backward, kernel {kernel_size}, stride "
                 f"{'kernel size' if stride is None else stride}", fontsize=10)
    return fig


# --------------------------------------------------------------------------- activations


def plot_activations(names=("relu", "leaky_relu", "elu", "sigmoid", "tanh"), *, x=None,
                     figsize=None) -> Figure:
    """Each activation and its derivative, computed with cnnlib.numpy.

    The derivative is ``<name>_backward(ones, cache)``: the backward pass with an upstream
    gradient of one is the local slope (see the chapter on activations and pooling).

    Parameters
    ----------
    names : sequence of str
        Activation names; ``cnnlib.numpy`` must provide ``<name>_forward`` and
        ``<name>_backward``.
    x : ndarray (N,), optional
        Points to evaluate at; default 401 points in [-4, 4].

    Returns
    -------
    matplotlib.figure.Figure
    """
    cnp = _cnp()
    if isinstance(names, str):
        names = (names,)
    names = list(names)
    for name in names:
        if not (hasattr(cnp, f"{name}_forward") and hasattr(cnp, f"{name}_backward")):
            raise ValueError(f"unknown activation {name!r}: cnnlib.numpy has no "
                             f"{name}_forward/{name}_backward")
    x = np.linspace(-4, 4, 401) if x is None else np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {_shape(x)}")
    if figsize is None:
        figsize = (2.6 * len(names), 2.6)
    fig, axes = _new_figure(1, len(names), figsize, sharey=False)
    for ax, name in zip(axes[0], names):
        y, cache = getattr(cnp, f"{name}_forward")(x.copy())
        dy = _first(getattr(cnp, f"{name}_backward")(np.ones_like(x), cache))
        ax.axhline(0, color="0.8", lw=0.8)
        ax.axvline(0, color="0.8", lw=0.8)
        ax.plot(x, y, lw=2, label="f(x)")
        ax.plot(x, dy, lw=1.5, ls="--", label="f'(x)")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("x")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    return fig


# --------------------------------------------------------------------------- training


def _has_values(history, key) -> bool:
    values = history.get(key)
    return values is not None and len(values) > 0


def plot_history(history, *, figsize=None) -> Figure:
    """Loss and accuracy curves from a trainer history.

    Parameters
    ----------
    history : mapping of str to sequence of float, or a history object
        Keys ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc`` (the NumPy
        ``Trainer``'s) or ``train_accuracy``, ``val_accuracy`` (the ``History`` that
        :func:`cnnlib.torch.fit` returns, which can be passed as it is); missing or empty
        curves are skipped (and the accuracy panel is dropped when neither accuracy is
        present).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(history, Mapping):
        history = getattr(history, "history", history)
    if not isinstance(history, Mapping) and callable(getattr(history, "as_dict", None)):
        history = history.as_dict()
    if not isinstance(history, Mapping):
        raise TypeError(f"history must be a dict of lists, got {type(history).__name__}")
    history = {(k[:-len("uracy")] if k.endswith("_accuracy") else k): v
               for k, v in history.items()}
    panels = [(what, [k for k in (f"train_{what}", f"val_{what}") if _has_values(history, k)])
              for what in ("loss", "acc")]
    panels = [(what, keys) for what, keys in panels if keys]
    if not panels:
        raise ValueError("history has none of train_loss, val_loss, train_acc, val_acc; "
                         f"its keys are {sorted(history)}")
    if figsize is None:
        figsize = (4.2 * len(panels), 3.0)
    fig, axes = _new_figure(1, len(panels), figsize)
    for ax, (what, keys) in zip(axes[0], panels):
        for key in keys:
            values = np.asarray(history[key], dtype=np.float64)
            epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, values, marker="o" if len(values) <= 30 else None, ms=3,
                    label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if what == "loss" else "accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def plot_confusion_matrix(cm, *, class_names=None, normalize=False, figsize=None) -> Figure:
    """A confusion matrix with counts (or row fractions) written in the cells.

    Parameters
    ----------
    cm : ndarray (K, K)
        ``cm[i, j]`` counts examples of true class ``i`` predicted as ``j``.
    class_names : sequence of str, optional
    normalize : bool
        Divide each row by its total, so a cell is the fraction of class ``i`` predicted
        as ``j`` and the diagonal is the per-class recall.

    Returns
    -------
    matplotlib.figure.Figure
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (K, K) array, got shape {_shape(cm)}")
    k = cm.shape[0]
    if class_names is None:
        class_names = [str(i) for i in range(k)]
    class_names = list(class_names)
    if len(class_names) != k:
        raise ValueError(f"class_names has {len(class_names)} names but cm is {k}x{k}")
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    fmt = "{:.2f}" if normalize else "{:.0f}"
    if figsize is None:
        figsize = (0.55 * k + 1.8, 0.55 * k + 1.4)
    fig, axes = _new_figure(1, 1, figsize)
    ax = axes[0, 0]
    im = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    hi = float(cm.max()) or 1.0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, fmt.format(cm[i, j]), ha="center", va="center",
                    fontsize=8 if k > 6 else 10,
                    color="white" if cm[i, j] > 0.6 * hi else "black")
    ax.set_xticks(range(k), class_names, rotation=45 if k > 6 else 0, fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def show_misclassified(x, y_true, y_pred, *, class_names=None, n=16, ncols=8,
                       cmap="gray") -> Figure:
    """The first ``n`` examples whose prediction differs from the label.

    Parameters
    ----------
    x : ndarray (N, H, W) or (N, C, H, W)
    y_true, y_pred : ndarray (N,) of int
    class_names : sequence of str, optional
    n : int
        At most this many examples are shown; each is titled ``true -> predicted``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = np.asarray(x)
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if x.ndim not in (3, 4) or not (len(x) == len(y_true) == len(y_pred)):
        raise ValueError(f"x must be (N, H, W) or (N, C, H, W) with y_true and y_pred of "
                         f"length N; got x {_shape(x)}, y_true {_shape(y_true)}, "
                         f"y_pred {_shape(y_pred)}")

    def name(c):
        return str(class_names[int(c)]) if class_names is not None else str(int(c))

    wrong = np.flatnonzero(y_true != y_pred)[:n]
    if wrong.size == 0:
        fig, axes = _new_figure(1, 1, (3.0, 1.0))
        axes[0, 0].set_axis_off()
        axes[0, 0].text(0.5, 0.5, f"no misclassified examples among {len(x)}",
                        ha="center", va="center")
        return fig
    titles = [f"{name(y_true[i])} -> {name(y_pred[i])}" for i in wrong]
    return show_images(x[wrong], titles=titles, ncols=ncols, cmap=cmap)


# --------------------------------------------------------------------------- network diagrams


class NetworkBlock(NamedTuple):
    """One box of :func:`network_diagram`: a layer (or a merged module) and its output."""

    name: str
    label: str
    kind: str
    shape: tuple[int, ...]


# Layer types drawn as boxes, by the name summarize records; activations, normalisation
# and dropout change no shape and are left out so that the diagram stays readable.
_DIAGRAM_KINDS = {"Conv2d": "conv", "MaxPool2d": "pool", "AvgPool2d": "pool",
                  "AdaptiveAvgPool2d": "pool", "AdaptiveMaxPool2d": "pool",
                  "Linear": "dense"}
_KIND_COLOURS = {"input": "#ffffff", "conv": "#f7d9b0", "pool": "#d9ead3",
                 "dense": "#cfe3f7", "module": "#e4d4f4"}


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _layer_label(module, kind_name: str, shape: tuple[int, ...]) -> str:
    if kind_name == "Conv2d":
        kh, kw = _pair(module.kernel_size)
        stride = _pair(module.stride)
        label = f"conv {kh}x{kw}"
        return label + (f" /{stride[0]}" if max(stride) > 1 else "")
    if kind_name in ("MaxPool2d", "AvgPool2d"):
        k = _pair(module.kernel_size)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        return f"{'max' if kind_name == 'MaxPool2d' else 'avg'} pool {k[0]}x{k[1]} /{s[0]}"
    if kind_name.startswith("Adaptive"):
        how = "avg" if "Avg" in kind_name else "max"
        # Adaptive to 1x1 is global pooling; AlexNet's and VGG's pool to 6x6 and 7x7.
        return f"global {how} pool" if shape[1:] == (1, 1) else f"adaptive {how} pool"
    return "linear" if kind_name == "Linear" else kind_name


def network_blocks(model, summary, *, merge=()) -> list[NetworkBlock]:
    """The boxes of a whole-network diagram, read from a :func:`cnnlib.torch.summarize` table.

    Parameters
    ----------
    model : torch.nn.Module
        The network that was summarised (its layers give kernel sizes and strides).
    summary : cnnlib.torch.ModelSummary
        ``summarize(model, input_size)``; its rows give every layer's output shape.
    merge : sequence of str
        Names of modules whose children run side by side on the same input and are
        concatenated along the channels (GoogLeNet's Inception modules). Each becomes one
        box whose channels are the sum of its children's last outputs.

    Returns
    -------
    list of NetworkBlock
        The input first, then every convolution, pooling and linear layer in execution
        order (activations, normalisation and dropout keep the shape and are left out).
    """
    merge = list(merge)
    blocks = [NetworkBlock("input", "input", "input", tuple(summary.input_size))]
    done: set[str] = set()
    for row in summary.rows:
        owner = next((m for m in merge if row.name.startswith(m + ".")), None)
        if owner is not None:
            if owner in done:
                continue
            done.add(owner)
            rows = [r for r in summary.rows if r.name.startswith(owner + ".")]
            last: dict[str, tuple[int, ...]] = {}
            for r in rows:  # the last output of each child (branch) of the module
                last[r.name[len(owner) + 1:].split(".")[0]] = r.output_shape
            shapes = list(last.values())
            if len({s[1:] for s in shapes}) != 1:
                raise ValueError(f"the branches of {owner!r} end with different spatial sizes "
                                 f"{[s[1:] for s in shapes]}; they cannot be concatenated")
            channels = sum(s[0] for s in shapes)
            blocks.append(NetworkBlock(owner, owner, "module", (channels, *shapes[0][1:])))
            continue
        kind = _DIAGRAM_KINDS.get(row.type)
        if kind is None:
            continue
        label = _layer_label(model.get_submodule(row.name), row.type, tuple(row.output_shape))
        blocks.append(NetworkBlock(row.name, label, kind, tuple(row.output_shape)))
    return blocks


def network_diagram(model, summary, *, merge=(), ncols=12, title=None,
                    figsize=None) -> Figure:
    """A whole network as a row of boxes, one per layer, drawn from its summary.

    A box's height grows with the spatial size of the layer's output and its width with
    the number of channels (logarithmically), so a reader sees the maps shrink and
    thicken; under each box are the layer and its output shape. Vectors (the outputs of
    linear layers) are thin boxes whose height grows with their length.

    Parameters
    ----------
    model, summary, merge
        As for :func:`network_blocks`, which computes the boxes.
    ncols : int
        Boxes per row; longer networks continue on the next row.
    title : str, optional
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    blocks = network_blocks(model, summary, merge=merge)
    nrows, ncols = _grid(len(blocks), ncols)
    if figsize is None:
        figsize = (1.05 * ncols + 0.3, 2.5 * nrows + (0.4 if title else 0.1))
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    spatial = [b.shape[1] for b in blocks if len(b.shape) == 3]
    largest_side = max(spatial) if spatial else 1
    largest_channels = max((b.shape[0] for b in blocks), default=1)
    row_height = 2.6
    for k, b in enumerate(blocks):
        row, col = divmod(k, ncols)
        xc, base = col + 0.5, -row * row_height
        if len(b.shape) == 3:
            c, h, _ = b.shape
            height = 0.1 + 1.4 * math.sqrt(h / largest_side)
            width = 0.1 + 0.6 * math.log2(1 + c) / math.log2(1 + largest_channels)
        else:
            n = int(np.prod(b.shape))
            height = 0.25 + 1.25 * math.log10(1 + n) / math.log10(1 + max(largest_channels, n))
            width = 0.08
        ax.add_patch(Rectangle((xc - width / 2, base + 0.9), width, height,
                               facecolor=_KIND_COLOURS[b.kind], edgecolor="black", lw=0.8))
        if col:
            ax.annotate("", xy=(xc - 0.36, base + 0.75), xytext=(xc - 0.64, base + 0.75),
                        arrowprops=dict(arrowstyle="-|>", color="0.4", lw=0.8))
        ax.text(xc, base + 0.72, b.label, ha="center", va="top", fontsize=6.5, wrap=False)
        ax.text(xc, base + 0.42, "x".join(map(str, b.shape)), ha="center", va="top",
                fontsize=6.5, color="0.3")
    ax.set(xlim=(0, ncols), ylim=(-(nrows - 1) * row_height + 0.1, 2.5))
    if title:
        ax.set_title(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------- tables


def html_table(rows, *, header, align=None, caption=None):
    """A small table for a notebook cell, rendered as HTML.

    Markdown tables in cell outputs need a Markdown renderer with table support; HTML
    renders the same in Jupyter and in the built book.

    Parameters
    ----------
    rows : sequence of sequences
        Cell values; each is converted with ``str`` and HTML-escaped.
    header : sequence of str
        Column titles; ``len(header)`` must equal every row's length.
    align : sequence of {"left", "right", "center"}, optional
        Per column; default right for numbers (int or float values in the first row),
        left otherwise.
    caption : str, optional

    Returns
    -------
    IPython.display.HTML
    """
    import html

    from IPython.display import HTML

    rows = [list(r) for r in rows]
    header = list(header)
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"row {i} has {len(row)} cells but header has {len(header)} "
                             f"columns")
    if align is None:
        first = rows[0] if rows else [""] * len(header)
        align = ["right" if isinstance(v, numbers.Number) else "left" for v in first]
    align = list(align)
    if len(align) != len(header):
        raise ValueError(f"align has {len(align)} entries for {len(header)} columns")
    parts = ['<table class="table">']
    if caption is not None:
        parts.append(f"<caption>{html.escape(str(caption))}</caption>")
    parts.append("<thead><tr>" + "".join(
        f'<th style="text-align: {a}">{html.escape(str(h))}</th>' for h, a in zip(header, align))
        + "</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>" + "".join(
            f'<td style="text-align: {a}">{html.escape(str(v))}</td>' for v, a in zip(row, align))
            + "</tr>")
    parts.append("</tbody></table>")
    return HTML("".join(parts))


# --------------------------------------------------------------------------- explorers


def _gray_image(image, name="image") -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        img = img[..., :3] @ np.array([0.2125, 0.7154, 0.0721])  # (H, W, 3) -> (H, W)
    if img.ndim != 2:
        raise ValueError(f"{name} must be a grey (H, W) or colour (H, W, 3) image, "
                         f"got shape {_shape(image)}")
    img = img.astype(np.float64)
    if np.issubdtype(np.asarray(image).dtype, np.integer):
        img /= 255.0
    return img


def _run_conv(img, kernel, padding, stride, dilation):
    """Convolve one grey image with one kernel through cnnlib.numpy.conv2d_forward."""
    cnp = _cnp()
    w = np.asarray(kernel, dtype=np.float64)[None, None]  # (KH, KW) -> (1, 1, KH, KW)
    out, _ = cnp.conv2d_forward(img[None, None], w, None, stride=stride, padding=padding,
                                dilation=dilation)
    return out[0, 0]  # (1, 1, H_out, W_out) -> (H_out, W_out)


def _check_kernels(kernels):
    if kernels is None:
        return dict(DEFAULT_KERNELS)
    if not isinstance(kernels, Mapping) or not kernels:
        raise TypeError("kernels must be a non-empty dict of name -> 2-D array, got "
                        f"{type(kernels).__name__}")
    out = {}
    for name, k in kernels.items():
        k = np.asarray(k, dtype=np.float64)
        if k.ndim != 2:
            raise ValueError(f"kernel {name!r} must be 2-D, got shape {_shape(k)}")
        out[str(name)] = k
    return out


_DEFAULT_SETTINGS = (
    dict(padding="valid", stride=1, dilation=1),
    dict(padding="same", stride=1, dilation=1),
    dict(padding="full", stride=1, dilation=1),
    dict(padding=1, stride=2, dilation=1),
    dict(padding=0, stride=3, dilation=1),
    dict(padding=0, stride=1, dilation=3),
)


def _settings_label(padding, stride, dilation):
    return f"p={padding}, s={stride}, d={dilation}"


def conv_explorer_static(image, *, kernels=None, kernel=None, settings=None,
                         ncols=3, figsize=None) -> Figure:
    """A grid of convolution outputs over padding, stride and dilation settings.

    The static counterpart of :func:`conv_explorer` for pages read without a live
    kernel: every panel is one setting of the explorer, drawn at the same scale (one
    pixel of the input is the same size in every panel) so that a smaller output looks
    smaller, and titled with its output shape.

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, 3)
    kernels : dict of str to ndarray (KH, KW), optional
        Default :data:`DEFAULT_KERNELS`.
    kernel : str, optional
        Which kernel to use; default the first one.
    settings : sequence of dict, optional
        Each with ``padding``, ``stride`` and ``dilation``; a default grid covers
        valid/same/full padding, strides 2 and 3, and dilation 3.

    Returns
    -------
    matplotlib.figure.Figure
    """
    img = _gray_image(image)
    kernels = _check_kernels(kernels)
    kname = next(iter(kernels)) if kernel is None else kernel
    if kname not in kernels:
        raise ValueError(f"kernel must be one of {list(kernels)}, got {kernel!r}")
    settings = list(_DEFAULT_SETTINGS if settings is None else settings)
    results = []
    for st in settings:
        p, s, d = st.get("padding", 0), st.get("stride", 1), st.get("dilation", 1)
        results.append((_settings_label(p, s, d), _run_conv(img, kernels[kname], p, s, d)))
    panels = [("input", img)] + results
    nrows, ncols = _grid(len(panels), ncols)
    if figsize is None:
        figsize = (2.6 * ncols, 2.6 * nrows + 0.4)
    fig, axes = _new_figure(nrows, ncols, figsize)
    big = max(max(r.shape) for _, r in panels)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(panels):
            continue
        label, arr = panels[k]
        _imshow_to_scale(ax, arr, big, f"{label}\n{arr.shape[0]}x{arr.shape[1]}")
    fig.suptitle(f"kernel '{kname}' on a {img.shape[0]}x{img.shape[1]} image", fontsize=10)
    return fig


def _imshow_to_scale(ax, arr: np.ndarray, big: int, title: str) -> None:
    """Draw a grey image in a ``big x big`` frame, one pixel per unit, so that panels
    share a scale and a smaller output occupies a smaller square."""
    h, w = arr.shape
    ax.imshow(arr, cmap="gray", interpolation="nearest", extent=(0, w, h, 0))
    ax.set_xlim(0, big)
    ax.set_ylim(big, 0)
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)


def _explorer_input(image, max_size: int) -> np.ndarray:
    """The explorer's grey input; large photographs are subsampled to at most max_size,
    so that every update stays fast."""
    img = _gray_image(image)
    step = max(1, math.ceil(max(img.shape) / max_size))
    return img[::step, ::step]


def _input_output_png(img: np.ndarray, result: np.ndarray | None) -> bytes:
    """PNG of an explorer's input and output side by side, at the same scale (a smaller
    output looks smaller); the input alone when the setting was invalid."""
    if result is None:
        fig, axes = _new_figure(1, 1, (3, 3))
        axes[0, 0].imshow(img, cmap="gray")
        axes[0, 0].set_axis_off()
        return figure_to_png(fig, dpi=80)
    big = max(*img.shape, *result.shape)
    fig, axes = _new_figure(1, 2, (6, 3))
    for ax, arr, name in ((axes[0, 0], img, "input"), (axes[0, 1], result, "output")):
        _imshow_to_scale(ax, arr, big, f"{name} {arr.shape[0]}x{arr.shape[1]}")
    return figure_to_png(fig, dpi=80)


class ConvExplorer:
    """An ipywidgets explorer of padding, stride and dilation over an image.

    Attributes
    ----------
    kernel, padding, stride, dilation : ipywidgets controls
    shape_label : ipywidgets.HTML
        ``input HxW -> output H_outxW_out`` (or the error the library raises for an
        invalid setting, e.g. ``padding='same'`` with stride 2).
    image : ipywidgets.Image
        PNG of the input and the output side by side.
    result : ndarray (H_out, W_out) or None
        The last output, computed by ``cnnlib.numpy.conv2d_forward``.
    widget : ipywidgets.VBox
        The whole explorer; displaying the explorer displays this.
    """

    def __init__(self, image, *, kernels=None, max_size=96):
        import ipywidgets as widgets

        self.input = _explorer_input(image, max_size)
        self.kernels = _check_kernels(kernels)
        self.result = None
        self.error = None
        self.kernel = widgets.Dropdown(options=list(self.kernels), description="kernel")
        self.padding = widgets.Dropdown(
            options=[("valid (0)", "valid"), ("same", "same"), ("full", "full"),
                     ("1", 1), ("2", 2), ("3", 3), ("5", 5)],
            value="valid", description="padding")
        self.stride = widgets.IntSlider(value=1, min=1, max=4, description="stride")
        self.dilation = widgets.IntSlider(value=1, min=1, max=4, description="dilation")
        self.shape_label = widgets.HTML()
        self.image = widgets.Image(format="png")
        controls = widgets.HBox([widgets.VBox([self.kernel, self.padding]),
                                 widgets.VBox([self.stride, self.dilation])])
        self.widget = widgets.VBox([controls, self.shape_label, self.image])
        for control in (self.kernel, self.padding, self.stride, self.dilation):
            control.observe(self._update, names="value")
        self._update()

    def settings(self) -> dict:
        return dict(padding=self.padding.value, stride=self.stride.value,
                    dilation=self.dilation.value)

    def _update(self, change=None):
        st = self.settings()
        h, w = self.input.shape
        try:
            self.result = _run_conv(self.input, self.kernels[self.kernel.value], **st)
            self.error = None
        except ValueError as err:
            # An invalid combination is part of the lesson: say why instead of failing.
            self.result, self.error = None, str(err)
        if self.result is None:
            self.shape_label.value = (f"input {h}x{w}, {_settings_label(**st)}: "
                                      f"<b>not allowed</b>: {self.error}")
        else:
            oh, ow = self.result.shape
            self.shape_label.value = (f"input {h}x{w}, {_settings_label(**st)} -> "
                                      f"<b>output {oh}x{ow}</b>")
        self.image.value = _input_output_png(self.input, self.result)

    def static_figure(self, settings=None) -> Figure:
        """The explorer drawn as a grid of settings (for the HTML book)."""
        return conv_explorer_static(self.input, kernels=self.kernels, kernel=self.kernel.value,
                                    settings=settings)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def conv_explorer(image, *, kernels=None, max_size=96) -> ConvExplorer:
    """An interactive explorer of convolution settings over an image.

    Choose a kernel, padding (``"valid"``, ``"same"``, ``"full"`` or a number), stride
    and dilation; the output image and its shape update (see the chapter on padding and
    stride). Displaying the returned object in a notebook shows the widget; its
    ``static_figure()`` draws a grid of settings for pages read without a kernel.

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, 3)
    kernels : dict of str to ndarray (KH, KW), optional
        Default :data:`DEFAULT_KERNELS`.
    max_size : int
        Larger images are subsampled so each update stays fast.

    Returns
    -------
    ConvExplorer
    """
    return ConvExplorer(image, kernels=kernels, max_size=max_size)


class PoolingExplorer:
    """An ipywidgets explorer of pooling: kernel size, stride and mode.

    Attributes
    ----------
    kernel_size, stride, mode : ipywidgets controls
    shape_label : ipywidgets.HTML
    image : ipywidgets.Image
    result : ndarray (H_out, W_out) or None
        The last output, computed by ``cnnlib.numpy.<mode>pool2d_forward``.
    widget : ipywidgets.VBox
    """

    def __init__(self, image, *, max_size=96):
        import ipywidgets as widgets

        self.input = _explorer_input(image, max_size)
        self.result = None
        self.error = None
        self.kernel_size = widgets.IntSlider(value=2, min=1, max=8, description="kernel")
        self.stride = widgets.IntSlider(value=2, min=1, max=8, description="stride")
        self.mode = widgets.Dropdown(options=list(_POOL_MODES), value="max",
                                     description="mode")
        self.shape_label = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.widget = widgets.VBox([widgets.HBox([self.kernel_size, self.stride, self.mode]),
                                    self.shape_label, self.image])
        for control in (self.kernel_size, self.stride, self.mode):
            control.observe(self._update, names="value")
        self._update()

    def _update(self, change=None):
        h, w = self.input.shape
        k, s, mode = self.kernel_size.value, self.stride.value, self.mode.value
        try:
            self.result = _pool_forward(self.input, k, s, mode)[0]
            self.error = None
        except ValueError as err:
            self.result, self.error = None, str(err)
        if self.result is None:
            self.shape_label.value = f"kernel {k}, stride {s}: <b>not allowed</b>: {self.error}"
        else:
            oh, ow = self.result.shape
            self.shape_label.value = (f"input {h}x{w}, {mode} pool, kernel {k}, stride {s} "
                                      f"-> <b>output {oh}x{ow}</b>")
        self.image.value = _input_output_png(self.input, self.result)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def pooling_explorer(image, *, max_size=96) -> PoolingExplorer:
    """An interactive explorer of pooling (kernel size, stride, mode) over an image.

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, 3)

    Returns
    -------
    PoolingExplorer
    """
    return PoolingExplorer(image, max_size=max_size)


# --------------------------------------------------------------------------- IPython display


def _register_ipython_png() -> None:
    """Let a returned Figure display as PNG in IPython, whatever the matplotlib backend."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    formatter = ip.display_formatter.formatters["image/png"]
    if Figure in formatter.type_printers:
        return  # the inline backend (or a user) already chose how figures display

    def _png(fig):
        return figure_to_png(fig)

    formatter.for_type(Figure, _png)


try:
    _register_ipython_png()
except Exception:  # pragma: no cover - display is a convenience, never a reason to fail
    pass
