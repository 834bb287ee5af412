"""Assignment 4 (LeNet to ResNet in PyTorch): its graded classes and functions, described once.

A graded class cannot cross from the student's kernel as data, so each spec has an
*adapter* that runs in the kernel: it builds the student's module from plain arguments
(channel counts, a seed), gives every parameter a value drawn from the seed and the
parameter's name, runs the module on the input array the grader sent, and returns plain
data: the output, the gradient of a seeded loss with respect to the input and the
parameter count (and, for the residual block, the gradient through the shortcut alone).
The grader runs the same adapter on the reference module (``cnnlib.torch.models``, or a
module here where the library's differs from the notebook's design) and compares.

Modules run in float64 and in training mode: batch norm normalises with the statistics
of the batch, so no running average is involved.

Machinery only: the seeds and configurations live in the hidden test cells of
``solutions/a4-architectures``.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from .sandbox import DenyList
from .specs import FunctionSpec, Mistake

ASSIGNMENT = "a4-architectures"

# Seconds the grader gives one student cell (spec module convention, see specs.py). The
# kernel's own guard stops a cell at three quarters of it, 30 s: the limit the notebook
# states. Every cell of this notebook defines a class or counts on the "meta" device.
CELL_TIMEOUT = 40.0

# torch.nn layers are the material of this assignment; the course library's models and
# torchvision's are what the student writes here.
DENIED = ("cnnlib", "torchvision", "torch.hub", "timm")


def _deny(what):
    return DenyList(modules=DENIED, reason=f"build {what} from torch.nn layers yourself")


def _plain(f, *args, **kwargs):
    """``watch`` for the reference side: nothing to watch."""
    return f(*args, **kwargs)


# --------------------------------------------------------------------------- shared machinery

def parameter_values(seed, name, shape):
    """The value the checks give parameter ``name``: drawn from ``seed`` and the name.

    Weights (two or more axes) are scaled by ``1/sqrt(fan_in)`` so that activations keep
    their scale through a network; vectors (biases, batch-norm scales and shifts) by 0.5.
    """
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
    values = rng.standard_normal(tuple(shape))
    if len(shape) > 1:
        return values / math.sqrt(math.prod(shape[1:]))
    return 0.5 * values


def _named_parameters(model, watch):
    """``[(name, parameter)]`` of a module. Listed under the watch: a student's module may
    override how its parameters are found, and all of the student's code runs watched."""
    import torch

    named = watch(list, model.named_parameters())
    for name, p in named:
        if type(p) is not torch.nn.Parameter:
            raise TypeError(f"parameter {name} is a {type(p).__name__}, not an nn.Parameter")
    return named


def _materialise(model, watch, x):
    """Give lazy layers (``nn.LazyConv2d``, ``nn.LazyLinear``, ...) their parameters.

    A lazy layer learns its input size from its first forward pass, so its parameters do
    not exist until then. One forward pass on ``x``, watched like all of the student's code,
    in evaluation mode (batch norm then changes no statistic) and in the default dtype (a
    lazy parameter is created in it), before any name or shape is compared.
    """
    import torch
    from torch.nn.parameter import is_lazy

    if not any(is_lazy(p) for _, p in watch(list, model.named_parameters())):
        return
    watch(model.eval)
    with torch.no_grad():
        watch(model, torch.tensor(np.asarray(x), dtype=torch.get_default_dtype()))


def _shapes(model, rename=None, watch=None):
    """``{name: shape}`` of a module's parameters, under the notebook's names."""
    rename = rename or (lambda n: n)
    return {rename(n): tuple(p.shape) for n, p in _named_parameters(model, watch or _plain)}


def _short(names, limit=4):
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_names(found, expected, what, note=""):
    """Raise ValueError naming the missing, unexpected and misshapen parameters."""
    missing, extra = set(expected) - set(found), set(found) - set(expected)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_short(missing)}")
        if extra:
            parts.append(f"unexpected {_short(extra)}")
        raise ValueError(f"{what}'s parameter names differ from the notebook's: "
                         + "; ".join(parts) + (f" ({note})" if note else ""))
    for name in sorted(expected):
        if found[name] != expected[name]:
            raise ValueError(f"{what}: {name} has shape {found[name]}, the notebook's design "
                             f"gives {expected[name]}")


