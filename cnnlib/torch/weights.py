"""Pretrained weights from a local file or cache, downloaded only when asked.

The ImageNet models of :mod:`cnnlib.torch.models` have torchvision's parameter names,
so the weight files torchvision publishes load into them unchanged. Nothing is
downloaded unless the caller says so: by default the file is looked up in the course's
cache directory (``$CNNLIB_CACHE``, else ``~/.cache/cnnlib``) and in torch's own hub
cache, and a missing file is an error that says which file to put where.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["PUBLISHED_URLS", "cache_dir", "load_weights", "weight_filename"]

_BASE = "https://download.pytorch.org/models/"

#: Where torchvision publishes each model's ImageNet weights (its ``IMAGENET1K_V1``
#: files). The hex digits in a file name are the first digits of its SHA-256.
PUBLISHED_URLS: dict[str, str] = {name: _BASE + file for name, file in {
    "alexnet": "alexnet-owt-7be5be79.pth",
    "vgg11": "vgg11-8a719046.pth",
    "vgg13": "vgg13-19584684.pth",
    "vgg16": "vgg16-397923af.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
    "vgg11_bn": "vgg11_bn-6002323d.pth",
    "vgg13_bn": "vgg13_bn-abd245e5.pth",
    "vgg16_bn": "vgg16_bn-6c64b313.pth",
    "vgg19_bn": "vgg19_bn-c79401a0.pth",
    "googlenet": "googlenet-1378be20.pth",
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
    "densenet121": "densenet121-a639ec97.pth",
    "mobilenet_v2": "mobilenet_v2-b0353104.pth",
}.items()}

_HASH = re.compile(r"-([a-f0-9]{6,})\.")
# The published DenseNet file predates the ban on dots in module names: its layers
# are called ``norm.1`` where the module now has ``norm1``.
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def cache_dir() -> Path:
    """The directory weights are looked up in and downloaded to.

    ``$CNNLIB_CACHE`` if set, else ``~/.cache/cnnlib``. Read at every call, so a test or
    a notebook can redirect it with an environment variable.
    """
    env = os.environ.get("CNNLIB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cnnlib"


def weight_filename(model_name: str) -> str:
    """The file name the weights of ``model_name`` have in a cache directory.

    The published file name for the ImageNet models (``resnet18-f37072fd.pth``),
    ``<model_name>.pth`` for the others (the course's ``small_resnet.pth``).
    """
    url = PUBLISHED_URLS.get(model_name)
    return url.rsplit("/", 1)[1] if url else f"{model_name}.pth"


def _candidates(model_name: str, directory: Path) -> list[Path]:
    names = [weight_filename(model_name), f"{model_name}.pth"]
    return [directory / n for n in dict.fromkeys(names)]


def _torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _check_hash(path: Path) -> None:
    """Compare a published file's SHA-256 with the digits in its name."""
    match = _HASH.search(path.name)
    if match is None or path.name not in {u.rsplit("/", 1)[1] for u in PUBLISHED_URLS.values()}:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(match.group(1)):
        raise RuntimeError(
            f"{path} is damaged or incomplete: its SHA-256 starts with "
            f"{digest.hexdigest()[:len(match.group(1))]}, the published file's with "
            f"{match.group(1)}. Delete it and copy or download it again.")


def _not_found(model_name: str, looked: list[Path]) -> FileNotFoundError:
    url = PUBLISHED_URLS.get(model_name)
    fname = weight_filename(model_name)
    where = "\n".join(f"  {p}" for p in looked)
    lines = [f"no weights for {model_name!r} found offline; looked for:\n{where}",
             "To provide them, do one of:"]
    if url:
        lines += [
            f"  - on a machine with internet access, download {url} and copy it to "
            f"{cache_dir()}/{fname} (or set CNNLIB_CACHE to the directory that holds it);",
            f"  - pass the file: load_pretrained({model_name!r}, '/path/to/{fname}');",
            f"  - allow the download here: load_pretrained({model_name!r}, 'download').",
        ]
    else:
        lines += [
            f"  - put the file at {cache_dir()}/{fname} (or set CNNLIB_CACHE to the "
            f"directory that holds it);",
            f"  - pass the file: load_pretrained({model_name!r}, '/path/to/{fname}').",
        ]
        if model_name == "small_resnet":
            lines.append("  - create it: python -m cnnlib.torch.pretrain")
    return FileNotFoundError("\n".join(lines))


def _read(path: Path) -> Any:
    _check_hash(path)
    # weights_only: a weight file is data; unpickling arbitrary objects could run code.
    return torch.load(path, map_location="cpu", weights_only=True)


def _state_dict_of(obj: Any, origin: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and obj and not all(isinstance(v, torch.Tensor)
                                                    for v in obj.values()):
        # A training checkpoint: {"model": state_dict, "optimizer": ..., "epoch": ...}.
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                return _state_dict_of(obj[key], origin)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor)
                                               for v in obj.values()):
        raise ValueError(f"{origin} does not hold a state dict (a mapping from names to "
                         f"tensors), nor a checkpoint with a 'state_dict' or 'model' entry")
    return dict(obj)


