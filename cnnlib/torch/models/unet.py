"""A small U-Net (Ronneberger et al., 2015) for segmentation, chapter 14.

A fully convolutional encoder-decoder: the encoder halves the resolution ``depth``
times and doubles the channels each time; the decoder doubles the resolution back with
2x2 stride-2 transposed convolutions (kernel size divisible by the stride, so every
output pixel receives exactly one kernel tap: no checkerboard) and, after each one,
concatenates the encoder's feature map of the same resolution (the skip connection)
before two 3x3 convolutions. A 1x1 convolution gives one score per class and pixel.

With ``width=8`` and ``depth=2`` on a 3-channel input::

    stage        channels  resolution  (input H x W)
    down[0]      8         H
    down[1]      16        H/2
    bottleneck   32        H/4
    up[0]        16        H/2    then concatenated with down[1]: 32 channels
    up[1]        8         H      then concatenated with down[0]: 16 channels
    head         classes   H

``skip=False`` builds the same network without the concatenations (an encoder-decoder
that must carry every detail through the H/4 bottleneck), for comparison.
"""

from __future__ import annotations

import torch
from torch import nn

from ...checks import as_int, check_bool
from ._api import WeightsArg, finish

__all__ = ["DoubleConv", "SmallUNet", "small_unet"]


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions (padding 1, no bias), each followed by batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SmallUNet(nn.Module):
    """U-Net-style encoder-decoder; see :func:`small_unet`."""

    def __init__(self, in_channels: int = 3, num_classes: int = 4, width: int = 8,
                 depth: int = 2, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        widths = [width * 2 ** i for i in range(depth + 1)]  # e.g. [8, 16, 32]
        self.down = nn.ModuleList()
        channels = in_channels
        for w in widths[:-1]:
            self.down.append(DoubleConv(channels, w))
            channels = w
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1])
        self.up = nn.ModuleList()
        self.decode = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(2 * w, w, kernel_size=2, stride=2))
            self.decode.append(DoubleConv(2 * w if skip else w, w))
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2 ** len(self.down)
        if x.ndim != 4 or x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"x must be (N, C, H, W) with H and W multiples of {factor} "
                             f"(2**depth), got shape {tuple(x.shape)}")
        features = []
        for block in self.down:
            x = block(x)  # (N, w_i, H/2^i, W/2^i)
            features.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)  # (N, w * 2^depth, H/2^depth, W/2^depth)
        for up, decode, skipped in zip(self.up, self.decode, reversed(features)):
            x = up(x)  # twice the resolution, half the channels
            if self.skip:
                x = torch.cat([skipped, x], dim=1)  # (N, 2 w_i, ...): the encoder's detail
            x = decode(x)
        return self.head(x)  # (N, num_classes, H, W)


def small_unet(*, in_channels: int = 3, num_classes: int = 4, width: int = 8,
               depth: int = 2, skip: bool = True, weights: WeightsArg = None) -> SmallUNet:
    """A small U-Net: one score per class for every pixel of the input.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    num_classes : int
        Number of classes, background included.
    width : int
        Channels of the first stage; each deeper stage has twice as many.
    depth : int
        Number of 2x2 poolings (and of transposed convolutions back up). Height and width
        of the input must be multiples of ``2**depth``.
    skip : bool
        Concatenate each encoder stage's output to the decoder stage of the same
        resolution (the U-Net's skip connections). ``False`` drops them; the state dict
        then differs only in the shapes of the decoders' first convolutions.
    weights : None, str or path
        A weight file to load; see :func:`cnnlib.torch.load_pretrained`.

    Returns
    -------
    SmallUNet
        Maps ``(N, in_channels, H, W)`` to scores ``(N, num_classes, H, W)``; the class
        of a pixel is the argmax over axis 1. It is not registered with
        :func:`get_model`, whose builders are classifiers.

    Notes
    -----
    Chapter 14 (segmentation) trains it on :func:`cnnlib.data.shapes_segmentation`.
    Unlike the 2015 U-Net, its convolutions are padded (the output has the input's size,
    with no cropping of the skipped maps) and followed by batch norm.
    """
    as_int(in_channels, "in_channels", minimum=1)
    as_int(num_classes, "num_classes", minimum=1)
    as_int(width, "width", minimum=1)
    as_int(depth, "depth", minimum=1)
    check_bool(skip, "skip")
    return finish(SmallUNet(in_channels, num_classes, width, depth, skip), "small_unet",
                  weights)
