"""The small U-Net of chapter 14 (cnnlib/torch/models/unet.py).

Output shapes over hypothesis-drawn sizes, depths and widths; the parameter count by
hand; a second oracle that recomputes the forward pass from the state dict with
``torch.nn.functional`` alone (and a planted bug, the skip concatenated in the wrong
order, that this oracle must catch); equivariance to shifts, as a fully convolutional
network has; gradients; weights through a file; and argument checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlib.data import shapes_segmentation
from cnnlib.torch import count_parameters, models


def build(**kwargs):
    torch.manual_seed(0)
    return models.small_unet(**kwargs)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 3), st.booleans())
def test_output_has_one_score_per_class_and_pixel(depth, width, k, h, w, c, skip):
    net = build(in_channels=c, num_classes=k, width=width, depth=depth, skip=skip).eval()
    x = torch.randn(2, c, h * 2 ** depth, w * 2 ** depth)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, k, h * 2 ** depth, w * 2 ** depth)
    assert torch.isfinite(out).all()


def double_conv_params(c_in, c_out):
    # two bias-free 3x3 convolutions and two batch norms (weight and bias each)
    return 9 * c_in * c_out + 9 * c_out * c_out + 4 * c_out


def test_parameter_count_by_hand():
    expected = (double_conv_params(3, 8) + double_conv_params(8, 16)  # encoder
                + double_conv_params(16, 32)                           # bottleneck
                + (4 * 32 * 16 + 16) + double_conv_params(32, 16)      # up to H/2, concat
                + (4 * 16 * 8 + 8) + double_conv_params(16, 8)         # up to H, concat
                + (8 * 4 + 4))                                         # 1x1 head
    assert count_parameters(build(width=8, depth=2)) == expected
    # without the skips the decoders' first convolutions see half the channels
    no_skip = expected - 9 * 16 * 16 - 9 * 8 * 8
    assert count_parameters(build(width=8, depth=2, skip=False)) == no_skip


def functional_forward(net, x, *, skip_first=True):
    """The U-Net recomputed from its state dict with torch.nn.functional only.

    ``skip_first=False`` is a planted bug: the skipped map placed after the upsampled one.
    """
    p = dict(net.state_dict())

    def double_conv(prefix, t):
        for conv, bn in (("0", "1"), ("3", "4")):
            t = F.conv2d(t, p[f"{prefix}.{conv}.weight"], padding=1)
            t = F.batch_norm(t, p[f"{prefix}.{bn}.running_mean"], p[f"{prefix}.{bn}.running_var"],
                             p[f"{prefix}.{bn}.weight"], p[f"{prefix}.{bn}.bias"], eps=1e-5)
            t = F.relu(t)
        return t

    depth = len(net.down)
    feats = []
    for i in range(depth):
        x = double_conv(f"down.{i}", x)
        feats.append(x)
        x = F.max_pool2d(x, 2)
    x = double_conv("bottleneck", x)
    for i in range(depth):
        x = F.conv_transpose2d(x, p[f"up.{i}.weight"], p[f"up.{i}.bias"], stride=2)
        if net.skip:
            pair = [feats[depth - 1 - i], x]
            x = torch.cat(pair if skip_first else pair[::-1], dim=1)
        x = double_conv(f"decode.{i}", x)
    return F.conv2d(x, p["head.weight"], p["head.bias"])


def trained_statistics(net):
    """Give every batch norm non-trivial running statistics (one training pass)."""
    net.train()
    with torch.no_grad():
        net(torch.randn(8, net.down[0][0].in_channels, 16, 16, dtype=torch.float64) * 2 + 1)
    return net.eval()


@pytest.mark.parametrize(("depth", "skip"), [(1, True), (2, True), (3, True), (2, False)])
def test_matches_a_functional_reimplementation(depth, skip):
    net = trained_statistics(build(width=3, depth=depth, skip=skip).double())
    x = torch.randn(2, 3, 16, 24, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), functional_forward(net, x), rtol=1e-10, atol=1e-10)


def test_planted_bug_in_the_skip_order_is_caught():
    net = trained_statistics(build(width=3, depth=2).double())
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(net(x), functional_forward(net, x, skip_first=False))


def test_fully_convolutional_shift_equivariance():
    # Shifting the input by a multiple of 2**depth shifts the scores by as much, away
    # from the borders (where the zero padding differs): the same weights score every
    # position.
    net = trained_statistics(build(width=4, depth=2).double())
    x = torch.randn(1, 3, 96, 96, dtype=torch.float64)
    shifted = torch.roll(x, shifts=(4, 8), dims=(2, 3))
    with torch.no_grad():
        a, b = net(x), net(shifted)
    torch.testing.assert_close(b[..., 36:60, 36:60], a[..., 32:56, 28:52])
    # a shift that is not a multiple of 4 changes the pooling grid, and the scores
    odd = torch.roll(x, shifts=(1, 1), dims=(2, 3))
    with torch.no_grad():
        c = net(odd)
    assert not torch.allclose(c[..., 36:60, 36:60], a[..., 35:59, 35:59])


def test_every_weight_gets_a_gradient():
    net = build(width=4, depth=2).train()
    x = torch.randn(2, 3, 16, 16)
    target = torch.randint(0, 4, (2, 16, 16))
    F.cross_entropy(net(x), target).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_learns_the_shapes_quickly():
    # a few hundred steps on a few scenes: a smoke test that the pieces fit together
    torch.set_num_threads(1)
    x, masks = shapes_segmentation(16, size=16, seed=0)
    x, masks = torch.from_numpy(x), torch.from_numpy(masks)
    net = build(width=4, depth=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), masks)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_weights_from_a_file(tmp_path):
    net = build(width=4)
    path = tmp_path / "unet.pth"
    torch.save(net.state_dict(), path)
    torch.manual_seed(1)
    loaded = models.small_unet(width=4, weights=path)
    for (name, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(RuntimeError):
        models.small_unet(width=8, weights=path)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"width": 0}, ValueError), ({"depth": 0}, ValueError), ({"num_classes": 0}, ValueError),
    ({"in_channels": 1.0}, TypeError), ({"skip": 1}, TypeError),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        models.small_unet(**kwargs)


def test_input_size_must_fit_the_poolings():
    net = build(depth=2)
    with pytest.raises(ValueError, match=r"multiples of 4.*\(1, 3, 30, 32\)"):
        net(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.randn(3, 32, 32))


def test_not_among_the_classifiers():
    assert "small_unet" not in models.list_models()
