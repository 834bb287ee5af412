"""Write torchvision_state_dicts.json: torchvision's state-dict keys and shapes.

torchvision cannot be installed in this environment, so this script encodes, in plain
Python and independently of ``cnnlib``, the naming rules read from torchvision's
``models/alexnet.py``, ``vgg.py``, ``resnet.py``, ``googlenet.py``, ``densenet.py``,
``mobilenetv2.py`` and ``ops/misc.py`` (``Conv2dNormActivation`` is an
``nn.Sequential`` of conv, norm, activation, so its children are named 0, 1, 2):

- ``nn.Sequential`` children are named by position; modules without parameters or
  buffers (ReLU, pools, dropout) still take a position.
- ``Conv2d(c_in, c_out, k, groups=g)``: ``weight`` (c_out, c_in/g, k, k), ``bias`` (c_out)
  unless ``bias=False``; ``Linear(i, o)``: ``weight`` (o, i), ``bias`` (o).
- ``BatchNorm2d(c)``: ``weight``, ``bias``, ``running_mean``, ``running_var`` (c) and
  ``num_batches_tracked`` (a 0-d tensor), in that order.

Run ``python tests/torch/data/make_torchvision_state_dicts.py`` to regenerate; the
tests compare every model's ``state_dict()`` with the committed file.
"""

from __future__ import annotations

import json
from pathlib import Path

Entries = list[tuple[str, list[int]]]


