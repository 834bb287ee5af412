"""Datasets that work offline, and readers for local copies of the standard ones.

Nothing here downloads anything. The embedded datasets come from files that the
installed packages ship (scikit-learn's handwritten digits, scikit-image's sample
photographs and its LFW face subset) or are generated from a seed. The readers load a
user's own copy of MNIST, CIFAR-10 or a folder of images.

Every loader returns images as float32 arrays in NCHW layout with values in [0, 1] and
labels as int64, so the output goes straight into ``cnnlib.numpy`` or ``torch.from_numpy``.

Embedded datasets
-----------------
::

    load_digits(size=32)     1,797 handwritten digits, 10 classes, (N, 1, size, size)
    load_textures(32)        patches of four photographs, one class per photograph,
                             train and test patches cut from disjoint regions
    load_faces()             200 LFW crops, face / non-face, (N, 1, 25, 25)
    make_shapes(n)           synthetic coloured circles, squares, triangles and crosses
                             (or eight other outlines), colour or grey
    shapes_segmentation(n)   synthetic scenes of squares, discs and triangles with a
                             class per pixel, for segmentation

Readers (root from the argument, else the ``CNNLIB_DATA`` environment variable)
-------------------------------------------------------------------------------
::

    read_mnist(root)         the four IDX files, plain or gzipped
    read_cifar10(root)       the Python pickle batches in cifar-10-batches-py
    read_image_folder(root)  one subfolder per class, PNG or JPEG files
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlib.checks import as_int

__all__ = [
    "DataSplit",
    "SHAPE_CLASSES",
    "OTHER_SHAPE_CLASSES",
    "ALL_SHAPES",
    "SEGMENTATION_CLASSES",
    "TEXTURE_CLASSES",
    "load_digits",
    "load_textures",
    "load_faces",
    "make_shapes",
    "random_shift",
    "stretch_contrast",
    "shapes_segmentation",
    "read_mnist",
    "read_cifar10",
    "read_image_folder",
]

ENV_VAR = "CNNLIB_DATA"
SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
OTHER_SHAPE_CLASSES = ("ring", "star", "ellipse", "crescent", "ell", "tee", "arrow",
                       "half-disc")
ALL_SHAPES = SHAPE_CLASSES + OTHER_SHAPE_CLASSES
SEGMENTATION_CLASSES = ("background", "square", "disc", "triangle")
TEXTURE_CLASSES = ("brick", "grass", "gravel", "moon")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
MNIST_CLASSES = DIGIT_CLASSES
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class DataSplit(NamedTuple):
    """A train/test split.

    Attributes
    ----------
    x_train : (N_train, C, H, W) float32 ndarray in [0, 1]
    y_train : (N_train,) int64 ndarray
    x_test : (N_test, C, H, W) float32 ndarray in [0, 1]
    y_test : (N_test,) int64 ndarray
    class_names : tuple of str
        ``class_names[k]`` names label ``k``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _check_fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return float(value)


def _stratified_split(y: np.ndarray, test_size: float, seed) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps every class's share in both parts."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        n_test = int(round(test_size * idx.size))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    # Shuffle across classes so that a minibatch taken in order is not one class.
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _split(x: np.ndarray, y: np.ndarray, test_size: float, seed, names) -> DataSplit:
    tr, te = _stratified_split(y, test_size, seed)
    return DataSplit(x[tr], y[tr], x[te], y[te], tuple(names))


# ---------------------------------------------------------------------------
# embedded datasets
# ---------------------------------------------------------------------------