def _adapt(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    expected = model.state_dict().keys()
    if state and all(k.startswith("module.") for k in state) and not any(
            k.startswith("module.") for k in expected):
        # Saved from a DistributedDataParallel wrapper.
        state = {k[len("module."):]: v for k, v in state.items()}
    renamed = {}
    for key, value in state.items():
        m = _OLD_DENSENET_KEY.match(key)
        renamed[m.group(1) + m.group(2) if m and key not in expected else key] = value
    state = renamed
    for aux in ("aux1.", "aux2."):
        # The published GoogLeNet file carries the auxiliary heads; a model built
        # without them (the default) drops them, as torchvision does.
        if getattr(model, aux[:-1], "absent") is None:
            state = {k: v for k, v in state.items() if not k.startswith(aux)}
    return state


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    state = _adapt(state, model)
    own = model.state_dict()
    mismatched = [f"{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and own[k].shape != v.shape]
    # Files older than PyTorch 0.4.1 lack the batch-norm step counters; load_state_dict
    # fills those in itself.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if mismatched or missing or unexpected:
        parts = [f"the weights in {origin} do not fit {type(model).__name__}:"]
        if mismatched:
            parts.append("  shapes differ: " + "; ".join(mismatched[:5])
                         + (" ..." if len(mismatched) > 5 else ""))
        if missing:
            parts.append(f"  missing from the file: {missing[:5]}"
                         + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"  not in the model: {unexpected[:5]}"
                         + (" ..." if len(unexpected) > 5 else ""))
        parts.append("  Build the model as the weights were trained (ImageNet weights: "
                     "num_classes=1000, in_channels=3), load them, then replace the head "
                     "(cnnlib.torch.transfer.replace_head).")
        raise RuntimeError("\n".join(parts))
    model.load_state_dict(state, strict=True)


def load_weights(model: nn.Module, model_name: str,
                 source: str | os.PathLike[str] | None = None, *,
                 progress: bool = True) -> nn.Module:
    """Load the weights of ``model_name`` from ``source`` into ``model`` (strict).

    The part of :func:`cnnlib.torch.load_pretrained` that finds, checks and reads the
    file; the builders call it for their ``weights`` argument. ``source`` is as there.
    """
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    url = PUBLISHED_URLS.get(model_name)
    if isinstance(source, str) and (source == "download" or source.startswith(("http://",
                                                                              "https://"))):
        if source == "download":
            if url is None:
                raise ValueError(f"{model_name!r} has no published weights to download; "
                                 f"pass a weight file instead")
            source = url
        directory = cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        state = torch.hub.load_state_dict_from_url(
            source, model_dir=str(directory), map_location="cpu", progress=progress,
            check_hash=True, weights_only=True)
        _load_into(model, _state_dict_of(state, source), source)
        return model

    if source is None:
        looked = _candidates(model_name, cache_dir())
        if url is not None:
            looked.append(_torch_hub_checkpoints() / weight_filename(model_name))
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            looked = _candidates(model_name, path)
        elif path.is_file():
            looked = [path]
        else:
            raise FileNotFoundError(
                f"source={str(source)!r} is neither a file nor a directory; "
                f"pass a weight file, a directory holding {weight_filename(model_name)}, "
                f"None (the cache {cache_dir()}) or 'download'")
    for path in looked:
        if path.is_file():
            _load_into(model, _state_dict_of(_read(path), str(path)), str(path))
            return model
    raise _not_found(model_name, looked)
