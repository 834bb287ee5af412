"""Bounding boxes for object detection: IoU, non-maximum suppression, average precision.

Chapter 13 (applications: object detection basics) teaches these.

Boxes are ``(x1, y1, x2, y2)`` corners with ``x1 <= x2`` and ``y1 <= y2``, torchvision's
format; the area of a box is ``(x2 - x1) * (y2 - y1)`` (continuous coordinates, no
``+ 1`` pixel convention).
"""

from __future__ import annotations

import numpy as np

from ._utils import as_int, as_real, check_array, shape_str

__all__ = ["average_precision", "iou", "match_detections", "nms", "precision_recall"]


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


def _check_scores(scores, boxes: np.ndarray) -> None:
    """One finite score per box."""
    check_array(scores, "scores", finite=True)
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores has shape {shape_str(scores)} but boxes has shape "
                         f"{shape_str(boxes)}; scores must have shape ({boxes.shape[0]},)")


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
    _check_scores(scores, boxes)
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


def match_detections(boxes, scores, true_boxes, *, iou_threshold=0.5):
    """Mark each detection of one class and one image as a true or a false positive.

    Detections are taken by decreasing score; each is matched to the unmatched true box
    it overlaps most, and is a true positive when that IoU is at least
    ``iou_threshold``. A true box is matched at most once, so a second detection of the
    same object is a false positive (the PASCAL VOC rule).

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
        Detected ``(x1, y1, x2, y2)`` boxes.
    scores : ndarray, shape (N,), floating dtype
        Their confidences.
    true_boxes : ndarray, shape (M, 4)
        The objects' boxes (M may be 0).
    iou_threshold : float in [0, 1]

    Returns
    -------
    ndarray of bool, shape (N,)
        ``True`` for a true positive, in the order of ``boxes``.

    Notes
    -----
    Chapter 13 computes a precision-recall curve from these flags
    (:func:`precision_recall`) and its area (:func:`average_precision`).
    """
    boxes = _check_boxes(boxes, "boxes", (2,))
    true_boxes = _check_boxes(true_boxes, "true_boxes", (2,))
    _check_scores(scores, boxes)
    thr = as_real(iou_threshold, "iou_threshold", low=0.0, high=1.0)
    is_match = np.zeros(len(boxes), dtype=bool)
    if len(boxes) == 0 or len(true_boxes) == 0:
        return is_match
    overlaps = _iou_matrix(boxes, true_boxes)  # (N, M)
    taken = np.zeros(len(true_boxes), dtype=bool)
    for i in np.argsort(-scores, kind="stable"):
        candidates = np.where(taken, -1.0, overlaps[i])  # (M,), matched boxes are out
        j = int(np.argmax(candidates))
        if candidates[j] >= thr:
            taken[j] = True
            is_match[i] = True
    return is_match


def precision_recall(scores, is_match, n_true):
    """Precision and recall after each detection, by decreasing score.

    Parameters
    ----------
    scores : ndarray, shape (N,), floating dtype
        Confidences of all detections of one class (over all images).
    is_match : ndarray of bool, shape (N,)
        Which detections are true positives (:func:`match_detections`).
    n_true : int
        Number of true objects of the class, detected or not.

    Returns
    -------
    precision, recall : ndarray of float64, shape (N,)
        After keeping the ``n`` most confident detections: ``TP / n`` and
        ``TP / n_true``. Equal scores keep their original order (a stable sort).
    """
    check_array(scores, "scores", ndim=1, finite=True)
    if not isinstance(is_match, np.ndarray) or is_match.dtype != bool:
        raise TypeError(f"is_match must be a boolean numpy.ndarray, got "
                        f"{getattr(is_match, 'dtype', type(is_match).__name__)}")
    if is_match.shape != scores.shape:
        raise ValueError(f"is_match has shape {shape_str(is_match)} but scores has shape "
                         f"{shape_str(scores)}; they must match")
    n_true = as_int(n_true, "n_true", minimum=1)
    if is_match.sum() > n_true:
        raise ValueError(f"is_match has {int(is_match.sum())} true positives but n_true is "
                         f"{n_true}; an object can be matched only once")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_match[order])  # (N,) true positives among the first n
    n = np.arange(1, len(scores) + 1)
    return tp / n, tp / n_true


def average_precision(precision, recall, *, interpolation="all"):
    """Area under a precision-recall curve, with PASCAL VOC's interpolated precision.

    The interpolated precision at recall ``r`` is the best precision at any recall
    ``>= r``, which makes the curve non-increasing (a detector can always stop at the
    better operating point further on).

    Parameters
    ----------
    precision, recall : ndarray, shape (N,)
        As :func:`precision_recall` returns them (recall non-decreasing).
    interpolation : {"all", "11point"}
        ``"all"``: the exact area under the interpolated curve (VOC 2010 and later,
        and COCO's per-threshold AP up to its 101-point sampling). ``"11point"``: the
        mean of the interpolated precision at recall 0, 0.1, ..., 1 (VOC 2007).

    Returns
    -------
    float
        Average precision in [0, 1]; mAP is its mean over the classes.
    """
    precision = check_array(precision, "precision", ndim=1, finite=True)
    recall = check_array(recall, "recall", ndim=1, finite=True)
    if precision.shape != recall.shape:
        raise ValueError(f"precision has shape {shape_str(precision)} but recall has shape "
                         f"{shape_str(recall)}; they must match")
    if np.any(np.diff(recall) < 0):
        raise ValueError("recall must be non-decreasing (detections by decreasing score)")
    if interpolation not in ("all", "11point"):
        raise ValueError(f"interpolation must be 'all' or '11point', got {interpolation!r}")
    if len(recall) == 0:
        return 0.0
    # envelope[i] = max(precision[i:]): the interpolated precision at recall[i]
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # (N,)
    if interpolation == "11point":
        levels = np.arange(11) / 10  # 0.3 is 3 / 10 exactly as a recall of 3 / 10 is
        first = np.searchsorted(recall, levels, side="left")  # first point with recall >= r
        reached = first < len(recall)
        return float(np.where(reached, envelope[np.minimum(first, len(recall) - 1)], 0.0)
                     .mean())
    steps = np.diff(np.concatenate([[0.0], recall]))  # (N,) recall gained at each point
    return float(np.sum(steps * envelope))
