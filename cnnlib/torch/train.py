"""Training and evaluation on one CPU, one GPU, or several processes under ``torchrun``.

:func:`fit` trains a model on a dataset and returns a :class:`History`; :func:`evaluate`
gives the loss, the accuracy and the confusion matrix. The same call runs

- on the CPU, in float32 or whatever dtype the model has (float64 for gradient checks);
- on a GPU (:func:`cnnlib.torch.get_device` picks it), with bfloat16 autocast and
  channels-last memory by default;
- under ``torchrun --nproc_per_node=N``: :func:`fit` joins the process group (gloo on
  the CPU, NCCL on GPUs), wraps the model in ``DistributedDataParallel``, gives each
  process its share of every batch with a ``DistributedSampler``, and lets only rank 0
  print and save. ``batch_size`` is the global batch, so the N processes take the same
  optimisation steps as one process would.

:func:`fit` runs three named steps: ``_resume`` (from a checkpoint), ``_train_one_epoch``
and ``_save_checkpoint``. The command line (:mod:`cnnlib.torch.cli`) trains a model of
the zoo on one of the offline datasets and prints its final metrics as one JSON line::

    python -m cnnlib.torch.train --model lenet5 --dataset digits --epochs 2
    torchrun --nproc_per_node=2 -m cnnlib.torch.train --model small_resnet --epochs 3

Chapter 7 (training a CNN from scratch) uses :func:`fit`; the GPU and cluster guide
runs it under ``torchrun``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from . import _dist
from .device import get_device

__all__ = ["EarlyStopping", "Evaluation", "History", "evaluate", "fit", "main", "save_atomic"]

_CHECKPOINT_FORMAT = "cnnlib.fit/1"


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------

@dataclass
class History:
    """What :func:`fit` measured, one entry per epoch.

    ``history["val_accuracy"]`` and ``history.val_accuracy`` are the same list, so the
    history plots like a dict of curves. Training loss and accuracy are averages over
    the epoch's batches (in training mode, so with dropout); validation figures come
    from :func:`evaluate` after the epoch. ``val_*`` lists are empty without
    validation data.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def last(self) -> dict[str, float]:
        """The figures of the last epoch, for a one-line report."""
        out = {}
        for key in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            values = getattr(self, key)
            if values:
                out[key] = values[-1]
        return out


class Evaluation(NamedTuple):
    """Result of :func:`evaluate`.

    Attributes
    ----------
    loss : float
        Mean loss per example.
    accuracy : float
        Fraction of examples whose highest score is the true class.
    confusion_matrix : (K, K) int64 ndarray
        ``confusion_matrix[i, j]`` counts examples of class ``i`` predicted as ``j``
        (scikit-learn's convention: rows are the truth).
    n : int
        Number of examples.
    """

    loss: float
    accuracy: float
    confusion_matrix: np.ndarray
    n: int


@dataclass
class EarlyStopping:
    """Stop when a monitored figure has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int
        Epochs without improvement to tolerate.
    monitor : str
        ``"val_loss"`` (minimised), ``"val_accuracy"`` (maximised), ``"train_loss"``
        or ``"train_accuracy"``.
    min_delta : float
        An improvement smaller than this does not count.
    restore_best : bool
        Put the weights of the best epoch back into the model when training stops.
    """

    patience: int = 5
    monitor: str = "val_loss"
    min_delta: float = 0.0
    restore_best: bool = True
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0

    def __post_init__(self) -> None:
        if self.monitor not in ("val_loss", "val_accuracy", "train_loss", "train_accuracy"):
            raise ValueError(f"EarlyStopping.monitor must be val_loss, val_accuracy, "
                             f"train_loss or train_accuracy, got {self.monitor!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) \
                or self.patience < 1:
            raise ValueError(f"EarlyStopping.patience must be an int >= 1, got {self.patience!r}")

    def update(self, value: float, epoch: int) -> tuple[bool, bool]:
        """Record an epoch's figure; return (improved, stop)."""
        sign = -1.0 if self.monitor.endswith("loss") else 1.0
        improved = self.best is None or sign * (value - self.best) > self.min_delta
        if improved:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        return improved, self.wait >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

def _as_dataset(data: Any, name: str) -> tuple[Dataset, dict[str, Any]]:
    """A Dataset plus the DataLoader settings to keep, from what the caller passed."""
    if isinstance(data, DataLoader):
        keep = {"num_workers": data.num_workers, "collate_fn": data.collate_fn,
                "pin_memory": data.pin_memory}
        if data.num_workers > 0:
            keep["persistent_workers"] = data.persistent_workers
        return data.dataset, keep
    if isinstance(data, Dataset):
        return data, {}
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (torch.as_tensor(a) for a in data)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{name}: images and labels differ in length, "
                             f"x {tuple(x.shape)} and y {tuple(y.shape)}")
        if y.dtype.is_floating_point or y.ndim != 1:
            raise ValueError(f"{name}: labels must be a 1-D integer array, got "
                             f"{tuple(y.shape)} of {y.dtype}")
        return TensorDataset(x, y.long()), {}
    raise TypeError(f"{name} must be a torch Dataset, a DataLoader or a pair (x, y) of "
                    f"arrays, got {type(data).__name__}")