def load_digits(size: int = 32, *, test_size: float = 0.2, seed=0) -> DataSplit:
    """scikit-learn's 8x8 handwritten digits, resized for a LeNet-style network.

    Parameters
    ----------
    size : int
        Side of the output images. The 8x8 originals are resized with bilinear
        interpolation (anti-aliased when shrinking); 32 matches LeNet-5's input.
    test_size : float
        Fraction of each class held out for testing (stratified).
    seed : int or numpy.random.Generator
        Seed of the split; the same seed always gives the same split.

    Returns
    -------
    DataSplit
        ``x_*`` of shape (N, 1, size, size), float32 in [0, 1]; labels 0-9; 1,797
        images in total (359 test images with the default ``test_size``).

    Notes
    -----
    Used in chapter 7 (training a CNN from scratch). The originals hold integers 0-16,
    which are divided by 16.
    """
    from skimage.transform import resize
    from sklearn.datasets import load_digits as _sk_digits

    size = as_int(size, "size", minimum=8)
    test_size = _check_fraction(test_size, "test_size")
    digits = _sk_digits()
    images = digits.images / 16.0  # (N, 8, 8) in [0, 1]
    if size != 8:
        # One call over the stack: the first axis keeps its length, so no image
        # blends into its neighbours.
        images = resize(images, (len(images), size, size), order=1, anti_aliasing=True,
                        mode="edge")
    x = np.clip(images, 0.0, 1.0).astype(np.float32)[:, None]  # (N, 1, size, size)
    y = digits.target.astype(np.int64)
    return _split(x, y, test_size, seed, DIGIT_CLASSES)


def _texture_image(name: str) -> np.ndarray:
    """A grayscale photograph shipped with scikit-image, float32 in [0, 1]."""
    import skimage.data
    from skimage.util import img_as_float32

    image = getattr(skimage.data, name)()
    if image.ndim == 3:
        from skimage.color import rgb2gray
        image = rgb2gray(image[..., :3])
    return img_as_float32(image)


