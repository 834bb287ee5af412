"""Tests of cnnlib.numpy.boxes: IoU and NMS against plain-Python references.

torchvision is not available, so the second oracle is a loop written from the
definitions, one box pair at a time.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlib.numpy import iou, nms


def iou_reference(a, b):
    """IoU of two (x1, y1, x2, y2) boxes, straight from the definition."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms_reference(boxes, scores, threshold):
    """Greedy NMS: repeatedly take the best remaining box and drop its overlaps."""
    remaining = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep = []
    while remaining:
        best = remaining.pop(0)
        keep.append(best)
        remaining = [i for i in remaining if iou_reference(boxes[best], boxes[i]) <= threshold]
    return keep


def random_boxes(rng, n, *, integer=False):
    xy = rng.uniform(0, 10, (n, 2))
    wh = rng.uniform(0, 6, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)  # (n, 4)
    return np.round(boxes) if integer else boxes


# --- worked examples -------------------------------------------------------------------

def test_iou_worked_examples():
    a = np.array([0.0, 0.0, 2.0, 2.0])
    # half-overlapping: intersection 1x2 = 2, union 4 + 4 - 2 = 6
    assert iou(a, np.array([1.0, 0.0, 3.0, 2.0])) == pytest.approx(1 / 3)
    # a 1x1 box inside a 2x2 box: 1 / 4
    assert iou(a, np.array([0.5, 0.5, 1.5, 1.5])) == pytest.approx(0.25)
    # touching at an edge or disjoint: 0; identical: 1
    assert iou(a, np.array([2.0, 0.0, 4.0, 2.0])) == 0.0
    assert iou(a, np.array([5.0, 5.0, 6.0, 6.0])) == 0.0
    assert iou(a, a) == 1.0
    # corner overlap: intersection 1, union 4 + 9 - 1 = 12
    assert iou(a, np.array([1.0, 1.0, 4.0, 4.0])) == pytest.approx(1 / 12)


def test_iou_shapes():
    a = random_boxes(np.random.default_rng(0), 3)
    b = random_boxes(np.random.default_rng(1), 5)
    assert iou(a, b).shape == (3, 5)
    assert iou(a[0], b).shape == (5,)
    assert iou(a, b[0]).shape == (3,)
    assert iou(a[0], b[0]).shape == ()
    assert iou(a[:0], b).shape == (0, 5)
    np.testing.assert_array_equal(iou(a[0], b), iou(a, b)[0])


def test_iou_of_zero_area_boxes_is_zero():
    point = np.array([1.0, 1.0, 1.0, 1.0])
    line = np.array([0.0, 1.0, 3.0, 1.0])
    assert iou(point, point) == 0.0
    assert iou(point, line) == 0.0
    assert iou(point, np.array([0.0, 0.0, 2.0, 2.0])) == 0.0


def test_nms_worked_example():
    boxes = np.array([
        [0.0, 0.0, 10.0, 10.0],    # 0: score 0.9, the best: kept
        [1.0, 1.0, 11.0, 11.0],    # 1: 0.85, IoU with 0 is 81/119 = 0.68: suppressed
        [20.0, 20.0, 30.0, 30.0],  # 2: 0.7, IoU with 4 is 90/110 = 0.82: suppressed by 4
        [0.0, 0.0, 10.0, 5.0],     # 3: 0.3, IoU with 0 is 50/100 = 0.5, not > 0.5: kept
        [21.0, 20.0, 31.0, 30.0],  # 4: 0.8, overlaps nothing better: kept
    ])
    scores = np.array([0.9, 0.85, 0.7, 0.3, 0.8])
    np.testing.assert_array_equal(nms(boxes, scores, iou_threshold=0.5), [0, 4, 3])
    # at threshold 0.4 box 3 is suppressed too
    np.testing.assert_array_equal(nms(boxes, scores, iou_threshold=0.4), [0, 4])
    # threshold 1 suppresses nothing: every index, by decreasing score
    np.testing.assert_array_equal(nms(boxes, scores, iou_threshold=1.0), [0, 1, 4, 2, 3])


def test_nms_suppressed_box_cannot_suppress():
    # A overlaps B, B overlaps C, A does not overlap C: B is suppressed by A, so C stays
    boxes = np.array([[0.0, 0, 4, 4], [2.0, 0, 6, 4], [4.5, 0, 8.5, 4]])
    scores = np.array([0.9, 0.8, 0.7])
    np.testing.assert_array_equal(nms(boxes, scores, iou_threshold=0.2), [0, 2])


def test_nms_ties_keep_the_original_order_and_empty_input():
    boxes = np.array([[0.0, 0, 1, 1], [5.0, 5, 6, 6], [10.0, 10, 11, 11]])
    np.testing.assert_array_equal(nms(boxes, np.array([0.5, 0.7, 0.5])), [1, 0, 2])
    keep = nms(np.zeros((0, 4)), np.zeros(0))
    assert keep.shape == (0,) and keep.dtype == np.int64


# --- against the plain-Python references -----------------------------------------------

