"""Layer classes: parameters, gradients and caches around the functional NumPy ops.

Chapter 7 (training a CNN from scratch) builds networks from these classes; chapters
2-6 teach the ops they call. A layer adds bookkeeping and no math: its forward calls
``<op>_forward`` and keeps the cache, its backward calls ``<op>_backward`` and keeps the
parameter gradients. So a layer is exactly as correct as its op, and the tests check
both that a layer equals its op and that it equals its ``torch.nn`` twin.

The interface (every layer, and :class:`Sequential`)
----------------------------------------------------
``out = layer(x, training=False)``  or ``layer.forward(x, training=...)``
    ``training=True`` switches dropout on and makes batch norm use (and update) the
    batch statistics; the default is evaluation, as after ``model.eval()`` in PyTorch.
``dx = layer.backward(dout, *, need_dx=True)``
    Gradient of the input for the last forward pass; fills ``layer.grads``. Gradients
    are overwritten by every backward, not accumulated as in PyTorch, so there is no
    ``zero_grad`` to forget. ``need_dx=False`` fills the same gradients and returns
    ``None``: a network's first layer need not compute the gradient of the images (a
    convolution or a linear layer then skips that work, as PyTorch does for an input
    that does not require a gradient). Every layer takes ``need_dx``; a layer of your
    own gets it by subclassing :class:`Module` and writing ``_forward`` and
    ``_backward``, or must accept it if it writes its own ``backward``.
``layer.params``, ``layer.grads``, ``layer.buffers``
    Dicts name -> array with PyTorch's names (``"weight"``, ``"bias"``,
    ``"running_mean"``; ``"0.weight"`` inside a :class:`Sequential`). ``params`` holds
    the layer's own arrays: an optimizer updates them in place (``w[...] = new_w``).
``layer.parameters()``
    The number of learnable values, as ``sum(p.numel() for p in m.parameters())``.
``state_dict()`` / ``load_state_dict(state)``
    Copies of parameters and buffers under PyTorch's keys, so weights move between a
    NumPy network and its PyTorch twin:
    ``net.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})``.

Constructors take PyTorch's argument names, a ``rng`` (a ``numpy.random.Generator`` or
an int seed) for the initial weights, and a ``dtype`` (float32 by default). Weights are
initialised as PyTorch does: uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` for both
weights and biases, which is ``kaiming_uniform_(a=sqrt(5))``.

Global pooling layers return ``(N, C)`` (ready for :class:`Linear`), like their ops;
their PyTorch twin is ``nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._utils import as_int, as_pair, shape_str
from ._utils import check_bool as _check_bool
from .activations import (
    elu_backward,
    elu_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from .batchnorm import batchnorm2d_backward, batchnorm2d_forward
from .conv import (
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
)
from .linear import (
    dropout_backward,
    dropout_forward,
    flatten_backward,
    flatten_forward,
    linear_backward,
    linear_forward,
)
from .pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    gem_pool_backward,
    gem_pool_forward,
    global_avgpool_backward,
    global_avgpool_forward,
    global_maxpool_backward,
    global_maxpool_forward,
    maxpool2d_backward,
    maxpool2d_forward,
    minpool2d_backward,
    minpool2d_forward,
)

__all__ = [
    "Module",
    "Conv2d",
    "ConvTranspose2d",
    "MaxPool2d",
    "AvgPool2d",
    "MinPool2d",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "GeMPool",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Sigmoid",
    "Tanh",
    "Flatten",
    "Linear",
    "Dropout",
    "BatchNorm2d",
    "Sequential",
]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def _as_rng(rng) -> np.random.Generator:
    """A Generator from a Generator, an int seed or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {rng!r}")