def _load(model, watch, seed, rename=None):
    """Float64, training mode, and every parameter's value drawn from its name."""
    import torch

    rename = rename or (lambda n: n)
    watch(model.double)
    watch(model.train)
    with torch.no_grad():
        for name, p in _named_parameters(model, watch):
            p.copy_(torch.from_numpy(parameter_values(seed, rename(name), tuple(p.shape))))


def _forward_backward(model, watch, seed, x, what):
    """(output, input gradient) of ``model`` on ``x`` for the loss ``sum(out * g)``, with
    ``g`` drawn from the seed."""
    import torch

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = watch(model, xt)
    if type(out) is not torch.Tensor:  # exactly: a subclass would run its methods unwatched
        raise TypeError(f"{what}'s forward returned a {type(out).__name__}, not a tensor")
    g = np.random.default_rng([int(seed), 1]).standard_normal(tuple(out.shape))
    if out.requires_grad:
        # a scalar loss: backward(gradient=g) would import sympy on first use, seconds
        # under the watch, in every forked child
        loss = (out * torch.from_numpy(g).to(out.dtype)).sum()
        watch(loss.backward)
    dx = xt.grad if xt.grad is not None else torch.zeros_like(xt)
    return out.detach().double().numpy().copy(), dx.detach().numpy().copy()


def _run_module(model, watch, seed, x, expected, what, rename=None, note=""):
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{what} built a {type(model).__name__}, not a torch.nn.Module")
    _materialise(model, watch, x)
    check_names(_shapes(model, rename, watch), expected, what, note)
    _load(model, watch, seed, rename)
    out, dx = _forward_backward(model, watch, seed, x, what)
    return out, dx, int(sum(p.numel() for _, p in _named_parameters(model, watch)))


def _close(a, b):
    from .checks import close

    return close(a, b)


def _explain_torch_error(detail):
    """Words for the shape errors torch raises from a wrongly wired network."""
    if "cannot be multiplied" in detail:
        return ("a linear layer received a different number of features than it was built "
                "for: check the size after flattening")
    if "expected input" in detail and "channels" in detail:
        return ("a convolution received a different number of channels than it was built "
                "for: each layer's in_channels is the previous layer's out_channels")
    if "can't be greater than actual input size" in detail or "Output size is too small" in detail:
        return ("the feature map became smaller than a kernel: a convolution without padding "
                "shrinks the height and width by kernel_size - 1")
    if "Sizes of tensors must match" in detail:
        return ("the tensors joined by torch.cat differ in a dimension other than the one "
                "they are joined on: every branch must keep the input's height and width, "
                "and the branches are joined along the channels (dim=1)")
    if "must match the size of tensor" in detail:
        return ("the two tensors added have different shapes: when a block changes the "
                "channels or the resolution, the shortcut needs its 1x1 projection with the "
                "same stride")
    if "Expected" in detail and "Double" in detail:
        return "the module made a tensor of another dtype; create tensors like the input's"
    return None


_MODULE_PARTS = ("output", "input gradient", "parameter count")


def _shape(c, key="x"):
    return tuple(int(d) for d in c[key])


# --------------------------------------------------------------------------- LeNet5

# cnnlib.torch.models.lenet5 is one flat nn.Sequential; its layers under the notebook's names.
_LENET_NAMES = {"0": "conv1", "3": "conv2", "7": "fc1", "9": "fc2", "11": "fc3"}


def _lenet_name(name):
    layer, _, what = name.rpartition(".")
    return f"{_LENET_NAMES[layer.split('.')[-1]]}.{what}"


def _lenet_reference(num_classes, activation="tanh", pool="avg", last=None):
    from torch import nn

    from cnnlib.torch.models import lenet5

    model = lenet5(num_classes=num_classes, activation=activation, pool=pool)
    return nn.Sequential(model, last) if last is not None else model


def _lenet_expected(num_classes):
    return _shapes(_lenet_reference(num_classes), _lenet_name)


def lenet_adapter(student, watch, num_classes, seed, x):
    """Build ``LeNet5(num_classes)`` and return (output, input gradient, parameter count)."""
    model = watch(student, num_classes)
    return _run_module(model, watch, seed, x, _lenet_expected(num_classes), "LeNet5")


def _lenet_variant(**kwargs):
    def variant(lib, args):
        num_classes, seed, x = args
        model = _lenet_reference(num_classes, **kwargs)
        return _run_module(model, _plain, seed, x, _lenet_expected(num_classes), "LeNet5",
                           _lenet_name)
    return variant


