"""What every builder shares: argument checks and the optional weight loading."""

from __future__ import annotations

import os
from typing import TypeVar

from torch import nn

__all__: list[str] = []

M = TypeVar("M", bound=nn.Module)

#: What a builder's ``weights`` argument accepts (see :func:`cnnlib.torch.load_pretrained`).
WeightsArg = str | os.PathLike[str] | None


def check_positive_int(value, name: str) -> int:
    """Reject booleans, floats and non-positive numbers with a message naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def is_meta(model: nn.Module) -> bool:
    """True for a model built on the ``meta`` device (shapes only, no values).

    Random initialisation is skipped there: it would set no values, and PyTorch's
    meta-device ``normal_`` imports its compiler stack, seconds of start-up for nothing.
    """
    return any(p.is_meta for p in model.parameters())


def finish(model: M, name: str, weights: WeightsArg) -> M:
    """Load ``weights`` into a freshly built ``model`` when the caller asked for them.

    ``weights`` is ``None`` (keep the random initialisation), ``"DEFAULT"`` (the
    published weights of ``name`` from the local cache, never downloaded), ``"download"``
    (fetch them from the published address if they are not cached), or the path of a
    weight file or of a directory holding it.
    """
    if weights is None:
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None, 'DEFAULT', 'download' or a path, "
                        f"got {type(weights).__name__} ({weights!r})")
    # Imported here so that building a model never imports torch.hub.
    from ..weights import load_pretrained

    source = None if isinstance(weights, str) and weights.upper() == "DEFAULT" else weights
    return load_pretrained(name, source, model=model)
