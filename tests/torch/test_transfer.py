"""Freezing, head replacement, discriminative learning rates, gradual unfreezing, features."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlib.data import load_digits
from cnnlib.torch import models
from cnnlib.torch.train import fit
from cnnlib.torch.transfer import (
    GradualUnfreezing,
    extract_features,
    freeze,
    layer_groups,
    param_groups,
    replace_head,
    trainable_parameters,
    unfreeze,
)


def n_params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.fixture()
def resnet():
    torch.manual_seed(0)
    return models.small_resnet(depth=8, num_classes=5, width=8)


@pytest.fixture(scope="module")
def digits16():
    d = load_digits(16, seed=0)
    return torch.from_numpy(d.x_train), torch.from_numpy(d.y_train)


def test_layer_groups_of_the_zoo(resnet):
    assert [label for label, _ in layer_groups(resnet)] == [
        "conv1+bn1", "layer1", "layer2", "layer3", "fc"]
    lenet = models.lenet5()
    # Every layer with weights, in order (a flat Sequential names them by position).
    weighted = [n for n, m in lenet.named_children() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [label for label, _ in layer_groups(lenet)] == weighted and len(weighted) == 5
    vgg = models.vgg11_bn(num_classes=10)
    assert [label for label, _ in layer_groups(vgg)] == ["features", "classifier"]
    assert [label for label, _ in layer_groups(models.resnet18())] == [
        "conv1+bn1", "layer1", "layer2", "layer3", "layer4", "fc"]


def test_freeze_and_unfreeze_by_depth_and_name(resnet):
    total = n_params(resnet)
    freeze(resnet)
    assert trainable_parameters(resnet) == 0
    unfreeze(resnet, depth=1)
    assert trainable_parameters(resnet) == n_params(resnet.fc)
    unfreeze(resnet, depth=2)
    assert trainable_parameters(resnet) == n_params(resnet.fc, resnet.layer3)
    unfreeze(resnet)
    assert trainable_parameters(resnet) == total
    freeze(resnet, depth=2)
    assert trainable_parameters(resnet) == total - n_params(resnet.conv1, resnet.bn1,
                                                            resnet.layer1)
    unfreeze(resnet)
    freeze(resnet, ["layer2", "layer3.0.conv1"])
    assert trainable_parameters(resnet) == total - n_params(resnet.layer2,
                                                            resnet.layer3[0].conv1)
    assert freeze(resnet, "fc") is resnet  # chaining
    with pytest.raises(ValueError, match="layer9.*top-level modules are"):
        freeze(resnet, "layer9")
    with pytest.raises(ValueError, match="depth"):
        freeze(resnet, depth=6)
    with pytest.raises(ValueError, match="not both"):
        unfreeze(resnet, "fc", depth=1)


def test_replace_head(resnet):
    freeze(resnet)
    body = {k: v.clone() for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    head = replace_head(resnet, 3)
    assert resnet.fc is head and head.out_features == 3 and head.in_features == 32
    assert trainable_parameters(resnet) == n_params(head) == 32 * 3 + 3
    assert resnet.eval()(torch.rand(2, 1, 16, 16)).shape == (2, 3)
    for k, v in body.items():
        assert torch.equal(resnet.state_dict()[k], v)
    lenet = models.lenet5().double()
    head = replace_head(lenet, 2)
    assert [m for m in lenet.modules() if isinstance(m, nn.Linear)][-1] is head
    assert head.weight.dtype == torch.float64
    assert lenet(torch.rand(1, 1, 32, 32, dtype=torch.float64)).shape == (1, 2)
    with pytest.raises(ValueError, match="no nn.Linear"):
        replace_head(nn.Sequential(nn.Conv2d(1, 1, 1)), 2)
    with pytest.raises(ValueError, match="num_classes"):
        replace_head(resnet, 0)


def test_param_groups_discriminative_rates(resnet):
    groups = param_groups(resnet, 1e-2, factor=2.0)
    assert [g["name"] for g in groups] == ["conv1+bn1", "layer1", "layer2", "layer3", "fc"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-2 / 16, 1e-2 / 8, 1e-2 / 4,
                                                      1e-2 / 2, 1e-2])
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in resnet.parameters())  # each exactly once
    opt = torch.optim.AdamW(groups)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in groups]
    custom = param_groups(resnet, 1e-3, groups=[["conv1", "bn1", "layer1", "layer2"],
                                                "layer3", "fc"], weight_decay=0.0)
    assert [g["lr"] for g in custom] == pytest.approx([1e-3 / 2.6**2, 1e-3 / 2.6, 1e-3])
    assert all(g["weight_decay"] == 0.0 for g in custom)
    with pytest.raises(ValueError, match="leave parameters out"):
        param_groups(resnet, 1e-3, groups=["layer3", "fc"])


def test_feature_extraction_training_moves_only_the_head(resnet, digits16):
    """Frozen layers keep their weights and their batch-norm statistics."""
    x, y = digits16
    keep = y < 5
    x, y = x[keep][:200], y[keep][:200]
    freeze(resnet)
    replace_head(resnet, 5)
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    fit(resnet, (x, y), epochs=2, batch_size=50, lr=1e-2, device="cpu", progress=False,
        seed=0)
    after = resnet.state_dict()
    for k, v in before.items():
        if k.startswith("fc."):
            assert not torch.equal(after[k], v), k
        else:
            assert torch.equal(after[k], v), k  # includes running_mean / running_var


def test_gradual_unfreezing_in_fit(resnet, digits16):
    x, y = digits16
    keep = y < 5
    x, y = x[keep][:100], y[keep][:100]
    schedule = GradualUnfreezing(every=1)
    counts = []

    def hook(epoch, model):
        schedule(epoch, model)
        counts.append(trainable_parameters(model))

    start = {k: v.clone() for k, v in resnet.state_dict().items()}
    opt = torch.optim.AdamW(param_groups(resnet, 1e-2))
    fit(resnet, (x, y), epochs=3, batch_size=50, optimizer=opt, device="cpu", progress=False,
        seed=0, on_epoch_start=hook)
    r = resnet
    assert counts == [n_params(r.fc), n_params(r.fc, r.layer3),
                      n_params(r.fc, r.layer3, r.layer2)]
    end = resnet.state_dict()
    assert torch.equal(end["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"])
    assert torch.equal(end["conv1.weight"], start["conv1.weight"])
    assert not torch.equal(end["layer2.0.conv1.weight"], start["layer2.0.conv1.weight"])
    # Stateless: asking for epoch 10 unfreezes all, epoch 0 returns to the head alone.
    schedule(10, resnet)
    assert trainable_parameters(resnet) == n_params(resnet)
    schedule(0, resnet)
    assert trainable_parameters(resnet) == n_params(resnet.fc)


def test_extract_features_matches_a_manual_forward(resnet):
    x = torch.rand(7, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    resnet.train()
    feats = extract_features(resnet, x, "avgpool", batch_size=3, device="cpu")
    assert resnet.training  # mode restored
    resnet.eval()
    with torch.no_grad():
        h = resnet.relu(resnet.bn1(resnet.conv1(x)))
        h3 = resnet.layer3(resnet.layer2(resnet.layer1(h)))
        manual = resnet.avgpool(h3).flatten(1)
    assert feats.shape == (7, 32)
    torch.testing.assert_close(feats, manual)
    # Several layers at once, unflattened, from a (x, y) pair; the head never runs.
    calls = []
    resnet.fc.register_forward_hook(lambda *a: calls.append(1))
    both = extract_features(resnet, (x.numpy(), torch.zeros(7)), ["layer2", "layer3"],
                            device="cpu", flatten=False)
    assert both["layer2"].shape == (7, 16, 8, 8) and both["layer3"].shape == (7, 32, 4, 4)
    torch.testing.assert_close(both["layer3"], h3)
    assert calls == []
    logits = extract_features(resnet, x, "", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(logits, resnet(x))


def test_design_api_names_are_importable_from_transfer():
    # The design's public API lists load_pretrained under `transfer` (step 1 of the recipe).
    import cnnlib.torch as ct
    from cnnlib.torch import transfer

    assert transfer.load_pretrained is ct.load_pretrained
    for name in ("freeze", "unfreeze", "replace_head", "param_groups", "load_pretrained"):
        assert name in transfer.__all__