def _as_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _uniform_init(rng, shape, fan_in: int, dtype) -> np.ndarray:
    """PyTorch's default: kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _short(value):
    """PyTorch prints a square pair as the int in pooling layers."""
    return value[0] if isinstance(value, tuple) and value[0] == value[1] else value


# ---------------------------------------------------------------------------------------
# base class
# ---------------------------------------------------------------------------------------

class Module:
    """Base class: holds ``params``, ``grads``, ``buffers`` and the last forward's cache.

    Subclasses implement ``_forward(x, training) -> (out, cache)`` and
    ``_backward(dout, cache) -> (dx, grads)``, each a call of the functional op.
    """

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self._cache = None

    # -- the two passes ------------------------------------------------------------
    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        """Run the layer on a batch and remember what backward needs.

        Parameters
        ----------
        x : ndarray
            The layer's input, in the layer's dtype.
        training : bool
            Training mode (dropout active, batch statistics); default evaluation.
        """
        _check_bool(training, "training")
        out, self._cache = self._forward(x, training)
        return out

    __call__ = forward

    def backward(self, dout: np.ndarray, *, need_dx: bool = True) -> np.ndarray | None:
        """Gradient of the input for the last forward pass; stores parameter gradients.

        Parameters
        ----------
        dout : ndarray, shape of the last forward's output
            Gradient of the loss with respect to that output.
        need_dx : bool
            ``False`` when nothing needs the input's gradient (the images, for a
            network's first layer): the parameter gradients are stored as usual and
            ``None`` is returned, and layers that can skip the work do.

        Returns
        -------
        dx : ndarray, shape of the last forward's input, or None
        """
        _check_bool(need_dx, "need_dx")
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        if need_dx:
            dx, grads = self._backward(dout, self._cache)
        else:
            dx, grads = None, self._param_backward(dout, self._cache)
        self.grads = grads
        return dx

    def _forward(self, x, training):  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, dout, cache):  # pragma: no cover - abstract
        raise NotImplementedError

    def _param_backward(self, dout, cache) -> dict:
        """The parameter gradients alone; layers whose op can skip ``dx`` override it."""
        return self._backward(dout, cache)[1]

    # -- parameters ----------------------------------------------------------------
    def parameters(self) -> int:
        """Number of learnable values (buffers such as running statistics excluded)."""
        return int(sum(p.size for p in self.params.values()))

    def zero_grad(self) -> None:
        """Set every gradient to zeros (backward overwrites them anyway)."""
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters and buffers, under PyTorch's names."""
        return {k: v.copy() for k, v in {**self.params, **self.buffers}.items()}

    def load_state_dict(self, state, *, strict: bool = True) -> None:
        """Copy values into the parameters and buffers, keeping their dtypes.

        Parameters
        ----------
        state : mapping name -> array_like
            NumPy arrays, or anything ``numpy.asarray`` accepts (CPU torch tensors).
        strict : bool
            Require exactly this layer's keys, as PyTorch does.
        """
        own = {**self.params, **self.buffers}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys "
                           f"{unexpected}")
        for name in own.keys() & state.keys():
            value = np.asarray(state[name])
            target = own[name]
            if value.shape != target.shape:
                raise ValueError(f"load_state_dict: {name!r} has shape {shape_str(value)} but "
                                 f"the layer's has shape {shape_str(target)}")
            target[...] = value  # in place, so references held by an optimizer stay valid

    def astype(self, dtype) -> Module:
        """Convert the parameters (and floating buffers) to ``dtype``, in place; return self."""
        dt = _as_dtype(dtype)
        self._set_dtype(dt)
        return self

    def _set_dtype(self, dt: np.dtype) -> None:
        self.params = {k: v.astype(dt) for k, v in self.params.items()}
        self.buffers = {k: (v.astype(dt) if np.issubdtype(v.dtype, np.floating) else v)
                        for k, v in self.buffers.items()}
        self.grads = {}
        self._cache = None

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


# ---------------------------------------------------------------------------------------
# convolutions
# ---------------------------------------------------------------------------------------

