"""What every builder shares: argument checks and the optional weight loading."""

from __future__ import annotations

import os
from typing import TypeVar

from torch import nn

from ..weights import load_weights

__all__: list[str] = []

M = TypeVar("M", bound=nn.Module)

#: What a builder's ``weights`` argument accepts (see :func:`cnnlib.torch.load_pretrained`).
WeightsArg = str | os.PathLike[str] | None


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
    source = None if isinstance(weights, str) and weights.upper() == "DEFAULT" else weights
    return load_weights(model, name, source)
