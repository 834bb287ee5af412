"""Tests of cnnlib.data: offline datasets and readers of local MNIST/CIFAR/image folders."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlib import data


def check_split(split: data.DataSplit, shape, n_classes):
    """Shapes, dtypes, value range and label range of a DataSplit."""
    assert isinstance(split, data.DataSplit)
    assert split._fields == ("x_train", "y_train", "x_test", "y_test", "class_names")
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.ndim == 4 and x.shape[1:] == shape
        assert len(x) == len(y) > 0
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(np.unique(y)) == set(range(n_classes))
    assert len(split.class_names) == n_classes


# --------------------------------------------------------------------------- digits

def test_digits_shapes_and_balance():
    split = data.load_digits()
    check_split(split, (1, 32, 32), 10)
    assert len(split.x_train) + len(split.x_test) == 1797  # sklearn's digits
    assert len(split.x_test) == pytest.approx(0.2 * 1797, abs=10)
    # Stratified: every class's test share is within one image of 20 %.
    for y in range(10):
        n_k = np.sum(split.y_train == y) + np.sum(split.y_test == y)
        assert abs(np.sum(split.y_test == y) - 0.2 * n_k) <= 1
    assert split.class_names == tuple("0123456789")
    # A digit uses the full range: the original 0..16 scale maps to 0..1.
    assert split.x_train.max() == pytest.approx(1.0, abs=0.05)


def test_digits_resize_preserves_content():
    from sklearn.datasets import load_digits

    small = data.load_digits(8, seed=3)
    big = data.load_digits(32, seed=3)
    sk = load_digits()
    # size=8 is the original data divided by 16, in the split's order.
    originals = {img.tobytes(): t for img, t in
                 zip((sk.images / 16).astype(np.float32), sk.target)}
    for img, t in zip(small.x_train[:50, 0], small.y_train[:50]):
        assert originals[img.tobytes()] == t
    # Upscaling is bilinear with pixel-centre alignment and edge clamping: exactly
    # torch's interpolate(mode="bilinear", align_corners=False), an independent oracle.
    import torch

    ref = torch.nn.functional.interpolate(torch.from_numpy(small.x_train.astype(np.float64)),
                                          size=(32, 32), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(big.x_train, ref.numpy(), atol=1e-6)


def test_digits_deterministic_per_seed():
    a, b, c = data.load_digits(seed=1), data.load_digits(seed=1), data.load_digits(seed=2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)


def test_digits_train_and_test_are_disjoint():
    split = data.load_digits(8)
    train = {img.tobytes() for img in split.x_train}
    # sklearn's digits contain a few exact duplicate images; allow those only.
    overlap = sum(img.tobytes() in train for img in split.x_test)
    assert overlap <= 3


@pytest.mark.parametrize("bad, exc", [({"test_size": 1.5}, ValueError),
                                      ({"test_size": "x"}, TypeError),
                                      ({"size": 4}, ValueError)])
def test_digits_bad_arguments(bad, exc):
    with pytest.raises(exc, match="size"):
        data.load_digits(**bad)


# --------------------------------------------------------------------------- textures

def test_textures_shapes_and_balance():
    split = data.load_textures(24, patches_per_image=40, test_size=0.25)
    check_split(split, (1, 24, 24), len(data.TEXTURE_CLASSES))
    assert split.class_names == data.TEXTURE_CLASSES
    assert np.all(np.bincount(split.y_train) == 30)
    assert np.all(np.bincount(split.y_test) == 10)


def _patch_columns(image, patch):
    """Every column offset at which ``patch`` occurs in ``image``."""
    p = patch.shape[0]
    h, w = image.shape
    # Only offsets whose top-left pixel matches can match; check those in full.
    candidates = np.argwhere(image[:h - p + 1, :w - p + 1] == patch[0, 0])
    return [c for r, c in candidates if np.array_equal(image[r:r + p, c:c + p], patch)]


def test_texture_patches_come_from_disjoint_regions():
    p, test_size = 16, 0.25
    split = data.load_textures(p, patches_per_image=40, test_size=test_size, seed=5)
    for label, name in enumerate(split.class_names):
        image = data._texture_image(name)
        boundary = int(round((1 - test_size) * image.shape[1]))
        train_cols = [c for patch in split.x_train[split.y_train == label][:8, 0]
                      for c in _patch_columns(image, patch)]
        test_cols = [c for patch in split.x_test[split.y_test == label][:8, 0]
                     for c in _patch_columns(image, patch)]
        # Each patch is found in its photograph ...
        assert train_cols and test_cols
        # ... train patches end left of the boundary, test patches start right of it.
        assert max(train_cols) + p <= boundary
        assert min(test_cols) >= boundary


def test_textures_deterministic_per_seed():
    a = data.load_textures(16, patches_per_image=8, seed=1)
    b = data.load_textures(16, patches_per_image=8, seed=1)
    c = data.load_textures(16, patches_per_image=8, seed=2)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_test, c.x_test)


def test_textures_patch_too_big():
    with pytest.raises(ValueError, match="patch_size"):
        data.load_textures(400, patches_per_image=4)


# --------------------------------------------------------------------------- faces

def test_faces():
    split = data.load_faces()
    check_split(split, (1, 25, 25), 2)
    assert split.class_names == ("non-face", "face")
    assert len(split.x_train) == 150 and len(split.x_test) == 50
    assert np.bincount(split.y_test).tolist() == [25, 25]
    from skimage.data import lfw_subset

    faces = lfw_subset()[:100].astype(np.float32)
    # Label 1 holds exactly the first hundred crops of lfw_subset (the faces).
    got = np.concatenate([split.x_train[split.y_train == 1], split.x_test[split.y_test == 1]])
    assert sorted(a.tobytes() for a in got[:, 0]) == sorted(a.tobytes() for a in faces)


# --------------------------------------------------------------------------- shapes

def test_shapes():
    x, y = data.make_shapes(41, size=20, seed=3)
    assert x.shape == (41, 3, 20, 20) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() >= 0 and x.max() <= 1
    counts = np.bincount(y, minlength=len(data.SHAPE_CLASSES))
    assert counts.max() - counts.min() <= 1
    assert data.SHAPE_CLASSES == ("circle", "square", "triangle", "cross")
    x2, y2 = data.make_shapes(41, size=20, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(data.make_shapes(41, size=20, seed=4)[0], x)


def test_shapes_are_visible_and_varied():
    x, y = data.make_shapes(200, size=32, seed=0)
    # The shape stands out: each image has two clearly different colours.
    spread = (x.max(axis=(2, 3)) - x.min(axis=(2, 3))).max(axis=1)
    assert np.all(spread > 0.3)
    # Backgrounds vary (the corner pixel is background: shapes stay inside the frame
    # at distance r from the border, r >= 0.2 * size).
    corners = x[:, :, 0, 0]
    assert corners.std(axis=0).min() > 0.1


def test_shapes_are_distinguishable_by_outline():
    """A nearest-centroid classifier on binarised masks beats chance by a wide margin."""
    x, y = data.make_shapes(400, size=32, seed=0)
    background = x[:, :, :1, :1]
    mask = (np.abs(x - background).sum(axis=1) > 0.3).reshape(len(x), -1).astype(float)
    # Shift-invariant feature: fraction of the bounding box the shape fills.
    fills = []
    for m in mask.reshape(-1, 32, 32):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        box = m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        fills.append(box.mean())
    fills = np.asarray(fills)
    means = [fills[y == k].mean() for k in range(4)]
    # square fills its box, circle pi/4, triangle and cross about half.
    assert means[1] > 0.9 and abs(means[0] - np.pi / 4) < 0.06 and means[2] < 0.6


def test_default_shapes_are_unchanged_by_the_new_options():
    """The four-class colour set is what it was before ``classes`` and ``grey`` existed."""
    x, y = data.make_shapes(41, size=20, seed=3)
    # Sums recorded from the generator before the options were added.
    assert float(x.sum(dtype=np.float64)) == pytest.approx(24913.713, abs=1e-2)
    assert int(y.sum()) == 60


def test_other_shapes_are_labelled_by_the_classes_given():
    classes = data.OTHER_SHAPE_CLASSES
    assert len(classes) == 8 and not set(classes) & set(data.SHAPE_CLASSES)
    assert data.ALL_SHAPES == data.SHAPE_CLASSES + classes
    x, y = data.make_shapes(50, size=16, seed=5, classes=classes)
    assert x.shape == (50, 3, 16, 16) and x.dtype == np.float32
    counts = np.bincount(y, minlength=len(classes))
    assert len(counts) == 8 and counts.max() - counts.min() <= 1
    x2, _ = data.make_shapes(50, size=16, seed=5, classes=classes)
    np.testing.assert_array_equal(x, x2)
    # A subset in another order: the label indexes the tuple given.
    _, y3 = data.make_shapes(8, size=16, seed=0, classes=("star", "ring"))
    assert set(y3) == {0, 1}


@pytest.mark.parametrize("bad", [(), "ring", ("ring", "hexagon"), ["circle", 3]])
def test_unknown_shape_classes_are_rejected(bad):
    with pytest.raises(ValueError, match="classes"):
        data.make_shapes(4, size=16, classes=bad)


def test_every_outline_differs_from_every_other():
    """At the same place and size, two kinds share less than 80 % of their pixels (IoU)."""
    grid = (np.arange(64) + 0.5) / 4
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    masks = {k: data._shape_mask(k, yy, xx, 8.0, 8.0, 5.0) for k in data.ALL_SHAPES}
    for k, m in masks.items():
        assert m.mean() > 0.03, f"{k} is almost empty"
    kinds = list(masks)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou < 0.8, f"{a} and {b} overlap with IoU {iou:.2f}"


def test_grey_shapes_are_bright_on_a_dark_background():
    x3, y3 = data.make_shapes(60, size=16, seed=7, classes=data.ALL_SHAPES)
    x, y = data.make_shapes(60, size=16, seed=7, classes=data.ALL_SHAPES, grey=True)
    np.testing.assert_array_equal(y, y3)  # the same images, one channel
    assert x.shape == (60, 1, 16, 16) and x.dtype == np.float32
    assert np.allclose(x.min(axis=(1, 2, 3)), 0) and np.allclose(x.max(axis=(1, 2, 3)), 1)
    # Independent oracle: the colour distance of each pixel from the corner pixel, which
    # is background (a shape keeps its radius away from the border).
    corner = x3[:, :, :1, :1]
    shape_pixels = np.sqrt(((x3 - corner) ** 2).sum(axis=1)) > 0.4  # (60, 16, 16)
    for img, mask in zip(x[:, 0], shape_pixels):
        assert img[mask].mean() > 0.6 and img[~mask].mean() < 0.25


def test_grey_keeps_a_shape_whose_grey_level_equals_the_background():
    """The planted bug: averaging the channels first loses a red shape on green."""
    x = np.zeros((1, 3, 8, 8), dtype=np.float32)
    x[0, 1] = 0.5  # green background
    x[0, 0, 2:6, 2:6], x[0, 1, 2:6, 2:6] = 0.5, 0.0  # a red square of the same mean grey
    grey = data._grey_contrast(x)
    assert grey[0, 0, 2:6, 2:6].min() == pytest.approx(1.0, abs=1e-6)
    assert grey[0, 0, 0].max() == 0.0
    mean_first = np.abs(x.mean(axis=1) - x.mean(axis=1)[:, :1, :1])  # the wrong variant
    assert mean_first.max() == 0.0  # which sees nothing


# --------------------------------------------------------------------------- stretch_contrast

def test_stretch_contrast_worked_example():
    x = np.array([[[[2.0, 4.0], [6.0, 10.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])  # (2, 1, 2, 2)
    out = data.stretch_contrast(x)
    np.testing.assert_allclose(out[0, 0], [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(out[1], 0.0)  # a constant image has nothing to stretch
    assert out.dtype == np.float32


def _stretch_naive(x):
    out = np.zeros(x.shape, dtype=np.float64)
    for i, img in enumerate(x):
        lo, hi = float(img.min()), float(img.max())
        if hi > lo:
            for idx in np.ndindex(img.shape):
                out[(i, *idx)] = (img[idx] - lo) / (hi - lo)
    return out


def _stretch_global(x):
    """A planted bug: one minimum and maximum for the whole batch."""
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


@given(n=st.integers(1, 4), c=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5),
       seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_stretch_contrast_matches_a_loop(n, c, h, w, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, h, w)) * rng.uniform(0.1, 10, size=(n, 1, 1, 1))
    out = data.stretch_contrast(x)
    np.testing.assert_allclose(out, _stretch_naive(x), atol=1e-6)
    if h * w * c > 1:
        assert np.allclose(out.min(axis=(1, 2, 3)), 0) and np.allclose(out.max(axis=(1, 2, 3)), 1)


def test_the_loop_oracle_catches_a_global_stretch():
    x = np.stack([np.linspace(0, 1, 4).reshape(1, 2, 2), np.linspace(5, 9, 4).reshape(1, 2, 2)])
    assert not np.allclose(_stretch_global(x), _stretch_naive(x), atol=1e-6)
    np.testing.assert_allclose(data.stretch_contrast(x), _stretch_naive(x), atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 2)), [[[[0.0]]]], np.full((1, 1, 2, 2), np.nan)])
def test_stretch_contrast_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="x"):
        data.stretch_contrast(bad)


# --------------------------------------------------------------------------- segmentation

def test_shapes_segmentation_types_and_determinism():
    x, masks = data.shapes_segmentation(30, size=24, seed=5)
    assert x.shape == (30, 3, 24, 24) and x.dtype == np.float32
    assert masks.shape == (30, 24, 24) and masks.dtype == np.int64
    assert x.min() >= 0 and x.max() <= 1
    assert data.SEGMENTATION_CLASSES == ("background", "square", "disc", "triangle")
    assert set(np.unique(masks)) == {0, 1, 2, 3}
    x2, m2 = data.shapes_segmentation(30, size=24, seed=5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(masks, m2)
    assert not np.array_equal(data.shapes_segmentation(30, size=24, seed=6)[1], masks)
    # every image holds between 1 and max_shapes shapes
    _, one = data.shapes_segmentation(20, max_shapes=1, seed=0)
    assert all(len(np.unique(m)) == 2 for m in one)


def components(mask):
    """Connected regions (4-neighbourhood) of the non-zero pixels: (class, boolean mask)."""
    from scipy import ndimage

    labelled, n = ndimage.label(mask > 0)
    return [(int(mask[labelled == i][0]), labelled == i) for i in range(1, n + 1)]


def test_shapes_segmentation_masks_match_the_pictures():
    from scipy import ndimage

    x, masks = data.shapes_segmentation(200, seed=0)
    fills = {1: [], 2: [], 3: []}
    for image, mask in zip(x, masks):
        # away from the anti-aliased outlines (a thin apex can cover a little of pixels two
        # steps from any labelled one), the background pixels share one colour
        # (up to the noise) and every shape pixel differs from it clearly: the mask is
        # what the image shows
        background = np.median(image[:, mask == 0], axis=1)  # (3,)
        distance = np.linalg.norm(image - background[:, None, None], axis=0)  # (H, W)
        inner_bg = ndimage.binary_erosion(mask == 0, iterations=2, border_value=1)
        inner_fg = ndimage.binary_erosion(mask > 0)
        assert distance[inner_bg].max() < 0.25
        assert distance[inner_fg].min() > 0.3
        # and the outline lies where the colour changes: half-covered pixels go to the
        # class that covers at least half of them
        assert np.median(distance[mask > 0]) > 2 * np.median(distance[mask == 0]) + 0.2
        # shapes do not touch, so every region holds one class, and its outline
        # fills its bounding box as the shape should
        for cls, region in components(mask):
            assert set(np.unique(mask[region])) == {cls}
            rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
            box = region[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            fills[cls].append(box.mean())
    # square 1, disc pi/4, triangle 1/2 of the bounding box; the pixel grid adds a
    # staircase to the triangle's slanted sides, which fills its small box a little more
    assert np.mean(fills[1]) > 0.95
    assert abs(np.mean(fills[2]) - np.pi / 4) < 0.05
    assert 0.5 < np.mean(fills[3]) < 0.65 and np.max(fills[3]) < np.min(fills[1])
    # the classes are about equally frequent
    counts = np.array([len(fills[c]) for c in (1, 2, 3)])
    assert counts.min() > 0.8 * counts.mean()


@pytest.mark.parametrize(("kwargs", "exc"), [({"n": 0}, ValueError), ({"n": 2.0}, TypeError),
                                             ({"n": 2, "size": 8}, ValueError),
                                             ({"n": 2, "max_shapes": 0}, ValueError)])
def test_shapes_segmentation_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        data.shapes_segmentation(**kwargs)

# --------------------------------------------------------------------------- augmentation

def test_random_shift_moves_content_with_zero_fill():
    x = np.arange(2 * 1 * 6 * 7, dtype=np.float64).reshape(2, 1, 6, 7) + 1
    rng = np.random.default_rng(0)
    out = data.random_shift(x, max_shift=2, rng=rng)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(2):
        # Recover the offset from where the first value of the image landed.
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(out[i], _shift_reference(x[i], dy, dx))]
        assert len(matches) == 1
    assert x[0, 0, 0, 0] == 1  # input untouched


def _shift_reference(img, dy, dx):
    """Independent implementation: pad with zeros and crop."""
    c, h, w = img.shape
    padded = np.zeros((c, h + 4, w + 4))
    padded[:, 2:2 + h, 2:2 + w] = img
    return padded[:, 2 - dy:2 - dy + h, 2 - dx:2 - dx + w]


def test_random_shift_statistics_and_errors():
    x = np.ones((500, 1, 8, 8), dtype=np.float32)
    out = data.random_shift(x, max_shift=2, rng=1)
    zeros_rows = (out[:, 0].sum(axis=2) == 0).sum(axis=1)  # rows emptied per image
    # Vertical offsets are uniform over -2..2: 0, 1 or 2 empty rows with 1/5, 2/5, 2/5.
    freq = np.bincount(zeros_rows, minlength=3) / len(x)
    np.testing.assert_allclose(freq, [0.2, 0.4, 0.4], atol=0.06)
    np.testing.assert_array_equal(data.random_shift(x, 0, rng=1), x)
    with pytest.raises(ValueError, match="x must be"):
        data.random_shift(x[0], 2)
    with pytest.raises(ValueError, match="max_shift"):
        data.random_shift(x, 8)


# --------------------------------------------------------------------------- MNIST reader

def write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_mnist(folder, gz, rng):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 7, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    for name, a in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), a)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_read_mnist_round_trip(tmp_path, gz):
    arrays = make_mnist(tmp_path, gz, np.random.default_rng(0))
    split = data.read_mnist(tmp_path)
    assert split.x_train.shape == (7, 1, 28, 28) and split.x_test.shape == (3, 1, 28, 28)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    np.testing.assert_allclose(split.x_train[:, 0] * 255,
                               arrays["train-images-idx3-ubyte"], atol=1e-4)
    np.testing.assert_array_equal(split.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert split.class_names == tuple("0123456789")


def test_read_mnist_from_env_and_torchvision_layout(tmp_path, monkeypatch):
    arrays = make_mnist(tmp_path / "MNIST" / "raw", False, np.random.default_rng(1))
    monkeypatch.setenv("CNNLIB_DATA", str(tmp_path))
    split = data.read_mnist()
    np.testing.assert_array_equal(split.y_train, arrays["train-labels-idx1-ubyte"])


def test_read_mnist_missing(tmp_path, monkeypatch):
    make_mnist(tmp_path, False, np.random.default_rng(0))
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as err:
        data.read_mnist(tmp_path)
    assert "t10k-labels-idx1-ubyte" in str(err.value) and str(tmp_path) in str(err.value)
    assert "train-images" not in str(err.value)
    monkeypatch.delenv("CNNLIB_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="CNNLIB_DATA"):
        data.read_mnist()


def test_read_idx_rejects_truncated_file(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.zeros((2, 3, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="declares shape"):
        data.read_idx(path)


# --------------------------------------------------------------------------- CIFAR reader

def write_cifar(folder, rng, n=4, protocol=4):
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [b"f.png"] * n}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        batches[name] = batch
    names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
             b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    return batches


@pytest.mark.parametrize("protocol", [2, 4])
def test_read_cifar10_round_trip(tmp_path, protocol):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(0),
                          protocol=protocol)
    split = data.read_cifar10(tmp_path)
    assert split.x_train.shape == (20, 3, 32, 32) and split.x_test.shape == (4, 3, 32, 32)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert split.class_names[:2] == ("plane", "car")
    # Pixel (row 0, col 1) of the green channel is byte 1024 + 1 of the row.
    first = batches["data_batch_1"][b"data"][0]
    assert split.x_train[0, 1, 0, 1] * 255 == pytest.approx(first[1025], abs=1e-3)
    assert split.x_train[0, 2, 1, 0] * 255 == pytest.approx(first[2048 + 32], abs=1e-3)
    np.testing.assert_array_equal(split.y_train[4:8], batches["data_batch_2"][b"labels"])
    np.testing.assert_array_equal(split.y_test, batches["test_batch"][b"labels"])
    # The folder itself can be given as root.
    again = data.read_cifar10(tmp_path / "cifar-10-batches-py")
    np.testing.assert_array_equal(again.x_test, split.x_test)


def test_read_cifar10_missing_and_malicious(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, np.random.default_rng(0))
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3") as err:
        data.read_cifar10(tmp_path)
    assert str(folder) in str(err.value)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.read_cifar10(tmp_path)


# --------------------------------------------------------------------------- image folder

def test_read_image_folder_round_trip(tmp_path):
    from skimage.io import imsave

    rng = np.random.default_rng(0)
    saved = {}
    for cls in ("dog", "cat"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            img = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            imsave(tmp_path / cls / f"{i}.png", img, check_contrast=False)
            saved[(cls, i)] = img
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    x, y, names = data.read_image_folder(tmp_path)
    assert names == ("cat", "dog")
    assert x.shape == (4, 3, 6, 5) and x.dtype == np.float32 and y.dtype == np.int64
    assert y.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(x[2].transpose(1, 2, 0) * 255, saved[("dog", 0)], atol=1e-3)

    xs, _, _ = data.read_image_folder(tmp_path, size=4)
    assert xs.shape == (4, 3, 4, 4) and 0 <= xs.min() and xs.max() <= 1


def test_read_image_folder_grayscale_mixed_sizes_and_missing(tmp_path):
    from skimage.io import imsave

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    imsave(tmp_path / "a" / "1.png", np.full((4, 4), 255, np.uint8), check_contrast=False)
    imsave(tmp_path / "b" / "1.png", np.zeros((5, 4), np.uint8), check_contrast=False)
    with pytest.raises(ValueError, match="different sizes"):
        data.read_image_folder(tmp_path)
    x, y, _ = data.read_image_folder(tmp_path, size=(3, 3))
    assert x.shape == (2, 1, 3, 3)
    np.testing.assert_allclose(x[0], 1.0)
    np.testing.assert_allclose(x[1], 0.0)
    with pytest.raises(FileNotFoundError, match="subfolder per class"):
        data.read_image_folder(tmp_path / "nowhere")
