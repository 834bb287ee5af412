"""PyTorch half of the course library: model zoo, model summaries, devices, weights.

``models`` holds the architectures of chapters 8-11; :func:`summarize`,
:func:`count_parameters` and :func:`receptive_field` measure them; :func:`get_device`
picks CUDA, then Apple MPS, then the CPU; :func:`load_pretrained` loads published or
course weights without touching the network unless asked. Training (``train``),
transfer learning (``transfer``), augmentation (``augment``), int8 quantization
(``quantize``) and the maps that show where a trained network looks (``interpret``:
:func:`~cnnlib.torch.interpret.saliency`, :func:`~cnnlib.torch.interpret.occlusion`,
:func:`~cnnlib.torch.interpret.grad_cam`) are submodules, imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import models
from .device import get_device
from .models import load_pretrained
from .summary import count_parameters, receptive_field, summarize

__all__ = ["count_parameters", "get_device", "load_pretrained", "models", "receptive_field",
           "summarize"]

# Heavier submodules (training loops, distributed set-up) load on first attribute
# access, so that ``import cnnlib.torch`` stays quick.
_LAZY_SUBMODULES = {"train", "cli", "transfer", "augment", "pretrain", "quantize", "interpret"}
_LAZY_NAMES = {"fit": "train", "evaluate": "train", "ensure_pretrained": "pretrain",
               "quantize_static": "quantize", "quantize_dynamic": "quantize",
               "state_dict_bytes": "quantize", "weight_bytes": "quantize",
               "saliency": "interpret", "occlusion": "interpret", "grad_cam": "interpret"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
