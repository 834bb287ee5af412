"""LeNet-5 on the digits, the course's acceptance recipe, over three seeds.

cnnlib.numpy's Trainer trains LeNet-5 for 30 epochs on the 1,438 training digits with
the recipe below and must reach a mean test accuracy of at least 0.98 over seeds 0-2.
``make test`` runs seed 0 (``tests/numpy/test_trainer.py``); this runs all three, since
a recipe that works for one seed may be luck.

Run with ``python -m benchmarks lenet_acceptance`` (or ``make bench`` for every benchmark).
"""

from __future__ import annotations

import time

import numpy as np

# Chosen on a validation split carved from the training images (mean 99.3 % there over
# seeds 0-2), not on the test set: SGD with momentum 0.9, rate 0.05 on a half-cosine,
# batches of 32, 30 epochs, +-2 pixel shifts, per-channel normalisation.
ACCEPTANCE = dict(optimizer="sgd_momentum", learning_rate=0.05, optim_config={"momentum": 0.9},
                  batch_size=32, schedule="cosine")
EPOCHS = 30
SEEDS = (0, 1, 2)
TARGET = 0.98


def test_accuracy(seed: int) -> float:
    """Train LeNet-5 with the acceptance recipe from ``seed``; its test accuracy."""
    import cnnlib.numpy as cn
    from cnnlib.data import load_digits, random_shift

    split = load_digits()
    trainer = cn.Trainer(cn.lenet5(rng=seed), augment=random_shift, normalize=True,
                         seed=seed, progress=False, **ACCEPTANCE)
    trainer.fit(split.x_train, split.y_train, epochs=EPOCHS)
    return float(trainer.evaluate(split.x_test, split.y_test)[1])


test_accuracy.__test__ = False  # a helper of the tests, not a test


def main() -> None:
    start = time.perf_counter()
    accuracies = [test_accuracy(seed) for seed in SEEDS]
    mean = float(np.mean(accuracies))
    print(f"LeNet-5 on the digits, {EPOCHS} epochs, test accuracy per seed "
          f"{', '.join(f'{a:.4f}' for a in accuracies)}; mean {mean:.4f} "
          f"({'meets' if mean >= TARGET else 'BELOW'} the {TARGET} target); "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
