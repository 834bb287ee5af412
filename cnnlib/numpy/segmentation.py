"""Measures of a segmentation: pixel accuracy and intersection over union per class.

Chapter 14 (segmentation) teaches these.

A segmentation assigns a class to every pixel, so a prediction and its ground truth are
two integer masks of the same shape, ``(H, W)`` for one image or ``(N, H, W)`` for a
batch. Every measure counts pixels over the whole batch (the usual convention of
segmentation benchmarks such as PASCAL VOC), not image by image.
"""

from __future__ import annotations

import numpy as np

from ._utils import as_int, shape_str

__all__ = ["iou_per_class", "mean_iou", "pixel_accuracy", "segmentation_confusion"]


def _check_masks(pred, target, num_classes: int | None, ignore_index):
    """Integer masks of one shape, labels in [0, num_classes) except ``ignore_index``."""
    for name, mask in (("pred", pred), ("target", target)):
        if not isinstance(mask, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray of class indices, got "
                            f"{type(mask).__name__}")
        if mask.dtype == bool or not np.issubdtype(mask.dtype, np.integer):
            raise TypeError(f"{name} must hold integer class indices, got {mask.dtype} with "
                            f"shape {shape_str(mask)}; take the argmax over the class axis "
                            f"of the scores first")
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {shape_str(pred)} but target has shape "
                         f"{shape_str(target)}; they must be equal")
    if pred.size == 0:
        raise ValueError(f"pred and target are empty (shape {shape_str(pred)})")
    if ignore_index is not None:
        ignore_index = as_int(ignore_index, "ignore_index")
    keep = target != ignore_index if ignore_index is not None else np.ones(target.shape, bool)
    if num_classes is not None:
        num_classes = as_int(num_classes, "num_classes", minimum=1)
        for name, mask in (("pred", pred[keep]), ("target", target[keep])):
            if mask.size and (mask.min() < 0 or mask.max() >= num_classes):
                raise ValueError(f"{name} holds labels from {mask.min()} to {mask.max()}, "
                                 f"outside [0, {num_classes}) for num_classes={num_classes}")
    return keep, num_classes


def segmentation_confusion(pred, target, *, num_classes: int, ignore_index: int | None = None):
    """Pixel counts of every (true class, predicted class) pair.

    Parameters
    ----------
    pred : ndarray of int, shape (N, H, W) or any shape
        Predicted class of every pixel.
    target : ndarray of int, same shape as pred
        True class of every pixel.
    num_classes : int
        Labels run from 0 to ``num_classes - 1``.
    ignore_index : int, optional
        Pixels whose *target* is this label (PASCAL VOC marks object borders with 255)
        are left out of every count.

    Returns
    -------
    ndarray of int64, shape (num_classes, num_classes)
        ``cm[i, j]`` counts pixels of true class ``i`` predicted as ``j``, the same
        layout as :func:`cnnlib.viz.plot_confusion_matrix` expects.
    """
    keep, k = _check_masks(pred, target, num_classes, ignore_index)
    t, p = target[keep].astype(np.int64), pred[keep].astype(np.int64)  # (M,) kept pixels
    # each pixel's (true, predicted) pair as one index into the flattened k x k matrix
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def pixel_accuracy(pred, target, *, ignore_index: int | None = None) -> float:
    """Fraction of the pixels whose predicted class is the true one.

    Parameters
    ----------
    pred, target : ndarray of int, same shape
        Predicted and true class of every pixel.
    ignore_index : int, optional
        Pixels whose target is this label are not counted.

    Returns
    -------
    float
        In [0, 1]. Dominated by the most common class: a prediction of "background"
        everywhere scores the background's share of the pixels.
    """
    keep, _ = _check_masks(pred, target, None, ignore_index)
    n = int(keep.sum())
    if n == 0:
        raise ValueError(f"every pixel of target (shape {shape_str(target)}) is "
                         f"ignore_index={ignore_index}; there is nothing to score")
    return float(np.sum((pred == target) & keep) / n)


def iou_per_class(pred, target, *, num_classes: int, ignore_index: int | None = None):
    """Intersection over union of the predicted and the true region of every class.

    For class ``c``, with ``P`` the pixels predicted as ``c`` and ``T`` the pixels that
    are ``c``: ``IoU = |P & T| / |P | T|``. From the confusion matrix ``cm``
    (:func:`segmentation_confusion`) it is ``cm[c, c] / (row c + column c - cm[c, c])``,
    that is ``TP / (TP + FP + FN)``.

    Parameters
    ----------
    pred, target : ndarray of int, same shape
        Predicted and true class of every pixel.
    num_classes : int
        Labels run from 0 to ``num_classes - 1``.
    ignore_index : int, optional
        Pixels whose target is this label are not counted.

    Returns
    -------
    ndarray of float64, shape (num_classes,)
        NaN for a class that is neither predicted nor present: its IoU is 0/0, and it
        should count neither for nor against the prediction.
    """
    cm = segmentation_confusion(pred, target, num_classes=num_classes,
                                ignore_index=ignore_index).astype(np.float64)
    inter = np.diag(cm)  # (K,) true positives
    union = cm.sum(axis=0) + cm.sum(axis=1) - inter  # (K,) predicted + true - both
    out = np.full(len(inter), np.nan)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def mean_iou(pred, target, *, num_classes: int, ignore_index: int | None = None) -> float:
    """Mean of :func:`iou_per_class` over the classes that occur (mIoU).

    Every class weighs the same whatever its number of pixels, so, unlike pixel
    accuracy, a small class that is missed pulls the score down. Classes that are neither
    predicted nor present (NaN IoU) are left out of the mean; it is NaN only when no
    pixel is left to score.
    """
    ious = iou_per_class(pred, target, num_classes=num_classes, ignore_index=ignore_index)
    return float(np.nanmean(ious)) if not np.all(np.isnan(ious)) else float("nan")
