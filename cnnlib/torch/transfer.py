"""Transfer learning: freeze and unfreeze layers, swap the head, tune the learning rates.

The recipe of chapter 12, in the order one uses it:

1. load a network trained on a large source task (:func:`cnnlib.torch.load_pretrained`);
2. :func:`replace_head` with one for the target's classes;
3. either *feature extraction*: :func:`freeze` everything but the head, or compute
   :func:`extract_features` once and fit a classifier on them;
4. or *fine-tuning*: train everything, with smaller learning rates for earlier layers
   (:func:`param_groups`, "discriminative learning rates") and layers unfrozen from
   the top down as training goes on (:class:`GradualUnfreezing`); both come from
   Howard and Ruder's ULMFiT (2018).

Layers are addressed by their module names (``"layer3"``, ``"features.0"``, as
``model.named_modules()`` gives them), or by *groups*: :func:`layer_groups` splits a
model into the blocks that a depth counts, from the input to the output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .device import get_device
from .models import load_pretrained  # step 1 of the recipe, importable from here as well

__all__ = ["GradualUnfreezing", "extract_features", "freeze", "layer_groups",
           "load_pretrained", "param_groups", "replace_head", "trainable_parameters",
           "unfreeze"]

Group = tuple[str, list[str]]


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def layer_groups(model: nn.Module) -> list[Group]:
    """The model's blocks from input to output, as ``(label, [module names])``.

    One group per top-level child that has parameters, except that a normalisation
    layer joins the layer before it. For a ResNet: ``conv1+bn1``, ``layer1`` ...
    ``layer4``, ``fc``; for VGG and AlexNet: ``features``, ``classifier``; for a flat
    ``nn.Sequential`` such as LeNet-5: each convolution and linear layer. Parameters
    held by the model itself, not by a child, form a group of their own at the start.
    """
    groups: list[Group] = []
    if any(True for _ in model.parameters(recurse=False)):
        groups.append(("<own>", [""]))
    for name, child in model.named_children():
        if not _has_params(child):
            continue
        if isinstance(child, _NORMS) and groups and groups[-1][0] != "<own>":
            label, names = groups[-1]
            groups[-1] = (f"{label}+{name}", [*names, name])
        else:
            groups.append((name, [name]))
    if not groups:
        raise ValueError(f"{type(model).__name__} has no parameters")
    return groups


def _module(model: nn.Module, name: str) -> nn.Module:
    if name == "":
        return model
    try:
        return model.get_submodule(name)
    except AttributeError:
        top = [n for n, _ in model.named_children()]
        raise ValueError(f"{type(model).__name__} has no module {name!r}; its top-level "
                         f"modules are {top} (dotted names reach deeper)") from None


def _params_of(model: nn.Module, names: Iterable[str]) -> list[nn.Parameter]:
    params: list[nn.Parameter] = []
    for name in names:
        module = _module(model, name)
        params += module.parameters(recurse=name != "")
    return params


def _select(model: nn.Module, modules: str | Sequence[str] | None, depth: int | None,
            from_top: bool) -> list[nn.Parameter]:
    if modules is not None and depth is not None:
        raise ValueError("pass modules or depth, not both")
    if depth is not None:
        groups = layer_groups(model)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= len(
                groups):
            raise ValueError(f"depth must be an int from 0 to the {len(groups)} groups of "
                             f"{type(model).__name__} ({[g[0] for g in groups]}), "
                             f"got {depth!r}")
        chosen = groups[len(groups) - depth:] if from_top else groups[:depth]
        return _params_of(model, [n for _, names in chosen for n in names])
    if modules is None:
        return list(model.parameters())
    if isinstance(modules, str):
        modules = [modules]
    return _params_of(model, modules)


def freeze(model: nn.Module, modules: str | Sequence[str] | None = None, *,
           depth: int | None = None) -> nn.Module:
    """Stop gradients to some parameters (``requires_grad = False``).

    Parameters
    ----------
    model : nn.Module
    modules : str or list of str, optional
        Module names to freeze (``"layer1"``, ``"features.0"``).
    depth : int, optional
        Freeze the first ``depth`` groups of :func:`layer_groups`, from the input.
        With neither ``modules`` nor ``depth``, the whole model is frozen.

    Returns
    -------
    nn.Module
        ``model``, for chaining.

    Notes
    -----
    :func:`cnnlib.torch.fit` keeps batch norms whose parameters are all frozen in
    evaluation mode, so their running statistics stay those of the source data.
    """
    for p in _select(model, modules, depth, from_top=False):
        p.requires_grad_(False)
    return model


def unfreeze(model: nn.Module, modules: str | Sequence[str] | None = None, *,
             depth: int | None = None) -> nn.Module:
    """Let gradients reach some parameters again (``requires_grad = True``).

    ``depth`` counts groups from the *output*: ``unfreeze(model, depth=2)`` makes the
    last two groups trainable (for a ResNet, ``layer4`` and ``fc``). With neither
    ``modules`` nor ``depth``, everything is unfrozen. Returns ``model``.
    """
    for p in _select(model, modules, depth, from_top=True):
        p.requires_grad_(True)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """How many parameter values the optimizer will change."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Replace the model's last linear layer by a new one with ``num_classes`` outputs.

    The new layer has the old one's input size, bias setting, dtype and device, a
    fresh initialisation, and is trainable whatever the rest of the model is.

    Parameters
    ----------
    model : nn.Module
        Modified in place; its last ``nn.Linear`` in ``named_modules`` order is the
        head (``fc`` of a ResNet, ``classifier.6`` of VGG, ``classifier.4`` of LeNet-5).
    num_classes : int

    Returns
    -------
    nn.Linear
        The new head.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to replace")
    name, old = linears[-1]
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    if name == "":
        raise ValueError("the model is itself a Linear layer; build a new one instead")
    parent_name, _, attr = name.rpartition(".")
    setattr(_module(model, parent_name), attr, new)
    return new