def _cut_patches(image: np.ndarray, col_start: int, col_stop: int, n: int, p: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``n`` random p x p patches lying entirely inside columns [col_start, col_stop)."""
    h = image.shape[0]
    if col_stop - col_start < p or h < p:
        raise ValueError(f"patch_size={p} does not fit in a region of shape "
                         f"({h}, {col_stop - col_start})")
    rows = rng.integers(0, h - p + 1, size=n)
    cols = rng.integers(col_start, col_stop - p + 1, size=n)
    return np.stack([image[r:r + p, c:c + p] for r, c in zip(rows, cols)])


def load_textures(patch_size: int = 32, *, patches_per_image: int = 400,
                  test_size: float = 0.25, seed=0,
                  classes: tuple[str, ...] = TEXTURE_CLASSES) -> DataSplit:
    """Patches of texture photographs shipped with scikit-image, one class per photograph.

    Parameters
    ----------
    patch_size : int
        Side of the square patches.
    patches_per_image : int
        Patches cut from each photograph, train and test together.
    test_size : float
        Fraction of each photograph's width (its right-hand part) that test patches come
        from, and the fraction of the patches that are test patches.
    seed : int or numpy.random.Generator
        Seed of the patch positions and of the shuffle.
    classes : tuple of str
        Names of ``skimage.data`` images; the default, :data:`TEXTURE_CLASSES`, are the
        brick, grass and gravel textures and the lunar surface.

    Returns
    -------
    DataSplit
        ``x_*`` of shape (N, 1, patch_size, patch_size), float32 in [0, 1].

    Notes
    -----
    Train patches come from the left ``1 - test_size`` of each photograph and test
    patches from the rest, so no test pixel was ever seen in training: random patches
    from the whole image would overlap and flatter the test accuracy. The photographs
    differ in mean brightness, so a classifier can score well above chance from the
    mean alone; chapter 13 uses these patches for a texture workflow.
    """
    patch_size = as_int(patch_size, "patch_size", minimum=2)
    n = as_int(patches_per_image, "patches_per_image", minimum=2)
    test_size = _check_fraction(test_size, "test_size")
    rng = np.random.default_rng(seed)
    n_test = max(1, int(round(test_size * n)))
    xs_tr, xs_te, ys_tr, ys_te = [], [], [], []
    for label, name in enumerate(classes):
        image = _texture_image(name)
        w = image.shape[1]
        boundary = int(round((1.0 - test_size) * w))
        xs_tr.append(_cut_patches(image, 0, boundary, n - n_test, patch_size, rng))
        xs_te.append(_cut_patches(image, boundary, w, n_test, patch_size, rng))
        ys_tr.append(np.full(n - n_test, label, dtype=np.int64))
        ys_te.append(np.full(n_test, label, dtype=np.int64))
    x_tr = np.concatenate(xs_tr)[:, None]  # (N_train, 1, p, p)
    x_te = np.concatenate(xs_te)[:, None]  # (N_test, 1, p, p)
    y_tr, y_te = np.concatenate(ys_tr), np.concatenate(ys_te)
    tr, te = rng.permutation(len(y_tr)), rng.permutation(len(y_te))
    return DataSplit(x_tr[tr], y_tr[tr], x_te[te], y_te[te], tuple(classes))


def load_faces(*, test_size: float = 0.25, seed=0) -> DataSplit:
    """The LFW subset shipped with scikit-image: 100 faces and 100 non-faces.

    Parameters
    ----------
    test_size : float
        Fraction of each class held out for testing (stratified).
    seed : int or numpy.random.Generator
        Seed of the split.

    Returns
    -------
    DataSplit
        ``x_*`` of shape (N, 1, 25, 25), float32 in [0, 1]; label 1 is a face, 0 a
        background crop (``class_names == ("non-face", "face")``).
    """
    from skimage.data import lfw_subset
    from skimage.util import img_as_float32

    test_size = _check_fraction(test_size, "test_size")
    images = img_as_float32(lfw_subset())  # (200, 25, 25): faces first, then non-faces
    x = np.clip(images, 0.0, 1.0)[:, None]  # (200, 1, 25, 25)
    y = np.r_[np.ones(100, dtype=np.int64), np.zeros(len(images) - 100, dtype=np.int64)]
    return _split(x, y, test_size, seed, ("non-face", "face"))


def _shape_mask(kind: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float,
                r: float) -> np.ndarray:
    """Boolean mask of one shape of 'radius' r centred at (cy, cx) on a pixel grid."""
    dy, dx = yy - cy, xx - cx
    d2 = dy * dy + dx * dx
    if kind == "circle":
        return d2 <= r * r
    if kind == "square":  # side 1.6 r so that its area is close to the circle's
        return (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= 0.8 * r)
    if kind == "triangle":  # upward: apex at top, base at cy + r/2
        base = cy + 0.5 * r
        top = cy - r
        half_width = (yy - top) / (base - top) * (0.9 * r)
        return (yy >= top) & (yy <= base) & (np.abs(dx) <= half_width)
    if kind == "cross":  # two bars of width 0.6 r
        arm = 0.3 * r
        return (((np.abs(dx) <= arm) & (np.abs(dy) <= r))
                | ((np.abs(dy) <= arm) & (np.abs(dx) <= r)))
    if kind == "ring":
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if kind == "star":  # five points, one upwards; the radius swings from 0.45 r to r
        angle = np.arctan2(dx, -dy)
        return np.sqrt(d2) <= r * (0.725 + 0.275 * np.cos(5 * angle))
    if kind == "ellipse":  # lying, half as tall as wide
        return (dx / r) ** 2 + (dy / (0.5 * r)) ** 2 <= 1
    if kind == "crescent":  # a disc with a disc bitten out of its right side
        bite = (dy + 0.15 * r) ** 2 + (dx - 0.5 * r) ** 2 <= (0.8 * r) ** 2
        return (d2 <= r * r) & ~bite
    if kind == "ell":  # an L: a tall bar on the left and a foot to the right
        return (((dx >= -0.7 * r) & (dx <= -0.2 * r) & (np.abs(dy) <= r))
                | ((dy >= 0.5 * r) & (dy <= r) & (np.abs(dx) <= 0.7 * r)))
    if kind == "tee":  # a T: a bar across the top on a stem
        return (((dy >= -r) & (dy <= -0.5 * r) & (np.abs(dx) <= r))
                | ((np.abs(dx) <= 0.25 * r) & (np.abs(dy) <= r)))
    if kind == "arrow":  # pointing right: a shaft and a triangular head
        shaft = (np.abs(dy) <= 0.22 * r) & (dx >= -r) & (dx <= 0.1 * r)
        head = (dx >= 0.0) & (dx <= r) & (np.abs(dy) <= 0.8 * (r - dx))
        return shaft | head
    if kind == "half-disc":  # the upper half of a disc, flat side down
        return ((dy - 0.5 * r) ** 2 + dx * dx <= r * r) & (dy <= 0.5 * r)
    raise ValueError(f"unknown shape {kind!r}; choose from {ALL_SHAPES}")


def stretch_contrast(x: np.ndarray) -> np.ndarray:
    """Stretch each image linearly so that its darkest value is 0 and its brightest 1.

    Parameters
    ----------
    x : (N, C, H, W) ndarray
        A batch of images; the minimum and maximum are taken per image, over all its
        channels.

    Returns
    -------
    (N, C, H, W) float32 ndarray in [0, 1]
        ``(x - min) / (max - min)`` per image; an image of one constant value becomes 0.

    Notes
    -----
    Chapter 12 gives every image of a source and a target task the same range this way,
    so that a network trained on one sees the other in the form it knows.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"x must be a 4-dimensional (N, C, H, W) ndarray, got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x holds NaN or infinite values, which would spread to its image")
    lo = x.min(axis=(1, 2, 3), keepdims=True)  # (N, 1, 1, 1)
    span = x.max(axis=(1, 2, 3), keepdims=True) - lo  # (N, 1, 1, 1)
    # A constant image has no contrast to stretch; dividing by 1 maps it to 0.
    out = (x - lo) / np.where(span > 0, span, 1.0)
    return out.astype(np.float32)


