"""Data augmentation as tensor transforms: flips, rotations, crops, contrast and colour.

Every transform takes a float image ``(C, H, W)`` or a batch ``(N, C, H, W)`` with values
in [0, 1], on any device, and returns a tensor of the same shape; in a batch each image
gets its own random draw. The draws come from the transform's ``torch.Generator`` when
it has one (``seed=`` or ``generator=``), else from torch's global generator, which
:func:`cnnlib.torch.fit` seeds per epoch. So augmentation is reproducible either way.

Use them per image in a DataLoader (:class:`AugmentedDataset`), or per batch on the
device with ``fit(..., transform=...)``, which is faster on a GPU::

    augment = Compose(RandomFlip(), RandomRotation(10), RandomResizedCrop((0.8, 1.0)))
    fit(model, train, val, epochs=10, transform=augment)

In a DataLoader with worker processes, each worker gets a copy of the transform; one
with its own generator re-seeds its copy from the worker's seed (which the loader
derives from its own generator), so workers do not repeat each other's draws.

Chapter 12 (transfer learning and fine-tuning) shows what each transform does and why
it helps when labelled images are few.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, get_worker_info

__all__ = ["AugmentedDataset", "ColorJitter", "Compose", "RandomContrast", "RandomFlip",
           "RandomResizedCrop", "RandomRotation", "Transform"]

# ITU-R BT.601 luma weights: the grey an RGB image's saturation is measured from.
_LUMA = (0.299, 0.587, 0.114)


def _as_range(value, name: str, *, centre: float | None = None,
              low: float = -math.inf) -> tuple[float, float]:
    """``(lo, hi)`` from a pair, or from ``v`` meaning ``centre -/+ v``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
        lo, hi = (-value, value) if centre is None else (centre - value, centre + value)
    elif isinstance(value, Sequence) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
    else:
        raise TypeError(f"{name} must be a number or a pair (lo, hi), got {value!r}")
    if lo > hi:
        raise ValueError(f"{name}: lower end {lo} is above upper end {hi}")
    if lo < low:
        raise ValueError(f"{name} must not go below {low}, got ({lo}, {hi})")
    return float(lo), float(hi)


class Transform:
    """Base class: the random-number plumbing and the single-image/batch handling.

    Parameters
    ----------
    seed : int, optional
        Seed of a generator owned by the transform.
    generator : torch.Generator, optional
        A CPU generator to draw from instead (``seed`` and ``generator`` exclude
        each other). With neither, draws come from torch's global generator.
    """

    def __init__(self, *, seed: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        if seed is not None and generator is not None:
            raise ValueError("pass seed or generator, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got "
                            f"{type(generator).__name__}")
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator
        self._worker: tuple[int, int] | None = None

    def _generator(self) -> torch.Generator | None:
        worker = get_worker_info()
        if self.generator is not None and worker is not None \
                and self._worker != (worker.id, worker.seed):
            # A worker process holds a copy of this generator in the state the parent
            # left it in; without re-seeding, every worker would make the same draws.
            self.generator.manual_seed(worker.seed % 2**63)
            self._worker = (worker.id, worker.seed)
        return self.generator

    def _uniform(self, n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
        """``n`` draws from U(lo, hi), made on the CPU so that every device agrees."""
        u = torch.rand(n, generator=self._generator(), dtype=torch.float64)
        return (lo + (hi - lo) * u).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} takes a torch.Tensor, got "
                            f"{type(x).__name__}; convert with torch.from_numpy")
        if x.ndim not in (3, 4) or not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} takes a float image (C, H, W) or batch "
                             f"(N, C, H, W), got shape {tuple(x.shape)} of {x.dtype}")
        if x.ndim == 3:
            return self.apply(x[None])[0]
        return self.apply(x)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Transform a batch ``(N, C, H, W)``; each image draws its own parameters."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                           if not k.startswith("_") and k != "generator")
        return f"{type(self).__name__}({fields})"


