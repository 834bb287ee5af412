"""VGG (Simonyan and Zisserman, 2014), chapter 9: the architecture is a list.

Each configuration is a sequence of 3x3 convolution widths and ``"M"`` for a 2x2 max
pool; :func:`make_layers` turns it into a network. Two stacked 3x3 convolutions see a
5x5 window with ``2*9*C*C`` weights instead of ``25*C*C``; three see 7x7.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...checks import as_int
from ._api import WeightsArg, finish, is_meta

__all__ = ["VGG", "cfgs", "make_layers", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16",
           "vgg16_bn", "vgg19", "vgg19_bn", "SmallVGG", "small_vgg"]

#: The paper's configurations A, B, D and E (VGG-11, -13, -16 and -19).
cfgs: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def make_layers(cfg: Sequence[int | str], *, batch_norm: bool = False,
                in_channels: int = 3) -> nn.Sequential:
    """Build the convolutional part of a VGG from its configuration.

    Parameters
    ----------
    cfg : sequence of int or "M"
        Output channels of successive 3x3, padding-1 convolutions; ``"M"`` is a 2x2
        max pool with stride 2.
    batch_norm : bool
        Put a batch norm between each convolution and its ReLU.
    in_channels : int
        Channels of the input images.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"cfg entries must be positive ints or 'M', got {v!r} in {cfg}")
        layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG network: ``features``, a 7x7 adaptive pool, and three linear layers."""

    def __init__(self, features: nn.Module, num_classes: int = 1000, dropout: float = 0.5,
                 init_weights: bool = True) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            _init_vgg(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)  # (N, 512, 7, 7)
        x = torch.flatten(x, 1)  # (N, 25088)
        return self.classifier(x)


def _init_vgg(model: nn.Module) -> None:
    if is_meta(model):
        return
    # He initialisation keeps the activations' scale through 16-19 ReLU layers, which
    # the paper could only reach by first training the shallow configuration A.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _vgg(name: str, cfg: str, batch_norm: bool, num_classes: int, in_channels: int,
         weights: WeightsArg) -> VGG:
    as_int(num_classes, "num_classes", minimum=1)
    as_int(in_channels, "in_channels", minimum=1)
    features = make_layers(cfgs[cfg], batch_norm=batch_norm, in_channels=in_channels)
    model = VGG(features, num_classes, init_weights=weights is None)
    return finish(model, name, weights)


_DOC = """VGG-{depth}{bn} (configuration {cfg}; {params} parameters at 1000 classes).

    Parameters
    ----------
    num_classes : int
        Number of output scores.
    in_channels : int
        Channels of the input images.
    weights : None, str or path
        ``"DEFAULT"`` for the published ImageNet weights from the cache, or a file;
        see :func:`cnnlib.torch.load_pretrained`.

    Returns
    -------
    VGG
        Maps ``(N, in_channels, H, W)`` (224x224 for ImageNet, at least 32x32) to
        ``(N, num_classes)``.

    Notes
    -----
    Chapter 9 (VGG).
    """


def vgg11(*, num_classes: int = 1000, in_channels: int = 3, weights: WeightsArg = None) -> VGG:
    return _vgg("vgg11", "A", False, num_classes, in_channels, weights)


def vgg11_bn(*, num_classes: int = 1000, in_channels: int = 3,
             weights: WeightsArg = None) -> VGG:
    return _vgg("vgg11_bn", "A", True, num_classes, in_channels, weights)


def vgg13(*, num_classes: int = 1000, in_channels: int = 3, weights: WeightsArg = None) -> VGG:
    return _vgg("vgg13", "B", False, num_classes, in_channels, weights)


def vgg13_bn(*, num_classes: int = 1000, in_channels: int = 3,
             weights: WeightsArg = None) -> VGG:
    return _vgg("vgg13_bn", "B", True, num_classes, in_channels, weights)


def vgg16(*, num_classes: int = 1000, in_channels: int = 3, weights: WeightsArg = None) -> VGG:
    return _vgg("vgg16", "D", False, num_classes, in_channels, weights)


def vgg16_bn(*, num_classes: int = 1000, in_channels: int = 3,
             weights: WeightsArg = None) -> VGG:
    return _vgg("vgg16_bn", "D", True, num_classes, in_channels, weights)


def vgg19(*, num_classes: int = 1000, in_channels: int = 3, weights: WeightsArg = None) -> VGG:
    return _vgg("vgg19", "E", False, num_classes, in_channels, weights)


def vgg19_bn(*, num_classes: int = 1000, in_channels: int = 3,
             weights: WeightsArg = None) -> VGG:
    return _vgg("vgg19_bn", "E", True, num_classes, in_channels, weights)


for _fn, _depth, _bn, _cfg, _params in [
    (vgg11, 11, "", "A", "132,863,336"), (vgg11_bn, 11, " with batch norm", "A", "132,868,840"),
    (vgg13, 13, "", "B", "133,047,848"), (vgg13_bn, 13, " with batch norm", "B", "133,053,736"),
    (vgg16, 16, "", "D", "138,357,544"), (vgg16_bn, 16, " with batch norm", "D", "138,365,992"),
    (vgg19, 19, "", "E", "143,667,240"), (vgg19_bn, 19, " with batch norm", "E", "143,678,248"),
]:
    _fn.__doc__ = _DOC.format(depth=_depth, bn=_bn, cfg=_cfg, params=_params)


class SmallVGG(nn.Module):
    """A VGG for small images; see :func:`small_vgg`."""

    def __init__(self, cfg: Sequence[int | str], num_classes: int = 10, in_channels: int = 1,
                 batch_norm: bool = True, dropout: float = 0.5) -> None:
        super().__init__()
        widths = [v for v in cfg if v != "M"]
        if not widths:
            raise ValueError(f"cfg needs at least one convolution, got {list(cfg)}")
        self.features = make_layers(cfg, batch_norm=batch_norm, in_channels=in_channels)
        # Global average pooling instead of VGG's 7x7x512 flatten keeps the classifier
        # small and lets 8x8 digits and 32x32 images share one network.
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(widths[-1], num_classes),
        )
        _init_vgg(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)  # (N, C, 1, 1)
        x = torch.flatten(x, 1)  # (N, C)
        return self.classifier(x)


def small_vgg(*, num_classes: int = 10, in_channels: int = 1,
              cfg: Sequence[int | str] = (32, 32, "M", 64, 64, "M", 128, 128, "M"),
              batch_norm: bool = True, weights: WeightsArg = None) -> SmallVGG:
    """A VGG-style network for 32x32 (or 8x8) images, CIFAR-style.

    Three stages of two 3x3 convolutions and a 2x2 max pool (32-64-128 channels by
    default), batch norm, global average pooling and one linear layer.

    Parameters
    ----------
    num_classes : int
        Number of output scores.
    in_channels : int
        Channels of the input images.
    cfg : sequence of int or "M"
        Convolution widths and pools, as in :data:`cfgs`.
    batch_norm : bool
        Batch norm after every convolution.
    weights : None, str or path
        A weight file to load; see :func:`cnnlib.torch.load_pretrained`.

    Returns
    -------
    SmallVGG
        Maps ``(N, in_channels, H, W)`` with H and W at least ``2**pools`` to
        ``(N, num_classes)``.

    Notes
    -----
    Chapter 9 (VGG).
    """
    as_int(num_classes, "num_classes", minimum=1)
    as_int(in_channels, "in_channels", minimum=1)
    model = SmallVGG(list(cfg), num_classes, in_channels, batch_norm)
    return finish(model, "small_vgg", weights)
