"""lenet5(): architecture, parameter count, and agreement with a PyTorch twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnnlib.numpy as cn


def torch_lenet5(num_classes=10, in_channels=1, act=nn.Tanh, pool=nn.AvgPool2d):
    """The twin, written out independently of cnnlib."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5), act(), pool(2),
        nn.Conv2d(6, 16, 5), act(), pool(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, num_classes),
    )


def test_lenet5_has_61706_parameters():
    net = cn.lenet5(rng=0)
    # Counted by hand: conv 1*6*25+6, conv 6*16*25+16, dense 400*120+120,
    # dense 120*84+84, dense 84*10+10.
    assert net.parameters() == 156 + 2416 + 48120 + 10164 + 850 == 61706
    twin = torch_lenet5()
    assert sum(p.numel() for p in twin.parameters()) == net.parameters()
    assert repr(net) == repr(twin)


def test_lenet5_shapes_and_dtype():
    net = cn.lenet5(rng=0)
    x = np.zeros((3, 1, 32, 32), np.float32)
    out = net(x)
    assert out.shape == (3, 10) and out.dtype == np.float32
    text = net.summary((1, 32, 32))
    for shape in ["(6, 28, 28)", "(6, 14, 14)", "(16, 10, 10)", "(16, 5, 5)", "(400,)",
                  "(120,)", "(84,)", "(10,)"]:
        assert shape in text


@pytest.mark.parametrize("activation, act, pool, torch_pool", [
    ("tanh", nn.Tanh, "avg", nn.AvgPool2d),
    ("relu", nn.ReLU, "max", nn.MaxPool2d),
])
def test_lenet5_matches_torch_twin_in_float64(activation, act, pool, torch_pool):
    net = cn.lenet5(num_classes=4, in_channels=3, activation=activation, pool=pool, rng=1,
                    dtype=np.float64)
    twin = torch_lenet5(4, 3, act, torch_pool).double()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 32, 32))
    out = net(x, training=True)
    xt = torch.tensor(x, requires_grad=True)
    out_t = twin(xt)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-9, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx = net.backward(dout)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-8, atol=1e-12)
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(net.grads[name], p.grad.numpy(), rtol=1e-8, atol=1e-12,
                                   err_msg=name)


def test_lenet5_weights_are_seeded_and_other_sizes_work():
    a, b = cn.lenet5(rng=3), cn.lenet5(rng=3)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])
    assert not np.array_equal(cn.lenet5(rng=4).params["0.weight"], a.params["0.weight"])
    net = cn.lenet5(input_size=28, rng=0)  # MNIST without padding: 28 -> 24 -> 12 -> 8 -> 4
    assert net[7].params["weight"].shape == (120, 16 * 4 * 4)
    assert net(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)


@pytest.mark.parametrize("kwargs, match", [({"activation": "swish"}, "activation"),
                                           ({"pool": "min"}, "pool")])
def test_lenet5_rejects_unknown_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cn.lenet5(**kwargs)