def param_groups(model: nn.Module, lr: float, *, factor: float = 2.6,
                 groups: Sequence[Sequence[str] | str] | None = None,
                 weight_decay: float | None = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups with learning rates that shrink towards the input.

    The last group (the head) gets ``lr``, the one before ``lr / factor``, and so on:
    early layers hold general features that need little change, late layers are
    specific to the source task. ULMFiT's factor is 2.6.

    Parameters
    ----------
    model : nn.Module
    lr : float
        Learning rate of the last group.
    factor : float
        Ratio between the learning rates of consecutive groups (1 = one rate).
    groups : list, optional
        Module names per group, from input to output (``[["conv1", "bn1", "layer1"],
        ["layer2"], ["layer3", "fc"]]``); default :func:`layer_groups`. They must cover
        every parameter.
    weight_decay : float, optional
        Set in every group; default: the optimizer's own.

    Returns
    -------
    list of dict
        ``{"params", "lr", "name"}`` per group, for any ``torch.optim`` optimizer.
        Frozen parameters are included (they get no gradient, so they do not move),
        so one optimizer serves through gradual unfreezing.
    """
    if not lr > 0 or not factor > 0:
        raise ValueError(f"lr and factor must be positive, got lr={lr!r}, factor={factor!r}")
    if groups is None:
        named = layer_groups(model)
    else:
        named = [(n if isinstance(n, str) else "+".join(n), [n] if isinstance(n, str)
                  else list(n)) for n in groups]
    out, seen = [], set()
    for i, (label, names) in enumerate(named):
        params = [p for p in _params_of(model, names) if id(p) not in seen]
        seen.update(id(p) for p in params)
        group = {"params": params, "lr": lr / factor ** (len(named) - 1 - i), "name": label}
        if weight_decay is not None:
            group["weight_decay"] = weight_decay
        out.append(group)
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise ValueError(f"groups leave parameters out, which no optimizer would train: "
                         f"{missing[:6]}{' ...' if len(missing) > 6 else ''}")
    return out


class GradualUnfreezing:
    """Unfreeze a model group by group from the output, one step every ``every`` epochs.

    At epoch ``e`` (counted from 0) the last ``1 + e // every`` groups are trainable and
    the others frozen: first the head alone, then the head and the last block, and so
    on until everything trains. Pass it to :func:`cnnlib.torch.fit` as
    ``on_epoch_start``. Each call sets every group from the epoch number alone, so a run
    resumed from a checkpoint is in the same state as an uninterrupted one.

    Parameters
    ----------
    groups : list, optional
        Module names per group, from input to output; default :func:`layer_groups`.
    every : int
        Epochs between two unfreezing steps.
    """

    def __init__(self, groups: Sequence[Sequence[str] | str] | None = None, *,
                 every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        self.groups = groups
        self.every = every

    def _groups(self, model: nn.Module) -> list[list[str]]:
        if self.groups is None:
            return [names for _, names in layer_groups(model)]
        return [[g] if isinstance(g, str) else list(g) for g in self.groups]

    def trainable_groups(self, epoch: int, model: nn.Module) -> int:
        return min(len(self._groups(model)), 1 + epoch // self.every)

    def __call__(self, epoch: int, model: nn.Module) -> None:
        groups = self._groups(model)
        k = self.trainable_groups(epoch, model)
        for i, names in enumerate(groups):
            for p in _params_of(model, names):
                p.requires_grad_(i >= len(groups) - k)


class _Captured(Exception):
    """Raised by a hook once every requested layer has produced its output."""


def _images_loader(data: Any, batch_size: int) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        data = TensorDataset(data)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        data = TensorDataset(torch.as_tensor(data[0]))
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be images (N, C, H, W), a pair (x, y), a Dataset or a "
                        f"DataLoader, got {type(data).__name__}")
    return DataLoader(data, batch_size=batch_size, shuffle=False)


@torch.no_grad()
def extract_features(model: nn.Module, data: Any, layers: str | Sequence[str], *,
                     batch_size: int = 256, device: str | torch.device | None = None,
                     flatten: bool = True) -> torch.Tensor | dict[str, torch.Tensor]:
    """Outputs of one or more named layers for every image, through forward hooks.

    The model runs in evaluation mode and stops as soon as every requested layer has
    produced its output, so the layers after them cost nothing.

    Parameters
    ----------
    model : nn.Module
    data : (N, C, H, W) array or tensor, (x, y), Dataset or DataLoader
        Images; a dataset may yield ``(image, label)`` pairs (labels are ignored).
    layers : str or list of str
        Module names (``"avgpool"``, ``"layer3"``, ``"features.10"``); ``""`` is the
        model's own output.
    batch_size : int
        Images per forward pass.
    device : str or torch.device, optional
        Default :func:`cnnlib.torch.get_device`.
    flatten : bool
        Flatten each output to ``(N, D)``.

    Returns
    -------
    torch.Tensor or dict of str to torch.Tensor
        On the CPU, ``(N, D)`` (or the layer's shape if not flattened) per layer; a
        dict when ``layers`` is a list.

    Notes
    -----
    Chapter 12 fits a logistic regression on the ``avgpool`` features of a pre-trained
    network (feature extraction) and draws them with t-SNE.
    """
    single = isinstance(layers, str)
    names = [layers] if single else list(layers)
    modules = {name: _module(model, name) for name in names}
    device = get_device(device)
    was_training = model.training
    model.to(device).eval()
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                 torch.float32)
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    batch: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(module, inputs, output):
            batch[name] = output.detach()
            if len(batch) == len(names):
                raise _Captured

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in modules.items()]
    try:
        for item in _images_loader(data, batch_size):
            x = item[0] if isinstance(item, (tuple, list)) else item
            batch.clear()
            try:
                model(x.to(device, dtype))
            except _Captured:
                pass
            for name in names:
                out = batch[name].cpu()
                outputs[name].append(out.flatten(1) if flatten else out)  # (B, D)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    result = {name: torch.cat(chunks) for name, chunks in outputs.items()}
    return result[names[0]] if single else result