class Compose:
    """Apply transforms in turn: ``Compose(RandomFlip(), RandomRotation(10))``."""

    def __init__(self, *transforms: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if len(transforms) == 1 and isinstance(transforms[0], (list, tuple)):
            transforms = tuple(transforms[0])
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose takes callables, got {t!r}")
        self.transforms = transforms

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.transforms))})"


class RandomFlip(Transform):
    """Mirror left-right (and/or top-bottom) with probability ``p``.

    Parameters
    ----------
    p : float
        Probability of each flip.
    horizontal, vertical : bool
        Which flips to draw (independently). Digits and text should not be flipped;
        textures and most photographs can be.
    """

    def __init__(self, p: float = 0.5, *, horizontal: bool = True, vertical: bool = False,
                 seed: int | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__(seed=seed, generator=generator)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p, self.horizontal, self.vertical = float(p), horizontal, vertical

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        for enabled, dim in ((self.horizontal, -1), (self.vertical, -2)):
            if enabled:
                flip = self._uniform(len(x), 0.0, 1.0, x.device) < self.p  # (N,)
                x = torch.where(flip[:, None, None, None], x.flip(dim), x)
        return x


def _warp(x: torch.Tensor, theta: torch.Tensor, fill: float | None) -> torch.Tensor:
    """Resample ``x`` (N, C, H, W) at the affine map ``theta`` (N, 2, 3) of the output grid.

    Coordinates are normalised to [-1, 1] with pixel centres as in
    ``align_corners=False``. Points outside the image take the value ``fill``, or the
    nearest edge pixel's value when ``fill`` is None.
    """
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    if fill is None:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)
    # grid_sample pads with zeros: shift so that zero stands for the fill value.
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out + fill


class RandomRotation(Transform):
    """Rotate by an angle drawn uniformly from ``[-degrees, degrees]`` (or a range).

    Positive angles turn the picture counter-clockwise, as in torchvision. Corners that
    come from outside the image take the value ``fill``; bilinear interpolation.

    Parameters
    ----------
    degrees : float or (float, float)
        Largest rotation either way, or the range ``(lo, hi)`` of angles.
    fill : float
        Value of the pixels rotated in from outside (0 = black background).
    """

    def __init__(self, degrees: float | tuple[float, float] = 15.0, *, fill: float = 0.0,
                 seed: int | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__(seed=seed, generator=generator)
        self.degrees = _as_range(degrees, "degrees")
        self.fill = float(fill)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        angle = torch.deg2rad(self._uniform(n, *self.degrees, x.device))  # (N,)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # The grid is normalised per axis, so a rotation in pixels becomes this matrix
        # when the image is not square. The row index grows downwards, so sampling the
        # input at this map of each output pixel turns the content counter-clockwise on
        # screen by +angle.
        theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=x.device)
        theta[:, 0, 0] = cos
        theta[:, 0, 1] = -sin * h / w
        theta[:, 1, 0] = sin * w / h
        theta[:, 1, 1] = cos
        return _warp(x, theta, self.fill)


