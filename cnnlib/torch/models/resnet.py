"""ResNet (He et al., 2015), chapter 11: blocks that learn a residual.

A block computes ``relu(F(x) + shortcut(x))``. The shortcut is the identity when the
block keeps the shape, and a 1x1 convolution with batch norm (a projection) when it
changes the number of channels or the resolution. ``BasicBlock`` (two 3x3 convolutions)
builds ResNet-18/34; ``Bottleneck`` (1x1 down, 3x3, 1x1 up by ``expansion`` = 4) builds
ResNet-50/101/152. As in torchvision ("ResNet v1.5"), a bottleneck strides in its 3x3
convolution, not in the first 1x1. ``PlainBlock`` is a basic block without the shortcut,
for the paper's "plain" baselines (``small_resnet(shortcuts=False)``).
"""

from __future__ import annotations

import torch
from torch import nn

from ...checks import as_int, check_bool
from ._api import WeightsArg, finish, is_meta

__all__ = ["BasicBlock", "Bottleneck", "PlainBlock", "ResNet", "SmallResNet", "make_stage",
           "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "small_resnet"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a batch norm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias: mixes channels, and subsamples when ``stride`` > 1."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus the shortcut; output channels = ``planes``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        # Only conv1 strides; the projection shortcut strides by the same amount.
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand plus the shortcut; output = ``planes * 4`` channels."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out = out + identity
        return self.relu(out)


class PlainBlock(BasicBlock):
    """A basic block without its shortcut: ``relu(F(x))`` where a residual block has
    ``relu(F(x) + x)``.

    The "plain" baseline of He et al. (2015): the same layers, parameter names and
    shapes as a :class:`BasicBlock`, so a plain network can start from a residual
    network's weights and the two differ only in the additions (and the projections,
    which a plain block never has). Chapter 11 trains both to show the degradation
    problem.
    """

    has_shortcut = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        if downsample is not None:
            raise ValueError("a PlainBlock has no shortcut, so it takes no downsample")
        super().__init__(inplanes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out)  # no "+ identity": the block must learn the whole mapping


Block = type[BasicBlock] | type[Bottleneck]


def make_stage(block: Block, inplanes: int, planes: int, blocks: int,
               stride: int = 1) -> nn.Sequential:
    """``blocks`` residual blocks; the first may change resolution and width.

    The first block gets a 1x1 projection shortcut (convolution + batch norm) whenever
    its output cannot be added to its input as is: a stride above 1, or
    ``inplanes != planes * block.expansion``. A :class:`PlainBlock` gets none.
    """
    downsample = None
    has_shortcut = getattr(block, "has_shortcut", True)
    if has_shortcut and (stride != 1 or inplanes != planes * block.expansion):
        downsample = nn.Sequential(
            conv1x1(inplanes, planes * block.expansion, stride),
            nn.BatchNorm2d(planes * block.expansion),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    for _ in range(1, blocks):
        layers.append(block(planes * block.expansion, planes))
    return nn.Sequential(*layers)


def _init_resnet(model: nn.Module, zero_init_residual: bool) -> None:
    if is_meta(model):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        # Each residual branch then starts as zero and each block as the identity
        # (Goyal et al., 2017), which helps large-batch training.
        for m in model.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)


class ResNet(nn.Module):
    """ImageNet ResNet: a 7x7/2 stem, a 3x3/2 max pool, four stages, average pool, fc."""

    def __init__(self, block: Block, layers: list[int], num_classes: int = 1000,
                 in_channels: int = 3, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_resnet(self, zero_init_residual)

    def _make_layer(self, block: Block, planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        stage = make_stage(block, self.inplanes, planes, blocks, stride)
        self.inplanes = planes * block.expansion
        return stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)  # 224x224 -> 56x56

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)  # (N, 512 * expansion, 7, 7) for 224x224

        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 512 * expansion)
        return self.fc(x)


