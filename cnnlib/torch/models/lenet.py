"""LeNet-5 (LeCun et al., 1998), the network of chapter 8.

Two convolution + average-pooling stages and three fully connected layers, with tanh
activations as in the original. On a 1x32x32 input it has 61,706 parameters:

====================  ==========  ==============================
layer                 output      parameters
====================  ==========  ==============================
0 conv 6@5x5          6x28x28     6*(1*25) + 6 = 156
2 avg pool 2          6x14x14     0
3 conv 16@5x5         16x10x10    16*(6*25) + 16 = 2,416
5 avg pool 2          16x5x5      0
7 linear 400->120     120         48,120
9 linear 120->84      84          10,164
11 linear 84->10      10          850
====================  ==========  ==============================

It is one flat ``nn.Sequential`` with the layer indices of its NumPy twin
:func:`cnnlib.numpy.lenet5`, so state dicts carry over between the two.
"""

from __future__ import annotations

from torch import nn

from ...checks import as_int
from ._api import WeightsArg, finish

__all__ = ["LeNet5", "lenet5"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "elu": nn.ELU,
                "leaky_relu": nn.LeakyReLU}
_POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNet5(nn.Sequential):
    """LeNet-5 as one ``nn.Sequential``; see :func:`lenet5`."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32,
                 activation: str = "tanh", pool: str = "avg") -> None:
        act, pool_cls = _ACTIVATIONS[activation], _POOLS[pool]
        side = input_size
        for _ in range(2):  # a 5x5 convolution (no padding), then a 2x2 pool
            side = (side - 4) // 2
        super().__init__(
            nn.Conv2d(in_channels, 6, kernel_size=5),
            act(),
            pool_cls(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            act(),
            pool_cls(kernel_size=2, stride=2),
            nn.Flatten(),  # (N, 16, 5, 5) -> (N, 400) for a 32x32 input
            nn.Linear(16 * side * side, 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, num_classes),
        )


def lenet5(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 32,
           activation: str = "tanh", pool: str = "avg",
           weights: WeightsArg = None) -> LeNet5:
    """LeNet-5 for square images, 32x32 by default.

    Parameters
    ----------
    num_classes : int
        Number of output scores.
    in_channels : int
        Channels of the input images (1 for grey-scale).
    input_size : int
        Height and width of the input; it fixes the first linear layer's width
        (``16 * 5 * 5 = 400`` for 32, ``16 * 4 * 4`` for 28x28 MNIST digits). At least 16.
    activation : {"tanh", "relu", "sigmoid", "elu", "leaky_relu"}
        After every convolution and hidden linear layer; LeNet-5 used a scaled tanh.
    pool : {"avg", "max"}
        LeNet-5 subsampled by averaging (with a learned scale, left out here).
    weights : None, str or path
        A weight file to load; see :func:`cnnlib.torch.load_pretrained`.

    Returns
    -------
    LeNet5
        Maps ``(N, in_channels, input_size, input_size)`` to ``(N, num_classes)``.

    Notes
    -----
    Chapter 8 (LeNet-5 to AlexNet) builds it layer by layer and checks it against
    :func:`cnnlib.numpy.lenet5`.
    """
    as_int(num_classes, "num_classes", minimum=1)
    as_int(in_channels, "in_channels", minimum=1)
    as_int(input_size, "input_size", minimum=1)
    if input_size < 16:
        raise ValueError(f"input_size must be at least 16 for two 5x5 convolutions and two "
                         f"2x2 pools, got {input_size}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    if pool not in _POOLS:
        raise ValueError(f"pool must be one of {sorted(_POOLS)}, got {pool!r}")
    model = LeNet5(num_classes, in_channels, input_size, activation, pool)
    return finish(model, "lenet5", weights)