def _lenet_inputs(rng, c):
    return (int(c.get("num_classes", 10)), int(rng.integers(2**31)),
            rng.standard_normal((int(c.get("n", 2)), 1, 32, 32)))


def _final(kind):
    from torch import nn

    return nn.Tanh() if kind == "tanh" else nn.Softmax(dim=1)


LENET5 = FunctionSpec(
    name="LeNet5",
    signature="LeNet5(num_classes=10)",
    returns=("array", "array", "int"),
    parts=_MODULE_PARTS,
    adapter=lenet_adapter,
    inputs=_lenet_inputs,
    reference=lambda lib, args: _lenet_variant()(lib, args),
    describe=lambda c: (f"LeNet5(num_classes={c.get('num_classes', 10)}) on a batch of "
                        f"{c.get('n', 2)} images of 1 x 32 x 32"),
    deny=lambda: _deny("LeNet5"),
    mistakes=(
        Mistake("max pooling where LeNet-5 subsamples by averaging (nn.AvgPool2d)",
                _lenet_variant(pool="max")),
        Mistake("ReLU where LeNet-5 uses tanh after each convolution and hidden linear layer",
                _lenet_variant(activation="relu")),
        Mistake("an activation after the last linear layer: the network returns raw class "
                "scores (logits), so fc3's output is the result",
                lambda lib, args: _lenet_variant(last=_final("tanh"))(lib, args)),
        Mistake("a softmax at the end: the network returns raw class scores (logits); the "
                "loss applies the softmax itself",
                lambda lib, args: _lenet_variant(last=_final("softmax"))(lib, args)),
    ),
    explain_error=_explain_torch_error,
)


# --------------------------------------------------------------------------- vgg_block

def _vgg_reference(in_channels, out_channels, num_convs, pool="max", last_relu=True,
                   padding=1):
    from torch import nn

    layers = []
    channels = in_channels
    for i in range(num_convs):
        layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=padding))
        layers.append(nn.ReLU() if last_relu or i < num_convs - 1 else nn.Identity())
        channels = out_channels
    layers.append(nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2))
    return nn.Sequential(*layers)


def _vgg_library(in_channels, out_channels, num_convs):
    from cnnlib.torch.models import make_layers

    return make_layers([out_channels] * num_convs + ["M"], in_channels=in_channels)


def vgg_adapter(student, watch, in_channels, out_channels, num_convs, seed, x):
    """Build ``vgg_block(...)`` and return (output, input gradient, parameter count)."""
    model = watch(student, in_channels, out_channels, num_convs)
    expected = _shapes(_vgg_library(in_channels, out_channels, num_convs))
    return _run_module(model, watch, seed, x, expected, "vgg_block",
                       note="an nn.Sequential of conv, ReLU, conv, ReLU, ..., max pool")


def _vgg_variant(**kwargs):
    def variant(lib, args):
        in_c, out_c, n, seed, x = args
        expected = _shapes(_vgg_library(in_c, out_c, n))
        return _run_module(_vgg_reference(in_c, out_c, n, **kwargs), _plain, seed, x, expected,
                           "vgg_block")
    return variant


def _vgg_inputs(rng, c):
    x = _shape(c)
    return (x[1], int(c["out_channels"]), int(c["num_convs"]), int(rng.integers(2**31)),
            rng.standard_normal(x))


def _vgg_reference_value(lib, args):
    in_c, out_c, n, seed, x = args
    expected = _shapes(_vgg_library(in_c, out_c, n))
    return _run_module(_vgg_library(in_c, out_c, n), _plain, seed, x, expected, "vgg_block")


VGG_NO_PADDING = ("the convolutions have no padding: a 3x3 convolution keeps the height and "
                  "width only with padding=1")
VGG_NO_POOL = "the block does not end with the 2x2 max pool (stride 2) that halves H and W"
VGG_POOL_EACH = "the block pools after every convolution; it pools once, at the end"


