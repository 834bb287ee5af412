"""Where in the image a trained network looks: saliency, occlusion and Grad-CAM maps.

Each function takes a classifier and a batch of images and returns one map per image,
at the input's height and width, that says how much each pixel mattered to the score of
a target class:

- :func:`saliency` (Simonyan, Vedaldi and Zisserman, 2014): the gradient of the class
  score with respect to the input pixels, in absolute value, largest over the channels.
  One backward pass; sharp but noisy, and local (how the score changes for a tiny change
  of one pixel).
- :func:`occlusion` (Zeiler and Fergus, 2014): how much the class probability (or score)
  drops when a square patch of the image is covered with a constant. One forward pass per
  patch position; the patch size sets what it can see.
- :func:`grad_cam` (Selvaraju et al., 2017): the activations of one convolutional layer,
  weighted per channel by the average gradient of the class score, summed over the
  channels, passed through a ReLU and upsampled to the input. For a network that ends
  with global average pooling and one linear layer, it is the class activation map (CAM)
  of Zhou et al. (2016) divided by the number of positions of the layer.

The scores are the network's outputs before the softmax (its *logits*). The network
runs in evaluation mode, so that images do not interact through batch statistics; every
module is put back in the training or evaluation mode it had. Gradients are taken with
:func:`torch.autograd.grad`, so no parameter's ``.grad`` is created or changed.

Chapter 15 (looking inside a trained network) uses all three.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .device import get_device

__all__ = ["grad_cam", "occlusion", "saliency"]


# --------------------------------------------------------------------------- plumbing


@contextmanager
def _evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in evaluation mode, then give every submodule its own mode back.

    ``model.train(was_training)`` would not do: a network whose batch norms were frozen
    in evaluation mode (chapter 12) would come back with all of them in training mode.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _model_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()),
                torch.get_default_dtype())


def _prepare(model: nn.Module, x: Any, device: str | torch.device | None
             ) -> tuple[torch.Tensor, bool, torch.device]:
    """The images as an (N, C, H, W) tensor on the device, in the model's dtype."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be one image (C, H, W) or a batch (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    single = x.ndim == 3
    if single:
        x = x[None]  # (1, C, H, W)
    if x.shape[0] == 0:
        raise ValueError(f"x holds no image: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must hold floating-point pixels, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    device = get_device(device)
    model.to(device)
    return x.detach().to(device, _model_dtype(model)), single, device


def _targets(target: Any, scores: torch.Tensor) -> torch.Tensor:
    """One class index per image: the prediction if ``target`` is None."""
    n, k = scores.shape
    if target is None:
        return scores.argmax(dim=1)
    t = torch.as_tensor(target)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"target must be None, an int or a sequence of ints, got {t.dtype}")
    t = t.to(scores.device, torch.long)
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"target must be one class for all {n} image(s) or one per image, "
                         f"got shape {tuple(t.shape)}")
    if ((t < 0) | (t >= k)).any():
        raise ValueError(f"target holds a class outside 0..{k - 1} (the model gives {k} "
                         f"scores): {t.tolist()}")
    return t


def _scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    scores = model(x)
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores)
        raise ValueError(f"the model must return one row of class scores per image, "
                         f"(N, K), got {shape}")
    return scores


def _pair(value: Any, name: str) -> tuple[int, int]:
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be at least 1, got {value!r}")
    return int(pair[0]), int(pair[1])


def _starts(n: int, patch: int, stride: int) -> list[int]:
    """Patch positions along one axis; the last one touches the far border."""
    starts = list(range(0, n - patch + 1, stride))
    if starts[-1] != n - patch:
        starts.append(n - patch)
    return starts


def _finish(maps: torch.Tensor, single: bool) -> torch.Tensor:
    maps = maps.detach().cpu()
    return maps[0] if single else maps


# --------------------------------------------------------------------------- the maps


