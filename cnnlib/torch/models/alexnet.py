"""AlexNet: torchvision's single-GPU version and the 2012 paper's network (chapter 8).

``alexnet`` is the variant of Krizhevsky's "One weird trick" paper (2014) that
torchvision publishes ImageNet weights for: 64-192-384-256-256 filters, no local
response normalisation, 61,100,840 parameters.

``alexnet_paper`` is the network of the 2012 paper, the one in the course notes' table:
96-256-384-384-256 filters, local response normalisation after the first two
convolutions, overlapping 3x3/stride-2 max pooling. The paper split conv2, conv4 and
conv5 between two GPUs, so each of their filters sees only the half of the input
channels on its own GPU; a grouped convolution (``groups=2``) reproduces that and gives
the paper's 60,965,224 parameters. With ``groups=1`` every filter sees every channel:
62,378,344 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from ...checks import as_int
from ._api import WeightsArg, finish

__all__ = ["AlexNet", "AlexNetPaper", "alexnet", "alexnet_paper"]


class _AlexNetBase(nn.Module):
    """Features, then the classifier head both AlexNets share (torchvision's names)."""

    def __init__(self, features: nn.Sequential, num_classes: int, dropout: float):
        super().__init__()
        self.features = features
        # A 224x224 image arrives here as 6x6; the adaptive pool lets smaller or larger
        # images through the same classifier.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)  # (N, 256, 6, 6)
        x = torch.flatten(x, 1)  # (N, 9216)
        return self.classifier(x)


class AlexNet(_AlexNetBase):
    """torchvision's AlexNet; see :func:`alexnet`."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5):
        features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        super().__init__(features, num_classes, dropout)


class AlexNetPaper(_AlexNetBase):
    """The 2012 AlexNet with local response normalisation; see :func:`alexnet_paper`."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, groups: int = 2,
                 dropout: float = 0.5):
        def lrn() -> nn.LocalResponseNorm:
            # The paper's constants: n=5, alpha=1e-4, beta=0.75, k=2. PyTorch divides its
            # alpha by n (as Caffe does), so the paper's 1e-4 is given as 5 * 1e-4.
            return nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)

        features = nn.Sequential(
            # 224 + 2*2 - 11 = 217; 217 // 4 + 1 = 55: the notes' 55x55x96.
            nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=groups),
            nn.ReLU(inplace=True),
            lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            # conv3 is the one layer whose filters read both GPUs' feature maps.
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=groups),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        super().__init__(features, num_classes, dropout)
        self.groups = groups


def alexnet(*, num_classes: int = 1000, in_channels: int = 3,
            weights: WeightsArg = None) -> AlexNet:
    """torchvision's AlexNet (61,100,840 parameters at 1000 classes).

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
    AlexNet
        Maps ``(N, in_channels, H, W)`` (224x224 for ImageNet, at least 63x63) to
        ``(N, num_classes)``.

    Notes
    -----
    Chapter 8 (LeNet-5 to AlexNet).
    """
    as_int(num_classes, "num_classes", minimum=1)
    as_int(in_channels, "in_channels", minimum=1)
    return finish(AlexNet(num_classes, in_channels), "alexnet", weights)


def alexnet_paper(*, num_classes: int = 1000, in_channels: int = 3, groups: int = 2,
                  weights: WeightsArg = None) -> AlexNetPaper:
    """The AlexNet of the 2012 paper (60,965,224 parameters with ``groups=2``).

    Parameters
    ----------
    num_classes : int
        Number of output scores.
    in_channels : int
        Channels of the input images.
    groups : int
        2 splits conv2, conv4 and conv5 into two independent halves as the paper's two
        GPUs did; 1 connects every filter to every input channel (62,378,344
        parameters). Must divide 96, 256 and 384.
    weights : None, str or path
        A weight file to load; no published weights exist for this network.

    Returns
    -------
    AlexNetPaper
        Maps ``(N, in_channels, H, W)`` to ``(N, num_classes)``.

    Notes
    -----
    Chapter 8 (LeNet-5 to AlexNet) derives both parameter counts by hand.
    """
    as_int(num_classes, "num_classes", minimum=1)
    as_int(in_channels, "in_channels", minimum=1)
    as_int(groups, "groups", minimum=1)
    if any(c % groups for c in (96, 256, 384)):
        raise ValueError(f"groups must divide 96, 256 and 384 (the channel counts of the "
                         f"grouped layers), got groups={groups}")
    return finish(AlexNetPaper(num_classes, in_channels, groups), "alexnet_paper", weights)