def _vgg_diagnose(lib, args, value, ref):
    """Output shapes that name a mistake (the output is the first part of the result)."""
    in_c, out_c, n, seed, x = args
    out = value[0] if isinstance(value, tuple) and value else None
    if not isinstance(out, np.ndarray) or out.ndim != 4 or out.shape == ref[0].shape:
        return None
    h, w = x.shape[2:]
    if out.shape[2:] == ((h - 2 * n) // 2, (w - 2 * n) // 2):
        return VGG_NO_PADDING
    if out.shape[2:] == (h, w):
        return VGG_NO_POOL
    if n > 1 and out.shape[2:] == (h >> n, w >> n):
        return VGG_POOL_EACH
    return None


VGG_BLOCK = FunctionSpec(
    name="vgg_block",
    signature="vgg_block(in_channels, out_channels, num_convs)",
    returns=("array", "array", "int"),
    parts=_MODULE_PARTS,
    adapter=vgg_adapter,
    inputs=_vgg_inputs,
    reference=_vgg_reference_value,
    describe=lambda c: (f"vgg_block({_shape(c)[1]}, {c['out_channels']}, {c['num_convs']}) "
                        f"on x of shape {_shape(c)}"),
    deny=lambda: _deny("the block"),
    diagnose=_vgg_diagnose,
    mistakes=(
        Mistake("the last convolution has no ReLU: every convolution is followed by one, "
                "then the block ends with the pool", _vgg_variant(last_relu=False)),
        Mistake("average pooling where a VGG block max-pools", _vgg_variant(pool="avg")),
    ),
    explain_error=_explain_torch_error,
)


# --------------------------------------------------------------------------- InceptionBlock

def _inception_class():
    """The notebook's Inception block (the paper's design: a true 5x5 branch, no batch
    norm), built here because :class:`cnnlib.torch.models.googlenet.Inception` follows
    torchvision's weights (batch norm, a 3x3 kernel in the "5x5" branch)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Inception(nn.Module):
        def __init__(self, in_channels, c1, c2, c3, c4, *, order=(0, 1, 2, 3),
                     inner_relu=True, outer_relu=True, pool="max"):
            super().__init__()
            act = nn.ReLU if inner_relu else nn.Identity
            pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
            self.branch1 = nn.Conv2d(in_channels, c1, kernel_size=1)
            self.branch2 = nn.Sequential(nn.Conv2d(in_channels, c2[0], kernel_size=1), act(),
                                         nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1))
            self.branch3 = nn.Sequential(nn.Conv2d(in_channels, c3[0], kernel_size=1), act(),
                                         nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2))
            self.branch4 = nn.Sequential(pool_cls(kernel_size=3, stride=1, padding=1),
                                         nn.Conv2d(in_channels, c4, kernel_size=1))
            self.order, self.outer_relu = order, outer_relu

        def forward(self, x):
            outs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
            if self.outer_relu:
                outs = [F.relu(o) for o in outs]
            return torch.cat([outs[i] for i in self.order], dim=1)

    return Inception


def _inception_args(args):
    in_c, c1, c2a, c2b, c3a, c3b, c4, seed, x = args
    return (in_c, c1, (c2a, c2b), (c3a, c3b), c4), seed, x


def inception_adapter(student, watch, *args):
    """Build ``InceptionBlock(in_channels, c1, (c2a, c2b), (c3a, c3b), c4)`` and return
    (output, input gradient, parameter count)."""
    build, seed, x = _inception_args(args)
    model = watch(student, *build)
    expected = _shapes(_inception_class()(*build))
    return _run_module(model, watch, seed, x, expected, "InceptionBlock")


def _inception_variant(**kwargs):
    def variant(lib, args):
        build, seed, x = _inception_args(args)
        cls = _inception_class()
        return _run_module(cls(*build, **kwargs), _plain, seed, x, _shapes(cls(*build)),
                           "InceptionBlock")
    return variant


def _inception_inputs(rng, c):
    x = _shape(c)
    return (x[1], int(c["c1"]), int(c["c2"][0]), int(c["c2"][1]), int(c["c3"][0]),
            int(c["c3"][1]), int(c["c4"]), int(rng.integers(2**31)), rng.standard_normal(x))


def _swapped_order(lib, args):
    _, c1, _, c2b, _, c3b, _, _, _ = args
    if c2b == c3b:
        raise ValueError("the swap shows only when the two branches differ in width")
    return _inception_variant(order=(0, 2, 1, 3))(lib, args)


INCEPTION_BLOCK = FunctionSpec(
    name="InceptionBlock",
    signature="InceptionBlock(in_channels, c1, c2, c3, c4)",
    returns=("array", "array", "int"),
    parts=_MODULE_PARTS,
    adapter=inception_adapter,
    inputs=_inception_inputs,
    reference=lambda lib, args: _inception_variant()(lib, args),
    describe=lambda c: (f"InceptionBlock({_shape(c)[1]}, {c['c1']}, {tuple(c['c2'])}, "
                        f"{tuple(c['c3'])}, {c['c4']}) on x of shape {_shape(c)}"),
    deny=lambda: _deny("the block"),
    mistakes=(
        Mistake("the branches are concatenated in another order: branch1 (1x1), branch2 "
                "(3x3), branch3 (5x5), branch4 (pool), along the channels",
                _swapped_order),
        Mistake("no ReLU between a 1x1 reduction and the 3x3 or 5x5 convolution that "
                "follows it", _inception_variant(inner_relu=False)),
        Mistake("no ReLU on the branches' outputs: each branch ends with a ReLU before the "
                "concatenation", _inception_variant(outer_relu=False)),
        Mistake("average pooling in the pool branch, where Inception max-pools (3x3, stride "
                "1, padding 1)", _inception_variant(pool="avg")),
    ),
    explain_error=_explain_torch_error,
)


# --------------------------------------------------------------------------- ResidualBlock

def _residual_classes():
    """The reference block (:class:`cnnlib.torch.models.BasicBlock`) and its known
    mistakes, each with the reference's parameter names."""
    from torch import nn

    from cnnlib.torch.models import BasicBlock

    class ReluBeforeAdd(BasicBlock):
        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return out + (x if self.downsample is None else self.downsample(x))

    class NoFinalRelu(BasicBlock):
        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return out + (x if self.downsample is None else self.downsample(x))

    class NoShortcut(BasicBlock):
        def forward(self, x):
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))

    class StrideInConv2(BasicBlock):
        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__(inplanes, planes, stride, downsample)
            self.conv1.stride, self.conv2.stride = (1, 1), (stride, stride)

    def build(cls, in_channels, out_channels, stride):
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))
        return cls(in_channels, out_channels, stride, downsample)

    return build, {"reference": BasicBlock, "relu_before_add": ReluBeforeAdd,
                   "no_final_relu": NoFinalRelu, "no_shortcut": NoShortcut,
                   "stride_in_conv2": StrideInConv2}


