"""The model zoo: parameter counts, torchvision's state-dict names and shapes, forward
shapes and gradients, and the builders' argument checks.

Counts and key lists are checked on the ``meta`` device (no memory is allocated);
forward and backward passes run on the CPU at small inputs, and the networks whose
construction alone allocates hundreds of megabytes (AlexNet, VGG) are marked slow.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlib.torch import count_parameters, models, summarize

DATA = Path(__file__).parent / "data"

# torchvision's published parameter counts (its model tables and issue 3); the
# GoogLeNet figure is without the auxiliary heads.
PUBLISHED_COUNTS = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "densenet121": 7_978_856,
    "mobilenet_v2": 3_504_872,
}


def meta(builder, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return builder(**kwargs)


@pytest.mark.parametrize("name", sorted(PUBLISHED_COUNTS))
def test_parameter_count_matches_torchvision(name):
    model = meta(getattr(models, name))
    assert count_parameters(model) == PUBLISHED_COUNTS[name]


def test_lenet5_count_by_hand():
    # conv 1->6 5x5: 6*25+6 = 156; conv 6->16 5x5: 16*150+16 = 2,416;
    # fc 400->120: 48,120; 120->84: 10,164; 84->10: 850.
    assert count_parameters(models.lenet5()) == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706


def test_alexnet_paper_counts_with_and_without_groups():
    # Without groups: conv1 96*3*121+96 = 34,944; conv2 256*96*25+256 = 614,656;
    # conv3 384*256*9+384 = 885,120; conv4 384*384*9+384 = 1,327,488;
    # conv5 256*384*9+256 = 884,992; fc 9216*4096+4096 = 37,752,832;
    # 4096*4096+4096 = 16,781,312; 4096*1000+1000 = 4,097,000.
    full = 34_944 + 614_656 + 885_120 + 1_327_488 + 884_992 + 37_752_832 + 16_781_312 \
        + 4_097_000
    assert full == 62_378_344
    # Two GPUs halve the inputs of every filter of conv2, conv4 and conv5.
    saved = 256 * 48 * 25 + 384 * 192 * 9 + 256 * 192 * 9
    assert count_parameters(meta(models.alexnet_paper, groups=1)) == full
    assert count_parameters(meta(models.alexnet_paper)) == full - saved == 60_965_224


def test_googlenet_aux_heads_add_their_parameters():
    # Each head: 1x1 conv to 128 + BN (2*128), fc 2048->1024, fc 1024->1000.
    head = 2048 * 1024 + 1024 + 1024 * 1000 + 1000 + 2 * 128
    aux = head + 512 * 128 + head + 528 * 128
    model = meta(models.googlenet, aux_logits=True)
    assert count_parameters(model) == PUBLISHED_COUNTS["googlenet"] + aux == 13_004_888


def test_small_resnet_is_the_cifar_resnet20_with_projection_shortcuts():
    # He et al.'s ResNet-20 with zero-padding shortcuts has 269,722 parameters; the
    # 1x1 projections (conv + BN) of stages 2 and 3 add 16*32+2*32 and 32*64+2*64.
    model = models.small_resnet(depth=20, in_channels=3)
    assert count_parameters(model) == 269_722 + 576 + 2_176


def test_small_resnet_default_structure():
    model = models.small_resnet()
    blocks = [m for m in model.modules() if isinstance(m, models.BasicBlock)]
    assert len(blocks) == 3  # depth 8 = 6*1 + 2
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1) and model.fc.out_features == 10
    assert [b.conv2.out_channels for b in blocks] == [16, 32, 64]


@pytest.mark.parametrize("depth", [0, 7, 9, 21])
def test_small_resnet_rejects_depths_that_are_not_6n_plus_2(depth):
    with pytest.raises(ValueError, match="depth"):
        models.small_resnet(depth=depth)


# ------------------------------------------------------------ torchvision state dicts

EXPECTED = json.loads((DATA / "torchvision_state_dicts.json").read_text())


def test_expected_key_lists_reproduce_the_published_counts():
    # The committed lists were generated from torchvision's naming rules without
    # cnnlib; their parameter totals must equal torchvision's published counts.
    for name, entries in EXPECTED.items():
        total = sum(torch.Size(shape).numel() for key, shape in entries
                    if not key.endswith(("running_mean", "running_var", "num_batches_tracked")))
        assert total == PUBLISHED_COUNTS[name], name
    assert set(EXPECTED) == set(PUBLISHED_COUNTS)


def test_committed_key_lists_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location(
        "make_torchvision_state_dicts", DATA / "make_torchvision_state_dicts.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    fresh = {name: [[k, s] for k, s in entries]
             for name, entries in generator.all_models().items()}
    assert fresh == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_state_dict_names_and_shapes_match_torchvision(name):
    model = meta(getattr(models, name))
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    expected = [(k, shape) for k, shape in EXPECTED[name]]
    missing = sorted(set(dict(expected)) - set(dict(got)))
    extra = sorted(set(dict(got)) - set(dict(expected)))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    assert dict(got) == dict(expected)
    # Same registration order as torchvision too, so a printed model reads the same.
    assert got == expected


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "mobilenet_v2"])
def test_torchvision_shaped_state_dict_loads_strictly(name):
    # A state dict built from the expected list alone (random values, torchvision's
    # names and shapes) loads with strict=True.
    torch.manual_seed(0)
    state = {k: (torch.randn(shape) if shape else torch.tensor(7)) for k, shape in
             EXPECTED[name]}
    model = getattr(models, name)()
    model.load_state_dict(state, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


# -------------------------------------------------------------- forward and backward

# (builder, kwargs, input shape): small inputs that every architecture still accepts.
FAST = [
    ("lenet5", {}, (2, 1, 32, 32)),
    ("small_resnet", {}, (2, 1, 32, 32)),
    ("small_resnet", {"depth": 14, "width": 8, "in_channels": 3}, (2, 3, 32, 32)),
    ("small_resnet", {}, (2, 1, 8, 8)),  # the digits' native size
    ("small_vgg", {}, (2, 1, 32, 32)),
    ("resnet18", {}, (2, 3, 64, 64)),
    ("resnet50", {"in_channels": 1}, (2, 1, 64, 64)),
    ("googlenet", {}, (2, 3, 64, 64)),
    ("densenet121", {}, (2, 3, 64, 64)),
    ("mobilenet_v2", {}, (2, 3, 64, 64)),
]
SLOW = [
    ("alexnet", {}, (2, 3, 64, 64)),
    ("alexnet_paper", {}, (2, 3, 64, 64)),
    ("alexnet_paper", {"groups": 1}, (2, 3, 64, 64)),
    *[(f"vgg{d}{bn}", {}, (2, 3, 32, 32)) for d in (11, 13, 16, 19) for bn in ("", "_bn")],
    ("resnet34", {}, (2, 3, 64, 64)),
    ("resnet101", {}, (2, 3, 64, 64)),
    ("resnet152", {}, (2, 3, 64, 64)),
]


def check_forward_backward(name, kwargs, shape):
    torch.manual_seed(0)
    model = getattr(models, name)(num_classes=7, **kwargs)
    model.train()
    x = torch.randn(shape)
    out = model(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (shape[0], 7)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([1, 5])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
    # Somewhere the gradient is non-zero in every layer that has weights.
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n.endswith("weight") and p.dim() > 1)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (shape[0], 7)


@pytest.mark.parametrize(("name", "kwargs", "shape"), FAST,
                         ids=[f"{n}-{s[-1]}" for n, _, s in FAST])
def test_forward_shape_and_finite_gradients(name, kwargs, shape):
    check_forward_backward(name, kwargs, shape)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs", "shape"), SLOW,
                         ids=[f"{n}-{k.get('groups', '')}" for n, k, _ in SLOW])
def test_forward_shape_and_finite_gradients_large_models(name, kwargs, shape):
    check_forward_backward(name, kwargs, shape)


def test_every_builder_is_tested():
    tested = {n for n, _, _ in FAST + SLOW}
    assert tested == set(models.list_models())


def test_googlenet_aux_heads_only_in_training():
    torch.manual_seed(0)
    model = models.googlenet(num_classes=5, aux_logits=True)
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert isinstance(out, models.GoogLeNetOutputs)
    assert [t.shape for t in out] == [(2, 5)] * 3
    sum(t.sum() for t in out).backward()
    assert model.aux1.fc2.weight.grad is not None
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 5)


def test_googlenet_transform_input_maps_normalised_images_to_minus_one_one():
    # The published weights expect 2*p - 1 for a pixel p in [0, 1]; an
    # ImageNet-normalised pixel (p - mean) / std must come out as exactly that.
    model = models.googlenet(transform_input=True)
    p = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(model._transform_input((p - mean) / std), 2 * p - 1)
    assert not models.googlenet().transform_input


def test_alexnet_paper_feature_maps_follow_the_notes_table():
    # The notes' table at 224x224: 55x55x96, 27x27x96, 27x27x256, 13x13x256,
    # 13x13x384, 13x13x384, 13x13x256, 6x6x256.
    s = summarize(meta(models.alexnet_paper), (3, 224, 224))
    shapes = {r.name: r.output_shape for r in s.rows}
    assert shapes["features.0"] == (96, 55, 55)
    assert shapes["features.3"] == (96, 27, 27)
    assert shapes["features.4"] == (256, 27, 27)
    assert shapes["features.7"] == (256, 13, 13)
    assert shapes["features.8"] == (384, 13, 13)
    assert shapes["features.10"] == (384, 13, 13)
    assert shapes["features.12"] == (256, 13, 13)
    assert shapes["features.14"] == (256, 6, 6)
    lrn = [r for r in s.rows if r.type == "LocalResponseNorm"]
    assert len(lrn) == 2


def test_alexnet_paper_lrn_is_the_papers_formula():
    # b_c = a_c / (k + alpha * sum of a_j^2 over the n channels around c)^beta, with n=5,
    # k=2, alpha=1e-4, beta=0.75 (Krizhevsky et al., 2012, section 3.3). PyTorch's layer
    # divides its alpha by n, so the paper's alpha must be given to it multiplied by n.
    a = torch.rand(2, 9, 3, 4, generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64) * 200
    want = torch.empty_like(a)
    for c in range(9):
        lo, hi = max(0, c - 2), min(8, c + 2)
        want[:, c] = a[:, c] / (2 + 1e-4 * (a[:, lo:hi + 1] ** 2).sum(1)) ** 0.75
    net = meta(models.alexnet_paper)
    for index in (2, 6):  # the LRN layers after conv1 and conv2; they hold no parameters
        torch.testing.assert_close(net.features[index](a), want)


def test_lenet5_options():
    assert count_parameters(models.lenet5(input_size=28)) == 61_706 - 400 * 120 + 256 * 120
    relu_max = models.lenet5(activation="relu", pool="max")
    assert isinstance(relu_max[1], nn.ReLU) and isinstance(relu_max[2], nn.MaxPool2d)
    for kwargs, match in [({"activation": "swish"}, "activation"), ({"pool": "min"}, "pool"),
                          ({"input_size": 15}, "input_size")]:
        with pytest.raises(ValueError, match=match):
            models.lenet5(**kwargs)


def test_lenet5_state_dict_loads_into_its_numpy_twin():
    from cnnlib.numpy import models as np_models
    torch.manual_seed(0)
    model = models.lenet5().double().eval()
    twin = np_models.lenet5(dtype=np.float64)
    twin.load_state_dict({k: v.numpy() for k, v in model.state_dict().items()})
    x = torch.randn(3, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(twin(x.numpy()), expected, rtol=1e-10, atol=1e-12)


def test_lenet5_layer_shapes():
    s = summarize(models.lenet5(), (1, 32, 32))
    assert [r.output_shape for r in s.rows if r.type in ("Conv2d", "AvgPool2d", "Linear")] == [
        (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120,), (84,), (10,)]


def _bn_eval(x, bn):
    return (x - bn.running_mean[:, None, None]) / torch.sqrt(
        bn.running_var[:, None, None] + bn.eps) * bn.weight[:, None, None] \
        + bn.bias[:, None, None]


def _randomise_bn(module):
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64))
                m.running_var.copy_(torch.rand(m.num_features, generator=g,
                                               dtype=torch.float64) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64))
                m.bias.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64))


def test_basic_block_with_projection_equals_its_formula():
    torch.manual_seed(0)
    stage = models.make_stage(models.BasicBlock, 4, 8, 1, stride=2).double().eval()
    _randomise_bn(stage)
    b = stage[0]
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    h = F.relu(_bn_eval(F.conv2d(x, b.conv1.weight, stride=2, padding=1), b.bn1))
    h = _bn_eval(F.conv2d(h, b.conv2.weight, padding=1), b.bn2)
    shortcut = _bn_eval(F.conv2d(x, b.downsample[0].weight, stride=2), b.downsample[1])
    torch.testing.assert_close(stage(x), F.relu(h + shortcut))


def test_bottleneck_identity_shortcut_equals_its_formula():
    torch.manual_seed(0)
    b = models.Bottleneck(16, 4).double().eval()  # 16 = 4 * expansion: identity shortcut
    assert b.downsample is None
    _randomise_bn(b)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    h = F.relu(_bn_eval(F.conv2d(x, b.conv1.weight), b.bn1))
    h = F.relu(_bn_eval(F.conv2d(h, b.conv2.weight, padding=1), b.bn2))
    h = _bn_eval(F.conv2d(h, b.conv3.weight), b.bn3)
    torch.testing.assert_close(b(x), F.relu(h + x))


def test_plain_block_equals_the_basic_block_formula_without_the_addition():
    torch.manual_seed(0)
    b = models.PlainBlock(4, 8, stride=2).double().eval()
    _randomise_bn(b)
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    h = F.relu(_bn_eval(F.conv2d(x, b.conv1.weight, stride=2, padding=1), b.bn1))
    h = _bn_eval(F.conv2d(h, b.conv2.weight, padding=1), b.bn2)
    torch.testing.assert_close(b(x), F.relu(h))
    with pytest.raises(ValueError, match="no shortcut"):
        models.PlainBlock(4, 8, stride=2, downsample=nn.Identity())


def test_plain_small_resnet_is_the_residual_one_without_shortcuts():
    torch.manual_seed(0)
    res = models.small_resnet(depth=14, width=4).double().eval()
    plain = models.small_resnet(depth=14, width=4, shortcuts=False).double().eval()
    assert all(type(b) is models.PlainBlock
               for stage in (plain.layer1, plain.layer2, plain.layer3) for b in stage)
    assert all(b.downsample is None for b in plain.modules() if isinstance(b, models.PlainBlock))
    res_keys, plain_keys = set(res.state_dict()), set(plain.state_dict())
    assert plain_keys < res_keys
    assert all(".downsample." in k for k in res_keys - plain_keys)
    n_projections = count_parameters(res) - count_parameters(plain)
    # Two projections (stages 2 and 3): 1x1 conv without bias plus batch norm.
    assert n_projections == (4 * 8 + 2 * 8) + (8 * 16 + 2 * 16)
    missing, unexpected = plain.load_state_dict(res.state_dict(), strict=False)
    assert missing == [] and all(".downsample." in k for k in unexpected)

    # Same weights, different networks: the shortcuts change the output; removing
    # them by hand from the residual network's blocks gives the plain output.
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    assert not torch.allclose(res(x), plain(x))
    h = res.relu(res.bn1(res.conv1(x)))
    for stage in (res.layer1, res.layer2, res.layer3):
        for b in stage:
            h = F.relu(b.bn2(b.conv2(F.relu(b.bn1(b.conv1(h))))))
    expected = res.fc(torch.flatten(res.avgpool(h), 1))
    torch.testing.assert_close(plain(x), expected)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"shortcuts": 0}, TypeError, "shortcuts must be True or False"),
    ({"shortcuts": False, "weights": "DEFAULT"}, ValueError, "shortcuts=False"),
])
def test_small_resnet_checks_shortcuts(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        models.small_resnet(**kwargs)
    with pytest.raises(ValueError, match="zero_init_residual"):
        models.SmallResNet(shortcuts=False, zero_init_residual=True)


def test_projection_shortcuts_only_where_shapes_change():
    r18, r50 = meta(models.resnet18), meta(models.resnet50)
    assert r18.layer1[0].downsample is None  # 64 -> 64, stride 1
    assert r18.layer2[0].downsample[0].stride == (2, 2)
    assert r50.layer1[0].downsample[0].kernel_size == (1, 1)  # 64 -> 256, stride 1
    assert r50.layer2[0].conv2.stride == (2, 2)  # v1.5: the 3x3 strides
    assert all(blk.downsample is None for blk in r50.layer3[1:])


def test_densenet_block_concatenates():
    model = meta(models.densenet121)
    s = summarize(model, (3, 224, 224))
    shapes = {r.name: r.output_shape for r in s.rows}
    # 64 + 6*32 = 256 channels leave block 1; the transition halves them to 128.
    assert shapes["features.transition1.conv"] == (128, 56, 56)
    assert shapes["features.norm5"] == (1024, 7, 7)


# -------------------------------------------------------------------- builder API


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "small_resnet", "vgg11", "googlenet"])
def test_builders_are_keyword_only(name):
    with pytest.raises(TypeError):
        getattr(models, name)(10)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"num_classes": 0}, ValueError, "num_classes"),
    ({"num_classes": 2.0}, TypeError, "num_classes"),
    ({"in_channels": True}, TypeError, "in_channels"),
])
def test_builders_check_their_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        models.resnet18(**kwargs)


def test_weights_argument_is_checked():
    with pytest.raises(TypeError, match="weights must be None, 'DEFAULT'"):
        models.small_resnet(weights=True)


def test_alexnet_paper_groups_must_divide_channels():
    with pytest.raises(ValueError, match="groups"):
        models.alexnet_paper(groups=5)


def test_get_model_and_list_models():
    assert "small_resnet" in models.list_models()
    model = models.get_model("lenet5", num_classes=3)
    assert model[-1].out_features == 3
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        models.get_model("resnet19")


def test_in_channels_changes_only_the_stem():
    grey = meta(models.resnet18, in_channels=1)
    assert grey.conv1.weight.shape == (64, 1, 7, 7)
    assert count_parameters(grey) == PUBLISHED_COUNTS["resnet18"] - 2 * 64 * 49


# ------------------------------------------------------------------- initialisation


def test_resnet_uses_he_initialisation_and_identity_batch_norm():
    torch.manual_seed(0)
    model = models.resnet18()
    w = model.conv1.weight  # kaiming_normal_(mode="fan_out"): std = sqrt(2 / (64 * 7 * 7))
    assert w.std().item() == pytest.approx((2 / (64 * 49)) ** 0.5, rel=0.05)
    assert torch.equal(model.bn1.weight, torch.ones(64))
    assert torch.equal(model.bn1.bias, torch.zeros(64))


def test_googlenet_weights_are_truncated_normal():
    torch.manual_seed(0)
    w = models.googlenet().inception3a.branch2[1].conv.weight
    assert w.abs().max().item() <= 0.02 and w.std().item() == pytest.approx(0.0088, rel=0.1)


def test_meta_models_skip_initialisation_but_keep_shapes():
    model = meta(models.densenet121)
    assert all(p.is_meta for p in model.parameters())
    assert count_parameters(model) == PUBLISHED_COUNTS["densenet121"]


def test_package_exports():
    import cnnlib.torch as ct

    for name in ct.__all__:
        assert getattr(ct, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ct.nope  # noqa: B018 - the attribute access is the test
