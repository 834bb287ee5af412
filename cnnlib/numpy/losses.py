"""Loss functions that return their gradient with the value.

Chapter 5 (the classifier head) teaches softmax cross-entropy; chapter 7 trains with it.
"""

from __future__ import annotations

import numpy as np

from ._utils import check_array, shape_str

__all__ = ["softmax_cross_entropy"]


def softmax_cross_entropy(scores, y):
    """Mean cross-entropy of the softmax of ``scores`` against integer labels ``y``.

    Parameters
    ----------
    scores : ndarray, shape (N, C), floating dtype
        Unnormalized class scores (logits), one row per sample.
    y : ndarray, shape (N,), integer dtype
        The correct class of each sample, in ``0 .. C-1``.

    Returns
    -------
    loss : numpy floating scalar, of the dtype of ``scores``
        ``mean_i( -log softmax(scores_i)[y_i] )``, as ``F.cross_entropy`` computes it.
    dscores : ndarray, shape (N, C)
        Gradient of ``loss``: ``(softmax(scores) - onehot(y)) / N``.

    Notes
    -----
    Chapter 5. The log-softmax is computed as ``s - max(s) - log(sum(exp(s - max(s))))``,
    which never overflows and never takes the log of 0, so a confidently wrong
    prediction gives a large finite loss instead of ``inf`` or ``nan``.
    """
    check_array(scores, "scores", ndim=2)
    if not isinstance(y, np.ndarray):
        raise TypeError(f"y must be a numpy.ndarray of integer labels, got {type(y).__name__}")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must have an integer dtype (class indices), got {y.dtype}; "
                        f"convert with y.astype(int) if the values are whole numbers")
    n, c = scores.shape
    if y.shape != (n,):
        raise ValueError(f"y has shape {shape_str(y)} but scores has shape {shape_str(scores)}; "
                         f"y must have shape ({n},), one label per row of scores")
    if n == 0 or c == 0:
        raise ValueError(f"scores must have at least one row and one class, got shape "
                         f"{shape_str(scores)}")
    if np.any(y < 0) or np.any(y >= c):
        bad = y[(y < 0) | (y >= c)][0]
        raise ValueError(f"y contains label {bad}, outside 0..{c - 1} for scores with shape "
                         f"{shape_str(scores)}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores contains NaN or infinity (shape {shape_str(scores)})")

    shifted = scores - scores.max(axis=1, keepdims=True)  # (N, C), every entry <= 0
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)  # (N, 1), >= 1 since the max term is exp(0)
    rows = np.arange(n)
    log_p_true = shifted[rows, y] - np.log(sum_exp[:, 0])  # (N,)
    loss = -log_p_true.mean()
    dscores = exp / sum_exp
    dscores[rows, y] -= scores.dtype.type(1)
    dscores /= scores.dtype.type(n)
    return scores.dtype.type(loss), dscores
