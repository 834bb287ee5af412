"""Int8 post-training quantization and the size of a model, for small devices.

A network trained in float32 can run with 8-bit integers instead: each weight tensor is
stored as int8 values and a scale (per output channel for convolutions), each activation
as uint8 values with a scale and a zero point measured on a few batches of data. The
weights take a quarter of the memory, and integer kernels (fbgemm and oneDNN on x86,
QNNPACK on ARM) run the convolutions faster.

- :func:`quantize_static` quantizes weights *and* activations, after a calibration pass
  that records the range of every activation (PyTorch's FX graph mode, which also folds
  each batch norm into the preceding convolution and fuses conv-ReLU pairs);
- :func:`quantize_dynamic` quantizes the weights of the dense layers only and measures
  their inputs' range on the fly; convolutions stay float32;
- :func:`state_dict_bytes` is the size of the file ``torch.save(model.state_dict())``
  writes, :func:`weight_bytes` the bytes of the numbers in it.

Both quantizers use ``torch.ao.quantization``, which recent PyTorch releases mark as
deprecated (the successor is the separate ``torchao`` package) and which warns on every
call; they silence exactly those warnings. Chapter 11 (ResNet and after, "Deployment on
small devices") measures size, accuracy and speed before and after.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["quantize_dynamic", "quantize_static", "state_dict_bytes", "weight_bytes"]

# The warnings torch.ao.quantization gives on every use: its own deprecation, the one of
# quantized tensors, and an observer argument it passes itself. Nothing a caller can act on.
_QUANTIZATION_WARNINGS = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel"),
    (UserWarning, r"Please use quant_min and quant_max to specify the range"),
)


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for category, message in _QUANTIZATION_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def _float_copy(model: Any, name: str) -> nn.Module:
    """A CPU copy of ``model`` in evaluation mode; the caller's model is left alone."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}: model must be a torch.nn.Module, got {type(model).__name__}")
    float_dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if float_dtypes - {torch.float32}:
        raise ValueError(f"{name}: the model must be float32, it has parameters of "
                         f"{sorted(str(d) for d in float_dtypes)}")
    return copy.deepcopy(model).cpu().eval()


def _check_backend(backend: str | None) -> str:
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if backend is None:
        backend = torch.backends.quantized.engine
    if backend not in engines:
        raise ValueError(f"backend must be one of this PyTorch build's quantized engines "
                         f"{engines}, got {backend!r}")
    return backend


def quantize_static(model: nn.Module, calibration: Any, *, backend: str | None = None,
                    batch_size: int = 256) -> nn.Module:
    """Int8 copy of ``model``: weights and activations quantized after calibration.

    Parameters
    ----------
    model : nn.Module
        A float32 network that ``torch.fx`` can trace (any ``nn.Sequential`` of standard
        layers, and most networks whose ``forward`` has no data-dependent control flow).
        Not modified.
    calibration : (N, C, H, W) array or tensor
        Typical inputs, e.g. a few hundred training images. The range of every
        activation on them fixes its scale and zero point, so they must look like the
        data the quantized network will see.
    backend : str, optional
        A quantized engine of this PyTorch build (``torch.backends.quantized.
        supported_engines``): ``"x86"`` or ``"fbgemm"`` on Intel and AMD processors,
        ``"qnnpack"`` on ARM. Default: the current engine. A different one becomes the
        process's engine (``torch.backends.quantized.engine``), since the quantized
        kernels read it when they run.
    batch_size : int
        Images per calibration pass.

    Returns
    -------
    nn.Module
        A ``torch.fx.GraphModule`` in evaluation mode that takes float32 images and
        returns float32 scores; on the CPU only.

    Raises
    ------
    TypeError, ValueError
        Not a module, not float32, empty or non-finite calibration data, unknown backend.

    Notes
    -----
    Weights use one scale per output channel (symmetric int8); activations one scale and
    zero point per tensor (uint8, in the range the backend's default configuration
    gives: seven bits on x86, so that no sum of products overflows). Each batch norm is
    folded into the convolution before it, with its running statistics.
    """
    backend = _check_backend(backend)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    x = torch.as_tensor(calibration).detach().cpu().float()
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"calibration must hold at least one input, a batch of shape "
                         f"(N, ...); got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("calibration holds NaN or infinite values")
    float_model = _float_copy(model, "quantize_static")
    if torch.backends.quantized.engine != backend:
        torch.backends.quantized.engine = backend
    with _quiet():
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        prepared = prepare_fx(float_model, get_default_qconfig_mapping(backend), (x[:1],))
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                prepared(x[start:start + batch_size])  # the observers record the ranges
        quantized = convert_fx(prepared)
    return quantized.eval()


def quantize_dynamic(model: nn.Module,
                     layers: tuple[type[nn.Module], ...] = (nn.Linear,)) -> nn.Module:
    """Copy of ``model`` whose ``layers`` (dense layers by default) hold int8 weights.

    Parameters
    ----------
    model : nn.Module
        A float32 network; not modified.
    layers : tuple of module types
        Layer types to quantize; PyTorch's dynamic quantization supports ``nn.Linear``
        and recurrent layers, not convolutions.

    Returns
    -------
    nn.Module
        Same structure, in evaluation mode, with each of ``layers`` replaced by a dynamic
        quantized one: int8 weights (one scale per tensor), inputs quantized batch by
        batch with their own range, float32 outputs.
    """
    float_model = _float_copy(model, "quantize_dynamic")
    if not isinstance(layers, tuple) or not layers or not all(
            isinstance(t, type) and issubclass(t, nn.Module) for t in layers):
        raise TypeError(f"layers must be a non-empty tuple of nn.Module types, got {layers!r}")
    with _quiet():
        from torch.ao.quantization import quantize_dynamic as _dynamic

        return _dynamic(float_model, set(layers), dtype=torch.qint8).eval()


def state_dict_bytes(model: nn.Module) -> int:
    """Size in bytes of the file that ``torch.save(model.state_dict(), path)`` writes.

    The numbers of :func:`weight_bytes` plus the file's own structure: the names, the
    shapes and a few hundred bytes per tensor, which dominate for a very small network.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, (tuple, list)):  # a quantized layer's packed (weight, bias)
        return sum(_tensor_bytes(v) for v in value)
    if not isinstance(value, torch.Tensor):
        return 0  # a dtype or another setting, not data
    if value.is_quantized:
        values = value.numel() * value.element_size()  # one byte per int8 value
        if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            scales = value.q_per_channel_scales()
            zero_points = value.q_per_channel_zero_points()
            return (values + scales.numel() * scales.element_size()
                    + zero_points.numel() * zero_points.element_size())
        return values + 8 + 8  # one float64 scale, one int64 zero point
    return value.numel() * value.element_size()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the numbers a model's state dict holds: every parameter and buffer.

    Float tensors count their element size (4 bytes in float32); a quantized tensor
    counts one byte per value plus its scales and zero points. A quantized layer's
    packed weights are unpacked for counting.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(_tensor_bytes(v) for v in model.state_dict().values())