class Conv2d(Module):
    """2-D convolution layer (cross-correlation), as ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride, padding, dilation
        As :func:`conv2d_forward`; ``padding`` may also be ``"valid"``, ``"same"`` or
        ``"full"``.
    bias : bool
    rng : numpy.random.Generator or int, optional
        Source of the initial weights.
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : ``weight`` (C_out, C_in, KH, KW) and ``bias`` (C_out,)

    Notes
    -----
    Chapters 2 and 3 teach the op; ``C_out * (C_in * KH * KW + 1)`` parameters.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, *, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_channels = as_int(in_channels, "in_channels", minimum=1)
        self.out_channels = as_int(out_channels, "out_channels", minimum=1)
        self.kernel_size = as_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = as_pair(stride, "stride", minimum=1)
        self.padding = padding if isinstance(padding, str) else as_pair(padding, "padding",
                                                                         minimum=0)
        self.dilation = as_pair(dilation, "dilation", minimum=1)
        dt, rng = _as_dtype(dtype), _as_rng(rng)
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.params["weight"] = _uniform_init(rng, shape, fan_in, dt)
        if _check_bool(bias, "bias"):
            self.params["bias"] = _uniform_init(rng, (self.out_channels,), fan_in, dt)

    def _forward(self, x, training):
        return conv2d_forward(x, self.params["weight"], self.params.get("bias"),
                              stride=self.stride, padding=self.padding,
                              dilation=self.dilation)

    def _backward(self, dout, cache):
        dx, dw, db = conv2d_backward(dout, cache)
        return dx, ({"weight": dw} if db is None else {"weight": dw, "bias": db})

    def _param_backward(self, dout, cache):
        _, dw, db = conv2d_backward(dout, cache, need_dx=False)
        return {"weight": dw} if db is None else {"weight": dw, "bias": db}

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if "bias" not in self.params:
            s += ", bias=False"
        return s


class ConvTranspose2d(Module):
    """Transposed 2-D convolution layer, as ``torch.nn.ConvTranspose2d``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride, padding, output_padding
        As :func:`conv_transpose2d_forward`.
    bias : bool
    rng : numpy.random.Generator or int, optional
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : ``weight`` (C_in, C_out, KH, KW), PyTorch's layout, and ``bias`` (C_out,)

    Notes
    -----
    Chapters 6 and 13. PyTorch computes the fan-in of this weight from its second axis,
    ``C_out * KH * KW``, and so does this layer.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, *, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_channels = as_int(in_channels, "in_channels", minimum=1)
        self.out_channels = as_int(out_channels, "out_channels", minimum=1)
        self.kernel_size = as_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = as_pair(stride, "stride", minimum=1)
        self.padding = as_pair(padding, "padding", minimum=0)
        self.output_padding = as_pair(output_padding, "output_padding", minimum=0)
        dt, rng = _as_dtype(dtype), _as_rng(rng)
        fan_in = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
        shape = (self.in_channels, self.out_channels, *self.kernel_size)
        self.params["weight"] = _uniform_init(rng, shape, fan_in, dt)
        if _check_bool(bias, "bias"):
            self.params["bias"] = _uniform_init(rng, (self.out_channels,), fan_in, dt)

    def _forward(self, x, training):
        return conv_transpose2d_forward(x, self.params["weight"], self.params.get("bias"),
                                        stride=self.stride, padding=self.padding,
                                        output_padding=self.output_padding)

    def _backward(self, dout, cache):
        dx, dw, db = conv_transpose2d_backward(dout, cache)
        return dx, ({"weight": dw} if db is None else {"weight": dw, "bias": db})

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if "bias" not in self.params:
            s += ", bias=False"
        return s


# ---------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------

class _Pool2d(Module):
    _ops = (None, None)

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = as_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = (self.kernel_size if stride is None
                       else as_pair(stride, "stride", minimum=1))
        self.padding = as_pair(padding, "padding", minimum=0)

    def _forward(self, x, training):
        return type(self)._ops[0](x, kernel_size=self.kernel_size, stride=self.stride,
                                  padding=self.padding)

    def _backward(self, dout, cache):
        return type(self)._ops[1](dout, cache), {}

    def extra_repr(self):
        return (f"kernel_size={_short(self.kernel_size)}, stride={_short(self.stride)}, "
                f"padding={_short(self.padding)}")


class MaxPool2d(_Pool2d):
    """Max pooling, as ``torch.nn.MaxPool2d`` (padding counts as -inf). Chapter 4.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        At most half the kernel.
    """

    _ops = (staticmethod(maxpool2d_forward), staticmethod(maxpool2d_backward))


