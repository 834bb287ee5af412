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
==================  ==============================================  =======
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

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
    "AlexNet", "AlexNetPaper", "BasicBlock", "Bottleneck", "DenseNet", "GoogLeNet",
    "GoogLeNetOutputs", "LeNet5", "MobileNetV2", "PlainBlock", "ResNet", "SmallResNet",
    "SmallVGG", "VGG",
    "alexnet", "alexnet_paper", "cfgs", "densenet121", "get_model", "googlenet", "lenet5",
    "list_models", "make_layers", "make_stage", "mobilenet_v2", "resnet18", "resnet34",
    "resnet50", "resnet101", "resnet152", "small_resnet", "small_vgg", "vgg11", "vgg11_bn",
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
