"""Bounding boxes for object detection: intersection over union and non-maximum suppression.

Chapter 13 (applications: object detection basics) teaches these.

Boxes are ``(x1, y1, x2, y2)`` corners with ``x1 <= x2`` and ``y1 <= y2``, torchvision's
format; the area of a box is ``(x2 - x1) * (y2 - y1)`` (continuous coordinates, no
``+ 1`` pixel convention).
"""

from __future__ import annotations

import numpy as np

from ._utils import as_real, check_array, shape_str

__all__ = ["iou", "nms"]


def _check_boxes(boxes, name: str, ndim: tuple[int, ...]) -> np.ndarray:
    """Real-valued, finite (…, 4) corners with x1 <= x2 and y1 <= y2."""
    if not isinstance(boxes, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(boxes).__name__}")
    if boxes.dtype == bool or not (np.issubdtype(boxes.dtype, np.floating)
                                   or np.issubdtype(boxes.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers (a float or integer dtype), got "
                        f"{boxes.dtype} with shape {shape_str(boxes)}")
    if boxes.ndim not in ndim or boxes.shape[-1] != 4:
        want = " or ".join(["(4,)", "(N, 4)"][d - 1] for d in ndim)
        raise ValueError(f"{name} must have shape {want} with (x1, y1, x2, y2) corners, got "
                         f"shape {shape_str(boxes)}")
    if not np.all(np.isfinite(boxes)):
        raise ValueError(f"{name} contains NaN or infinity (shape {shape_str(boxes)})")
    if np.any(boxes[..., 2] < boxes[..., 0]) or np.any(boxes[..., 3] < boxes[..., 1]):
        raise ValueError(f"{name} has a box with x2 < x1 or y2 < y1; boxes are (x1, y1, x2, y2) "
                         f"corners, not (x, y, width, height)")
    return boxes


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), shape (N, M)."""
    dt = np.result_type(a.dtype, b.dtype, np.float32)  # integer corners give float64 ratios
    a = a.astype(dt, copy=False)
    b = b.astype(dt, copy=False)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])  # (N,)
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # (M,)
    # the overlap of two boxes is the box between the larger top-left and smaller
    # bottom-right corners; it is empty when that box has negative width or height
    left_top = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    right_bottom = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = np.clip(right_bottom - left_top, 0, None)  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = area_a[:, None] + area_b[None, :] - inter  # (N, M)
    # two zero-area boxes have an empty union: call their IoU 0 rather than 0/0
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def iou(boxes_a, boxes_b):
    """Intersection over union of every box in ``boxes_a`` with every box in ``boxes_b``.

    Parameters
    ----------
    boxes_a : ndarray, shape (N, 4) or (4,)
    boxes_b : ndarray, shape (M, 4) or (4,)
        ``(x1, y1, x2, y2)`` corners, float or integer dtype.

    Returns
    -------
    ndarray, shape (N, M)
        ``area(a & b) / area(a | b)``, in [0, 1]. A single ``(4,)`` box drops its axis:
        ``(4,)`` with ``(M, 4)`` gives ``(M,)``, two single boxes give a 0-d array.
        Float inputs keep their dtype (float32 stays float32); integer corners give
        float64. Two boxes of zero area have IoU 0.

    Notes
    -----
    Chapter 13. IoU is 1 for identical boxes and 0 for disjoint ones; detection
    benchmarks count a prediction as correct when its IoU with a true box is at least
    0.5.
    """
    a = _check_boxes(boxes_a, "boxes_a", (1, 2))
    b = _check_boxes(boxes_b, "boxes_b", (1, 2))
    out = _iou_matrix(a.reshape(-1, 4), b.reshape(-1, 4))  # (N, M)
    return out.reshape(a.shape[:-1] + b.shape[:-1])  # drop the axis of a single box


def nms(boxes, scores, *, iou_threshold=0.5):
    """Greedy non-maximum suppression: keep the best box, drop its overlaps, repeat.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
        ``(x1, y1, x2, y2)`` corners, float or integer dtype.
    scores : ndarray, shape (N,), floating dtype
        Confidence of each box.
    iou_threshold : float in [0, 1]
        A box is suppressed when its IoU with a kept, higher-scoring box is greater
        than this.

    Returns
    -------
    keep : ndarray of int64, shape (K,)
        Indices into ``boxes`` of the kept boxes, by decreasing score. Equal scores keep
        their original order (a stable sort).

    Notes
    -----
    Chapter 13. A detector proposes many overlapping boxes around each object; NMS
    keeps the most confident one per object. Boxes of different classes should be
    suppressed separately (call ``nms`` once per class).
    """
    boxes = _check_boxes(boxes, "boxes", (2,))
    check_array(scores, "scores", finite=True)
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores has shape {shape_str(scores)} but boxes has shape "
                         f"{shape_str(boxes)}; scores must have shape ({boxes.shape[0]},)")
    thr = as_real(iou_threshold, "iou_threshold", low=0.0, high=1.0)

    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]  # (N, 4), best first
    keep = []
    alive = np.ones(len(order), dtype=bool)
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        # only lower-scoring boxes that are still alive can be suppressed by box i
        rest = np.flatnonzero(alive[i + 1:]) + i + 1
        overlap = _iou_matrix(boxes[i:i + 1], boxes[rest])[0]  # (len(rest),)
        alive[rest[overlap > thr]] = False
    return order[np.array(keep, dtype=np.int64)].astype(np.int64)