class AvgPool2d(_Pool2d):
    """Average pooling, as ``torch.nn.AvgPool2d`` (padded zeros count). Chapter 4.

    Parameters as :class:`MaxPool2d`.
    """

    _ops = (staticmethod(avgpool2d_forward), staticmethod(avgpool2d_backward))


class MinPool2d(_Pool2d):
    """Min pooling (PyTorch has none: it is ``-max_pool2d(-x)``). Chapter 4.

    Parameters as :class:`MaxPool2d`.
    """

    _ops = (staticmethod(minpool2d_forward), staticmethod(minpool2d_backward))


class GlobalAvgPool(Module):
    """Mean of every feature map: (N, C, H, W) -> (N, C). Chapter 4.

    PyTorch twin: ``nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())``.
    """

    def _forward(self, x, training):
        return global_avgpool_forward(x)

    def _backward(self, dout, cache):
        return global_avgpool_backward(dout, cache), {}


class GlobalMaxPool(Module):
    """Maximum of every feature map: (N, C, H, W) -> (N, C). Chapter 4.

    PyTorch twin: ``nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())``.
    """

    def _forward(self, x, training):
        return global_maxpool_forward(x)

    def _backward(self, dout, cache):
        return global_maxpool_backward(dout, cache), {}


class GeMPool(Module):
    """Generalized-mean pooling with a learnable exponent: (N, C, H, W) -> (N, C).

    Parameters
    ----------
    p : float
        Initial exponent (3 in the GeM paper); 1 is average pooling, large p tends to max.
    eps : float
        Inputs are clamped to at least ``eps``.
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : ``p`` of shape (1,), as in common PyTorch GeM layers.

    Notes
    -----
    Chapter 4; the op is :func:`gem_pool_forward`.
    """

    def __init__(self, p=3.0, eps=1e-6, *, dtype=np.float32):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not p > 0:
            raise ValueError(f"p must be a positive number, got {p!r}")
        self.eps = float(eps)
        self.params["p"] = np.full((1,), p, dtype=_as_dtype(dtype))

    def _forward(self, x, training):
        return gem_pool_forward(x, self.params["p"], eps=self.eps)

    def _backward(self, dout, cache):
        dx, dp = gem_pool_backward(dout, cache)
        return dx, {"p": dp}

    def extra_repr(self):
        return f"p={float(self.params['p'][0]):.4g}, eps={self.eps}"


# ---------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------

class ReLU(Module):
    """``max(x, 0)``, as ``torch.nn.ReLU``. Chapter 4."""

    def _forward(self, x, training):
        return relu_forward(x)

    def _backward(self, dout, cache):
        return relu_backward(dout, cache), {}


class LeakyReLU(Module):
    """``x`` for positive inputs, ``negative_slope * x`` otherwise. Chapter 4.

    Parameters
    ----------
    negative_slope : float
    """

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def _forward(self, x, training):
        return leaky_relu_forward(x, negative_slope=self.negative_slope)

    def _backward(self, dout, cache):
        return leaky_relu_backward(dout, cache), {}

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """``x`` for positive inputs, ``alpha * (exp(x) - 1)`` otherwise. Chapter 4.

    Parameters
    ----------
    alpha : float
    """

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = alpha

    def _forward(self, x, training):
        return elu_forward(x, alpha=self.alpha)

    def _backward(self, dout, cache):
        return elu_backward(dout, cache), {}

    def extra_repr(self):
        return f"alpha={self.alpha}"


class Sigmoid(Module):
    """``1 / (1 + exp(-x))``, as ``torch.nn.Sigmoid``. Chapter 4."""

    def _forward(self, x, training):
        return sigmoid_forward(x)

    def _backward(self, dout, cache):
        return sigmoid_backward(dout, cache), {}


class Tanh(Module):
    """Hyperbolic tangent, LeNet-5's activation. Chapter 4."""

    def _forward(self, x, training):
        return tanh_forward(x)

    def _backward(self, dout, cache):
        return tanh_backward(dout, cache), {}


# ---------------------------------------------------------------------------------------
# the classifier head
# ---------------------------------------------------------------------------------------

