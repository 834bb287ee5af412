"""When transfer learning pays: learn five new digits from a picture or five of each.

The demonstration of chapter 12, offline and reproducible. A small ResNet is trained
on the digits 0-4 (the *source* task, about 720 labelled 16x16 images, with small
random rotations and zooms). The *target* task is to tell the digits 5-9 apart from
only ``shots`` labelled images per class. Three ways to learn it, each repeated over
several seeds (each seed draws other labelled images and other initial weights):

- **scratch**: the same network from random weights, trained on the few images with
  the same number of steps as fine-tuning and a learning rate suited to random
  weights;
- **feature extraction**: the source network frozen, the feature maps of its last
  stage (``layer3``, 64 x 4 x 4 values) fed to a logistic regression;
- **fine-tuning**: the source network with a new head, all layers but the batch
  norms trained on the few images, earlier layers with smaller learning rates
  (discriminative rates).

Every method is scored on all the held-out test images of the digits 5-9, which no
method has seen. The source network never saw a 5, 6, 7, 8 or 9: what transfers is
what it learned about strokes and shapes.

Transfer matters most when labels are scarcest: with one labelled image per class
(the default) fine-tuning beats scratch training on each of the eight default seeds,
while with five per class a scratch baseline given the same number of steps and its
own learning rate draws level (``transfer_demo(shots=5)``). Both are worth showing: a
baseline that is not tuned makes any transfer look good.

Call :func:`transfer_demo` (under half a minute on two idle CPU cores); ``python
examples/transfer_demo.py`` prints the table. Results are deterministic for a given PyTorch
version and thread count.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cnnlib.data import load_digits
from cnnlib.torch.models import small_resnet
from cnnlib.torch.train import evaluate, fit
from cnnlib.torch.transfer import extract_features, freeze, param_groups, replace_head

__all__ = ["TransferDemo", "main", "source_model", "transfer_demo"]

METHODS = ("scratch", "feature extraction", "fine-tuning")


@dataclass
class TransferDemo:
    """Accuracies of each method on the target test set, one per seed."""

    accuracies: dict[str, list[float]]
    shots: int
    seeds: tuple[int, ...]
    source_accuracy: float
    test_images: int
    seconds: float
    settings: dict = field(default_factory=dict)

    def mean(self, method: str) -> float:
        return float(np.mean(self.accuracies[method]))

    def std(self, method: str) -> float:
        # The sample standard deviation (ddof=1): the seeds are a sample of the runs
        # one could make.
        return float(np.std(self.accuracies[method], ddof=1))

    def table(self) -> str:
        """A plain-text table for a chapter to print."""
        lines = [f"target: digits 5-9 from {self.shots} labelled images per class; "
                 f"{self.test_images} test images; {len(self.seeds)} seeds",
                 f"source network (digits 0-4) test accuracy: {self.source_accuracy:.3f}",
                 "",
                 f"{'method':<20}{'mean':>8}{'std':>8}   per seed"]
        for m in METHODS:
            per_seed = " ".join(f"{a:.3f}" for a in self.accuracies[m])
            lines.append(f"{m:<20}{self.mean(m):>8.3f}{self.std(m):>8.3f}   {per_seed}")
        return "\n".join(lines)


def _split(size: int):
    data = load_digits(size, seed=0)
    src_tr, src_te = data.y_train < 5, data.y_test < 5
    return (data.x_train[src_tr], data.y_train[src_tr], data.x_test[src_te],
            data.y_test[src_te], data.x_train[~src_tr], data.y_train[~src_tr] - 5,
            data.x_test[~src_te], data.y_test[~src_te] - 5)


def source_model(*, size: int = 16, epochs: int = 6, seed: int = 0, augment: bool = True,
                 device: str | torch.device | None = "cpu",
                 progress: bool = False) -> tuple[nn.Module, float]:
    """The small ResNet trained on the digits 0-4, and its test accuracy on them."""
    from cnnlib.torch import augment as aug

    xs, ys, xs_test, ys_test, *_ = _split(size)
    torch.manual_seed(seed)
    model = small_resnet(depth=8, width=16, num_classes=5, in_channels=1)
    transform = aug.Compose(aug.RandomRotation(15.0),
                            aug.RandomResizedCrop((0.7, 1.0))) if augment else None
    fit(model, (xs, ys), None, epochs=epochs, batch_size=32, lr=4e-3, weight_decay=5e-4,
        scheduler="onecycle", transform=transform, device=device, progress=progress,
        seed=seed)
    return model, evaluate(model, (xs_test, ys_test), device=device).accuracy


def _few_shot(x: np.ndarray, y: np.ndarray, shots: int, rng: np.random.Generator):
    idx = np.concatenate([rng.choice(np.flatnonzero(y == k), shots, replace=False)
                          for k in range(5)])
    return x[idx], y[idx]


def transfer_demo(*, shots: int = 1, seeds: tuple[int, ...] = tuple(range(8)),
                  size: int = 16, source_epochs: int = 6, epochs: int = 120,
                  lr: float = 3e-3, scratch_lr: float = 1e-2, feature_layer: str = "layer3",
                  source_augment: bool = True, device: str | torch.device | None = "cpu",
                  progress: bool = False) -> TransferDemo:
    """Scratch training against feature extraction and fine-tuning, over several seeds.

    Parameters
    ----------
    shots : int
        Labelled training images per target class.
    seeds : tuple of int
        One run of every method per seed (8 by default); at least 2 for a standard
        deviation.
    size : int
        Side of the digit images.
    source_epochs : int
        Epochs of the source training on the digits 0-4.
    epochs : int
        Full-batch steps for scratch training and fine-tuning (the same budget; fewer
        leave the scratch network under-trained, which would flatter transfer).
    lr : float
        Learning rate of the fine-tuned head (earlier layers get ``lr / 2.6**k``).
    scratch_lr : float
        Learning rate of scratch training (AdamW), higher than ``lr`` because random
        weights have further to go.
    feature_layer : str
        The layer whose (flattened) output feature extraction uses. The last stage
        keeps more of what tells unseen classes apart than the pooled 64 features,
        which training on five classes has specialised.
    source_augment : bool
        Train the source network with random rotations and zooms.
    device : str or torch.device, optional
        ``"cpu"`` by default, so that the numbers are the same on every machine.
    progress : bool
        Print one line per seed.

    Returns
    -------
    TransferDemo
        Accuracies per method and seed; ``.table()`` formats them.

    Notes
    -----
    Chapter 12 (transfer learning and fine-tuning) prints this table.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(seeds) < 2:
        raise ValueError(f"seeds must hold at least 2 seeds for a standard deviation, "
                         f"got {seeds!r}")
    start = time.perf_counter()
    *_, xt_pool, yt_pool, xt_test, yt_test = _split(size)
    source, source_accuracy = source_model(size=size, epochs=source_epochs,
                                           augment=source_augment, device=device)
    test_features = extract_features(source, xt_test, feature_layer, device=device).numpy()
    acc: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in seeds:
        x, y = _few_shot(xt_pool, yt_pool, shots, np.random.default_rng(seed))
        full_batch = dict(epochs=epochs, batch_size=len(y), device=device, progress=False,
                          seed=seed)

        torch.manual_seed(seed)
        scratch = small_resnet(depth=8, width=16, num_classes=5, in_channels=1)
        fit(scratch, (x, y), None, lr=scratch_lr, **full_batch)
        acc["scratch"].append(evaluate(scratch, (xt_test, yt_test), device=device).accuracy)

        features = extract_features(source, x, feature_layer, device=device).numpy()
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        clf.fit(features, y)
        acc["feature extraction"].append(float(np.mean(clf.predict(test_features) == yt_test)))

        torch.manual_seed(seed)
        tuned = copy.deepcopy(source)
        replace_head(tuned, 5)
        # Frozen batch norms keep the source statistics: 25 images are too few to
        # re-estimate them.
        freeze(tuned, [n for n, m in tuned.named_modules() if isinstance(m, nn.BatchNorm2d)])
        opt = torch.optim.AdamW(param_groups(tuned, lr, factor=2.6), weight_decay=1e-4)
        fit(tuned, (x, y), None, optimizer=opt, **full_batch)
        acc["fine-tuning"].append(evaluate(tuned, (xt_test, yt_test), device=device).accuracy)
        if progress:
            print(f"seed {seed}: " + ", ".join(f"{m} {acc[m][-1]:.3f}" for m in METHODS),
                  flush=True)
    return TransferDemo(acc, shots, tuple(seeds), source_accuracy, len(yt_test),
                        time.perf_counter() - start,
                        dict(size=size, source_epochs=source_epochs, epochs=epochs, lr=lr,
                             scratch_lr=scratch_lr))


def main() -> int:
    result = transfer_demo(progress=True)
    print(result.table())
    print(f"({result.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