class RandomResizedCrop(Transform):
    """Crop a random part of the image and stretch it back to the full size (zoom in).

    The crop covers a fraction of the area drawn from ``scale`` with an aspect ratio
    drawn log-uniformly from ``ratio``, anywhere inside the image; it is resampled
    bilinearly to ``(H, W)``. ``scale=(1, 1)`` with ``ratio=(1, 1)`` is the identity.

    Parameters
    ----------
    scale : (float, float)
        Range of the crop's area as a fraction of the image's, within (0, 1].
    ratio : (float, float)
        Range of the crop's width / height.
    """

    def __init__(self, scale: tuple[float, float] = (0.7, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), *, seed: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(seed=seed, generator=generator)
        self.scale = _as_range(scale, "scale", low=0.0)
        if self.scale[0] <= 0 or self.scale[1] > 1:
            raise ValueError(f"scale must lie within (0, 1], got {scale}")
        self.ratio = _as_range(ratio, "ratio", low=0.0)
        if self.ratio[0] <= 0:
            raise ValueError(f"ratio must be positive, got {ratio}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        area = self._uniform(n, *self.scale, x.device)
        log_ratio = self._uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), x.device)
        ratio = torch.exp(log_ratio)
        # Width and height as fractions of the image's; a crop that would stick out is
        # clipped to the full side.
        cw = torch.sqrt(area * ratio).clamp(max=1.0)
        ch = torch.sqrt(area / ratio).clamp(max=1.0)
        # Centre anywhere that keeps the crop inside: |centre| <= 1 - half-size.
        cx = (1 - cw) * self._uniform(n, -1.0, 1.0, x.device)
        cy = (1 - ch) * self._uniform(n, -1.0, 1.0, x.device)
        theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2] = cw, cx
        theta[:, 1, 1], theta[:, 1, 2] = ch, cy
        # A crop touching the image's edge samples up to half a pixel beyond the last
        # pixel centre: replicate the edge there rather than blend in black.
        return _warp(x, theta, None)


def _adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each image's deviations from its mean grey level by ``factor`` (N,)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    return (x - mean) * factor[:, None, None, None].to(x.dtype) + mean


class RandomContrast(Transform):
    """Multiply each image's contrast by a factor drawn from ``1 -/+ amount``.

    ``out = mean + factor * (x - mean)`` with the image's mean over all its pixels and
    channels, clipped to [0, 1]. A factor of 0 gives a uniform grey image.
    """

    def __init__(self, amount: float | tuple[float, float] = 0.3, *, seed: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(seed=seed, generator=generator)
        self.factor = _as_range(amount, "amount", centre=1.0, low=0.0)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        factor = self._uniform(len(x), *self.factor, x.device)
        return _adjust_contrast(x, factor).clamp(0.0, 1.0)


class ColorJitter(Transform):
    """Random brightness, contrast and saturation changes, applied in that order.

    Each amount ``a`` draws a factor from ``[1 - a, 1 + a]`` (or pass a range):
    brightness multiplies the pixel values, contrast scales deviations from the mean
    (as :class:`RandomContrast`), saturation scales each pixel's deviation from its
    grey level (BT.601 luma; RGB images only: it leaves one-channel images alone).
    The result is clipped to [0, 1].
    """

    def __init__(self, brightness: float | tuple[float, float] = 0.2,
                 contrast: float | tuple[float, float] = 0.2,
                 saturation: float | tuple[float, float] = 0.2, *, seed: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(seed=seed, generator=generator)
        self.brightness = _as_range(brightness, "brightness", centre=1.0, low=0.0)
        self.contrast = _as_range(contrast, "contrast", centre=1.0, low=0.0)
        self.saturation = _as_range(saturation, "saturation", centre=1.0, low=0.0)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        b = self._uniform(n, *self.brightness, x.device).to(x.dtype)
        k = self._uniform(n, *self.contrast, x.device)
        s = self._uniform(n, *self.saturation, x.device).to(x.dtype)
        x = (x * b[:, None, None, None]).clamp(0.0, 1.0)
        x = _adjust_contrast(x, k).clamp(0.0, 1.0)
        if c == 3:
            luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
            grey = (x * luma[None, :, None, None]).sum(1, keepdim=True)  # (N, 1, H, W)
            x = (grey + (x - grey) * s[:, None, None, None]).clamp(0.0, 1.0)
        return x


class AugmentedDataset(Dataset):
    """A dataset of ``(image, label)`` pairs whose images pass through ``transform``.

    Parameters
    ----------
    dataset : Dataset
        Yields ``(image, label)`` with images ``(C, H, W)``; NumPy images are
        converted to tensors.
    transform : callable
        Applied to each image every time it is read, so every epoch sees new draws.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]):
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {transform!r}")
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(torch.as_tensor(image)), label