def _dtype_of(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _to_device(x: torch.Tensor, device: torch.device, dtype: torch.dtype,
               channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if x.is_floating_point():
        # Images come as float32 from the loaders; a float64 model (gradient checks)
        # gets them in its own precision.
        x = x.to(dtype)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _logits_and_loss(output: Any, y: torch.Tensor, loss_fn: Callable) -> tuple[torch.Tensor,
                                                                                torch.Tensor]:
    """Main logits and the loss (float32 even under autocast).

    GoogLeNet with auxiliary heads returns three sets of scores in training mode; the
    auxiliary losses count 0.3 each, as in the paper.
    """
    if hasattr(output, "logits"):
        logits = output.logits
        loss = loss_fn(_upcast(logits), y)
        for aux in output[1:]:
            if aux is not None:
                loss = loss + 0.3 * loss_fn(_upcast(aux), y)
        return logits, loss
    return output, loss_fn(_upcast(output), y)


def _upcast(scores: torch.Tensor) -> torch.Tensor:
    # Autocast leaves scores in bfloat16; the softmax and log of the loss want float32.
    # float32 and float64 scores are kept as they are.
    return scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------

def _resolve_flags(device: torch.device, amp: Any, channels_last: Any) -> tuple[bool, bool]:
    on_cuda = device.type == "cuda"
    if amp == "auto":
        amp = on_cuda and torch.cuda.is_bf16_supported()
    if channels_last == "auto":
        channels_last = on_cuda
    if not isinstance(amp, bool):
        raise TypeError(f"amp must be True, False or 'auto', got {amp!r}")
    if not isinstance(channels_last, bool):
        raise TypeError(f"channels_last must be True, False or 'auto', got {channels_last!r}")
    return amp, channels_last


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def _evaluate_loader(model: nn.Module, loader: Iterable, *, device: torch.device, amp: bool,
                     channels_last: bool, loss_fn: Callable,
                     num_classes: int | None) -> Evaluation:
    was_training = model.training
    model.eval()
    dtype = _dtype_of(model)
    loss_sum = torch.zeros((), dtype=torch.float64)
    confusion = None
    try:
        for x, y in loader:
            x = _to_device(x, device, dtype, channels_last)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                output = model(x)
            logits, loss = _logits_and_loss(output, y, loss_fn)
            k = num_classes or logits.shape[1]
            if confusion is None:
                confusion = torch.zeros((k, k), dtype=torch.float64)
            loss_sum += loss.double().cpu() * len(y)
            pred = logits.argmax(1)
            # (K*K,) histogram of true*K + predicted, then (K, K)
            confusion += torch.bincount((y * k + pred).cpu(), minlength=k * k).reshape(k, k)
    finally:
        model.train(was_training)
    if confusion is None:  # this process's shard was empty; other ranks still reduce
        k = num_classes or 0
        confusion = torch.zeros((k, k), dtype=torch.float64)
    totals = _dist.all_reduce_sum(torch.cat([loss_sum.reshape(1), confusion.reshape(-1)]))
    confusion = totals[1:].reshape(confusion.shape).round().long().numpy()
    n = int(confusion.sum())
    if n == 0:
        raise ValueError("evaluate: the data is empty")
    return Evaluation(float(totals[0]) / n, float(np.trace(confusion)) / n, confusion, n)


def _eval_loader(dataset: Dataset, batch_size: int, keep: dict[str, Any]) -> DataLoader:
    info = _dist.info()
    if info.active:
        # Every process evaluates its own slice, without the padding a DistributedSampler
        # adds, so the summed counts are exactly the dataset's.
        dataset = Subset(dataset, range(info.rank, len(dataset), info.world_size))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **keep)


def evaluate(model: nn.Module, data: Any, *, batch_size: int = 256,
             device: str | torch.device | None = None, amp: bool | str = "auto",
             channels_last: bool | str = "auto", loss_fn: Callable | None = None,
             num_classes: int | None = None) -> Evaluation:
    """Loss, accuracy and confusion matrix of ``model`` on ``data``.

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, C, H, W)`` images to ``(N, K)`` scores. Evaluated in ``eval`` mode,
        without gradients; its training flag is restored afterwards.
    data : Dataset, DataLoader or (x, y)
        ``x`` of shape (N, C, H, W), ``y`` of shape (N,) integer labels in [0, K).
    batch_size : int
        Images per forward pass (ignored for a DataLoader, which keeps its own).
    device : str or torch.device, optional
        Default: :func:`cnnlib.torch.get_device`. The model is moved there.
    amp, channels_last : bool or "auto"
        bfloat16 autocast and channels-last memory; ``"auto"`` turns them on on CUDA.
    loss_fn : callable, optional
        ``loss_fn(scores, labels)``, a mean over the batch; cross-entropy by default.
    num_classes : int, optional
        Size of the confusion matrix; default: the number of scores.

    Returns
    -------
    Evaluation
        ``(loss, accuracy, confusion_matrix, n)``.

    Notes
    -----
    Under ``torchrun`` each process evaluates every ``world_size``-th example and the
    figures are summed over processes, so every rank returns the whole dataset's.
    Chapter 7 plots the confusion matrix.
    """
    device = get_device(device)
    amp, channels_last = _resolve_flags(device, amp, channels_last)
    model = _unwrap(model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if isinstance(data, DataLoader) and not _dist.info().active:
        loader = data
    else:
        dataset, keep = _as_dataset(data, "data")
        loader = _eval_loader(dataset, _check_batch_size(batch_size, 1), keep)
    return _evaluate_loader(model, loader, device=device, amp=amp, channels_last=channels_last,
                            loss_fn=loss_fn or F.cross_entropy, num_classes=num_classes)


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------

def _check_batch_size(batch_size: Any, world_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if batch_size % world_size:
        raise ValueError(f"batch_size={batch_size} is the global batch and must be divisible "
                         f"by the number of processes ({world_size})")
    return batch_size // world_size


def _make_optimizer(optimizer: Any, model: nn.Module, lr: float,
                    weight_decay: float | None) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        return optimizer(model.parameters())
    params = list(model.parameters())
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr,
                                 weight_decay=0.01 if weight_decay is None else weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay or 0.0)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                               weight_decay=5e-4 if weight_decay is None else weight_decay)
    raise ValueError(f"optimizer must be 'adamw', 'adam', 'sgd', a torch.optim.Optimizer or a "
                     f"function of the parameters, got {optimizer!r}")


_PER_BATCH = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)


