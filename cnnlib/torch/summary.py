"""How big is a network: parameters, multiply-adds, activation memory, receptive field.

``summarize`` runs one forward pass with hooks on every layer and tabulates what each
produced; ``receptive_field`` follows the network's graph and computes, for each
convolution and pooling layer, how much of the input one output unit sees. Both work
on models built on the ``meta`` device (``with torch.device("meta"): vgg16()``), which
allocates no memory, so even VGG-19 is summarised in a blink.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..numpy.conv import padding_amounts

__all__ = ["LayerInfo", "ModelSummary", "ReceptiveField", "RFInfo", "count_parameters",
           "receptive_field", "summarize"]


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (a parameter shared by two layers counts once).

    Parameters
    ----------
    model : nn.Module
        Any module; models on the ``meta`` device are counted without allocating.
    trainable_only : bool
        Count only the parameters with ``requires_grad`` (the ones an optimizer updates,
        e.g. the new head of a frozen network).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------- summarize


class LayerInfo(NamedTuple):
    """One row of a :class:`ModelSummary`: one call of one layer, for one image."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activation_bytes: int


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


@dataclass
class ModelSummary:
    """Per-layer table and totals returned by :func:`summarize`.

    ``print(summary)`` shows a text table; in Jupyter the summary displays as HTML.
    Multiply-adds and activation memory are per input example.
    """

    rows: list[LayerInfo]
    input_size: tuple[int, ...]
    total_params: int
    trainable_params: int
    total_macs: int = field(init=False)
    total_activation_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.total_macs = sum(r.macs for r in self.rows)
        self.total_activation_bytes = sum(r.activation_bytes for r in self.rows)

    @property
    def gmacs(self) -> float:
        """Total multiply-adds in billions (the "GFLOPS" column of torchvision's tables)."""
        return self.total_macs / 1e9

    def _table(self) -> tuple[list[str], list[list[str]], list[str]]:
        header = ["Layer", "Type", "Output shape", "Params", "Mult-adds", "Output memory"]
        body = [[r.name, r.type, _fmt_shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
                 _fmt_bytes(r.activation_bytes)] for r in self.rows]
        footer = [
            f"Input: {_fmt_shape(self.input_size)} per example",
            f"Parameters: {self.total_params:,} ({self.trainable_params:,} trainable, "
            f"{_fmt_bytes(4 * self.total_params)} as float32)",
            f"Multiply-adds (conv and linear): {self.total_macs:,} = {self.gmacs:.2f} G",
            f"Sum of layer outputs (float32, per example): "
            f"{_fmt_bytes(self.total_activation_bytes)}",
        ]
        return header, body, footer

    def __str__(self) -> str:
        header, body, footer = self._table()
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        right = {3, 4, 5}

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * len(line(header))
        return "\n".join([line(header), rule, *map(line, body), rule, *footer])

    def _repr_html_(self) -> str:
        header, body, footer = self._table()
        esc = html.escape
        th = "".join(f"<th>{esc(h)}</th>" for h in header)
        trs = "".join(
            "<tr>" + "".join(f'<td style="text-align:{"right" if i >= 3 else "left"}">'
                             f"{esc(c)}</td>" for i, c in enumerate(row)) + "</tr>"
            for row in body)
        foot = "<br>".join(esc(f) for f in footer)
        return (f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"
                f"<p>{foot}</p>")


def _macs(module: nn.Module, inputs: tuple, output: torch.Tensor, batch: int) -> int:
    # Only convolutions and linear layers are counted, one multiply-add per weight use
    # and no bias, batch-norm, activation or pooling work: the convention behind the
    # published GMACs of torchvision's model tables.
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        x = inputs[0]
        per_input = module.out_channels // module.groups * math.prod(module.kernel_size)
        return x.numel() // batch * per_input
    if isinstance(module, nn.modules.conv._ConvNd):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        return output.numel() // batch * per_output
    if isinstance(module, nn.Linear):
        return output.numel() // batch * module.in_features
    if isinstance(module, nn.Bilinear):
        return output.numel() // batch * module.in1_features * module.in2_features
    return 0


