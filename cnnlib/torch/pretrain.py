"""Train the course's pre-trained small ResNet and put it in the weight cache.

``python -m cnnlib.torch.pretrain`` trains :func:`cnnlib.torch.models.small_resnet`
(default settings: 8 layers, width 16, 10 classes, one input channel) on the
training part of the handwritten digits at 16x16 (``load_digits(16, seed=0)``: the
8x8 originals hold no more detail at 32x32, which costs four times as much to train
on; give the model 16x16 images), reports its
accuracy on the held-out test part, and saves the weights as ``small_resnet.pth`` in
the cache directory (``$CNNLIB_CACHE``, default ``~/.cache/cnnlib``), next to a JSON
file with the recipe and the figures. It takes a few minutes on two CPU cores and is
deterministic for a given PyTorch version and thread count.

The weights are never committed: the book build calls :func:`ensure_pretrained` when a
chapter loads them (tools/build_book.py),
which trains them once when they are missing. Afterwards
``small_resnet(weights="DEFAULT")`` or ``load_pretrained("small_resnet")`` loads them.

Chapter 11 (ResNet) and assignment a5-transfer use it.

A second entry, ``small_resnet_shapes``, is the same architecture trained on a larger
and richer source task: 8,000 synthetic shapes of eight kinds (ring, star, ellipse,
crescent, L, T, arrow, half disc; :data:`cnnlib.data.OTHER_SHAPE_CLASSES`), none of
them one of the four shapes that chapter 12 (transfer learning) moves it to.
``python -m cnnlib.torch.pretrain --name small_resnet_shapes`` trains it into
``small_resnet_shapes.pth`` in the same cache, in about a minute on one CPU core,
deterministically (one thread, seeded data and training); ``ensure_pretrained
("small_resnet_shapes")`` returns its path, training it first when it is missing. It
has 8 outputs, so build the model with ``small_resnet(num_classes=8, weights=path)``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import OTHER_SHAPE_CLASSES, load_digits, make_shapes
from . import augment
from .models import small_resnet
from .train import evaluate, fit, save_atomic
from .weights import cache_dir, weight_filename

__all__ = ["PRETRAINED", "RECIPE", "SHAPES_RECIPE", "ensure_pretrained", "main", "pretrain",
           "pretrain_shapes"]

#: How the course's small ResNet is trained.
RECIPE: dict[str, Any] = {
    "model": "small_resnet", "depth": 8, "width": 16, "image_size": 16, "split_seed": 0,
    "epochs": 12, "batch_size": 64, "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4,
    "scheduler": "onecycle", "augment": "rotation 10 deg, resized crop (0.8-1.0)", "seed": 0,
}


#: How the shapes source network (``small_resnet_shapes``) is trained. Every image is
#: new, so no augmentation is needed; the test shapes come from another seed.
SHAPES_RECIPE: dict[str, Any] = {
    "model": "small_resnet", "depth": 8, "width": 16, "image_size": 16,
    "classes": list(OTHER_SHAPE_CLASSES), "n_train": 8000, "n_test": 1000,
    "data_seed": 100, "test_seed": 101, "epochs": 5, "batch_size": 64,
    "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "scheduler": "onecycle",
    "seed": 0, "threads": 1,
}


def _augmentation() -> augment.Compose:
    # Digits must not be flipped; small turns and zooms are what handwriting varies by.
    return augment.Compose(augment.RandomRotation(10.0),
                           augment.RandomResizedCrop((0.8, 1.0), (0.9, 1.1)))


def pretrain(path: str | os.PathLike[str] | None = None, *, epochs: int | None = None,
             progress: bool = True, device: str | torch.device | None = None
             ) -> dict[str, Any]:
    """Train the small ResNet on the digits, save it, and return the figures.

    Parameters
    ----------
    path : path, optional
        Where to save the state dict; default ``cache_dir() / "small_resnet.pth"``.
        A ``.json`` file with the recipe and the figures is written next to it.
    epochs : int, optional
        Override the recipe's number of epochs (the tests use fewer).
    progress : bool
        Show progress bars on standard output.
    device : str or torch.device, optional
        Default :func:`cnnlib.torch.get_device`.

    Returns
    -------
    dict
        The recipe plus ``test_accuracy``, ``test_loss``, ``seconds``, ``threads``,
        ``torch`` and ``path``.
    """
    recipe = dict(RECIPE, epochs=RECIPE["epochs"] if epochs is None else epochs)
    path = Path(path) if path is not None else cache_dir() / weight_filename("small_resnet")
    data = load_digits(recipe["image_size"], seed=recipe["split_seed"])
    start = time.perf_counter()
    torch.manual_seed(recipe["seed"])
    model = small_resnet(depth=recipe["depth"], width=recipe["width"],
                         num_classes=len(data.class_names), in_channels=1)
    fit(model, (data.x_train, data.y_train), None, epochs=recipe["epochs"],
        batch_size=recipe["batch_size"], optimizer=recipe["optimizer"], lr=recipe["lr"],
        weight_decay=recipe["weight_decay"], scheduler=recipe["scheduler"],
        transform=_augmentation(), device=device, progress=progress, seed=recipe["seed"])
    result = evaluate(model, (data.x_test, data.y_test), device=device)
    seconds = time.perf_counter() - start
    model.cpu()
    save_atomic(model.state_dict(), path)
    report = dict(recipe, test_accuracy=result.accuracy, test_loss=result.loss,
                  test_images=result.n, seconds=round(seconds, 1),
                  threads=torch.get_num_threads(), torch=torch.__version__, path=str(path))
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def pretrain_shapes(path: str | os.PathLike[str] | None = None, *,
                    epochs: int | None = None, n_train: int | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Train the small ResNet on the eight other shapes, save it, and return the figures.

    Parameters
    ----------
    path : path, optional
        Where to save the state dict; default ``cache_dir() / "small_resnet_shapes.pth"``.
        A ``.json`` file with the recipe and the figures is written next to it.
    epochs, n_train : int, optional
        Override the recipe's number of epochs and of training images (the tests use
        fewer).
    progress : bool
        Show progress bars on standard output.

    Returns
    -------
    dict
        :data:`SHAPES_RECIPE` plus ``test_accuracy``, ``test_loss``, ``test_images``,
        ``seconds``, ``torch`` and ``path``.

    Notes
    -----
    Runs on the CPU with one thread (restored afterwards): the network and its images
    are small, one thread is as fast as several, and the result is then the same on
    every machine with the same PyTorch version.
    """
    recipe = dict(SHAPES_RECIPE)
    if epochs is not None:
        recipe["epochs"] = epochs
    if n_train is not None:
        recipe["n_train"] = n_train
    path = (Path(path) if path is not None
            else cache_dir() / weight_filename("small_resnet_shapes"))
    classes = tuple(recipe["classes"])
    size = recipe["image_size"]
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe["threads"])
    try:
        start = time.perf_counter()
        x, y = make_shapes(recipe["n_train"], size, recipe["data_seed"], classes=classes,
                           grey=True)
        x_test, y_test = make_shapes(recipe["n_test"], size, recipe["test_seed"],
                                     classes=classes, grey=True)
        torch.manual_seed(recipe["seed"])
        model = small_resnet(depth=recipe["depth"], width=recipe["width"],
                             num_classes=len(classes), in_channels=1)
        fit(model, (x, y), None, epochs=recipe["epochs"], batch_size=recipe["batch_size"],
            optimizer=recipe["optimizer"], lr=recipe["lr"],
            weight_decay=recipe["weight_decay"], scheduler=recipe["scheduler"],
            device="cpu", progress=progress, seed=recipe["seed"])
        result = evaluate(model, (x_test, y_test), device="cpu")
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    save_atomic(model.state_dict(), path)
    report = dict(recipe, test_accuracy=result.accuracy, test_loss=result.loss,
                  test_images=result.n, seconds=round(seconds, 1), torch=torch.__version__,
                  path=str(path))
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


