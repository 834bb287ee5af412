"""A small minibatch trainer for the NumPy networks (chapter 7).

It is the training loop of chapter 7, packaged: shuffle, cut minibatches, augment,
normalise, forward, loss, backward, one update per parameter. Everything is seeded, so a
run is repeatable.

API
---
``Trainer(model, *, optimizer="adam", learning_rate=1e-3, optim_config=None,
batch_size=64, normalize=True, augment=None, schedule=None, seed=0, progress=True)``

``model``
    A :class:`~cnnlib.numpy.Sequential` (or any layer) returning class scores.
``optimizer``
    ``"sgd"``, ``"sgd_momentum"`` or ``"adam"``: the update rules of
    :mod:`cnnlib.numpy.optim`. ``optim_config`` adds settings such as
    ``{"momentum": 0.9, "weight_decay": 5e-4}``; each parameter keeps its own state.
``normalize``
    ``True``: subtract the training set's per-channel mean and divide by its standard
    deviation (computed once in :meth:`Trainer.fit`, then reused by :meth:`evaluate`
    and :meth:`predict`); ``False``: feed inputs as they are; or a ``(mean, std)``
    pair of per-channel sequences.
``augment``
    ``None`` or a callable ``augment(x_batch, rng=generator) -> x_batch`` applied to
    each training minibatch (before normalisation), for example
    :func:`cnnlib.data.random_shift`.
``schedule``
    ``None`` (constant rate), ``"cosine"`` (decay to 0 along a half cosine over the
    epochs of :meth:`fit`) or a callable ``epoch -> factor`` multiplying the rate.
``progress``
    A tqdm bar per epoch, written to standard output (never standard error, which an
    nbgrader test cell must not write to). ``False`` prints nothing.

``history = trainer.fit(x, y, epochs=10, x_val=None, y_val=None)``
    Trains and returns ``trainer.history``: a dict of per-epoch lists
    ``"train_loss"``, ``"train_acc"`` (means over the epoch's minibatches, in training
    mode with augmentation), ``"val_loss"``, ``"val_acc"`` (NaN without validation
    data) and ``"seconds"``. Calling ``fit`` again continues training and the history.

``loss, acc = trainer.evaluate(x, y)``
    Mean cross-entropy and accuracy in evaluation mode.

``scores = trainer.predict(x)``
    Class scores ``(N, num_classes)``; ``scores.argmax(1)`` gives labels.

Example
-------
>>> from cnnlib.data import load_digits, random_shift
>>> from cnnlib.numpy import Trainer, lenet5
>>> data = load_digits()
>>> trainer = Trainer(lenet5(rng=0), augment=random_shift, seed=0, progress=False)
>>> history = trainer.fit(data.x_train, data.y_train, epochs=2,
...                       x_val=data.x_test, y_val=data.y_test)
>>> sorted(history)
['seconds', 'train_acc', 'train_loss', 'val_acc', 'val_loss']
"""

from __future__ import annotations

import math
import numbers
import sys
import time

import numpy as np

from ._utils import as_int
from .losses import softmax_cross_entropy
from .optim import adam, sgd, sgd_momentum

__all__ = ["Trainer"]

_RULES = {"sgd": sgd, "sgd_momentum": sgd_momentum, "adam": adam}


def _check_xy(x, y, name_x: str, name_y: str):
    if not isinstance(x, np.ndarray) or x.ndim < 2:
        raise ValueError(f"{name_x} must be an ndarray of shape (N, ...), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(y, np.ndarray) or y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{name_y} must be an ndarray of shape ({len(x)},) to match "
                         f"{name_x} with shape {x.shape}, got "
                         f"{getattr(y, 'shape', type(y).__name__)}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name_y} must hold integer class labels, got dtype {y.dtype}")