class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W), as ``torch.nn.Flatten()``. Chapter 5."""

    def _forward(self, x, training):
        return flatten_forward(x)

    def _backward(self, dout, cache):
        return flatten_backward(dout, cache), {}

    def extra_repr(self):
        return "start_dim=1, end_dim=-1"


class Linear(Module):
    """Fully connected layer ``x @ weight.T + bias``, as ``torch.nn.Linear``. Chapter 5.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    rng : numpy.random.Generator or int, optional
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : ``weight`` (out_features, in_features) and ``bias`` (out_features,)
    """

    def __init__(self, in_features, out_features, bias=True, *, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features = as_int(in_features, "in_features", minimum=1)
        self.out_features = as_int(out_features, "out_features", minimum=1)
        dt, rng = _as_dtype(dtype), _as_rng(rng)
        shape = (self.out_features, self.in_features)
        self.params["weight"] = _uniform_init(rng, shape, self.in_features, dt)
        if _check_bool(bias, "bias"):
            self.params["bias"] = _uniform_init(rng, (self.out_features,), self.in_features, dt)

    def _forward(self, x, training):
        return linear_forward(x, self.params["weight"], self.params.get("bias"))

    def _backward(self, dout, cache):
        dx, dw, db = linear_backward(dout, cache)
        return dx, ({"weight": dw} if db is None else {"weight": dw, "bias": db})

    def _param_backward(self, dout, cache):
        _, dw, db = linear_backward(dout, cache, need_dx=False)
        return {"weight": dw} if db is None else {"weight": dw, "bias": db}

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={'bias' in self.params}")


class Dropout(Module):
    """Inverted dropout, active only with ``training=True``. Chapter 5.

    Parameters
    ----------
    p : float in [0, 1)
        Probability of zeroing an element.
    rng : numpy.random.Generator or int, optional
        Source of the masks: the same seed gives the same masks.
    """

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = _as_rng(rng)

    def _forward(self, x, training):
        return dropout_forward(x, p=self.p, training=training, rng=self.rng)

    def _backward(self, dout, cache):
        return dropout_backward(dout, cache), {}

    def extra_repr(self):
        return f"p={self.p}"


class BatchNorm2d(Module):
    """Batch normalization of each channel, as ``torch.nn.BatchNorm2d``. Chapter 5.

    Parameters
    ----------
    num_features : int
        Channels C.
    eps : float
    momentum : float
        Weight of each batch in the running statistics (PyTorch's convention).
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : ``weight`` (gamma, ones) and ``bias`` (beta, zeros), shape (C,)
    buffers : ``running_mean`` (zeros), ``running_var`` (ones), shape (C,), and
        ``num_batches_tracked`` (int64 scalar), PyTorch's keys.

    Notes
    -----
    The op returns new running statistics instead of changing its arguments; this layer
    stores them, so the layer has the state and the op stays a pure function.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, *, dtype=np.float32):
        super().__init__()
        self.num_features = as_int(num_features, "num_features", minimum=1)
        self.eps, self.momentum = eps, momentum
        dt = _as_dtype(dtype)
        c = self.num_features
        self.params.update(weight=np.ones(c, dt), bias=np.zeros(c, dt))
        self.buffers.update(running_mean=np.zeros(c, dt), running_var=np.ones(c, dt),
                            num_batches_tracked=np.zeros((), np.int64))

    def _forward(self, x, training):
        out, cache, mean, var = batchnorm2d_forward(
            x, self.params["weight"], self.params["bias"], self.buffers["running_mean"],
            self.buffers["running_var"], training=training, momentum=self.momentum,
            eps=self.eps)
        if training:
            # In place, so a state_dict or a reference taken earlier sees the new values.
            self.buffers["running_mean"][...] = mean
            self.buffers["running_var"][...] = var
            self.buffers["num_batches_tracked"] += 1
        return out, cache

    def _backward(self, dout, cache):
        dx, dgamma, dbeta = batchnorm2d_backward(dout, cache)
        return dx, {"weight": dgamma, "bias": dbeta}

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


# ---------------------------------------------------------------------------------------
# containers
# ---------------------------------------------------------------------------------------

