"""MobileNetV2 (Sandler et al., 2018), chapter 11: depthwise separable convolutions.

An inverted residual block expands the channels ``t`` times with a 1x1 convolution,
filters each channel on its own with a 3x3 depthwise convolution (``groups`` = channels,
9 weights per channel instead of ``9 * C``), and projects back with a linear 1x1
convolution; the shortcut joins the narrow ends when the shape allows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...checks import as_int
from ._api import WeightsArg, finish, is_meta

__all__ = ["ConvBNReLU6", "InvertedResidual", "MobileNetV2", "mobilenet_v2"]


def _make_divisible(v: float, divisor: int = 8) -> int:
    # Channel counts rounded to a multiple of 8, never more than 10 % below ``v``.
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    """Convolution (no bias, "same" padding), batch norm, ReLU6 (torchvision's
    ``Conv2dNormActivation``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (linear 1x1), plus the identity when it fits."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden_dim, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
            # No activation after the projection: a ReLU in the narrow space would
            # destroy information (the paper's "linear bottleneck").
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2; see :func:`mobilenet_v2`."""

    #: Expansion t, output channels c, repeats n, first stride s: the paper's table 2.
    inverted_residual_setting = [
        [1, 16, 1, 1],
        [6, 24, 2, 2],
        [6, 32, 3, 2],
        [6, 64, 4, 2],
        [6, 96, 3, 1],
        [6, 160, 3, 2],
        [6, 320, 1, 1],
    ]

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 dropout: float = 0.2) -> None:
        super().__init__()
        input_channel = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(in_channels, input_channel, stride=2)]
        for t, c, n, s in self.inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel,
                                                 s if i == 0 else 1, expand_ratio=t))
                input_channel = output_channel
        features.append(ConvBNReLU6(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(self.last_channel, num_classes),
        )

        if not is_meta(self):
            self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, 1280, 7, 7) for 224x224
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)  # (N, 1280)
        return self.classifier(x)


def mobilenet_v2(*, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 weights: WeightsArg = None) -> MobileNetV2:
    """MobileNetV2 (3,504,872 parameters at 1000 classes and ``width_mult=1``).

    Parameters
    ----------
    num_classes : int
        Number of output scores.
    in_channels : int
        Channels of the input images.
    width_mult : float
        Scales every layer's channels (rounded to multiples of 8).
    weights : None, str or path
        ``"DEFAULT"`` for the published ImageNet weights from the cache, or a file;
        see :func:`cnnlib.torch.load_pretrained`.

    Returns
    -------
    MobileNetV2
        Maps ``(N, in_channels, H, W)`` (224x224 for ImageNet, at least 32x32) to
        ``(N, num_classes)``.

    Notes
    -----
    Chapter 11 (ResNet and after).
    """
    as_int(num_classes, "num_classes", minimum=1)
    as_int(in_channels, "in_channels", minimum=1)
    if not width_mult > 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    model = MobileNetV2(num_classes, in_channels, float(width_mult))
    return finish(model, "mobilenet_v2", weights)