_SHORTCUT_NOTE = ("downsample, a 1x1 convolution without bias and a batch norm, exists exactly "
                  "when the block changes the channels or the resolution")


# The notebook's own words on the names (section 4), quoted when a block loses points for
# naming its projection another common way.
NAMES_CONVENTION = ("Use exactly these names, conv1, bn1, conv2, bn2, downsample: they are "
                    "torchvision's")
_PROJECTION_ALIASES = ("shortcut", "projection", "proj")
SHORTCUT_ONLY_NAME = ("only a name differs: the projection is called {alias}, and the "
                      f"notebook's convention is downsample (\"{NAMES_CONVENTION}\"); under "
                      "that name your block matches the reference")
SHORTCUT_NAME = ("the projection is called {alias}, and the notebook's convention is "
                 f"downsample (\"{NAMES_CONVENTION}\"); under that name the block still "
                 "differs from the reference")


def _projection_alias(model, watch, x, expected):
    """The other name (``shortcut``, ...) under which ``model`` holds exactly the notebook's
    projection, or None."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return None
    _materialise(model, watch, x)
    found = _shapes(model, watch=watch)
    for alias in _PROJECTION_ALIASES:
        renamed = {_renamed(n, alias): shape for n, shape in found.items()}
        if renamed != found and renamed == expected:
            return alias
    return None


def _renamed(name, alias):
    return "downsample" + name[len(alias):] if name.startswith(alias + ".") else name


def residual_adapter(student, watch, in_channels, out_channels, stride, seed, x):
    """Build ``ResidualBlock(in_channels, out_channels, stride)``; return (output, input
    gradient, gradient through the shortcut, parameter count).

    The gradient through the shortcut is the input gradient once ``bn2``'s scale and shift
    are zero: the residual branch then outputs zeros and passes no gradient back.
    """
    import torch

    build, classes = _residual_classes()
    expected = _shapes(build(classes["reference"], in_channels, out_channels, stride))
    model = watch(student, in_channels, out_channels, stride)
    alias = _projection_alias(model, watch, x, expected)
    if alias is not None:
        # the points are lost for the name (the verdict is a failure whatever this kernel
        # computes); the message only says whether the name is all that differs
        mine = _run_module(model, watch, seed, x, expected, "ResidualBlock",
                           rename=lambda n: _renamed(n, alias))
        ref = _run_module(build(classes["reference"], in_channels, out_channels, stride),
                          _plain, seed, x, expected, "ResidualBlock")
        same = all(_close(a, b) for a, b in zip(mine[:2], ref[:2])) and mine[2] == ref[2]
        raise ValueError((SHORTCUT_ONLY_NAME if same else SHORTCUT_NAME).format(alias=alias))
    out, dx, count = _run_module(model, watch, seed, x, expected, "ResidualBlock",
                                 note=_SHORTCUT_NOTE)
    params = dict(_named_parameters(model, watch))
    with torch.no_grad():
        params["bn2.weight"].zero_()
        params["bn2.bias"].zero_()
    _, dx_shortcut = _forward_backward(model, watch, seed, x, "ResidualBlock")
    return out, dx, dx_shortcut, count


def _residual_variant(kind):
    def variant(lib, args):
        in_c, out_c, stride, seed, x = args
        if kind == "stride_in_conv2" and stride == 1:
            raise ValueError("shows only with stride > 1")
        build, classes = _residual_classes()
        return residual_adapter(lambda *a: build(classes[kind], *a), _plain, *args)
    return variant


def _residual_inputs(rng, c):
    x = _shape(c)
    return (x[1], int(c["out_channels"]), int(c.get("stride", 1)), int(rng.integers(2**31)),
            rng.standard_normal(x))


RESIDUAL_BLOCK = FunctionSpec(
    name="ResidualBlock",
    signature="ResidualBlock(in_channels, out_channels, stride=1)",
    returns=("array", "array", "array", "int"),
    parts=("output", "input gradient", "gradient through the shortcut", "parameter count"),
    adapter=residual_adapter,
    inputs=_residual_inputs,
    reference=_residual_variant("reference"),
    describe=lambda c: (f"ResidualBlock({_shape(c)[1]}, {c['out_channels']}, "
                        f"stride={c.get('stride', 1)}) on x of shape {_shape(c)}"),
    deny=lambda: _deny("the block"),
    mistakes=(
        Mistake("the ReLU comes before the addition: the block adds the shortcut to bn2's "
                "output and applies the ReLU to the sum", _residual_variant("relu_before_add")),
        Mistake("no ReLU after the addition: the block returns relu(F(x) + shortcut(x))",
                _residual_variant("no_final_relu")),
        Mistake("the shortcut is not added: no gradient flows through it, and the block must "
                "learn the whole mapping instead of a residual", _residual_variant("no_shortcut")),
        Mistake("the stride is in the second convolution: conv1 (and the projection) stride, "
                "conv2 keeps the resolution", _residual_variant("stride_in_conv2")),
    ),
    explain_error=_explain_torch_error,
)


# --------------------------------------------------------------------------- count_parameters

# Models for count_parameters, as plain data: (kind, a, b, frozen). ``frozen`` = 1 stops
# the gradient of the first layer's parameters (requires_grad=False).
MODEL_KINDS = {0: "nn.Linear(a, b)", 1: "nn.Conv2d(a, b, 3)",
               2: "conv a->b (no bias), batch norm, ReLU, pool, nn.Linear(b, 10)",
               3: "nn.Linear(a, a) used twice (shared weights), then nn.Linear(a, b)",
               4: "LeNet-5 with b classes"}


def count_model(kind, a, b, frozen=0):
    """The model ``count_parameters`` is checked on (see MODEL_KINDS)."""
    from torch import nn

    if kind == 0:
        model = nn.Sequential(nn.Linear(a, b))
    elif kind == 1:
        model = nn.Sequential(nn.Conv2d(a, b, 3))
    elif kind == 2:
        model = nn.Sequential(nn.Conv2d(a, b, 3, bias=False), nn.BatchNorm2d(b), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(b, 10))
    elif kind == 3:
        shared = nn.Linear(a, a)
        model = nn.Sequential(shared, nn.Tanh(), shared, nn.Linear(a, b))
    elif kind == 4:
        from cnnlib.torch.models import lenet5

        model = lenet5(num_classes=b)
    else:
        raise ValueError(f"unknown model kind {kind}")
    if frozen:
        for p in model[0].parameters():
            p.requires_grad_(False)
    return model


def count_adapter(student, watch, kind, a, b, frozen):
    """Build the model, then call the student's ``count_parameters(model)``."""
    return watch(student, count_model(kind, a, b, frozen))


