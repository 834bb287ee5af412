"""Pick the device to compute on: CUDA, then Apple's MPS, then the CPU.

No code in ``cnnlib.torch`` moves tensors with the ``cuda`` method: it takes a
``device`` argument that defaults to :func:`get_device`, so the same notebook runs on
a laptop, a GPU server and a cluster node.
"""

from __future__ import annotations

import os

import torch

__all__ = ["get_device"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """The best available device, or the one asked for if it is available.

    Parameters
    ----------
    prefer : str or torch.device, optional
        ``None`` picks CUDA if present, then MPS, then the CPU. A device name
        (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) asks for that device and
        raises if it is not available, rather than silently training somewhere else.

    Returns
    -------
    torch.device
        Under ``torchrun`` with CUDA, ``cuda:LOCAL_RANK``, so that each process of a
        distributed run gets its own GPU.

    Raises
    ------
    ValueError
        ``prefer`` is not a device name, or names a device this machine does not have.
    """
    if prefer is None:
        if torch.cuda.is_available():
            return _cuda_device(None)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    try:
        device = torch.device(prefer)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"prefer must be None or a device name such as 'cpu', 'cuda', "
                         f"'cuda:0' or 'mps', got {prefer!r}") from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"prefer={prefer!r}, but CUDA is not available on this machine "
                             f"(torch {torch.__version__}); use prefer=None to fall back")
        return _cuda_device(device.index)
    if device.type == "mps":
        if not _mps_available():
            raise ValueError(f"prefer={prefer!r}, but Apple MPS is not available on this "
                             f"machine; use prefer=None to fall back")
        return device
    raise ValueError(f"prefer={prefer!r}: device type {device.type!r} is not supported; "
                     f"use 'cpu', 'cuda' or 'mps'")


def _cuda_device(index: int | None) -> torch.device:
    count = torch.cuda.device_count()
    if index is None:
        # torchrun sets LOCAL_RANK: one GPU per process on each node.
        index = int(os.environ.get("LOCAL_RANK", "0"))
    if count and not 0 <= index < count:
        raise ValueError(f"CUDA device index {index} does not exist: this machine has "
                         f"{count} CUDA device(s)")
    return torch.device("cuda", index)