@settings(max_examples=40)
@given(n=st.integers(1, 8), m=st.integers(1, 8), integer=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_iou_matches_reference(n, m, integer, seed):
    rng = np.random.default_rng(seed)
    a = random_boxes(rng, n, integer=integer)
    b = random_boxes(rng, m, integer=integer)
    if integer:
        a, b = a.astype(np.int64), b.astype(np.int64)
    got = iou(a, b)
    expected = [[iou_reference(a[i].tolist(), b[j].tolist()) for j in range(m)]
                for i in range(n)]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(iou(b, a), got.T, rtol=1e-12, atol=1e-15)
    assert np.all((got >= 0) & (got <= 1))


@settings(max_examples=40)
@given(n=st.integers(0, 30), threshold=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0]),
       ties=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_nms_matches_reference(n, threshold, ties, seed):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, n)
    # with ties, scores come from few values, so the tie-break is exercised
    scores = rng.integers(0, 3, n).astype(float) if ties else rng.uniform(0, 1, n)
    keep = nms(boxes, scores, iou_threshold=threshold)
    expected = nms_reference(boxes.tolist(), scores.tolist(), threshold)
    assert keep.dtype == np.int64
    np.testing.assert_array_equal(keep, expected)


def test_float32_boxes_give_float32_iou():
    a = np.array([[0, 0, 2, 2]], dtype=np.float32)
    assert iou(a, a).dtype == np.float32
    np.testing.assert_array_equal(nms(a, np.array([1.0], dtype=np.float32)), [0])


def test_inputs_are_not_modified():
    rng = np.random.default_rng(3)
    boxes, scores = random_boxes(rng, 10), rng.uniform(size=10)
    before = boxes.copy(), scores.copy()
    nms(boxes, scores)
    iou(boxes, boxes)
    np.testing.assert_array_equal(boxes, before[0])
    np.testing.assert_array_equal(scores, before[1])


# --- bad input -------------------------------------------------------------------------

def test_bad_inputs():
    good = np.array([[0.0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"boxes_a must have shape \(4,\) or \(N, 4\).*\(2, 3\)"):
        iou(np.zeros((2, 3)), good)
    with pytest.raises(ValueError, match=r"boxes_b must have shape.*\(1, 1, 4\)"):
        iou(good, np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match="x2 < x1.*not \\(x, y, width, height\\)"):
        iou(good, np.array([2.0, 2, 1, 3]))
    with pytest.raises(ValueError, match="boxes_a contains NaN"):
        iou(np.array([0.0, 0, np.nan, 1]), good)
    with pytest.raises(TypeError, match="boxes_a must hold real numbers.*bool"):
        iou(np.ones((1, 4), dtype=bool), good)
    with pytest.raises(TypeError, match="boxes_b must be a numpy.ndarray"):
        iou(good, [0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\).*\(4,\)"):
        nms(good[0], np.array([1.0]))
    with pytest.raises(ValueError, match=r"scores has shape \(2,\).*\(1, 4\)"):
        nms(good, np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="scores must have a floating dtype"):
        nms(good, np.array([1]))
    with pytest.raises(ValueError, match="scores contains NaN"):
        nms(good, np.array([np.nan]))
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\]"):
        nms(good, np.array([1.0]), iou_threshold=1.5)
    with pytest.raises(TypeError, match="iou_threshold must be a real number"):
        nms(good, np.array([1.0]), iou_threshold=None)


# --- detection evaluation: matching, precision-recall, average precision ---------------

from cnnlib.numpy import average_precision, match_detections, precision_recall  # noqa: E402


def match_reference(boxes, scores, true_boxes, threshold):
    """Greedy VOC matching, one detection at a time, by decreasing score."""
    taken, flags = set(), [False] * len(boxes)
    for i in sorted(range(len(boxes)), key=lambda i: (-scores[i], i)):
        best, best_j = -1.0, None
        for j, t in enumerate(true_boxes):
            if j not in taken and iou_reference(boxes[i], t) > best:
                best, best_j = iou_reference(boxes[i], t), j
        if best_j is not None and best >= threshold:
            taken.add(best_j)
            flags[i] = True
    return flags


def ap_reference(precision, recall, interpolation):
    """AP straight from the definition of the interpolated precision."""
    def interp(r):
        return max([p for p, rc in zip(precision, recall) if rc >= r], default=0.0)

    if interpolation == "11point":
        return sum(interp(r / 10) for r in range(11)) / 11
    area, previous = 0.0, 0.0
    for rc in recall:
        area += (rc - previous) * interp(rc)
        previous = rc
    return area


def test_average_precision_worked_example():
    # five detections by decreasing score: hit, miss, hit, miss, hit; four objects
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    is_match = np.array([True, False, True, False, True])
    precision, recall = precision_recall(scores, is_match, 4)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(recall, [0.25, 0.25, 0.5, 0.5, 0.75])
    # envelope 1, 2/3, 2/3, 3/5, 3/5 over recall steps of 1/4: (1 + 2/3 + 3/5) / 4
    assert average_precision(precision, recall) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)
    # recall 0, .1, .2 -> 1; .3, .4, .5 -> 2/3; .6, .7 -> 3/5; .8, .9, 1 -> 0 (never reached)
    assert average_precision(precision, recall, interpolation="11point") == pytest.approx(
        (3 * 1 + 3 * 2 / 3 + 2 * 3 / 5) / 11)


def test_perfect_and_useless_detectors():
    scores = np.array([0.9, 0.5, 0.1])
    p, r = precision_recall(scores, np.array([True, True, True]), 3)
    assert average_precision(p, r) == 1.0
    assert average_precision(p, r, interpolation="11point") == pytest.approx(1.0)
    p, r = precision_recall(scores, np.array([False, False, False]), 3)
    assert average_precision(p, r) == 0.0
    # the order of the detections in the arrays does not matter, only their scores
    p1, r1 = precision_recall(np.array([0.1, 0.9, 0.5]), np.array([False, True, True]), 2)
    p2, r2 = precision_recall(np.array([0.9, 0.5, 0.1]), np.array([True, True, False]), 2)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(r1, r2)


def test_match_detections_worked_example():
    truth = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    boxes = np.array([[1.0, 1.0, 10.0, 10.0],     # object 0, IoU 0.81
                      [0.0, 0.0, 9.0, 10.0],      # object 0 again: a duplicate, false
                      [20.0, 20.0, 24.0, 24.0],   # object 1 but IoU 0.16: false
                      [50.0, 50.0, 60.0, 60.0]])  # nothing there: false
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    np.testing.assert_array_equal(match_detections(boxes, scores, truth),
                                  [True, False, False, False])
    # with the duplicate scored higher, it takes object 0 and the other becomes the duplicate
    np.testing.assert_array_equal(
        match_detections(boxes, np.array([0.8, 0.9, 0.7, 0.6]), truth),
        [False, True, False, False])
    assert match_detections(boxes, scores, np.zeros((0, 4))).tolist() == [False] * 4


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 12), m=st.integers(0, 6), threshold=st.sampled_from([0.1, 0.3, 0.5]),
       seed=st.integers(0, 2**31 - 1))