def saliency(model: nn.Module, x: Any, target: Any = None, *,
             device: str | torch.device | None = None) -> torch.Tensor:
    """Gradient of the target class's score with respect to each pixel (Simonyan et al.).

    Parameters
    ----------
    model : nn.Module
        A classifier returning ``(N, K)`` scores (logits). Moved to ``device``.
    x : (N, C, H, W) or (C, H, W) tensor or array
        Images, as the model expects them.
    target : None, int or sequence of N ints
        Class whose score is explained. ``None``: each image's predicted class.
    device : str or torch.device, optional
        Default :func:`cnnlib.torch.get_device`.

    Returns
    -------
    (N, H, W) or (H, W) tensor, on the CPU
        :math:`\\max_c |\\partial S_t / \\partial x_{c,i,j}|`, where :math:`S_t` is the
        score of the target class; non-negative.

    Notes
    -----
    For a linear classifier :math:`S = W x + b` the map is :math:`|W_t|` (largest over
    the channels), whatever the image. Chapter 15 shows its noise and its limits.
    """
    x, single, _ = _prepare(model, x, device)
    with _evaluation_mode(model), torch.enable_grad():
        x = x.requires_grad_(True)
        scores = _scores(model, x)
        t = _targets(target, scores.detach())
        # The images of a batch do not interact in evaluation mode, so the gradient of
        # the sum of the chosen scores holds each image's own gradient.
        chosen = scores.gather(1, t[:, None]).sum()
        (grad,) = torch.autograd.grad(chosen, x)  # (N, C, H, W)
    return _finish(grad.abs().amax(dim=1), single)  # (N, H, W)