def _check_size(input_size: Any) -> tuple[int, ...]:
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size,)
    if (not isinstance(input_size, Sequence)
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in input_size)):
        raise TypeError(f"input_size must be a tuple of ints such as (3, 224, 224), "
                        f"got {input_size!r}")
    if not input_size or min(input_size) < 1:
        raise ValueError(f"input_size must be non-empty and positive, got {tuple(input_size)}")
    return tuple(input_size)


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def summarize(model: nn.Module, input_size: Sequence[int], *,
              device: str | torch.device | None = None) -> ModelSummary:
    """Layer-by-layer output shapes, parameters, multiply-adds and output memory.

    One forward pass of a single example runs in evaluation mode under
    ``torch.no_grad()``, with a forward hook on every layer (every module without
    children, or with parameters of its own); the model's training mode is restored
    afterwards.

    Parameters
    ----------
    model : nn.Module
        The network. Build it on the ``meta`` device to summarise a large network
        without allocating its weights.
    input_size : tuple of int
        Shape of one example without the batch dimension, e.g. ``(3, 224, 224)``.
    device : str or torch.device, optional
        Where to run. ``None`` runs where the model's parameters are; otherwise the
        model is moved there first (``model.to(device)``).

    Returns
    -------
    ModelSummary
        ``rows`` (one :class:`LayerInfo` per layer call, in execution order: name,
        type, output shape, parameters, multiply-adds, float32 output bytes, all per
        example) and the totals. Parameters of a layer called twice count once;
        ``total_params`` counts the whole model, including layers the forward pass did
        not use (a GoogLeNet's auxiliary heads in evaluation mode).

    Notes
    -----
    Multiply-adds count convolutions (``out_elements * C_in / groups * k_h * k_w``) and
    linear layers (``in_features * out_features``) only, which is how the published
    GMACs figures are counted (ResNet-50: 4.09 G at 224x224). Chapter 9 uses this table
    to compare VGG's cost with AlexNet's.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    size = _check_size(input_size)
    if device is not None:
        model.to(device)
    run_device, dtype = _model_device_dtype(model)

    rows: list[LayerInfo] = []
    counted: set[int] = set()

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        tensors = [output] if isinstance(output, torch.Tensor) else [
            t for t in (output if isinstance(output, (tuple, list)) else []) if
            isinstance(t, torch.Tensor)]
        if not tensors:
            return
        first = tensors[0]
        params = 0
        if id(module) not in counted:
            counted.add(id(module))
            params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append(LayerInfo(
            name=names[id(module)],
            type=type(module).__name__,
            output_shape=tuple(first.shape[1:]),
            params=params,
            macs=_macs(module, inputs, first, first.shape[0] if first.ndim else 1),
            # float32 bytes whatever the dtype: the figure chapters compare.
            activation_bytes=sum(4 * (t.numel() // max(1, t.shape[0] if t.ndim else 1))
                                 for t in tensors),
        ))

    names: dict[int, str] = {}
    handles = []
    for name, module in model.named_modules():
        is_leaf = not any(True for _ in module.children())
        # The root is a row of its own only when it is a single layer (summarize(conv, ...)).
        if name or is_leaf:
            if is_leaf or any(True for _ in module.parameters(recurse=False)):
                names[id(module)] = name or type(module).__name__
                handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        x = torch.zeros((1, *size), device=run_device, dtype=dtype)
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return ModelSummary(rows=rows, input_size=size,
                        total_params=count_parameters(model),
                        trainable_params=count_parameters(model, trainable_only=True))


# ---------------------------------------------------------------------- receptive field


class RFInfo(NamedTuple):
    """One row of a :class:`ReceptiveField`, per spatial axis (height, width for 2-D).

    ``size`` is how many input pixels one output unit sees, ``jump`` how far apart (in
    input pixels) neighbouring output units are, and ``start`` the input coordinate of
    the centre of the first output unit's field (negative or fractional values mean
    the field hangs over the padded border).
    """

    name: str
    type: str
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]


@dataclass
class ReceptiveField:
    """Receptive field after every convolution and pooling layer (see :func:`receptive_field`)."""

    rows: list[RFInfo]

    def __getitem__(self, name: str) -> RFInfo:
        """The last row of the layer called ``name`` (e.g. ``rf["features.28"]``)."""
        for row in reversed(self.rows):
            if row.name == name:
                return row
        raise KeyError(f"no convolution or pooling layer named {name!r}; layers: "
                       f"{[r.name for r in self.rows]}")

    @property
    def size(self) -> tuple[int, ...]:
        """Receptive field of the last layer."""
        if not self.rows:
            raise ValueError("the network has no convolution or pooling layer")
        return max(self.rows, key=lambda r: r.size).size

    def _table(self) -> tuple[list[str], list[list[str]]]:
        def f(v: tuple) -> str:
            v = tuple(int(x) if float(x).is_integer() else x for x in v)
            return str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v))

        header = ["Layer", "Type", "Kernel", "Stride", "Padding", "Dilation", "RF size",
                  "Jump", "Start"]
        body = [[r.name, r.type, f(r.kernel_size), f(r.stride), f(r.padding), f(r.dilation),
                 f(r.size), f(r.jump), f(r.start)] for r in self.rows]
        return header, body

    def __str__(self) -> str:
        header, body = self._table()
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                 for row in [header, *body]]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        header, body = self._table()
        th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                      for row in body)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


class _Field(NamedTuple):
    # Input interval [lo, hi] (per axis, in input pixels, padding included) seen by
    # output unit 0; unit i sees [lo + i*jump, hi + i*jump].
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    jump: tuple[int, ...]


_IDENTITY = _Field((), (), ())  # the input itself: any number of axes


def _expand(f: _Field, ndim: int) -> _Field:
    return _Field((0,) * ndim, (0,) * ndim, (1,) * ndim) if f is _IDENTITY else f


def _tuple(v: Any, ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * ndim
    if isinstance(v, str):
        raise ValueError(f"{name}={v!r}: only 'same' and 'valid' paddings are understood")
    v = tuple(int(x) for x in v)
    if len(v) != ndim:
        raise ValueError(f"{name}={v} has {len(v)} entries for {ndim} spatial axes")
    return v


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_NDIM = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3, nn.MaxPool1d: 1, nn.MaxPool2d: 2,
         nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}
# Layers after which a unit sees the whole input: spatial structure ends there.
_GLOBAL_MODULES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                   nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
                   nn.Linear, nn.Flatten)
_GLOBAL_FUNCTIONS = {torch.flatten, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
                     F.adaptive_avg_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
                     F.adaptive_max_pool3d, F.linear, torch.mean, torch.sum, torch.amax}
_GLOBAL_METHODS = {"view", "reshape", "flatten", "mean", "sum", "amax", "size", "dim"}


_GLOBAL = "global"  # what _geometry says of a layer that sees the whole input


def _geometry(layer: Any, index: int) -> tuple | str | None:
    """(name, type, kernel, stride, padding, dilation) of a layer; None if it keeps the
    geometry (activations, normalisation, dropout); ``_GLOBAL`` if it ends it."""
    if isinstance(layer, nn.Module):
        kind = type(layer)
        ndim = next((n for cls, n in _NDIM.items() if isinstance(layer, cls)), None)
        if ndim is None:
            return _GLOBAL if isinstance(layer, _GLOBAL_MODULES) else None
        k = _tuple(layer.kernel_size, ndim, "kernel_size")
        s = _tuple(layer.stride if layer.stride is not None else layer.kernel_size, ndim,
                   "stride")
        d = _tuple(getattr(layer, "dilation", 1), ndim, "dilation")
        if layer.padding == "valid":
            p = (0,) * ndim
        elif layer.padding == "same":
            # The start side's share (the odd pixel of an even kernel goes at the end).
            p = tuple(padding_amounts("same", ki, dilation=di)[0] for ki, di in zip(k, d))
        else:
            p = _tuple(layer.padding, ndim, "padding")
        return str(index), kind.__name__, k, s, p, d
    if isinstance(layer, dict):
        spec = dict(layer)
        k = spec.pop("kernel_size")
        ndim = 1 if isinstance(k, int) else len(k)
        s = spec.pop("stride", 1)
        p = spec.pop("padding", 0)
        d = spec.pop("dilation", 1)
        name = str(spec.pop("name", index))
        if spec:
            raise ValueError(f"layer {index}: unknown keys {sorted(spec)}")
    elif isinstance(layer, (tuple, list)) and 1 <= len(layer) <= 4:
        k, s, p, d = (*layer, *(1, 0, 1)[len(layer) - 1:])
        ndim = 1 if isinstance(k, int) else len(k)
        name = str(index)
    else:
        raise TypeError(f"layer {index} must be an nn.Module, a (kernel_size, stride, "
                        f"padding[, dilation]) tuple or a dict, got {layer!r}")
    return (name, "layer", _tuple(k, ndim, "kernel_size"), _tuple(s, ndim, "stride"),
            _tuple(p, ndim, "padding"), _tuple(d, ndim, "dilation"))


def _apply(f: _Field, k: tuple, s: tuple, p: tuple, d: tuple) -> _Field:
    f = _expand(f, len(k))
    if len(f.jump) != len(k):
        raise ValueError(f"a {len(k)}-D layer follows a {len(f.jump)}-D one")
    for name, v, least in (("kernel_size", k, 1), ("stride", s, 1), ("dilation", d, 1),
                           ("padding", p, 0)):
        if min(v) < least:
            raise ValueError(f"{name}={v} must be at least {least}")
    lo = tuple(a - pi * j for a, pi, j in zip(f.lo, p, f.jump))
    hi = tuple(b + (di * (ki - 1) - pi) * j for b, ki, pi, di, j in zip(f.hi, k, p, d, f.jump))
    return _Field(lo, hi, tuple(j * si for j, si in zip(f.jump, s)))


def _row(name: str, kind: str, geo: tuple, f: _Field) -> RFInfo:
    k, s, p, d = geo
    return RFInfo(name, kind, k, s, p, d,
                  size=tuple(b - a + 1 for a, b in zip(f.lo, f.hi)),
                  jump=f.jump,
                  start=tuple((a + b) / 2 for a, b in zip(f.lo, f.hi)))


def _merge(fields: list[_Field]) -> _Field | None:
    # An addition or concatenation sees the union of what its inputs see.
    fields = [f for f in fields if f is not None]
    if not fields:
        return None
    real = [f for f in fields if f is not _IDENTITY]
    if not real:
        return _IDENTITY
    ndim = len(real[0].jump)
    fields = [_expand(f, ndim) for f in fields]
    if len({f.jump for f in fields}) > 1:
        raise ValueError(f"branches with different strides {[f.jump for f in fields]} are "
                         f"combined; their receptive fields have no single size")
    lo = tuple(min(v) for v in zip(*(f.lo for f in fields)))
    hi = tuple(max(v) for v in zip(*(f.hi for f in fields)))
    return _Field(lo, hi, fields[0].jump)


def _from_layers(layers: Sequence[Any]) -> ReceptiveField:
    f, rows = _IDENTITY, []
    for i, layer in enumerate(layers):
        geo = _geometry(layer, i)
        if geo is _GLOBAL:
            break  # from here on every unit sees the whole input
        if geo is None:
            continue
        name, kind, *g = geo
        f = _apply(f, *g)
        rows.append(_row(name, kind, tuple(g), f))
    return ReceptiveField(rows)


def _from_graph(model: nn.Module) -> ReceptiveField:
    import torch.fx  # imported here: tracing is only needed for this function

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - any tracing failure has the same remedy
        raise ValueError(
            f"cannot follow the graph of {type(model).__name__} with torch.fx "
            f"({type(exc).__name__}: {exc}); pass the list of its layers instead, "
            f"e.g. receptive_field(list(model.features))") from exc
    modules = dict(model.named_modules())
    fields: dict[Any, _Field | None] = {}
    rows: list[RFInfo] = []

    def inputs_of(node: torch.fx.Node) -> list[_Field | None]:
        found: list[_Field | None] = []
        torch.fx.node.map_arg((node.args, node.kwargs),
                              lambda n: found.append(fields.get(n)) or n)
        return found

    for node in graph.nodes:
        out: _Field | None
        if node.op == "placeholder":
            out = _IDENTITY
        elif node.op == "call_module":
            module = modules[node.target]
            prev = _merge(inputs_of(node))
            if isinstance(module, (*_CONV, *_POOL)):
                _, kind, *g = _geometry(module, 0)
                out = _apply(prev, *g) if prev is not None else None
                if out is not None:
                    rows.append(_row(node.target, kind, tuple(g), out))
            elif isinstance(module, _GLOBAL_MODULES):
                out = None
            else:
                out = prev
        elif node.op == "call_function":
            if node.target in _GLOBAL_FUNCTIONS:
                out = None
            elif node.target in (F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d,
                                 F.avg_pool2d, F.avg_pool3d, F.conv1d, F.conv2d, F.conv3d):
                raise ValueError(f"{node.target.__name__} is called as a function in "
                                 f"{type(model).__name__}.forward; use the nn module so "
                                 f"that its geometry can be read")
            else:
                out = _merge(inputs_of(node))
        elif node.op == "call_method":
            out = None if node.target in _GLOBAL_METHODS else _merge(inputs_of(node))
        else:
            out = None
        fields[node] = out
    return ReceptiveField(rows)


def receptive_field(model: nn.Module | Sequence[Any]) -> ReceptiveField:
    """Receptive field size, jump and start after every convolution and pooling layer.

    A layer with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` turns
    the field of its input (size ``r``, jump ``j``, start ``c``) into
    ``r' = r + d*(k-1)*j``, ``j' = j*s`` and ``c' = c + (d*(k-1)/2 - p)*j``. Where
    branches meet (a residual addition, an Inception concatenation) the field is the
    union of the branches' fields.

    Parameters
    ----------
    model : nn.Module or sequence
        A network, whose graph is followed with ``torch.fx`` (so residual and parallel
        branches are handled), or a list of layers applied in order: modules
        (convolutions and pools change the field, anything else is skipped), tuples
        ``(kernel_size, stride, padding[, dilation])`` or dicts with those keys.

    Returns
    -------
    ReceptiveField
        ``rows`` of :class:`RFInfo` (name, type, geometry, ``size``, ``jump``,
        ``start``, one value per spatial axis), indexable by layer name;
        ``print()`` shows a table.

    Notes
    -----
    Two stacked 3x3 convolutions see 5x5 pixels and three see 7x7 (chapter 9); the
    receptive field of VGG-16's conv5_3 is 196 pixels and of ResNet-50's last stage
    427. Chapter 3 (padding and stride) derives the recurrence.
    """
    if isinstance(model, nn.ModuleList) or (isinstance(model, Sequence)
                                            and not isinstance(model, str)):
        return _from_layers(list(model))
    if isinstance(model, nn.Module):
        return _from_graph(model)
    raise TypeError(f"model must be an nn.Module or a sequence of layers, "
                    f"got {type(model).__name__}")