def _count_variant(fn):
    return lambda lib, args: int(fn(count_model(*args)))


def _count_describe(c):
    kind, a, b = c["kind"], c.get("a", 1), c.get("b", 1)
    text = {0: f"nn.Linear({a}, {b})", 1: f"nn.Conv2d({a}, {b}, 3)",
            2: f"conv {a}->{b} (no bias) + batch norm + ReLU + pool + linear",
            3: f"nn.Linear({a}, {a}) used twice (shared weights) and a head with {b} outputs",
            4: f"LeNet-5 with {b} classes"}[kind]
    return text + (", its first layer frozen" if c.get("frozen") else "")


def _count_random(rng, n):
    out = []
    for _ in range(n):
        kind = int(rng.integers(0, 5))
        out.append({"kind": kind, "a": int(rng.integers(1, 17)), "b": int(rng.integers(1, 17)),
                    "frozen": int(rng.integers(0, 2))})
    return out


COUNT_PARAMETERS = FunctionSpec(
    name="count_parameters",
    signature="count_parameters(model)",
    returns="int",
    adapter=count_adapter,
    inputs=lambda rng, c: (int(c["kind"]), int(c.get("a", 1)), int(c.get("b", 1)),
                           int(c.get("frozen", 0))),
    reference=lambda lib, args: _count_reference(count_model(*args)),
    describe=_count_describe,
    deny=lambda: _deny("the count"),
    random_cases=_count_random,
    mistakes=(
        Mistake("the biases are not counted: every parameter tensor counts, weights, biases "
                "and batch-norm scales and shifts alike",
                _count_variant(lambda m: sum(p.numel() for p in m.parameters() if p.ndim > 1))),
        Mistake("a parameter shared by two layers is counted twice: it is one tensor, stored "
                "once (model.parameters() lists it once)",
                _count_variant(lambda m: sum(p.numel() for _, p in
                                             m.named_parameters(remove_duplicate=False)))),
        Mistake("frozen parameters are left out: count every parameter, whether or not it "
                "requires a gradient",
                _count_variant(lambda m: sum(p.numel() for p in m.parameters()
                                             if p.requires_grad))),
        Mistake("the batch-norm running statistics are counted: they are buffers, not "
                "parameters; no gradient changes them",
                _count_variant(lambda m: sum(p.numel() for p in m.parameters())
                               + sum(b.numel() for b in m.buffers()))),
    ),
)