class Sequential(Module):
    """Layers applied one after the other, as ``torch.nn.Sequential``.

    Parameters
    ----------
    *layers : Module
        Each layer object may appear only once (it keeps one cache).

    Notes
    -----
    Parameter, gradient and buffer names are prefixed with the layer's index
    (``"0.weight"``, ``"3.bias"``), as in PyTorch, so a state dict of the PyTorch twin
    loads directly. ``params`` and ``grads`` are new dicts on every access, holding the
    layers' own arrays.

    Examples
    --------
    >>> net = Sequential(Conv2d(1, 6, 5, rng=0), Tanh(), AvgPool2d(2), Flatten(),
    ...                  Linear(6 * 14 * 14, 10, rng=0))
    >>> scores = net(np.zeros((2, 1, 32, 32), np.float32), training=True)
    >>> dx = net.backward(np.ones_like(scores))
    >>> net.grads["0.weight"].shape
    (6, 1, 5, 5)
    """

    def __init__(self, *layers: Module):
        # No Module.__init__: params, grads and buffers are views of the layers' dicts.
        self._cache = None
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layer {i} must be a cnnlib.numpy layer, got "
                                f"{type(layer).__name__}")
        ids = [id(layer) for layer in layers]
        if len(set(ids)) != len(ids):
            raise ValueError("the same layer object appears twice; create a new layer for "
                             "each position (a layer keeps the cache of one forward pass)")
        self.layers = list(layers)

    def forward(self, x, *, training=False):
        _check_bool(training, "training")
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    __call__ = forward

    def backward(self, dout, *, need_dx=True):
        """Backward through the layers in reverse; see :meth:`Module.backward`.

        With ``need_dx=False`` the layers before the first one with parameters (a
        leading ``Flatten``, say) are skipped, since nothing reads their gradients, and
        that first one is asked for no input gradient.
        """
        _check_bool(need_dx, "need_dx")
        n = len(self.layers)
        start = 0 if need_dx else next((i for i, layer in enumerate(self.layers)
                                         if layer.params), n)
        for layer in reversed(self.layers[start + 1:]):
            dout = layer.backward(dout)
        if start == n:  # no layers, or (without dx) no parameters anywhere
            return dout if need_dx else None
        first = self.layers[start]
        return first.backward(dout, need_dx=need_dx)

    def _collect(self, attr: str) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in getattr(layer, attr).items()}

    @property
    def params(self):
        return self._collect("params")

    @property
    def grads(self):
        return self._collect("grads")

    @property
    def buffers(self):
        return self._collect("buffers")

    def zero_grad(self):
        for layer in self.layers:
            layer.zero_grad()

    def load_state_dict(self, state, *, strict: bool = True) -> None:
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys "
                           f"{unexpected}")
        for i, layer in enumerate(self.layers):
            prefix = f"{i}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            layer.load_state_dict(sub, strict=False)

    def _set_dtype(self, dt):
        for layer in self.layers:
            layer._set_dtype(dt)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        lines = [f"  ({i}): " + repr(layer).replace("\n", "\n  ")
                 for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)" if lines else "Sequential()"

    def summary(self, input_shape, *, dtype=None) -> str:
        """A table of every layer's output shape and parameter count.

        Parameters
        ----------
        input_shape : tuple of int
            One sample's shape, ``(C, H, W)``; a batch of one is run through the net.
        dtype : optional
            Input dtype; defaults to the first parameter's dtype (else float32).

        Returns
        -------
        str
            The table, also suitable for ``print``.
        """
        if dtype is None:
            first = next(iter(self.params.values()), None)
            dtype = first.dtype if first is not None else np.float32
        x = np.zeros((1, *input_shape), dtype=dtype)
        rows = [("input", str(tuple(x.shape[1:])), "")]
        for i, layer in enumerate(self.layers):
            x = layer.forward(x)
            rows.append((f"({i}) {type(layer).__name__}", str(tuple(x.shape[1:])),
                         f"{layer.parameters():,}"))
        rows.append(("total", "", f"{self.parameters():,}"))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        w2 = max(len(r[2]) for r in rows)
        lines = [f"{'layer':<{w0}}  {'output shape':<{w1}}  {'params':>{w2}}"]
        lines += [f"{a:<{w0}}  {b:<{w1}}  {c:>{w2}}" for a, b, c in rows]
        return "\n".join(lines)