#: Blocks per stage of each ImageNet ResNet.
ARCHS: dict[str, tuple[Block, list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


def _resnet(name: str, num_classes: int, in_channels: int, weights: WeightsArg) -> ResNet:
    as_int(num_classes, "num_classes", minimum=1)
    as_int(in_channels, "in_channels", minimum=1)
    block, layers = ARCHS[name]
    return finish(ResNet(block, layers, num_classes, in_channels), name, weights)


_DOC = """ResNet-{depth} ({blocks} {block}s per stage; {params} parameters at 1000 classes).

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
    ResNet
        Maps ``(N, in_channels, H, W)`` (224x224 for ImageNet, at least 32x32) to
        ``(N, num_classes)``.

    Notes
    -----
    Chapter 11 (ResNet and after).
    """


def resnet18(*, num_classes: int = 1000, in_channels: int = 3,
             weights: WeightsArg = None) -> ResNet:
    return _resnet("resnet18", num_classes, in_channels, weights)


def resnet34(*, num_classes: int = 1000, in_channels: int = 3,
             weights: WeightsArg = None) -> ResNet:
    return _resnet("resnet34", num_classes, in_channels, weights)


def resnet50(*, num_classes: int = 1000, in_channels: int = 3,
             weights: WeightsArg = None) -> ResNet:
    return _resnet("resnet50", num_classes, in_channels, weights)


def resnet101(*, num_classes: int = 1000, in_channels: int = 3,
              weights: WeightsArg = None) -> ResNet:
    return _resnet("resnet101", num_classes, in_channels, weights)


def resnet152(*, num_classes: int = 1000, in_channels: int = 3,
              weights: WeightsArg = None) -> ResNet:
    return _resnet("resnet152", num_classes, in_channels, weights)


for _fn, _params in [(resnet18, "11,689,512"), (resnet34, "21,797,672"),
                     (resnet50, "25,557,032"), (resnet101, "44,549,160"),
                     (resnet152, "60,192,808")]:
    _block, _layers = ARCHS[_fn.__name__]
    _fn.__doc__ = _DOC.format(depth=_fn.__name__[6:], blocks="-".join(map(str, _layers)),
                              block=_block.__name__, params=_params)


class SmallResNet(nn.Module):
    """CIFAR-style ResNet; see :func:`small_resnet`."""

    def __init__(self, depth: int = 8, num_classes: int = 10, in_channels: int = 1,
                 width: int = 16, zero_init_residual: bool = False,
                 shortcuts: bool = True) -> None:
        super().__init__()
        if zero_init_residual and not shortcuts:
            # A plain block's output would then be zero, not the identity.
            raise ValueError("zero_init_residual needs shortcuts=True")
        n = (depth - 2) // 6
        block = BasicBlock if shortcuts else PlainBlock
        # A 3x3 stride-1 stem: a 32x32 image cannot spare the 4x reduction of the
        # ImageNet stem.
        self.conv1 = conv3x3(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_stage(block, width, width, n)
        self.layer2 = make_stage(block, width, 2 * width, n, stride=2)
        self.layer3 = make_stage(block, 2 * width, 4 * width, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(4 * width, num_classes)
        _init_resnet(self, zero_init_residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (N, w, H, W)
        x = self.layer1(x)
        x = self.layer2(x)  # (N, 2w, H/2, W/2)
        x = self.layer3(x)  # (N, 4w, H/4, W/4)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 4w)
        return self.fc(x)


def small_resnet(*, depth: int = 8, num_classes: int = 10, in_channels: int = 1,
                 width: int = 16, shortcuts: bool = True,
                 weights: WeightsArg = None) -> SmallResNet:
    """The CIFAR ResNet of He et al. (2015, section 4.2) for 32x32 or smaller images.

    A 3x3 stem, three stages of ``(depth - 2) / 6`` basic blocks with ``width``,
    ``2*width`` and ``4*width`` channels (the last two halve the resolution, with 1x1
    projection shortcuts), global average pooling and a linear layer. ``depth`` = 8,
    20, 32, 44, 56 or 110 give the paper's networks (``width=16``).

    Parameters
    ----------
    depth : int
        Number of weighted layers, ``6n + 2``.
    num_classes : int
        Number of output scores.
    in_channels : int
        Channels of the input images (1 for the digits).
    width : int
        Channels of the first stage.
    shortcuts : bool
        ``False`` builds the paper's "plain" counterpart: the same layers with
        :class:`PlainBlock` (no additions, no projection shortcuts). Its state dict is
        the residual network's without the ``downsample`` entries, so
        ``plain.load_state_dict(resnet.state_dict(), strict=False)`` starts both from
        the same weights.
    weights : None, str or path
        ``"DEFAULT"`` for the course's pre-trained weights from the cache, or a file;
        see :func:`cnnlib.torch.load_pretrained`.

    Returns
    -------
    SmallResNet
        Maps ``(N, in_channels, H, W)`` to ``(N, num_classes)``; 8x8 digits work too.

    Notes
    -----
    Chapter 11 (ResNet and after) and chapter 12 (transfer learning).
    """
    as_int(depth, "depth", minimum=1)
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
    as_int(num_classes, "num_classes", minimum=1)
    as_int(in_channels, "in_channels", minimum=1)
    as_int(width, "width", minimum=1)
    check_bool(shortcuts, "shortcuts")
    if weights is not None and not shortcuts:
        raise ValueError("the published small_resnet weights are for the residual network; "
                         "weights must be None when shortcuts=False")
    return finish(SmallResNet(depth, num_classes, in_channels, width, shortcuts=shortcuts),
                  "small_resnet", weights)
