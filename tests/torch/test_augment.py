"""Augmentation transforms: exact results at fixed parameters, determinism, DataLoader use."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from cnnlib.torch.augment import (
    AugmentedDataset,
    ColorJitter,
    Compose,
    RandomContrast,
    RandomFlip,
    RandomResizedCrop,
    RandomRotation,
)


def images(n=6, c=3, h=8, w=10, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


ALL = [
    lambda **kw: RandomFlip(**kw),
    lambda **kw: RandomFlip(horizontal=False, vertical=True, **kw),
    lambda **kw: RandomRotation(30, **kw),
    lambda **kw: RandomResizedCrop((0.5, 1.0), **kw),
    lambda **kw: RandomContrast(0.5, **kw),
    lambda **kw: ColorJitter(0.3, 0.3, 0.3, **kw),
]


def test_flip_probabilities_zero_and_one():
    x = images()
    torch.testing.assert_close(RandomFlip(0.0, seed=0)(x), x, rtol=0, atol=0)
    torch.testing.assert_close(RandomFlip(1.0, seed=0)(x), x.flip(-1), rtol=0, atol=0)
    both = RandomFlip(1.0, vertical=True, seed=0)(x)
    torch.testing.assert_close(both, x.flip(-1).flip(-2), rtol=0, atol=0)


def test_flip_draws_per_image():
    x = images(1).expand(64, -1, -1, -1).contiguous()
    out = RandomFlip(0.5, seed=1)(x)
    flipped = torch.tensor([torch.equal(o, x[0].flip(-1)) for o in out])
    kept = torch.tensor([torch.equal(o, x[0]) for o in out])
    assert bool((flipped | kept).all())
    assert 16 < int(flipped.sum()) < 48  # about half, each image on its own


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotation_by_right_angles_equals_rot90(k):
    # Square images: the pixel grid maps onto itself, so nothing is interpolated.
    x = images(h=7, w=7)
    out = RandomRotation((90 * k, 90 * k), seed=0)(x)
    torch.testing.assert_close(out, torch.rot90(x, k, dims=(-2, -1)), rtol=0, atol=1e-5)


def test_rotation_turns_counter_clockwise_and_fills():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 2] = 1.0  # top middle
    out = RandomRotation((90, 90))(x)
    assert out[0, 0, 2, 0] == pytest.approx(1.0, abs=1e-6)  # now left middle
    # A 45-degree turn brings the corners in from outside: they take the fill value.
    filled = RandomRotation((45, 45), fill=0.5)(torch.ones(1, 1, 9, 9))
    assert filled[0, 0, 0, 0] == pytest.approx(0.5, abs=1e-6)
    assert filled[0, 0, 4, 4] == pytest.approx(1.0, abs=1e-6)


def test_full_size_crop_is_the_identity_and_a_zoom_magnifies():
    x = images(h=6, w=9)
    same = RandomResizedCrop((1.0, 1.0), (1.0, 1.0), seed=0)(x)
    torch.testing.assert_close(same, x, rtol=0, atol=1e-5)
    # A square crop of a quarter of the area spans half of a horizontal ramp: the
    # first and last output pixels are 63 output pixels = 31.5 input pixels apart,
    # and the ramp rises by 1/63 per input pixel (up to a quarter pixel of edge
    # clamping when the crop touches the border).
    ramp = torch.linspace(0, 1, 64).expand(8, 1, 64, 64).contiguous()
    zoom = RandomResizedCrop((0.25, 0.25), (1.0, 1.0), seed=3)(ramp)
    span = zoom[:, 0, 0, -1] - zoom[:, 0, 0, 0]
    torch.testing.assert_close(span, torch.full((8,), 0.5), rtol=0, atol=0.25 / 63 + 1e-6)
    # Rows are not mixed: a horizontal ramp stays constant down each column.
    torch.testing.assert_close(zoom, zoom[:, :, :1].expand_as(zoom))


def test_contrast_at_a_fixed_factor():
    x = images()
    out = RandomContrast((0.5, 0.5))(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, (mean + 0.5 * (x - mean)).clamp(0, 1))
    torch.testing.assert_close(RandomContrast(0.0)(x), x)


def test_color_jitter_at_fixed_factors():
    x = images()
    out = ColorJitter((1.2, 1.2), (1.0, 1.0), (0.0, 0.0))(x)
    bright = (1.2 * x).clamp(0, 1)
    grey = 0.299 * bright[:, 0] + 0.587 * bright[:, 1] + 0.114 * bright[:, 2]
    torch.testing.assert_close(out, grey[:, None].expand_as(x))
    # One channel: saturation has nothing to act on.
    g = images(c=1)
    torch.testing.assert_close(ColorJitter(0.0, 0.0, 0.9, seed=0)(g), g)


@pytest.mark.parametrize("make", ALL)
def test_shapes_range_and_determinism(make):
    x = images()
    out = make(seed=5)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= -1e-6 and float(out.max()) <= 1 + 1e-6
    torch.testing.assert_close(make(seed=5)(x), out, rtol=0, atol=0)
    assert not torch.equal(make(seed=6)(x), out)
    # A single image (C, H, W) works too, and a float64 one stays float64.
    single = make(seed=5)(x[0].double())
    assert single.shape == x[0].shape and single.dtype == torch.float64
    # Without a seed the draws follow torch's global generator.
    torch.manual_seed(11)
    a = make()(x)
    torch.manual_seed(11)
    torch.testing.assert_close(make()(x), a, rtol=0, atol=0)


def test_bad_input_and_arguments():
    with pytest.raises(ValueError, match="shape"):
        RandomFlip()(torch.rand(4, 4))
    with pytest.raises(ValueError, match="float"):
        RandomFlip()(torch.zeros(1, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="Tensor"):
        RandomFlip()([[0.0]])
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCrop((0.0, 1.0))
    with pytest.raises(ValueError, match="p must"):
        RandomFlip(1.5)
    with pytest.raises(ValueError, match="seed or generator"):
        RandomFlip(seed=0, generator=torch.Generator())


def _augmented_loader(num_workers: int, loader_seed: int) -> DataLoader:
    x = images(32, c=1, h=8, w=8)
    y = torch.arange(32)
    transform = Compose(RandomRotation(20, seed=0), RandomContrast(0.3, seed=1))
    return DataLoader(AugmentedDataset(TensorDataset(x, y), transform), batch_size=8,
                      shuffle=True, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(loader_seed))


def _epoch(loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_in_a_dataloader_is_reproducible():
    a_x, a_y = _epoch(_augmented_loader(0, 0))
    b_x, b_y = _epoch(_augmented_loader(0, 0))
    assert torch.equal(a_y, b_y) and torch.equal(a_x, b_x)
    # A second epoch from the same loader draws new augmentations.
    loader = _augmented_loader(0, 0)
    first, second = _epoch(loader), _epoch(loader)
    order = torch.argsort(first[1]), torch.argsort(second[1])
    assert not torch.equal(first[0][order[0]], second[0][order[1]])


@pytest.mark.slow
def test_in_worker_processes_is_reproducible_and_not_repeated():
    a_x, a_y = _epoch(_augmented_loader(2, 0))
    b_x, b_y = _epoch(_augmented_loader(2, 0))
    assert torch.equal(a_y, b_y) and torch.equal(a_x, b_x)
    # The two workers' copies were re-seeded: identical inputs get different draws.
    x = images(1, c=1, h=8, w=8).expand(8, -1, -1, -1).contiguous()
    loader = DataLoader(AugmentedDataset(TensorDataset(x, torch.zeros(8)),
                                         RandomRotation(30, seed=0)),
                        batch_size=1, num_workers=2,
                        generator=torch.Generator().manual_seed(0))
    outs = [b[0][0] for b in loader]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == len(outs)
