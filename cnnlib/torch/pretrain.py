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

Chapters 11 (ResNet) and 12 (transfer learning) use it.
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

from ..data import load_digits
from . import augment
from .models import small_resnet
from .train import evaluate, fit, save_atomic
from .weights import cache_dir, weight_filename

__all__ = ["RECIPE", "ensure_pretrained", "main", "pretrain"]

#: How the course's small ResNet is trained.
RECIPE: dict[str, Any] = {
    "model": "small_resnet", "depth": 8, "width": 16, "image_size": 16, "split_seed": 0,
    "epochs": 12, "batch_size": 64, "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4,
    "scheduler": "onecycle", "augment": "rotation 10 deg, resized crop (0.8-1.0)", "seed": 0,
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


def ensure_pretrained(*, force: bool = False, progress: bool = True) -> Path:
    """The path of the course's small-ResNet weights, training them first if missing.

    Parameters
    ----------
    force : bool
        Train again even if the file exists.
    progress : bool
        Show progress while training.

    Returns
    -------
    pathlib.Path
        ``cache_dir() / "small_resnet.pth"``.
    """
    path = cache_dir() / weight_filename("small_resnet")
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
                    print(f"training the course's small ResNet into {path} (a few minutes, "
                          "once)", flush=True)
                pretrain(path, progress=progress)
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
                                description="Train the course's pre-trained small ResNet "
                                            "into the weight cache ($CNNLIB_CACHE).")
    p.add_argument("--force", action="store_true", help="train even if the file exists")
    p.add_argument("--output", default=None, help="save here instead of the cache")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    target = Path(args.output) if args.output else cache_dir() / weight_filename("small_resnet")
    if target.is_file() and not args.force:
        print(f"{target} exists; pass --force to train again")
        return 0
    report = pretrain(target, progress=not args.no_progress)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
