"""The course's model zoo, written the way torchvision writes it.

Every builder is keyword-only (``resnet18(num_classes=10, in_channels=1)``), and the
ImageNet models have torchvision's parameter and buffer names and shapes, so the
weights torchvision publishes load into them with ``load_state_dict(strict=True)``
(see :func:`cnnlib.torch.load_pretrained`).

==================  ==============================================  =======
builder             what                                            chapter
==================  ==============================================  =======
lenet5              LeNet-5, 32x32 inputs                           8
alexnet             torchvision's AlexNet                           8
alexnet_paper       the 2012 paper's AlexNet (LRN, two GPU groups)  8
vgg11 ... vgg19_bn  VGG configurations A, B, D, E                   9
small_vgg           VGG-style network for 32x32 inputs              9
googlenet           Inception v1                                    10
resnet18 ... 152    ImageNet ResNets                                11
small_resnet        CIFAR-style ResNet (6n+2 layers), or its plain  11
                    counterpart without shortcuts
densenet121         DenseNet-121                                    11
mobilenet_v2        MobileNetV2                                     11
small_unet          small U-Net for segmentation (a score per       14
                    class and pixel; not in ``get_model``, whose
                    builders are classifiers)
==================  ==============================================  =======
"""

from __future__ import annotations

import os
from collections.abc import Callable

from torch import nn

from ..weights import load_weights
from .alexnet import AlexNet, AlexNetPaper, alexnet, alexnet_paper
from .densenet import DenseNet, densenet121
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet
from .lenet import LeNet5, lenet5
from .mobilenet import MobileNetV2, mobilenet_v2
from .resnet import (
    BasicBlock,
    Bottleneck,
    PlainBlock,
    ResNet,
    SmallResNet,
    make_stage,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    small_resnet,
)
from .unet import DoubleConv, SmallUNet, small_unet
from .vgg import (
    VGG,
    SmallVGG,
    cfgs,
    make_layers,
    small_vgg,
    vgg11,
    vgg11_bn,
    vgg13,
    vgg13_bn,
    vgg16,
    vgg16_bn,
    vgg19,
    vgg19_bn,
)

__all__ = [
    "AlexNet", "AlexNetPaper", "BasicBlock", "Bottleneck", "DenseNet", "DoubleConv", "GoogLeNet",
    "GoogLeNetOutputs", "LeNet5", "MobileNetV2", "PlainBlock", "ResNet", "SmallResNet",
    "SmallUNet", "SmallVGG", "VGG",
    "alexnet", "alexnet_paper", "cfgs", "densenet121", "get_model", "googlenet", "lenet5",
    "list_models", "load_pretrained", "make_layers", "make_stage", "mobilenet_v2", "resnet18",
    "resnet34", "resnet50", "resnet101", "resnet152", "small_resnet", "small_unet",
    "small_vgg", "vgg11", "vgg11_bn",
    "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    fn.__name__: fn
    for fn in (lenet5, alexnet, alexnet_paper, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16,
               vgg16_bn, vgg19, vgg19_bn, googlenet, resnet18, resnet34, resnet50, resnet101,
               resnet152, densenet121, mobilenet_v2, small_resnet, small_vgg)
}


def list_models() -> list[str]:
    """Names of every builder, for ``get_model`` and command lines."""
    return sorted(_BUILDERS)


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name: ``get_model("resnet18", num_classes=10)``."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}") from None
    return builder(**kwargs)


def load_pretrained(model_name: str, source: str | os.PathLike[str] | None = None, *,
                    model: nn.Module | None = None, progress: bool = True) -> nn.Module:
    """Load pretrained weights into a model of :mod:`cnnlib.torch.models`.

    Parameters
    ----------
    model_name : str
        The builder's name: ``"resnet18"``, ``"vgg16_bn"``, ``"small_resnet"``, ...
    source : str or path, optional
        Where the weights come from:

        - ``None``: the cache, offline: ``$CNNLIB_CACHE`` (default ``~/.cache/cnnlib``)
          and then torch's hub cache (``~/.cache/torch/hub/checkpoints``), under the
          name :func:`weight_filename` gives (the published file name, or
          ``<model_name>.pth``);
        - a directory: looked up there under the same names;
        - a file: a state dict saved with ``torch.save(model.state_dict(), path)``, or a
          training checkpoint with a ``"state_dict"`` or ``"model"`` entry;
        - ``"download"`` (or the published URL itself): fetch the published file into
          the cache with ``torch.hub.load_state_dict_from_url``, which checks its
          SHA-256 against the digits in its name; a file already cached is reused.
    model : nn.Module, optional
        Load into this model; by default a new one is built with the builder's
        defaults (GoogLeNet with ``transform_input=True``, as its weights expect).
    progress : bool
        Show a progress bar while downloading.

    Returns
    -------
    nn.Module
        The model, with every parameter and buffer loaded (``strict=True``).

    Raises
    ------
    FileNotFoundError
        The weights are neither at ``source`` nor cached; the message says which file
        to put where, or how to allow the download.
    RuntimeError
        The file does not fit the model (names the differing keys and shapes), or a
        published file's SHA-256 does not match its name.

    Notes
    -----
    Chapter 12 (transfer learning) starts from these weights.
    """
    if not isinstance(model_name, str) or model_name not in list_models():
        raise ValueError(f"model_name must be one of {list_models()}, got {model_name!r}")
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    if model is None:
        kwargs = {"transform_input": True} if model_name == "googlenet" else {}
        model = get_model(model_name, **kwargs)
    return load_weights(model, model_name, source, progress=progress)