def _grey_contrast(x: np.ndarray) -> np.ndarray:
    """(n, 3, s, s) colour shapes -> (n, 1, s, s): distance from the background colour."""
    border = np.concatenate([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]],
                            axis=2)  # (n, 3, 4s)
    background = np.median(border, axis=2)[..., None, None]  # (n, 3, 1, 1)
    # The colour distance, not the difference of grey levels: a red shape on a green
    # background of the same brightness would vanish in grey.
    distance = np.sqrt(((x - background) ** 2).sum(axis=1, keepdims=True))  # (n, 1, s, s)
    return stretch_contrast(distance)


def make_shapes(n: int, size: int = 32, seed=0, *,
                classes: tuple[str, ...] = SHAPE_CLASSES,
                grey: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic coloured shapes on coloured backgrounds, labelled by shape.

    Parameters
    ----------
    n : int
        Number of images. Classes are balanced (counts differ by at most one).
    size : int
        Side of the images (at least 8).
    seed : int or numpy.random.Generator
        The same seed always gives the same images.
    classes : tuple of str
        The shapes to draw, from :data:`ALL_SHAPES`; label ``k`` is ``classes[k]``.
        The default, :data:`SHAPE_CLASSES`, are circle, square, triangle and cross;
        :data:`OTHER_SHAPE_CLASSES` are eight further outlines (ring, star, ellipse,
        crescent, L, T, arrow, half disc), none of them one of the first four.
    grey : bool
        Return one channel instead of three: each pixel's distance from the background
        colour (the median of the image's border) in RGB space, stretched so that the
        image spans [0, 1]. Every shape is then bright on a dark background, whatever
        its colours were.

    Returns
    -------
    x : (n, 3, size, size) float32 ndarray in [0, 1]
        ``(n, 1, size, size)`` with ``grey=True``.
    y : (n,) int64 ndarray
        Index into ``classes``.

    Notes
    -----
    Position, size, shape colour and background colour are random; the shape colour is
    kept at a visible distance from the background, and a little pixel noise is
    added, so a network has to learn the outline rather than a colour.
    Edges are anti-aliased by 4x4 supersampling. Chapter 12 (transfer learning) trains
    a network on the other shapes and moves it to the first four.
    """
    n = as_int(n, "n", minimum=1)
    size = as_int(size, "size", minimum=8)
    if isinstance(classes, str) or not classes or any(c not in ALL_SHAPES for c in classes):
        raise ValueError(f"classes must be a non-empty tuple of names from {ALL_SHAPES}, "
                         f"got {classes!r}")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % len(classes)).astype(np.int64)
    ss = 4
    # Pixel-centre coordinates of a supersampled grid, in pixel units.
    grid = (np.arange(size * ss) + 0.5) / ss
    yy, xx = np.meshgrid(grid, grid, indexing="ij")  # (size*ss, size*ss)
    x = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        r = rng.uniform(0.2, 0.4) * size
        cy, cx = rng.uniform(r, size - r, size=2)
        background = rng.uniform(0.0, 1.0, size=3)
        while True:
            colour = rng.uniform(0.0, 1.0, size=3)
            if np.linalg.norm(colour - background) > 0.5:
                break
        mask = _shape_mask(classes[y[i]], yy, xx, cy, cx, r).astype(np.float64)
        # (size*ss, size*ss) -> (size, ss, size, ss) -> coverage per pixel
        cover = mask.reshape(size, ss, size, ss).mean(axis=(1, 3))  # (size, size)
        image = (background[:, None, None] * (1.0 - cover)
                 + colour[:, None, None] * cover)  # (3, size, size)
        image += rng.normal(0.0, 0.03, size=image.shape)
        x[i] = np.clip(image, 0.0, 1.0)
    return (_grey_contrast(x) if grey else x), y


# The _shape_mask kind that draws each foreground class of SEGMENTATION_CLASSES.
_SEGMENTATION_KINDS = {1: "square", 2: "circle", 3: "triangle"}
# How far each shape reaches from its centre, in units of its 'radius' r: the square's
# corners at 0.8 * sqrt(2) r, the triangle's base corners at sqrt(0.5**2 + 0.9**2) r.
_SEGMENTATION_REACH = {1: 0.8 * 2 ** 0.5, 2: 1.0, 3: (0.5 ** 2 + 0.9 ** 2) ** 0.5}


def shapes_segmentation(n: int, *, size: int = 32, max_shapes: int = 3,
                        seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic scenes of coloured shapes with a class for every pixel.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Side of the images (at least 16).
    max_shapes : int
        Each image holds between 1 and ``max_shapes`` shapes (at least 1), each of a
        random class.
    seed : int or numpy.random.Generator
        The same seed always gives the same images and masks.

    Returns
    -------
    x : (n, 3, size, size) float32 ndarray in [0, 1]
    masks : (n, size, size) int64 ndarray
        Index into :data:`SEGMENTATION_CLASSES` (background, square, disc, triangle)
        for every pixel: the class of the shape that covers at least half of the pixel,
        else background.

    Notes
    -----
    Shapes do not overlap (their enclosing circles are kept apart, so every shape is
    whole) and lie inside the frame; their 'radius' is 14-24 % of ``size``. Every
    shape has its own colour, at a visible distance from the background colour, and a
    little pixel noise is added, so a network has to use the outline, not the colour, to
    tell the classes apart. Edges are anti-aliased by 4x4 supersampling. Chapter 14
    (segmentation) trains a small U-Net on these scenes.
    """
    n = as_int(n, "n", minimum=1)
    size = as_int(size, "size", minimum=16)
    max_shapes = as_int(max_shapes, "max_shapes", minimum=1)
    rng = np.random.default_rng(seed)
    ss = 4
    grid = (np.arange(size * ss) + 0.5) / ss  # pixel-centre coordinates, supersampled
    yy, xx = np.meshgrid(grid, grid, indexing="ij")  # (size*ss, size*ss)
    x = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        background = rng.uniform(0.0, 1.0, size=3)
        image = np.broadcast_to(background[:, None, None], (3, size, size)).copy()
        placed: list[tuple[float, float, float]] = []  # (cy, cx, r) of the shapes so far
        for _ in range(int(rng.integers(1, max_shapes + 1))):
            cls = int(rng.integers(1, len(SEGMENTATION_CLASSES)))
            r = rng.uniform(0.14, 0.24) * size
            reach = _SEGMENTATION_REACH[cls] * r  # radius of the enclosing circle
            for _attempt in range(20):  # a free spot, or skip the shape
                cy, cx = rng.uniform(r, size - r, size=2)
                if all(np.hypot(cy - py, cx - px) > reach + pr + 1 for py, px, pr in placed):
                    break
            else:
                continue
            placed.append((cy, cx, reach))
            while True:
                colour = rng.uniform(0.0, 1.0, size=3)
                if np.linalg.norm(colour - background) > 0.5:
                    break
            # Only the pixels of the shape's bounding square can be covered.
            top, left = (max(int(c - r) - 1, 0) for c in (cy, cx))
            bottom, right = (min(int(c + r) + 2, size) for c in (cy, cx))
            window = np.s_[top * ss:bottom * ss, left * ss:right * ss]
            inside = _shape_mask(_SEGMENTATION_KINDS[cls], yy[window], xx[window], cy, cx, r)
            h, w = bottom - top, right - left
            cover = np.zeros((size, size))
            # (h*ss, w*ss) -> (h, ss, w, ss) -> coverage per pixel
            cover[top:bottom, left:right] = inside.reshape(h, ss, w, ss).mean(axis=(1, 3))
            image = image * (1.0 - cover) + colour[:, None, None] * cover  # (3, size, size)
            masks[i][cover >= 0.5] = cls
        image += rng.normal(0.0, 0.03, size=image.shape)
        x[i] = np.clip(image, 0.0, 1.0)
    return x, masks


def random_shift(x: np.ndarray, max_shift: int = 2, rng=None) -> np.ndarray:
    """Shift every image by its own random offset, filling the uncovered border with 0.

    Parameters
    ----------
    x : (N, C, H, W) ndarray
        A batch of images.
    max_shift : int
        Offsets are drawn uniformly from ``-max_shift .. max_shift`` pixels, separately
        for rows and columns.
    rng : numpy.random.Generator or int, optional
        Source of the offsets.

    Returns
    -------
    (N, C, H, W) ndarray
        A new array of the same dtype; ``x`` is not modified.

    Notes
    -----
    The augmentation of chapter 7: a digit moved by a pixel or two is still the same
    digit, so the network learns some tolerance to position that its pooling layers
    alone do not give. Pass it to ``Trainer(augment=...)`` through a lambda or
    ``functools.partial`` to change ``max_shift``.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"x must be a 4-dimensional (N, C, H, W) ndarray, got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    max_shift = as_int(max_shift, "max_shift", minimum=0)
    n, _, h, w = x.shape
    if max_shift >= min(h, w):
        raise ValueError(f"max_shift={max_shift} must be smaller than the image size "
                         f"{(h, w)} (x has shape {x.shape})")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out = np.zeros_like(x)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    # Group images by offset: at most (2s+1)^2 slicing copies instead of N.
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            idx = np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
            if idx.size == 0:
                continue
            src = x[idx, :, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
            out[idx, :, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)] = src
    return out


# ---------------------------------------------------------------------------
# readers for local copies
# ---------------------------------------------------------------------------

def _data_root(root, dataset: str, expected: str) -> Path:
    """The directory from the argument, else from CNNLIB_DATA, else a clear error."""
    if root is None:
        env = os.environ.get(ENV_VAR)
        if not env:
            raise FileNotFoundError(
                f"{dataset}: no data directory given. Pass root=... or set the {ENV_VAR} "
                f"environment variable to a directory holding {expected}. cnnlib never "
                f"downloads data.")
        root = env
    return Path(root).expanduser()


def _find_file(dirs: list[Path], names: list[str]) -> Path | None:
    for d in dirs:
        for name in names:
            if (d / name).is_file():
                return d / name
    return None


MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
               0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read one IDX file (the format of MNIST), plain or gzip-compressed.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ndarray
        With the shape and element type the file's header declares.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape))
    if len(raw) != header + count * dtype.itemsize:
        raise ValueError(f"{path}: header declares shape {shape} ({count} items) but the "
                         f"file holds {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)


def read_mnist(root=None) -> DataSplit:
    """Read a local copy of MNIST (or Fashion-MNIST, which uses the same files).

    Parameters
    ----------
    root : str or Path, optional
        Directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or with
        ``.gz``. Also searched: ``root/mnist``, ``root/MNIST`` and ``root/MNIST/raw``
        (torchvision's layout). Defaults to the ``CNNLIB_DATA`` environment variable.

    Returns
    -------
    DataSplit
        (60000, 1, 28, 28) train and (10000, 1, 28, 28) test images for the real data,
        float32 in [0, 1]; labels int64.

    Raises
    ------
    FileNotFoundError
        Naming the missing files and every directory searched.
    """
    base = _data_root(root, "read_mnist", "the four MNIST IDX files "
                      f"({', '.join(MNIST_FILES.values())}, optionally .gz)")
    dirs = [base, base / "mnist", base / "MNIST", base / "MNIST" / "raw"]
    found, missing = {}, []
    for key, stem in MNIST_FILES.items():
        # Some mirrors write "train-images.idx3-ubyte" with a dot.
        alt = stem.replace("-idx", ".idx")
        path = _find_file(dirs, [stem, stem + ".gz", alt, alt + ".gz"])
        if path is None:
            missing.append(stem)
        found[key] = path
    if missing:
        raise FileNotFoundError(
            f"read_mnist: missing {', '.join(missing)} (plain or .gz); looked in "
            f"{', '.join(str(d) for d in dirs)}. Download MNIST yourself and pass root=... "
            f"or set {ENV_VAR}; cnnlib never downloads data.")
    arrays = {k: read_idx(p) for k, p in found.items()}
    for part in ("train", "test"):
        xs, ys = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if xs.ndim != 3 or ys.ndim != 1 or len(xs) != len(ys):
            raise ValueError(f"read_mnist: {part} images have shape {xs.shape} and labels "
                             f"shape {ys.shape}; expected (N, H, W) and (N,)")
    return DataSplit(
        (arrays["x_train"][:, None] / np.float32(255)).astype(np.float32),  # (N, 1, H, W)
        arrays["y_train"].astype(np.int64),
        (arrays["x_test"][:, None] / np.float32(255)).astype(np.float32),  # (N, 1, H, W)
        arrays["y_test"].astype(np.int64),
        MNIST_CLASSES,
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays, and nothing else.

    A pickle can run arbitrary code when loaded; a downloaded file should only be able
    to rebuild the arrays the CIFAR batches hold.
    """

    def find_class(self, module, name):
        allowed = _PICKLE_ALLOWED.get((module.replace("numpy._core", "numpy.core"), name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return allowed()


def _np_core_attr(name):
    def get():
        from numpy._core import multiarray
        return getattr(multiarray, name)
    return get


_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _np_core_attr("_reconstruct"),
    ("numpy.core.multiarray", "scalar"): _np_core_attr("scalar"),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    # Python 3 writes bytes with protocol 2 as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): lambda: __import__("codecs").encode,
}


def _load_cifar_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        # The official files were written by Python 2: bytes keys, latin1 strings.
        obj = _ArrayUnpickler(f, encoding="bytes").load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a CIFAR batch (a dict), got "
                         f"{type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_cifar_pickle(path)
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: a CIFAR-10 batch needs 'data' and 'labels', "
                         f"found keys {sorted(batch)}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ValueError(f"{path}: data has shape {data.shape} and labels shape "
                         f"{labels.shape}; expected (N, 3072) and (N,)")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major.
    x = data.reshape(-1, 3, 32, 32)  # (N, 3, 32, 32)
    return (x / np.float32(255)).astype(np.float32), labels


def read_cifar10(root=None) -> DataSplit:
    """Read a local copy of CIFAR-10 in its "python version" format.

    Parameters
    ----------
    root : str or Path, optional
        Directory holding ``cifar-10-batches-py`` (or that directory itself), which
        holds ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and, optionally,
        ``batches.meta`` with the class names. Defaults to the ``CNNLIB_DATA``
        environment variable.

    Returns
    -------
    DataSplit
        (50000, 3, 32, 32) train and (10000, 3, 32, 32) test images for the real data,
        float32 in [0, 1]; labels int64.

    Notes
    -----
    The batches are Python pickles. They are loaded with an unpickler that only
    rebuilds NumPy arrays and plain containers, so a tampered file cannot run code.
    """
    base = _data_root(root, "read_cifar10", "cifar-10-batches-py/ with data_batch_1..5 "
                      "and test_batch")
    dirs = [base / "cifar-10-batches-py", base]
    folder = next((d for d in dirs if all((d / f).is_file() for f in CIFAR10_FILES)), None)
    if folder is None:
        missing = [f for f in CIFAR10_FILES if not (dirs[0] / f).is_file()]
        raise FileNotFoundError(
            f"read_cifar10: missing {', '.join(missing)}; looked in "
            f"{', '.join(str(d) for d in dirs)}. Extract cifar-10-python.tar.gz yourself "
            f"and pass root=... or set {ENV_VAR}; cnnlib never downloads data.")
    train = [_cifar_batch(folder / f) for f in CIFAR10_FILES[:-1]]
    x_test, y_test = _cifar_batch(folder / "test_batch")
    names = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        meta = _load_cifar_pickle(folder / "batches.meta")
        raw = meta.get("label_names")
        if raw:
            names = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw)
    return DataSplit(np.concatenate([t[0] for t in train]),
                     np.concatenate([t[1] for t in train]), x_test, y_test, names)


def read_image_folder(root, *, size=None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read images arranged one subfolder per class (``root/cat/001.png``, ...).

    Parameters
    ----------
    root : str or Path
        The folder of class folders. A relative path that does not exist is also
        looked up under the ``CNNLIB_DATA`` environment variable.
    size : int or (int, int), optional
        Resize every image to ``size`` (anti-aliased). Without it all images must
        already have the same height and width.

    Returns
    -------
    x : (N, C, H, W) float32 ndarray in [0, 1]
        C is 1 when every image is grayscale, else 3 (grayscale images are repeated
        over three channels, an alpha channel is dropped).
    y : (N,) int64 ndarray
    class_names : tuple of str
        Subfolder names in sorted order; label ``k`` is ``class_names[k]``.
    """
    from skimage.io import imread
    from skimage.transform import resize
    from skimage.util import img_as_float32

    path = Path(root).expanduser()
    tried = [path]
    if not path.is_dir() and not path.is_absolute() and os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR]).expanduser() / path
        tried.append(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"read_image_folder: no folder at {', '.join(str(t) for t in tried)}; expected "
            f"one subfolder per class holding {'/'.join(IMAGE_EXTENSIONS)} files")
    class_dirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for label, d in enumerate(class_dirs):
        for f in sorted(d.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
                labels.append(label)
    if not files:
        raise FileNotFoundError(
            f"read_image_folder: no {'/'.join(IMAGE_EXTENSIONS)} files in subfolders of "
            f"{path}; expected one subfolder per class")
    if size is not None:
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            size = (int(size), int(size))
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in size)):
            raise ValueError(f"size must be a positive int or a pair of them, got {size!r}")
    images = []
    for f in files:
        im = img_as_float32(imread(f))
        if im.ndim == 3 and im.shape[2] == 4:
            im = im[..., :3]
        if im.ndim == 2:
            im = im[..., None]  # (H, W, 1)
        if size is not None:
            im = resize(im, (*size, im.shape[2]), order=1, anti_aliasing=True)
        images.append(im)
    shapes = {im.shape[:2] for im in images}
    if len(shapes) > 1:
        examples = {}
        for f, im in zip(files, images):
            examples.setdefault(im.shape[:2], f)
        listing = "; ".join(f"{s} e.g. {f}" for s, f in examples.items())
        raise ValueError(f"read_image_folder: images have different sizes ({listing}); "
                         f"pass size=... to resize them")
    channels = 3 if any(im.shape[2] == 3 for im in images) else 1
    x = np.stack([np.repeat(im, channels, axis=2) if im.shape[2] != channels else im
                  for im in images])  # (N, H, W, C)
    x = np.ascontiguousarray(np.clip(x, 0, 1).transpose(0, 3, 1, 2), dtype=np.float32)
    return x, np.asarray(labels, dtype=np.int64), tuple(d.name for d in class_dirs)
