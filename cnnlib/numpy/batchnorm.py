"""Batch normalization over the channels of NCHW feature maps, and its folding into a conv.

Chapter 5 (the classifier head) teaches batch norm and, with ``fuse_conv_bn``, folding it
into the preceding conv.

Conventions
-----------
- ``batchnorm2d_forward`` returns ``(out, cache, new_running_mean, new_running_var)``:
  the running statistics are returned, never modified in place, so a forward pass has
  no hidden side effect (the one exception to the library's ``(out, cache)`` pair).
- ``batchnorm2d_backward(dout, cache)`` returns ``(dx, dgamma, dbeta)``, the gradients
  of the forward's array arguments that are learned; running statistics get none.
- All arrays must share one floating dtype, which the outputs keep.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._utils import as_real, check_array, check_bool, check_dout, check_same_dtype, shape_str

__all__ = ["batchnorm2d_forward", "batchnorm2d_backward", "fuse_conv_bn"]


class BatchNormCache(NamedTuple):
    x_hat: np.ndarray  # (N, C, H, W), the normalized input
    gamma: np.ndarray  # (C,)
    inv_std: np.ndarray  # (C,), 1 / sqrt(var + eps) of the statistics that were used
    training: bool


def _check_channel_vectors(c: int, ref: np.ndarray, ref_name: str, what: str,
                           **vectors) -> None:
    """Each per-channel vector must be finite, of shape (c,) and of ``ref``'s dtype.

    ``what`` names the c channels of ``ref`` in the error; ``running_var`` must also be
    non-negative.
    """
    for name, v in vectors.items():
        check_array(v, name, ndim=1, finite=True)
        if v.shape[0] != c:
            raise ValueError(f"{name} has shape {shape_str(v)} but {ref_name} has shape "
                             f"{shape_str(ref)} with {c} {what}; {name} must have shape ({c},)")
        check_same_dtype(v, name, ref, ref_name)
    if np.any(vectors["running_var"] < 0):
        raise ValueError(f"running_var must be non-negative (shape "
                         f"{shape_str(vectors['running_var'])})")


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, *, training,
                        momentum=0.1, eps=1e-5):
    """Normalize each channel, then scale by ``gamma`` and shift by ``beta``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    gamma, beta : ndarray, shape (C,)
        Learned scale and shift.
    running_mean, running_var : ndarray, shape (C,)
        Moving averages of the batch statistics, used in evaluation.
    training : bool
        True: normalize with this batch's statistics and update the running ones.
        False: normalize with the running statistics (which are returned unchanged).
    momentum : float in [0, 1]
        Weight of the current batch in the running averages (PyTorch's convention:
        ``new = (1 - momentum) * old + momentum * batch``).
    eps : float >= 0
        Added to the variance before the square root, so that a constant channel does
        not divide by zero (0 is allowed, for worked examples).

    Returns
    -------
    out : ndarray, shape (N, C, H, W)
    cache : BatchNormCache
    new_running_mean, new_running_var : ndarray, shape (C,)
        New arrays; the arguments are never modified.

    Notes
    -----
    Chapter 5. Statistics are taken over the ``m = N*H*W`` values of each channel. As in
    PyTorch, the batch is normalized with the biased variance (divide by ``m``) while
    the running variance is updated with the unbiased one (divide by ``m - 1``), which
    estimates the population variance used at test time. Training therefore needs
    ``m > 1``.
    """
    check_array(x, "x", ndim=4, finite=True)
    _check_channel_vectors(x.shape[1], x, "x", "channels", gamma=gamma, beta=beta,
                           running_mean=running_mean, running_var=running_var)
    check_bool(training, "training")
    momentum = as_real(momentum, "momentum", low=0.0, high=1.0)
    eps = as_real(eps, "eps", low=0.0)
    n, c, h, w = x.shape
    m = n * h * w
    if training and m < 2:
        raise ValueError(f"batch norm in training needs more than one value per channel, got "
                         f"x with shape {shape_str(x)}")
    dt = x.dtype.type
    if training:
        mean = x.mean(axis=(0, 2, 3))  # (C,)
        var = x.var(axis=(0, 2, 3))  # (C,), biased
        new_mean = dt(1 - momentum) * running_mean + dt(momentum) * mean
        new_var = dt(1 - momentum) * running_var + dt(momentum) * var * dt(m / (m - 1))
    else:
        mean, var = running_mean, running_var
        new_mean, new_var = running_mean.copy(), running_var.copy()
    inv_std = dt(1) / np.sqrt(var + dt(eps))  # (C,)
    x_hat = (x - mean[:, None, None]) * inv_std[:, None, None]  # (C,1,1) broadcasts over N,H,W
    out = gamma[:, None, None] * x_hat + beta[:, None, None]
    return out, BatchNormCache(x_hat, gamma, inv_std, training), new_mean, new_var


def batchnorm2d_backward(dout, cache):
    """Gradients of batch norm, in training or evaluation mode.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H, W)
    cache : BatchNormCache

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    dgamma, dbeta : ndarray, shape (C,)

    Notes
    -----
    Chapter 5 (the classifier head).

    In evaluation the statistics are constants, so ``dx = gamma * inv_std * dout``. In
    training the mean and variance depend on every input of the channel; with
    ``g = gamma * dout`` the chain rule collapses to

    ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))``,

    the means taken over the channel's ``m = N*H*W`` values: the gradient loses its
    component along the two directions (constant shift, scaling) that normalization
    removes.
    """
    x_hat, gamma, inv_std, training = cache
    check_dout(dout, x_hat.shape, x_hat.dtype)
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * x_hat).sum(axis=(0, 2, 3))
    scale = (gamma * inv_std)[:, None, None]  # (C, 1, 1)
    if not training:
        return dout * scale, dgamma, dbeta
    m = x_hat.shape[0] * x_hat.shape[2] * x_hat.shape[3]
    dt = x_hat.dtype.type
    dx = scale * (dout - (dbeta / dt(m))[:, None, None]
                  - x_hat * (dgamma / dt(m))[:, None, None])
    return dx, dgamma, dbeta


def fuse_conv_bn(w, b, gamma, beta, running_mean, running_var, *, eps=1e-5):
    """Fold an evaluation-mode batch norm into the convolution before it.

    Parameters
    ----------
    w : ndarray, shape (C_out, C_in, KH, KW)
        Conv weights. A linear weight ``(out_features, in_features)`` followed by a
        1-D batch norm works the same way.
    b : ndarray, shape (C_out,), or None for a conv without bias
    gamma, beta, running_mean, running_var : ndarray, shape (C_out,)
    eps : float >= 0
        The batch norm's eps.

    Returns
    -------
    w_fused : ndarray, shape of ``w``
    b_fused : ndarray, shape (C_out,)
        ``conv(x, w_fused, b_fused) == batchnorm(conv(x, w, b))`` in evaluation mode,
        up to rounding.

    Notes
    -----
    Chapter 5. In evaluation batch norm is an affine map per output channel,
    ``y -> s * (y - running_mean) + beta`` with ``s = gamma / sqrt(running_var + eps)``.
    A conv is linear in its weights, so scaling output channel ``k`` equals scaling
    filter ``k``: ``w_fused[k] = s[k] * w[k]`` and
    ``b_fused = s * (b - running_mean) + beta``. A deployed network then skips the
    normalization entirely.
    """
    check_array(w, "w", ndim=(2, 3, 4), finite=True)
    vectors = dict(gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    if b is not None:
        vectors = dict(b=b, **vectors)
    c_out = w.shape[0]
    _check_channel_vectors(c_out, w, "w", "output channels", **vectors)
    eps = as_real(eps, "eps", low=0.0)
    dt = w.dtype.type
    s = gamma / np.sqrt(running_var + dt(eps))  # (C_out,)
    w_fused = w * s.reshape((c_out,) + (1,) * (w.ndim - 1))  # (C_out, 1, 1, 1) for a conv
    b0 = b if b is not None else np.zeros_like(running_mean)
    b_fused = s * (b0 - running_mean) + beta
    return w_fused, b_fused