#: The course's pre-trained networks: name in the cache -> what it is.
PRETRAINED: dict[str, str] = {
    "small_resnet": "ResNet-8 trained on the handwritten digits (chapter 11, a5-transfer)",
    "small_resnet_shapes": "ResNet-8 trained on eight synthetic shapes (chapter 12)",
}


def ensure_pretrained(name: str = "small_resnet", *, force: bool = False,
                      progress: bool = True) -> Path:
    """The path of one of the course's pre-trained networks, training it first if missing.

    Parameters
    ----------
    name : str
        A key of :data:`PRETRAINED`: ``"small_resnet"`` (the digits network, the
        default) or ``"small_resnet_shapes"``.
    force : bool
        Train again even if the file exists.
    progress : bool
        Show progress while training.

    Returns
    -------
    pathlib.Path
        ``cache_dir() / f"{name}.pth"``.
    """
    if name not in PRETRAINED:
        raise ValueError(f"unknown pre-trained network {name!r}; choose one of "
                         f"{list(PRETRAINED)}")
    path = cache_dir() / weight_filename(name)
    if force or not path.is_file():
        # Minutes of training for a file that cannot be saved: check the folder first.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"the weight cache {path.parent} is not a folder that can be "
                          f"created ({exc.strerror}); set CNNLIB_CACHE to a writable "
                          "folder") from None
        if not os.access(path.parent, os.W_OK):
            raise PermissionError(f"the weight cache {path.parent} is not writable; set "
                                  "CNNLIB_CACHE to a writable folder")
        # Several processes (parallel test workers, grading workers, a book build) may ask
        # at once: one trains, the others wait for its file.
        with _locked(path.with_suffix(".lock")):
            if force or not path.is_file():
                if progress:
                    what = "small ResNet" if name == "small_resnet" else f"network {name!r}"
                    print(f"training the course's {what} into {path} (a few minutes, once)",
                          flush=True)
                if name == "small_resnet":
                    pretrain(path, progress=progress)
                else:
                    pretrain_shapes(path, progress=progress)
    return path


@contextlib.contextmanager
def _locked(lock_path):
    """An exclusive lock on ``lock_path`` while the block runs (POSIX; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # Windows: no concurrent book builds or test workers there
        yield
        return
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnnlib.torch.pretrain",
                                description="Train one of the course's pre-trained networks "
                                            "into the weight cache ($CNNLIB_CACHE).")
    p.add_argument("--name", default="small_resnet", choices=list(PRETRAINED),
                   help="which network (default: small_resnet, the digits network)")
    p.add_argument("--force", action="store_true", help="train even if the file exists")
    p.add_argument("--output", default=None, help="save here instead of the cache")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    target = Path(args.output) if args.output else cache_dir() / weight_filename(args.name)
    if target.is_file() and not args.force:
        print(f"{target} exists; pass --force to train again")
        return 0
    train = pretrain if args.name == "small_resnet" else pretrain_shapes
    report = train(target, progress=not args.no_progress)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