class Trainer:
    """Minibatch training of a NumPy network with softmax cross-entropy.

    See the module docstring for the parameters; chapter 7 walks through a run.
    """

    def __init__(self, model, *, optimizer: str = "adam", learning_rate: float = 1e-3,
                 optim_config: dict | None = None, batch_size: int = 64, normalize=True,
                 augment=None, schedule=None, seed=0, progress: bool = True):
        if optimizer not in _RULES:
            raise ValueError(f"optimizer must be one of {sorted(_RULES)}, got {optimizer!r}")
        batch_size = as_int(batch_size, "batch_size", minimum=1)
        if (isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real)
                or not learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be None or a callable, got {augment!r}")
        if not (schedule is None or schedule == "cosine" or callable(schedule)):
            raise ValueError(f"schedule must be None, 'cosine' or a callable, got {schedule!r}")
        self.model = model
        self.rule = _RULES[optimizer]
        self.learning_rate = float(learning_rate)
        self.optim_config = dict(optim_config or {})
        self.batch_size = batch_size
        self.normalize = normalize
        self.augment = augment
        self.schedule = schedule
        self.progress = progress
        self.rng = np.random.default_rng(seed)
        self.mean = self.std = None
        if not isinstance(normalize, bool):
            mean, std = normalize
            self.mean = np.asarray(mean, dtype=np.float64).reshape(1, -1, 1, 1)
            self.std = np.asarray(std, dtype=np.float64).reshape(1, -1, 1, 1)
        self.configs: dict[str, dict] = {}
        self.history: dict[str, list] = {"train_loss": [], "train_acc": [], "val_loss": [],
                                         "val_acc": [], "seconds": []}

    # -- helpers -------------------------------------------------------------------
    @property
    def dtype(self):
        first = next(iter(self.model.params.values()), None)
        return first.dtype if first is not None else np.dtype(np.float32)

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        """Normalise (when set up) and cast to the model's dtype."""
        if self.mean is not None:
            # Per-channel statistics broadcast over (N, C, H, W); other ranks get scalars.
            mean, std = self.mean, self.std
            if x.ndim != 4:
                mean, std = mean.mean(), std.mean()
            x = (x - mean) / std
        return x.astype(self.dtype, copy=False)

    def _step(self, learning_rate: float) -> None:
        grads = self.model.grads
        for name, w in self.model.params.items():
            config = self.configs.setdefault(name, dict(self.optim_config))
            config["learning_rate"] = learning_rate
            new_w, self.configs[name] = self.rule(w, grads[name], config)
            w[...] = new_w  # in place: the layer owns w

    def _rate(self, epoch: int, epochs: int) -> float:
        if self.schedule is None:
            return self.learning_rate
        if self.schedule == "cosine":
            return self.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        return self.learning_rate * float(self.schedule(epoch))

    # -- public --------------------------------------------------------------------
    def fit(self, x, y, *, epochs: int = 10, x_val=None, y_val=None) -> dict[str, list]:
        """Train for ``epochs`` passes over ``(x, y)``; return the history.

        Parameters
        ----------
        x : (N, C, H, W) ndarray
            Training images (any floating dtype; cast to the model's).
        y : (N,) int ndarray
            Labels.
        epochs : int
        x_val, y_val : ndarrays, optional
            Evaluated after every epoch.

        Returns
        -------
        dict of lists
            ``self.history``.
        """
        _check_xy(x, y, "x", "y")
        if (x_val is None) != (y_val is None):
            raise ValueError("pass both x_val and y_val, or neither")
        if x_val is not None:
            _check_xy(x_val, y_val, "x_val", "y_val")
        epochs = as_int(epochs, "epochs", minimum=1)
        if self.normalize is True and self.mean is None:
            axes = (0, 2, 3) if x.ndim == 4 else tuple(range(x.ndim))
            self.mean = x.mean(axis=axes, dtype=np.float64).reshape(1, -1, 1, 1)
            # A constant channel would divide by zero; leave its scale alone.
            std = x.std(axis=axes, dtype=np.float64)
            self.std = np.where(std > 0, std, 1.0).reshape(1, -1, 1, 1)
        n = len(x)
        n_batches = math.ceil(n / self.batch_size)
        for epoch in range(epochs):
            start = time.perf_counter()
            rate = self._rate(epoch, epochs)
            order = self.rng.permutation(n)
            total_loss = total_correct = 0.0
            bar = None
            if self.progress:
                from tqdm import tqdm

                done = len(self.history["seconds"])
                bar = tqdm(total=n_batches, file=sys.stdout, leave=True, dynamic_ncols=True,
                           desc=f"epoch {done + 1}", unit="batch")
            for b in range(n_batches):
                idx = order[b * self.batch_size:(b + 1) * self.batch_size]
                xb = x[idx]
                if self.augment is not None:
                    xb = self.augment(xb, rng=self.rng)
                xb = self._prepare(xb)
                scores = self.model.forward(xb, training=True)
                loss, dscores = softmax_cross_entropy(scores, y[idx])
                # Nothing needs the images' gradient: the first layer skips it.
                self.model.backward(dscores, need_dx=False)
                self._step(rate)
                total_loss += float(loss) * len(idx)
                total_correct += int(np.sum(scores.argmax(axis=1) == y[idx]))
                if bar is not None:
                    bar.update(1)
                    if b % 10 == 0 or b == n_batches - 1:
                        seen = min(n, (b + 1) * self.batch_size)
                        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
            self.history["train_loss"].append(total_loss / n)
            self.history["train_acc"].append(total_correct / n)
            if x_val is not None:
                val_loss, val_acc = self.evaluate(x_val, y_val)
            else:
                val_loss = val_acc = float("nan")
            self.history["val_loss"].append(val_loss)
            self.history["val_acc"].append(val_acc)
            self.history["seconds"].append(time.perf_counter() - start)
            if bar is not None:
                bar.set_postfix(loss=f"{total_loss / n:.4f}", acc=f"{total_correct / n:.3f}",
                                val_acc=f"{val_acc:.3f}")
                bar.close()
        return self.history

    def predict(self, x, *, batch_size: int | None = None) -> np.ndarray:
        """Class scores of ``x`` in evaluation mode, shape (N, num_classes)."""
        if not isinstance(x, np.ndarray) or x.ndim < 2:
            raise ValueError(f"x must be an ndarray of shape (N, ...), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        bs = batch_size or max(self.batch_size, 256)
        return np.concatenate([self.model.forward(self._prepare(x[i:i + bs]), training=False)
                               for i in range(0, len(x), bs)])

    def evaluate(self, x, y, *, batch_size: int | None = None) -> tuple[float, float]:
        """Mean softmax cross-entropy and accuracy of the model on ``(x, y)``."""
        _check_xy(x, y, "x", "y")
        scores = self.predict(x, batch_size=batch_size)
        loss, _ = softmax_cross_entropy(scores, y)
        return float(loss), float(np.mean(scores.argmax(axis=1) == y))
