"""Networks built from the NumPy layer classes.

Chapter 7 trains :func:`lenet5` from scratch on the digits; chapter 8 compares it with
its PyTorch twin ``cnnlib.torch.models.lenet5``.
"""

from __future__ import annotations

import numpy as np

from .conv import conv_output_size
from .layers import (
    ELU,
    AvgPool2d,
    Conv2d,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    _as_rng,
)

__all__ = ["lenet5"]

_ACTIVATIONS = {"tanh": Tanh, "relu": ReLU, "sigmoid": Sigmoid, "elu": ELU,
                "leaky_relu": LeakyReLU}
_POOLS = {"avg": AvgPool2d, "max": MaxPool2d}


def lenet5(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 32,
           activation: str = "tanh", pool: str = "avg", rng=None,
           dtype=np.float32) -> Sequential:
    """LeNet-5 as it is usually implemented today.

    ``conv 6@5x5 -> act -> pool 2 -> conv 16@5x5 -> act -> pool 2 -> flatten ->
    dense 120 -> act -> dense 84 -> act -> dense num_classes``. For a 1x32x32 input and
    10 classes that is 61,706 parameters (156 + 2,416 + 48,120 + 10,164 + 850).

    Parameters
    ----------
    num_classes : int
        Outputs of the last layer (class scores; apply softmax for probabilities).
    in_channels : int
        1 for grayscale, 3 for colour.
    input_size : int
        Height and width of the (square) input; it fixes the first dense layer's size
        (16 * 5 * 5 = 400 for 32).
    activation : {"tanh", "relu", "sigmoid", "elu", "leaky_relu"}
        Used after every conv and hidden dense layer; LeNet-5 used a scaled tanh.
    pool : {"avg", "max"}
        LeNet-5 subsampled by averaging (with a learned scale, left out here).
    rng : numpy.random.Generator or int, optional
        Source of the initial weights; layers draw from it in order.
    dtype : float32 (default) or float64

    Returns
    -------
    Sequential
        Layer indices, and so state-dict keys, match ``nn.Sequential`` with the same
        layers: convs at 0 and 3, dense layers at 7, 9 and 11.

    Notes
    -----
    The 1998 network differs in details that modern re-implementations drop: a
    partial connection table in the second conv, trainable subsampling, RBF output
    units and a scaled tanh. Chapter 8 discusses them.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    if pool not in _POOLS:
        raise ValueError(f"pool must be one of {sorted(_POOLS)}, got {pool!r}")
    rng = _as_rng(rng)
    act, pool_cls = _ACTIVATIONS[activation], _POOLS[pool]
    side = input_size
    for _ in range(2):  # conv 5x5 then pool 2, twice
        side = conv_output_size(side, 5)
        side = conv_output_size(side, 2, stride=2)
    return Sequential(
        Conv2d(in_channels, 6, 5, rng=rng, dtype=dtype),
        act(),
        pool_cls(2),
        Conv2d(6, 16, 5, rng=rng, dtype=dtype),
        act(),
        pool_cls(2),
        Flatten(),
        Linear(16 * side * side, 120, rng=rng, dtype=dtype),
        act(),
        Linear(120, 84, rng=rng, dtype=dtype),
        act(),
        Linear(84, num_classes, rng=rng, dtype=dtype),
    )
