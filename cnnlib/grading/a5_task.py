"""The target task of Assignment 5 as the grader draws it: new images in any number.

Grader-side only. A notebook gets the few labelled images it may train on as arrays
(:func:`cnnlib.grading.a5.target_data`); the hidden checks draw new ones here, in the
grading process, with seeds that live in the hidden test cells. A notebook that imports
this module breaks the assignment's rule on training data.
"""

from __future__ import annotations

import numpy as np

from .a5 import IMAGE_SIZE


def target_images(n, seed):
    """The target task: ``n`` shapes (circle, square, triangle, cross) as grey images.

    Drawn by :func:`cnnlib.data.make_shapes` at 16x16 and reduced to one channel that
    holds each pixel's contrast with the background (the median of the border), stretched
    to [0, 1]: every shape is bright on a dark background, as the digits' strokes are,
    whatever its colours were.

    Returns
    -------
    x : (n, 1, 16, 16) float32 ndarray in [0, 1]
    y : (n,) int64 ndarray
        Index into :data:`cnnlib.grading.a5.SHAPE_CLASSES`; classes are balanced.
    """
    from cnnlib.data import make_shapes

    x, y = make_shapes(n, size=IMAGE_SIZE, seed=seed)
    x = x.mean(axis=1, keepdims=True)  # (n, 3, 16, 16) -> (n, 1, 16, 16)
    border = np.concatenate([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]],
                            axis=2)  # (n, 1, 64)
    x = np.abs(x - np.median(border, axis=2)[..., None, None])
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    hi = x.max(axis=(1, 2, 3), keepdims=True)
    return ((x - lo) / (hi - lo + 1e-6)).astype(np.float32), y