def _make_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer, epochs: int,
                    steps_per_epoch: int) -> tuple[Any, str]:
    """The scheduler and when it steps: ``"batch"``, ``"epoch"`` or ``"plateau"``."""
    total = epochs * steps_per_epoch
    if scheduler is None:
        return None, "epoch"
    if scheduler == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr,
                                                   total_steps=total), "batch"
    if scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), "batch"
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return scheduler, "plateau"
    if isinstance(scheduler, _PER_BATCH):
        return scheduler, "batch"
    if isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        return scheduler, "epoch"
    if callable(scheduler):
        # A function of (optimizer, total_steps): stepped after every batch.
        return scheduler(optimizer, total), "batch"
    raise ValueError(f"scheduler must be None, 'onecycle', 'cosine', an LR scheduler or a "
                     f"function (optimizer, total_steps) -> scheduler, got {scheduler!r}")


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    # Every epoch's randomness (dropout, augmentation) depends on (seed, epoch, rank)
    # only, so a run resumed from a checkpoint draws what the uninterrupted run drew.
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def _set_train_mode(model: nn.Module) -> None:
    """Training mode, except batch norms whose parameters are all frozen.

    A frozen batch norm (see :func:`cnnlib.torch.transfer.freeze`) keeps its running
    statistics, which training mode would otherwise overwrite with the new data's.
    """
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` so that a crash mid-save never leaves a truncated file:
    written next to ``path``, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    # stdout, not tqdm's default stderr: a notebook cell that writes to stderr is shown
    # as an error, and nbgrader scores such a test cell 0.
    return tqdm(total=total, desc=desc, file=sys.stdout, leave=True, dynamic_ncols=True,
                mininterval=0.5)


def fit(model: nn.Module, train_data: Any, val_data: Any = None, *, epochs: int,
        batch_size: int = 64, optimizer: Any = "adamw", lr: float = 1e-3,
        weight_decay: float | None = None, scheduler: Any = None,
        loss_fn: Callable | None = None, device: str | torch.device | None = None,
        amp: bool | str = "auto", channels_last: bool | str = "auto",
        grad_clip: float | None = None, early_stopping: int | EarlyStopping | None = None,
        checkpoint: str | os.PathLike[str] | None = None, resume: bool = True,
        transform: Callable | None = None,
        on_epoch_start: Callable[[int, nn.Module], Any] | None = None,
        progress: bool = True, seed: int | None = None,
        eval_batch_size: int = 256) -> History:
    """Train ``model`` for ``epochs`` epochs and return what was measured.

    Parameters
    ----------
    model : nn.Module
        Trained in place, maps ``(N, C, H, W)`` to ``(N, K)`` scores. Moved to
        ``device``; its dtype is kept (inputs are cast to it).
    train_data, val_data : Dataset, DataLoader or (x, y)
        Images ``(N, C, H, W)`` and integer labels ``(N,)``. From a DataLoader only the
        dataset, ``num_workers``, ``collate_fn`` and ``pin_memory`` are used: the order
        and the batches come from ``fit``, so that they follow ``seed`` and split over
        processes. ``val_data`` is optional.
    epochs : int
        Total number of epochs, counting those a resumed checkpoint already did.
    batch_size : int
        Images per optimisation step, over all processes together: under ``torchrun``
        with N processes each takes ``batch_size / N`` of them.
    optimizer : str, torch.optim.Optimizer or callable
        ``"adamw"`` (weight decay 0.01), ``"adam"``, ``"sgd"`` (Nesterov momentum 0.9,
        weight decay 5e-4), both with ``lr`` and ``weight_decay``; an optimizer built on
        ``model``'s parameters (for example with
        :func:`cnnlib.torch.transfer.param_groups`); or ``params -> optimizer``.
    scheduler : None, str, LR scheduler or callable
        ``"onecycle"`` or ``"cosine"`` (stepped after every batch); a OneCycleLR or
        CyclicLR (every batch), a ReduceLROnPlateau (every epoch, on the validation
        loss), any other scheduler (every epoch); or ``(optimizer, total_steps) ->
        scheduler`` (every batch).
    loss_fn : callable, optional
        ``loss_fn(scores, labels)`` averaged over the batch; cross-entropy by default.
    device : str or torch.device, optional
        Default :func:`cnnlib.torch.get_device` (CUDA, then MPS, then the CPU).
    amp : bool or "auto"
        Run the forward pass under bfloat16 autocast (no loss scaling is needed with
        bfloat16). ``"auto"``: on CUDA devices that support bfloat16. On the CPU it
        runs the same code, which is how the tests check it.
    channels_last : bool or "auto"
        Keep the model's weights and the input batches in NHWC memory order, which
        tensor-core convolutions prefer. ``"auto"``: on CUDA.
    grad_clip : float, optional
        Clip the global gradient norm to this value before each step.
    early_stopping : int or EarlyStopping, optional
        An int is the patience on the validation loss. By default the weights of the
        best epoch are put back when training stops.
    checkpoint : path, optional
        Save model, optimizer, scheduler, history and early-stopping state there after
        every epoch (rank 0 only). If the file exists and ``resume`` is true, training
        continues from it: with a seed, the result is the same as that of an
        uninterrupted run.
    resume : bool
        Continue from an existing ``checkpoint`` file (else it is overwritten).
    transform : callable, optional
        Applied to every training batch on the device, e.g. an
        :mod:`cnnlib.torch.augment` pipeline.
    on_epoch_start : callable, optional
        ``on_epoch_start(epoch, model)`` before each epoch (epochs count from 0), e.g.
        :class:`cnnlib.torch.transfer.GradualUnfreezing`.
    progress : bool
        One progress bar per epoch on standard output (rank 0 only).
    seed : int, optional
        Makes the run reproducible on the CPU: the shuffling and every epoch's random
        draws (dropout, augmentation) follow from ``(seed, epoch, rank)``. The model's
        initial weights are the caller's: seed before building it.
    eval_batch_size : int
        Batch size of the validation passes.

    Returns
    -------
    History
        Per-epoch training and validation loss and accuracy, learning rate and time.

    Raises
    ------
    ValueError, TypeError
        Bad arguments, before any training.

    Notes
    -----
    Batch norms whose parameters are frozen stay in evaluation mode while training, so
    their running statistics are kept. Under DDP on GPUs, batch norms become
    ``SyncBatchNorm`` for the duration of the call (statistics over the global batch);
    on CPUs (gloo) each process normalises with its own batch. Chapter 7 (training a
    CNN from scratch) introduces the loop this function runs.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be positive or None, got {grad_clip!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    if isinstance(early_stopping, int) and not isinstance(early_stopping, bool):
        early_stopping = EarlyStopping(patience=early_stopping)
    elif early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be None, an int (patience) or EarlyStopping, "
                        f"got {early_stopping!r}")
    if early_stopping is not None and early_stopping.monitor.startswith("val") \
            and val_data is None:
        raise ValueError(f"early_stopping monitors {early_stopping.monitor!r} but val_data "
                         f"is None")
    train_set, train_keep = _as_dataset(train_data, "train_data")
    val_set, val_keep = (None, {}) if val_data is None else _as_dataset(val_data, "val_data")

    device = get_device(device)
    amp, channels_last = _resolve_flags(device, amp, channels_last)
    info = _dist.init_from_env(device)
    per_rank_batch = _check_batch_size(batch_size, info.world_size)

    model.to(device)  # in place: parameters keep their identity, so optimizers stay valid
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _make_optimizer(optimizer, model, lr, weight_decay)
    # The sampler needs one seed shared by every process.
    order_seed = seed if seed is not None else _dist.broadcast_int(
        int(torch.randint(0, 2**31 - 1, ()).item()))
    sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank,
                                 shuffle=True, seed=order_seed, drop_last=False)
    train_loader = DataLoader(train_set, batch_size=per_rank_batch, sampler=sampler,
                              **train_keep)
    if len(train_loader) == 0:
        raise ValueError("train_data is empty")
    sched, sched_when = _make_scheduler(scheduler, opt, epochs, len(train_loader))
    run = _Run(model=model, opt=opt, sched=sched, sched_when=sched_when, sampler=sampler,
               train_loader=train_loader, device=device, dtype=_dtype_of(model), amp=amp,
               channels_last=channels_last, loss_fn=loss_fn or F.cross_entropy,
               transform=transform, grad_clip=grad_clip, info=info, epochs=epochs,
               seed=seed, order_seed=order_seed, early_stopping=early_stopping,
               progress=progress and info.is_main,
               val_loader=None if val_set is None else _eval_loader(val_set, eval_batch_size,
                                                                    val_keep))
    ckpt_path = None if checkpoint is None else Path(checkpoint)
    if ckpt_path is not None and resume and ckpt_path.is_file():
        _resume(run, ckpt_path, scheduler)

    restore_bn = None
    if info.active and device.type == "cuda" and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        restore_bn = _dist.swap_sync_batchnorm(model)
    try:
        for epoch in range(run.start_epoch, epochs):
            if run.history.stopped_early:
                break
            if on_epoch_start is not None:
                on_epoch_start(epoch, model)
            _train_one_epoch(run, epoch)
            if ckpt_path is not None and info.is_main:
                _save_checkpoint(ckpt_path, run)
            if info.active:
                torch.distributed.barrier()  # nobody reads a checkpoint rank 0 is writing
    finally:
        if restore_bn is not None:
            restore_bn()
        if channels_last:
            model.to(memory_format=torch.contiguous_format)

    history = run.history
    if history.stopped_early and early_stopping is not None and early_stopping.restore_best \
            and run.best_state is not None:
        model.load_state_dict(run.best_state)
        if run.progress:
            print(f"stopped early; restored the weights of epoch {early_stopping.best_epoch}",
                  flush=True)
    return history


@dataclass
class _Run:
    """What one call of :func:`fit` sets up, and the state its epochs carry forward."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    sched_when: str | None
    sampler: DistributedSampler
    train_loader: DataLoader
    val_loader: DataLoader | None
    device: torch.device
    dtype: torch.dtype
    amp: bool
    channels_last: bool
    loss_fn: Callable
    transform: Callable | None
    grad_clip: float | None
    info: Any
    epochs: int
    seed: int | None
    order_seed: int
    early_stopping: EarlyStopping | None
    progress: bool
    history: History = field(default_factory=History)
    start_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    ddp_model: nn.Module | None = None
    wrapped_for: tuple[bool, ...] | None = None


def _resume(run: _Run, path: Path, scheduler: Any) -> None:
    """Continue ``run`` from the checkpoint at ``path`` (see :func:`_save_checkpoint`)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by fit; pass "
                         f"resume=False to overwrite it")
    if run.seed is not None and state["seed"] is not None and state["seed"] != run.seed:
        raise ValueError(f"{path} was written with seed={state['seed']}, this call "
                         f"has seed={run.seed}; pass the same seed or resume=False")
    if isinstance(scheduler, str) or (callable(scheduler) and not isinstance(
            scheduler, torch.optim.lr_scheduler.LRScheduler)):
        if state["planned_epochs"] != run.epochs:
            raise ValueError(
                f"{path} comes from a run of epochs={state['planned_epochs']} whose "
                f"learning-rate schedule ({scheduler!r}) spans all of its epochs; resume "
                f"it with epochs={state['planned_epochs']}, or pass resume=False")
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    if run.sched is not None and state["scheduler"] is not None:
        run.sched.load_state_dict(state["scheduler"])
    run.history = History(**state["history"])
    run.start_epoch = state["epoch"]
    run.order_seed = run.sampler.seed = state["order_seed"]
    if run.early_stopping is not None and state["early_stopping"] is not None:
        for key, value in state["early_stopping"].items():
            setattr(run.early_stopping, key, value)
    run.best_state = state.get("best_state")
    if run.seed is None:
        torch.set_rng_state(state["rng"])
    if run.progress:
        print(f"resuming from {path} after epoch {run.start_epoch}", flush=True)


def _train_one_epoch(run: _Run, epoch: int) -> None:
    """One pass over the training data, then validation, schedules and early stopping;
    appends the epoch's figures to ``run.history``."""
    start = time.perf_counter()
    model, opt, info = run.model, run.opt, run.info
    if run.seed is not None:
        torch.manual_seed(_epoch_seed(run.seed, epoch, info.rank))
    trainable = tuple(p.requires_grad for p in model.parameters())
    if not any(trainable):
        raise ValueError(f"epoch {epoch}: every parameter of the model is frozen")
    if run.ddp_model is None or (info.active and trainable != run.wrapped_for):
        # DDP records which parameters train when it is built; a changed set (gradual
        # unfreezing) needs a new wrapper.
        run.ddp_model = model if not info.active else nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
        run.wrapped_for = trainable
    _set_train_mode(run.ddp_model)
    run.sampler.set_epoch(epoch)

    sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
    bar = _progress_bar(len(run.train_loader), f"epoch {epoch + 1}/{run.epochs}",
                        run.progress)
    for x, y in run.train_loader:
        x = _to_device(x, run.device, run.dtype, run.channels_last)
        y = y.to(run.device, non_blocking=True)
        if run.transform is not None:
            x = run.transform(x)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.amp):
            output = run.ddp_model(x)
        logits, loss = _logits_and_loss(output, y, run.loss_fn)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"epoch {epoch + 1}: the loss is {loss.item()}; "
                                     f"lower the learning rate or clip gradients")
        loss.backward()
        if run.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        opt.step()
        if run.sched_when == "batch":
            run.sched.step()
        with torch.no_grad():
            sums += torch.stack([loss.detach().double().cpu() * len(y),
                                 (logits.argmax(1) == y).sum().double().cpu(),
                                 torch.tensor(float(len(y)), dtype=torch.float64)])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{sums[0].item() / sums[2].item():.4f}", refresh=False)

    history = run.history
    sums = _dist.all_reduce_sum(sums)
    history.epoch.append(epoch + 1)
    history.train_loss.append(float(sums[0] / sums[2]))
    history.train_accuracy.append(float(sums[1] / sums[2]))
    history.lr.append(float(opt.param_groups[-1]["lr"]))
    if run.val_loader is not None:
        result = _evaluate_loader(model, run.val_loader, device=run.device, amp=run.amp,
                                  channels_last=run.channels_last, loss_fn=run.loss_fn,
                                  num_classes=None)
        history.val_loss.append(result.loss)
        history.val_accuracy.append(result.accuracy)
    if run.sched_when == "plateau":
        run.sched.step(history.val_loss[-1] if history.val_loss else history.train_loss[-1])
    elif run.sched_when == "epoch" and run.sched is not None:
        run.sched.step()
    history.seconds.append(time.perf_counter() - start)

    stopper = run.early_stopping
    if stopper is not None:
        improved, stop = stopper.update(history[stopper.monitor][-1], epoch + 1)
        history.best_epoch = stopper.best_epoch
        if improved and stopper.restore_best:
            run.best_state = {k: v.detach().to("cpu", copy=True)
                              for k, v in model.state_dict().items()}
        history.stopped_early = stop

    if bar is not None:
        post = {"loss": f"{history.train_loss[-1]:.4f}",
                "acc": f"{history.train_accuracy[-1]:.4f}"}
        if history.val_loss:
            post |= {"val_loss": f"{history.val_loss[-1]:.4f}",
                     "val_acc": f"{history.val_accuracy[-1]:.4f}"}
        bar.set_postfix(post, refresh=True)
        bar.close()


def _save_checkpoint(path: Path, run: _Run) -> None:
    """Write what :func:`fit` needs to resume ``run`` after its last epoch (fit's format)."""
    save_atomic({
        "format": _CHECKPOINT_FORMAT, "epoch": run.history.epoch[-1],
        "planned_epochs": run.epochs, "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": None if run.sched is None else run.sched.state_dict(),
        "history": run.history.as_dict(), "seed": run.seed, "order_seed": run.order_seed,
        "early_stopping": None if run.early_stopping is None else run.early_stopping.state(),
        "best_state": run.best_state, "rng": torch.get_rng_state(),
    }, Path(path))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The command line, kept here so ``python -m cnnlib.torch.train`` works; see
    :mod:`cnnlib.torch.cli`."""
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    main()
    sys.exit(0)