def _count_reference(model):
    from cnnlib.torch import count_parameters

    return int(count_parameters(model))


# --------------------------------------------------------------------------- receptive_field

LAYER_KINDS = ("conv", "pool")


def layer_list(layers):
    """The notebook's description of a stack, from the grader's int array of shape (L, 3):
    ``[("conv", kernel_size, stride), ("pool", kernel_size, stride), ...]``."""
    arr = np.asarray(layers)
    return [(LAYER_KINDS[int(kind)], int(k), int(s)) for kind, k, s in arr.reshape(-1, 3)]


def rf_adapter(student, watch, layers):
    """Call the student's ``receptive_field`` on the list of layer tuples."""
    return watch(student, layer_list(layers))


def _rf_reference(lib, args):
    from cnnlib.torch import receptive_field

    rows = receptive_field([(k, s, 0) for _, k, s in layer_list(args[0])]).rows
    return int(rows[-1].size[0]) if rows else 1


def _rf_formula(layers, update, start=1):
    size, jump = start, 1
    for _, k, s in layer_list(layers):
        size, jump = update(size, jump, k, s)
    return size


def _rf_variant(update, start=1):
    return lambda lib, args: int(_rf_formula(args[0], update, start))


def _rf_random(rng, n):
    out = []
    for _ in range(n):
        depth = int(rng.integers(1, 7))
        out.append({"layers": [[str(LAYER_KINDS[int(rng.integers(0, 2))]),
                                int(rng.integers(1, 8)), int(rng.integers(1, 4))]
                               for _ in range(depth)]})
    return out


def _rf_inputs(rng, c):
    rows = [[LAYER_KINDS.index(kind), int(k), int(s)] for kind, k, s in c["layers"]]
    return (np.array(rows, dtype=np.int64).reshape(-1, 3),)


