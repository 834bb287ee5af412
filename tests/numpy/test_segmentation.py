"""Tests of cnnlib.numpy.segmentation: pixel accuracy, IoU per class, mean IoU.

Worked examples counted by hand; scikit-learn's ``confusion_matrix``, ``accuracy_score``
and ``jaccard_score`` as the second, independent oracle on masks drawn by hypothesis;
a pixel-by-pixel loop over the sets of the definition as a third; and planted bugs
(IoU divided by the true area only, a union that counts the overlap twice, a mean that
counts absent classes as 0) that the oracle comparison must reject.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, jaccard_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from cnnlib.numpy import iou_per_class, mean_iou, pixel_accuracy, segmentation_confusion

# A 3x4 worked example with three classes (0 background, 1 and 2 objects).
TARGET = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 0, 0]])
PRED = np.array([[0, 1, 1, 1],
                 [0, 0, 1, 0],
                 [2, 0, 0, 0]])


def test_worked_example():
    # true\pred    0  1  2
    #   0 (6 px)   5  1  0     the pixel (0, 1) is called 1
    #   1 (4 px)   1  3  0     the pixel (1, 3) is called 0
    #   2 (2 px)   1  0  1     the pixel (2, 1) is called 0
    cm = segmentation_confusion(PRED, TARGET, num_classes=3)
    np.testing.assert_array_equal(cm, [[5, 1, 0], [1, 3, 0], [1, 0, 1]])
    assert cm.dtype == np.int64
    assert pixel_accuracy(PRED, TARGET) == pytest.approx(9 / 12)
    # class 0: 5 shared; predicted 7, true 6: union 7 + 6 - 5 = 8
    # class 1: 3 shared; predicted 4, true 4: union 5
    # class 2: 1 shared; predicted 1, true 2: union 2
    np.testing.assert_allclose(iou_per_class(PRED, TARGET, num_classes=3), [5 / 8, 3 / 5, 1 / 2])
    assert mean_iou(PRED, TARGET, num_classes=3) == pytest.approx((5 / 8 + 3 / 5 + 1 / 2) / 3)


def test_perfect_and_all_background_predictions():
    assert pixel_accuracy(TARGET, TARGET) == 1.0
    np.testing.assert_array_equal(iou_per_class(TARGET, TARGET, num_classes=3), [1, 1, 1])
    # "background everywhere" scores the background's share in accuracy, but 0 IoU on
    # every object class: why segmentation is reported with IoU.
    zeros = np.zeros_like(TARGET)
    assert pixel_accuracy(zeros, TARGET) == pytest.approx(6 / 12)
    np.testing.assert_allclose(iou_per_class(zeros, TARGET, num_classes=3), [6 / 12, 0, 0])


def test_absent_class_is_nan_and_left_out_of_the_mean():
    # class 3 is neither true nor predicted anywhere: 0/0
    ious = iou_per_class(PRED, TARGET, num_classes=4)
    assert np.isnan(ious[3])
    np.testing.assert_allclose(ious[:3], [5 / 8, 3 / 5, 1 / 2])
    assert mean_iou(PRED, TARGET, num_classes=4) == pytest.approx(np.mean(ious[:3]))
    # a class predicted but absent has IoU 0, not NaN: the false positives count
    pred = PRED.copy()
    pred[0, 0] = 3
    assert iou_per_class(pred, TARGET, num_classes=4)[3] == 0.0


def test_ignore_index_leaves_pixels_out():
    target = TARGET.copy()
    target[0, 1] = 255  # the one background pixel called 1 is now "don't care"
    cm = segmentation_confusion(PRED, target, num_classes=3, ignore_index=255)
    np.testing.assert_array_equal(cm, [[5, 0, 0], [1, 3, 0], [1, 0, 1]])
    assert pixel_accuracy(PRED, target, ignore_index=255) == pytest.approx(9 / 11)
    np.testing.assert_allclose(iou_per_class(PRED, target, num_classes=3, ignore_index=255),
                               [5 / 7, 3 / 4, 1 / 2])
    everything_ignored = np.full_like(TARGET, 255)
    with pytest.raises(ValueError, match="nothing to score"):
        pixel_accuracy(PRED, everything_ignored, ignore_index=255)
    assert np.isnan(mean_iou(PRED, everything_ignored, num_classes=3, ignore_index=255))


def test_batch_counts_pixels_over_all_images():
    # two images: a perfect one and the worked example; the measures pool the pixels
    pred = np.stack([TARGET, PRED])
    target = np.stack([TARGET, TARGET])
    assert pixel_accuracy(pred, target) == pytest.approx((12 + 9) / 24)
    cm = segmentation_confusion(pred, target, num_classes=3)
    np.testing.assert_array_equal(cm, np.diag([6, 4, 2]) + [[5, 1, 0], [1, 3, 0], [1, 0, 1]])


# --- second oracle: scikit-learn, and the definition pixel by pixel ---------------------

masks = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 5),
                  st.integers(0, 2**32 - 1))


def draw(n, h, w, k, seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, k, size=(n, h, w))
    # mostly right, like a trained network, so the IoUs are spread over (0, 1)
    pred = np.where(rng.random((n, h, w)) < 0.6, target, rng.integers(0, k, size=(n, h, w)))
    return pred, target


def iou_by_sets(pred, target, k):
    """IoU of every class from the definition, with Python sets of pixel positions."""
    out = []
    for c in range(k):
        p = {i for i, v in enumerate(pred.ravel()) if v == c}
        t = {i for i, v in enumerate(target.ravel()) if v == c}
        out.append(len(p & t) / len(p | t) if p | t else np.nan)
    return np.array(out)


def agrees_with_sklearn(iou_fn, mean_fn, pred, target, k) -> bool:
    """Do an IoU-per-class and a mean-IoU function match scikit-learn on these masks?"""
    labels = np.arange(k)
    present = np.isin(labels, np.union1d(pred, target))
    ref = jaccard_score(target.ravel(), pred.ravel(), labels=labels[present], average=None)
    ious = iou_fn(pred, target, num_classes=k)
    return (np.allclose(ious[present], ref) and bool(np.all(np.isnan(ious[~present])))
            and np.isclose(mean_fn(pred, target, num_classes=k), ref.mean()))


@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=60, deadline=None)
@given(masks)
def test_matches_sklearn(case):
    n, h, w, k, seed = case
    pred, target = draw(n, h, w, k, seed)
    np.testing.assert_array_equal(
        segmentation_confusion(pred, target, num_classes=k),
        sk_confusion_matrix(target.ravel(), pred.ravel(), labels=np.arange(k)))
    assert pixel_accuracy(pred, target) == pytest.approx(accuracy_score(target.ravel(),
                                                                        pred.ravel()))
    assert agrees_with_sklearn(iou_per_class, mean_iou, pred, target, k)


@settings(max_examples=30, deadline=None)
@given(masks)
def test_matches_the_definition_with_sets(case):
    n, h, w, k, seed = case
    pred, target = draw(n, h, w, k, seed)
    np.testing.assert_allclose(iou_per_class(pred, target, num_classes=k),
                               iou_by_sets(pred, target, k), equal_nan=True)


def test_any_integer_dtype_and_a_single_image():
    pred, target = draw(1, 6, 7, 3, 0)
    ref = iou_per_class(pred, target, num_classes=3)
    np.testing.assert_array_equal(
        iou_per_class(pred[0].astype(np.uint8), target[0].astype(np.int16), num_classes=3), ref)


# --- planted bugs: the oracle comparison must reject each of them ----------------------

def iou_over_true_area(pred, target, *, num_classes):
    """Bug: divides by the true region only (that is recall, not IoU)."""
    cm = segmentation_confusion(pred, target, num_classes=num_classes).astype(float)
    return np.diag(cm) / cm.sum(axis=1)


def iou_overlap_counted_twice(pred, target, *, num_classes):
    """Bug: the union forgets to subtract the intersection."""
    cm = segmentation_confusion(pred, target, num_classes=num_classes).astype(float)
    return np.diag(cm) / (cm.sum(axis=0) + cm.sum(axis=1))


def mean_counting_absent_as_zero(pred, target, *, num_classes):
    """Bug: a class that never occurs counts as IoU 0 in the mean."""
    return float(np.nan_to_num(iou_per_class(pred, target, num_classes=num_classes)).mean())


@pytest.mark.filterwarnings("ignore:A single label was found")
@pytest.mark.parametrize("bug", ["recall", "union", "mean"])
def test_planted_bugs_are_caught(bug):
    pred, target = draw(2, 8, 8, 3, 0)
    target[target == 2] = 0  # class 2 absent from the truth ...
    pred[pred == 2] = 0      # ... and from the prediction
    assert agrees_with_sklearn(iou_per_class, mean_iou, pred, target, 3)
    iou_fn, mean_fn = {"recall": (iou_over_true_area, mean_iou),
                       "union": (iou_overlap_counted_twice, mean_iou),
                       "mean": (iou_per_class, mean_counting_absent_as_zero)}[bug]
    with np.errstate(invalid="ignore", divide="ignore"):
        assert not agrees_with_sklearn(iou_fn, mean_fn, pred, target, 3)


# --- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize(("pred", "target", "num_classes", "error", "match"), [
    (PRED.astype(float), TARGET, 3, TypeError, "integer class indices"),
    (PRED, TARGET.astype(bool), 3, TypeError, "integer class indices"),
    (PRED.tolist(), TARGET, 3, TypeError, "numpy.ndarray"),
    (PRED[:2], TARGET, 3, ValueError, r"shape \(2, 4\) but target has shape \(3, 4\)"),
    (PRED[:0], TARGET[:0], 3, ValueError, "empty"),
    # label ranges need num_classes, which pixel_accuracy does not take
    (PRED, TARGET, 2, ValueError, r"outside \[0, 2\)"),
    (PRED - 1, TARGET, 3, ValueError, r"labels from -1"),
    (PRED, TARGET, 0, ValueError, "num_classes"),
])
def test_bad_inputs(pred, target, num_classes, error, match):
    for fn in (iou_per_class, mean_iou, segmentation_confusion):
        with pytest.raises(error, match=match):
            fn(pred, target, num_classes=num_classes)
    if "num_classes" not in match and "labels" not in match and "outside" not in match:
        with pytest.raises(error, match=match):
            pixel_accuracy(pred, target)
