"""GoogLeNet / Inception v1 (Szegedy et al., 2014), chapter 10.

An Inception module runs four branches on the same input and concatenates their
channels: a 1x1 convolution; 1x1 then 3x3; 1x1 then a second 3x3 (the paper's 5x5
branch; torchvision's published weights have a 3x3 kernel there, a known deviation
kept here so that those weights load); and 3x3 max pooling then 1x1. The 1x1
"reductions" before the larger kernels are what keep the network at 6.6 M parameters.

Two auxiliary classifiers after inception4a and inception4d added gradient to the
middle of the network during training; they are off by default and only used in
training mode when on.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ...checks import as_int
from ._api import WeightsArg, finish, is_meta

__all__ = ["BasicConv2d", "GoogLeNet", "GoogLeNetOutputs", "Inception", "InceptionAux",
           "googlenet"]


class GoogLeNetOutputs(NamedTuple):
    """What a GoogLeNet with auxiliary heads returns in training mode."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor
    aux_logits1: torch.Tensor


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        # eps=1e-3 is TensorFlow's default, which the published weights were trained with.
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches; output channels ``ch1x1 + ch3x3 + ch5x5 + pool_proj``."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int,
                 ch5x5red: int, ch5x5: int, pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            # 3x3, not the paper's 5x5: see the module docstring.
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(outputs, 1)  # (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 average pool, 1x1 conv to 128, two linear layers."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, (4, 4))
        x = self.conv(x)  # (N, 128, 4, 4)
        x = torch.flatten(x, 1)  # (N, 2048)
        x = F.relu(self.fc1(x), inplace=True)
        x = F.dropout(x, 0.7, training=self.training)
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """GoogLeNet; see :func:`googlenet`."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3,
                 aux_logits: bool = False, transform_input: bool = False,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input

        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        # in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection: the paper's table 1.
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)

        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes)
            self.aux2 = InceptionAux(528, num_classes)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

        if not is_meta(self):
            self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-0.02, b=0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        # The published weights were trained on images scaled to [-1, 1]; this maps an
        # ImageNet-normalised image ((x - mean) / std) to that range.
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return (x * std + mean - 0.5) / 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        if self.transform_input:
            x = self._transform_input(x)
        x = self.conv1(x)  # (N, 64, 112, 112) for 224x224
        x = self.maxpool1(x)  # (N, 64, 56, 56)
        x = self.conv2(x)
        x = self.conv3(x)  # (N, 192, 56, 56)
        x = self.maxpool2(x)  # (N, 192, 28, 28)

        x = self.inception3a(x)  # (N, 256, 28, 28)
        x = self.inception3b(x)  # (N, 480, 28, 28)
        x = self.maxpool3(x)  # (N, 480, 14, 14)
        x = self.inception4a(x)  # (N, 512, 14, 14)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None

        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)  # (N, 528, 14, 14)
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None

        x = self.inception4e(x)  # (N, 832, 14, 14)
        x = self.maxpool4(x)  # (N, 832, 7, 7)
        x = self.inception5a(x)
        x = self.inception5b(x)  # (N, 1024, 7, 7)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 1024)
        x = self.dropout(x)
        x = self.fc(x)
        if aux1 is not None and aux2 is not None:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


def googlenet(*, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False,
              transform_input: bool | None = None, weights: WeightsArg = None) -> GoogLeNet:
    """GoogLeNet (6,624,904 parameters at 1000 classes without the auxiliary heads).

    Parameters
    ----------
    num_classes : int
        Number of output scores.
    in_channels : int
        Channels of the input images.
    aux_logits : bool
        Add the two auxiliary classifiers (+6,379,984 parameters at 1000 classes); in
        training mode the model then returns ``GoogLeNetOutputs(logits, aux_logits2,
        aux_logits1)``.
    transform_input : bool, optional
        Rescale ImageNet-normalised input to the [-1, 1] range the published weights
        expect. Default: on when ``weights`` are given, off otherwise.
    weights : None, str or path
        ``"DEFAULT"`` for the published ImageNet weights from the cache, or a file;
        see :func:`cnnlib.torch.load_pretrained`.

    Returns
    -------
    GoogLeNet
        Maps ``(N, in_channels, H, W)`` (224x224 for ImageNet, at least 32x32) to
        ``(N, num_classes)``.

    Notes
    -----
    Chapter 10 (GoogLeNet and Inception).
    """
    as_int(num_classes, "num_classes", minimum=1)
    as_int(in_channels, "in_channels", minimum=1)
    if transform_input is None:
        transform_input = weights is not None
    if transform_input and in_channels != 3:
        raise ValueError(f"transform_input needs RGB input (in_channels=3), "
                         f"got in_channels={in_channels}")
    model = GoogLeNet(num_classes, in_channels, aux_logits, transform_input)
    return finish(model, "googlenet", weights)