def occlusion(model: nn.Module, x: Any, target: Any = None, *, patch: int | Sequence[int],
              stride: int | Sequence[int] | None = None, fill: float = 0.0,
              output: str = "probability", batch_size: int = 256,
              device: str | torch.device | None = None) -> torch.Tensor:
    """Drop of the target class's probability when a patch of the image is covered.

    Every position of a ``patch``-sized window (moved by ``stride``) is set to ``fill``
    in all channels, one copy of the image per position; the drop of the target's
    probability (or score) from the unoccluded image is spread over the window's
    pixels, and each pixel gets the mean drop of the windows that cover it.

    Parameters
    ----------
    model : nn.Module
        A classifier returning ``(N, K)`` scores (logits). Moved to ``device``.
    x : (N, C, H, W) or (C, H, W) tensor or array
    target : None, int or sequence of N ints
        ``None``: each image's predicted class.
    patch : int or (int, int)
        Height and width of the occluding window; at most the image's size.
    stride : int or (int, int), optional
        Step between window positions; ``None`` means ``patch`` (windows side by side).
        The last window of a row or column always touches the far border, so every
        pixel is covered when ``stride <= patch``.
    fill : float
        Value written into the window (0 is black for pixels in [0, 1]; the data's mean
        is a grey that looks less like an object).
    output : {"probability", "score"}
        Measure the drop of the softmax probability (Zeiler and Fergus) or of the logit.
    batch_size : int
        Occluded copies per forward pass.
    device : str or torch.device, optional
        Default :func:`cnnlib.torch.get_device`.

    Returns
    -------
    (N, H, W) or (H, W) tensor, on the CPU
        Positive where covering the pixel lowers the target's probability; negative
        where it raises it. Pixels that no window covers (``stride > patch``) are 0.

    Notes
    -----
    An image of H x W pixels costs about (H / stride) x (W / stride) forward passes:
    far more than the single backward pass of :func:`saliency`.
    """
    if output not in ("probability", "score"):
        raise ValueError(f"output must be 'probability' or 'score', got {output!r}")
    if not np.isfinite(fill):
        raise ValueError(f"fill must be a finite number, got {fill!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    x, single, _ = _prepare(model, x, device)
    n, _, h, w = x.shape
    ph, pw = _pair(patch, "patch")
    sh, sw = _pair(patch if stride is None else stride, "stride")
    if ph > h or pw > w:
        raise ValueError(f"patch {(ph, pw)} is larger than the images, {(h, w)}")
    windows = [(i, j) for i in _starts(h, ph, sh) for j in _starts(w, pw, sw)]

    def measure(images: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scores = _scores(model, images)
        if output == "probability":
            scores = scores.softmax(dim=1)
        return scores.gather(1, t[:, None])[:, 0]  # (B,)

    maps = torch.zeros(n, h, w, dtype=x.dtype, device=x.device)
    with _evaluation_mode(model), torch.no_grad():
        t = _targets(target, _scores(model, x))
        base = measure(x, t)  # (N,)
        # Every (image, window) pair, image-major, cut into batches.
        pairs = [(k, i, j) for k in range(n) for (i, j) in windows]
        drops = torch.empty(len(pairs), dtype=x.dtype, device=x.device)
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            ks = torch.tensor([k for k, _, _ in chunk], device=x.device)
            occluded = x[ks].clone()  # (B, C, H, W)
            for b, (_, i, j) in enumerate(chunk):
                occluded[b, :, i:i + ph, j:j + pw] = fill
            drops[start:start + len(chunk)] = base[ks] - measure(occluded, t[ks])
        total = torch.zeros_like(maps)
        count = torch.zeros(h, w, dtype=x.dtype, device=x.device)
        drops = drops.view(n, len(windows))  # (N, windows)
        for p, (i, j) in enumerate(windows):
            total[:, i:i + ph, j:j + pw] += drops[:, p, None, None]
            count[i:i + ph, j:j + pw] += 1
        maps = torch.where(count > 0, total / count.clamp(min=1), maps)
    return _finish(maps, single)


def grad_cam(model: nn.Module, x: Any, target: Any = None, *, layer: str,
             upsample: bool = True, device: str | torch.device | None = None) -> torch.Tensor:
    """Class activation map of one layer, weighted by gradients (Selvaraju et al.).

    With :math:`A^k` the ``k``-th channel of the layer's output and :math:`S_t` the
    target's score, the map is

    .. math::

        L = \\mathrm{ReLU}\\Big(\\sum_k \\alpha_k A^k\\Big), \\qquad
        \\alpha_k = \\frac{1}{h w} \\sum_{i, j} \\frac{\\partial S_t}{\\partial A^k_{ij}},

    upsampled bilinearly from the layer's ``h x w`` grid to the input's size.

    Parameters
    ----------
    model : nn.Module
        A classifier returning ``(N, K)`` scores (logits). Moved to ``device``.
    x : (N, C, H, W) or (C, H, W) tensor or array
    target : None, int or sequence of N ints
        ``None``: each image's predicted class.
    layer : str
        Module name, as ``model.named_modules()`` gives it (``"features.6"``,
        ``"layer4"``): usually the last convolutional block. Its output must be
        ``(N, K, h, w)``.
    upsample : bool
        ``False`` returns the map on the layer's own ``h x w`` grid.
    device : str or torch.device, optional
        Default :func:`cnnlib.torch.get_device`.

    Returns
    -------
    (N, H, W) or (H, W) tensor, on the CPU (``(N, h, w)`` without upsampling)
        Non-negative.

    Notes
    -----
    The map is only as fine as the layer's grid: 7 x 7 for the last block of a ResNet at
    224 x 224. For a network that ends with global average pooling and a linear layer of
    weights :math:`W`, :math:`\\alpha_k = W_{tk} / (h w)`, and the map is the CAM of Zhou
    et al. (2016), :math:`\\mathrm{ReLU}(\\sum_k W_{tk} A^k)`, divided by :math:`h w`.
    """
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str), got {type(layer).__name__}")
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        names = [name for name, _ in model.named_modules() if name][:12]
        raise ValueError(f"{type(model).__name__} has no module {layer!r}; its modules "
                         f"include {names}") from None
    x, single, _ = _prepare(model, x, device)
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, out):
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"layer {layer!r} returned {type(out).__name__}, not a tensor")
        # The rest of the network gets a copy, so that an in-place operation after the
        # layer (a ResNet's `out += identity`) cannot change the activations we keep;
        # the gradient reaches them through the copy.
        captured.append(out)
        return out.clone()

    handle = module.register_forward_hook(hook)
    try:
        with _evaluation_mode(model), torch.enable_grad():
            # An input that asks for gradients makes every layer's output ask for them,
            # even in a network whose parameters are all frozen.
            scores = _scores(model, x.requires_grad_(True))
            t = _targets(target, scores.detach())
            if len(captured) != 1:
                raise ValueError(f"layer {layer!r} ran {len(captured)} times in one forward "
                                 f"pass; Grad-CAM needs a layer that runs exactly once")
            acts = captured[0]
            if acts.ndim != 4 or acts.shape[0] != x.shape[0]:
                raise ValueError(f"layer {layer!r} must give (N, K, h, w) feature maps, got "
                                 f"{tuple(acts.shape)}")
            if not acts.requires_grad:
                raise ValueError(f"the scores do not depend on layer {layer!r} through "
                                 f"autograd (does the model detach its output?)")
            (grads,) = torch.autograd.grad(scores.gather(1, t[:, None]).sum(), acts)
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1): alpha_k per image
    cam = F.relu((weights * acts.detach()).sum(dim=1))  # (N, h, w)
    if upsample and cam.shape[-2:] != x.shape[-2:]:
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear",
                            align_corners=False)[:, 0]  # (N, H, W)
    return _finish(cam, single)