RECEPTIVE_FIELD = FunctionSpec(
    name="receptive_field",
    signature="receptive_field(layers)",
    returns="int",
    adapter=rf_adapter,
    inputs=_rf_inputs,
    reference=_rf_reference,
    describe=lambda c: "layers " + ", ".join(f"{kind} {k}/{s}" for kind, k, s in c["layers"])
    + " (kernel/stride)",
    deny=lambda: _deny("the computation"),
    random_cases=_rf_random,
    mistakes=(
        Mistake("the strides are ignored: each layer widens the field by (k - 1) times the "
                "product of the strides of the layers before it",
                _rf_variant(lambda r, j, k, s: (r + (k - 1), j))),
        Mistake("a layer's own stride is applied to its kernel: the layer widens the field "
                "by (k - 1) times the strides of the layers *before* it",
                _rf_variant(lambda r, j, k, s: (r + (k - 1) * j * s, j * s))),
        Mistake("the field starts at 0: one output of no layer at all sees 1 pixel",
                _rf_variant(lambda r, j, k, s: (r + (k - 1) * j, j * s), start=0)),
        Mistake("the kernel sizes are multiplied: stacked layers add (k - 1) pixels each, "
                "scaled by the jump", _rf_variant(lambda r, j, k, s: (r * k, j * s))),
    ),
)


# --------------------------------------------------------------------------- train_digits

# The small network the training check builds around the student's block, and the
# grader's own loop: SGD with momentum on the 8x8 digits.
TRAIN_EPOCHS = 6
TRAIN_THRESHOLD = 0.80  # the notebook's checks; see the instructors' guide
TRAIN_BATCH = 64
TRAIN_LR = 0.05


def digits_resnet(block):
    """A stem, ``block(16, 16)``, ``block(16, 32, 2)``, global average pooling, a linear
    layer: 10 scores for an 8x8 digit."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                         nn.ReLU(), block(16, 16, 1), block(16, 32, 2), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(32, 10))


def train_adapter(student, watch, seed):
    """Train ``digits_resnet`` of the student's block with the grader's loop; return the
    test accuracy. The loop is the grader's; everything of the student's (building the
    blocks, their forward and backward passes) runs watched."""
    import torch
    import torch.nn.functional as F

    from cnnlib.data import load_digits

    torch.set_num_threads(1)
    data = load_digits(size=8, seed=0)
    torch.manual_seed(int(seed))
    order = np.random.default_rng(int(seed))

    def block(in_channels, out_channels, stride):
        module = watch(student, in_channels, out_channels, stride)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"ResidualBlock built a {type(module).__name__}, not a "
                            "torch.nn.Module")
        return module

    model = digits_resnet(block)
    _materialise(model, watch, data.x_train[:TRAIN_BATCH])
    opt = torch.optim.SGD([p for _, p in _named_parameters(model, watch)], lr=TRAIN_LR,
                          momentum=0.9)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    for _ in range(TRAIN_EPOCHS):
        watch(model.train)
        perm = order.permutation(len(x))
        for i in range(0, len(x), TRAIN_BATCH):
            idx = torch.from_numpy(perm[i:i + TRAIN_BATCH])
            scores = watch(model, x[idx])
            if type(scores) is not torch.Tensor:
                raise TypeError(f"the network returned a {type(scores).__name__}, not a tensor")
            loss = F.cross_entropy(scores, y[idx])
            opt.zero_grad()
            watch(loss.backward)
            opt.step()
    watch(model.eval)
    with torch.no_grad():
        scores = watch(model, torch.from_numpy(data.x_test))
    if type(scores) is not torch.Tensor:
        raise TypeError(f"the network returned a {type(scores).__name__}, not a tensor")
    return float((scores.argmax(1).numpy() == data.y_test).mean())


def _train_reference(lib, args):
    build, classes = _residual_classes()
    return train_adapter(lambda *a: build(classes["reference"], *a), _plain, *args)


TRAIN_DIGITS = FunctionSpec(
    name="train_digits",
    signature="train_digits(ResidualBlock)",
    returns="float",
    adapter=train_adapter,
    inputs=lambda rng, c: (int(c["seed"]),),
    reference=_train_reference,
    describe=lambda c: "a small residual network of your blocks trained on the digits",
    deny=lambda: _deny("the block"),
    explain_error=_explain_torch_error,
)


FUNCTIONS = {spec.name: spec for spec in (LENET5, VGG_BLOCK, INCEPTION_BLOCK, RESIDUAL_BLOCK,
                                          COUNT_PARAMETERS, RECEPTIVE_FIELD, TRAIN_DIGITS)}
REFERENCE_NEEDS = ()