def test_match_detections_matches_reference(n, m, threshold, seed):
    rng = np.random.default_rng(seed)
    boxes, truth = random_boxes(rng, n), random_boxes(rng, m)
    scores = rng.permutation(n).astype(float)  # distinct scores: one greedy order
    flags = match_detections(boxes, scores, truth, iou_threshold=threshold)
    assert flags.tolist() == match_reference(boxes, scores, truth, threshold)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 15), extra=st.integers(0, 5),
       interpolation=st.sampled_from(["all", "11point"]), seed=st.integers(0, 2**31 - 1))
def test_average_precision_matches_reference(n, extra, interpolation, seed):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=n)
    is_match = rng.uniform(size=n) < 0.5
    n_true = max(1, int(is_match.sum()) + extra)
    p, r = precision_recall(scores, is_match, n_true)
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_match[order])
    np.testing.assert_allclose(p, tp / np.arange(1, n + 1))
    np.testing.assert_allclose(r, tp / n_true)
    assert average_precision(p, r, interpolation=interpolation) == pytest.approx(
        ap_reference(p.tolist(), r.tolist(), interpolation))


def test_all_point_ap_is_at_least_the_uninterpolated_sum():
    # scikit-learn's average_precision_score is the uninterpolated sum of P_n (R_n - R_n-1)
    # over the detections when every object is detected; interpolation can only raise it
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.uniform(size=12)
        y = rng.uniform(size=12) < 0.5
        if not y.any():
            continue
        p, r = precision_recall(scores, y, int(y.sum()))
        ours = average_precision(p, r)
        assert ours >= average_precision_score(y, scores) - 1e-12
    # with a non-increasing curve there is nothing to interpolate: the two agree
    y = np.array([True, True, False, True, False, False])
    scores = np.linspace(1, 0.1, 6)
    p, r = precision_recall(scores, y, 3)
    assert average_precision(p, r) == pytest.approx(average_precision_score(y, scores))


def test_detection_evaluation_bad_inputs():
    s = np.array([0.9, 0.5])
    with pytest.raises(ValueError, match="n_true"):
        precision_recall(s, np.array([True, True]), 1)
    with pytest.raises(TypeError, match="is_match"):
        precision_recall(s, np.array([1, 0]), 2)
    with pytest.raises(ValueError, match="is_match has shape"):
        precision_recall(s, np.array([True]), 2)
    with pytest.raises(ValueError, match="recall must be non-decreasing"):
        average_precision(np.array([1.0, 1.0]), np.array([0.5, 0.2]))
    with pytest.raises(ValueError, match="interpolation"):
        average_precision(np.array([1.0]), np.array([0.5]), interpolation="101")
    with pytest.raises(ValueError, match="scores has shape"):
        match_detections(np.zeros((2, 4)), np.array([0.5]), np.zeros((1, 4)))