def conv(prefix: str, c_in: int, c_out: int, k: int, *, bias: bool = True,
         groups: int = 1) -> Entries:
    out = [(f"{prefix}.weight", [c_out, c_in // groups, k, k])]
    if bias:
        out.append((f"{prefix}.bias", [c_out]))
    return out


def linear(prefix: str, i: int, o: int) -> Entries:
    return [(f"{prefix}.weight", [o, i]), (f"{prefix}.bias", [o])]


def bn(prefix: str, c: int) -> Entries:
    return [(f"{prefix}.weight", [c]), (f"{prefix}.bias", [c]),
            (f"{prefix}.running_mean", [c]), (f"{prefix}.running_var", [c]),
            (f"{prefix}.num_batches_tracked", [])]


def alexnet() -> Entries:
    # features: conv0 relu1 pool2 conv3 relu4 pool5 conv6 relu7 conv8 relu9 conv10 relu11 pool12
    # classifier: drop0 fc1 relu2 drop3 fc4 relu5 fc6
    e: Entries = []
    for idx, (c_in, c_out, k) in zip([0, 3, 6, 8, 10], [(3, 64, 11), (64, 192, 5),
                                                        (192, 384, 3), (384, 256, 3),
                                                        (256, 256, 3)]):
        e += conv(f"features.{idx}", c_in, c_out, k)
    e += linear("classifier.1", 256 * 36, 4096)
    e += linear("classifier.4", 4096, 4096)
    e += linear("classifier.6", 4096, 1000)
    return e


VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def vgg(cfg: list, batch_norm: bool) -> Entries:
    e: Entries = []
    idx, c_in = 0, 3
    for v in cfg:
        if v == "M":
            idx += 1
            continue
        e += conv(f"features.{idx}", c_in, v, 3)
        idx += 1
        if batch_norm:
            e += bn(f"features.{idx}", v)
            idx += 1
        idx += 1  # ReLU
        c_in = v
    # classifier: fc0 relu1 drop2 fc3 relu4 drop5 fc6
    e += linear("classifier.0", 512 * 49, 4096)
    e += linear("classifier.3", 4096, 4096)
    e += linear("classifier.6", 4096, 1000)
    return e


def resnet(bottleneck: bool, layers: list[int]) -> Entries:
    expansion = 4 if bottleneck else 1
    e: Entries = conv("conv1", 3, 64, 7, bias=False) + bn("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip([64, 128, 256, 512], layers), start=1):
        stride = 1 if stage == 1 else 2
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            if bottleneck:
                e += conv(f"{p}.conv1", inplanes, planes, 1, bias=False) + bn(f"{p}.bn1", planes)
                e += conv(f"{p}.conv2", planes, planes, 3, bias=False) + bn(f"{p}.bn2", planes)
                e += conv(f"{p}.conv3", planes, planes * 4, 1, bias=False)
                e += bn(f"{p}.bn3", planes * 4)
            else:
                e += conv(f"{p}.conv1", inplanes, planes, 3, bias=False) + bn(f"{p}.bn1", planes)
                e += conv(f"{p}.conv2", planes, planes, 3, bias=False) + bn(f"{p}.bn2", planes)
            if b == 0 and (stride != 1 or inplanes != planes * expansion):
                e += conv(f"{p}.downsample.0", inplanes, planes * expansion, 1, bias=False)
                e += bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    e += linear("fc", 512 * expansion, 1000)
    return e


def googlenet() -> Entries:
    def basic(prefix: str, c_in: int, c_out: int, k: int) -> Entries:
        return conv(f"{prefix}.conv", c_in, c_out, k, bias=False) + bn(f"{prefix}.bn", c_out)

    e: Entries = basic("conv1", 3, 64, 7) + basic("conv2", 64, 64, 1) + basic("conv3", 64, 192, 3)
    table = [
        ("inception3a", 192, 64, 96, 128, 16, 32, 32),
        ("inception3b", 256, 128, 128, 192, 32, 96, 64),
        ("inception4a", 480, 192, 96, 208, 16, 48, 64),
        ("inception4b", 512, 160, 112, 224, 24, 64, 64),
        ("inception4c", 512, 128, 128, 256, 24, 64, 64),
        ("inception4d", 512, 112, 144, 288, 32, 64, 64),
        ("inception4e", 528, 256, 160, 320, 32, 128, 128),
        ("inception5a", 832, 256, 160, 320, 32, 128, 128),
        ("inception5b", 832, 384, 192, 384, 48, 128, 128),
    ]
    for name, c, c1, c3r, c3, c5r, c5, pp in table:
        e += basic(f"{name}.branch1", c, c1, 1)
        e += basic(f"{name}.branch2.0", c, c3r, 1) + basic(f"{name}.branch2.1", c3r, c3, 3)
        # torchvision's "5x5" branch uses a 3x3 kernel (pytorch/vision issue 906).
        e += basic(f"{name}.branch3.0", c, c5r, 1) + basic(f"{name}.branch3.1", c5r, c5, 3)
        e += basic(f"{name}.branch4.1", c, pp, 1)  # branch4.0 is the max pool
    e += linear("fc", 1024, 1000)
    return e


def densenet121() -> Entries:
    growth, bn_size = 32, 4
    e: Entries = conv("features.conv0", 3, 64, 7, bias=False) + bn("features.norm0", 64)
    c = 64
    for i, n in enumerate([6, 12, 24, 16], start=1):
        for j in range(1, n + 1):
            p = f"features.denseblock{i}.denselayer{j}"
            e += bn(f"{p}.norm1", c) + conv(f"{p}.conv1", c, bn_size * growth, 1, bias=False)
            e += bn(f"{p}.norm2", bn_size * growth)
            e += conv(f"{p}.conv2", bn_size * growth, growth, 3, bias=False)
            c += growth
        if i != 4:
            p = f"features.transition{i}"
            e += bn(f"{p}.norm", c) + conv(f"{p}.conv", c, c // 2, 1, bias=False)
            c //= 2
    e += bn("features.norm5", c)
    e += linear("classifier", c, 1000)
    return e


def mobilenet_v2() -> Entries:
    def cna(prefix: str, c_in: int, c_out: int, k: int, groups: int = 1) -> Entries:
        # Conv2dNormActivation: 0 = conv (no bias with a norm layer), 1 = BN, 2 = ReLU6
        return (conv(f"{prefix}.0", c_in, c_out, k, bias=False, groups=groups)
                + bn(f"{prefix}.1", c_out))

    e: Entries = cna("features.0", 3, 32, 3)
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
               [6, 160, 3, 2], [6, 320, 1, 1]]
    idx, c_in = 1, 32
    for t, c, n, _s in setting:
        for _ in range(n):
            p = f"features.{idx}.conv"
            hidden = c_in * t
            pos = 0
            if t != 1:
                e += cna(f"{p}.{pos}", c_in, hidden, 1)
                pos += 1
            e += cna(f"{p}.{pos}", hidden, hidden, 3, groups=hidden)
            e += conv(f"{p}.{pos + 1}", hidden, c, 1, bias=False) + bn(f"{p}.{pos + 2}", c)
            idx += 1
            c_in = c
    e += cna(f"features.{idx}", c_in, 1280, 1)
    e += linear("classifier.1", 1280, 1000)  # classifier.0 is the dropout
    return e


def all_models() -> dict[str, Entries]:
    out = {"alexnet": alexnet()}
    for name, cfg in VGG_CFGS.items():
        out[name] = vgg(cfg, False)
        out[f"{name}_bn"] = vgg(cfg, True)
    out["googlenet"] = googlenet()
    for name, bottleneck, layers in [("resnet18", False, [2, 2, 2, 2]),
                                     ("resnet34", False, [3, 4, 6, 3]),
                                     ("resnet50", True, [3, 4, 6, 3]),
                                     ("resnet101", True, [3, 4, 23, 3]),
                                     ("resnet152", True, [3, 8, 36, 3])]:
        out[name] = resnet(bottleneck, layers)
    out["densenet121"] = densenet121()
    out["mobilenet_v2"] = mobilenet_v2()
    return out


def main() -> None:
    path = Path(__file__).with_name("torchvision_state_dicts.json")
    data = {name: [[k, s] for k, s in entries] for name, entries in all_models().items()}
    # One entry per line keeps the file diffable.
    lines = ["{"]
    for i, (name, entries) in enumerate(data.items()):
        lines.append(f"  {json.dumps(name)}: [")
        lines += [f"    {json.dumps(e)}{',' if j < len(entries) - 1 else ''}"
                  for j, e in enumerate(entries)]
        lines.append("  ]" + ("," if i < len(data) - 1 else ""))
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path} ({sum(len(v) for v in data.values())} entries)")


if __name__ == "__main__":
    main()
