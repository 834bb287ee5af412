"""saliency, occlusion and grad_cam.

Each map is checked four ways: worked values on small networks whose answer is known in
closed form (a linear classifier's saliency is |w|; a network whose score reads one region
of the image must light up there and nowhere else; Grad-CAM on a global-average-pooling
head is the CAM), a second oracle (central finite differences in float64, a plain loop over
occluded images, Grad-CAM from a network split by hand), shapes drawn by hypothesis, and a
planted bug per function (a deliberately wrong variant that the same checks must reject).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import cnnlib.torch
from cnnlib.torch import models
from cnnlib.torch.interpret import grad_cam, occlusion, saliency

# --------------------------------------------------------------------------- models


def linear_model(c: int, h: int, w: int, k: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, k)).double()
    return model


class RegionNet(nn.Module):
    """Scores that read only the rows r0:r1 and columns c0:c1 of the feature maps.

    A 3x3 convolution (padding 1) sees one pixel around each feature, so the scores
    depend on the input only through the region grown by one pixel on every side.
    """

    def __init__(self, h: int, w: int, region: tuple[int, int, int, int], *,
                 in_channels: int = 1, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.relu = nn.ReLU()
        mask = torch.zeros(1, 1, h, w)
        r0, r1, c0, c1 = region
        mask[..., r0:r1, c0:c1] = 1.0
        self.register_buffer("mask", mask)
        self.masked = nn.Identity()  # a named layer whose output is zero outside the region
        self.fc = nn.Linear(4, k)

    def forward(self, x):
        a = self.masked(self.relu(self.conv(x)) * self.mask)  # (N, 4, H, W)
        return self.fc(a.mean(dim=(2, 3)))


def region_masks(h: int, w: int, region, grow: int) -> np.ndarray:
    """Boolean (H, W) mask of the region grown by ``grow`` pixels on every side."""
    r0, r1, c0, c1 = region
    m = np.zeros((h, w), dtype=bool)
    m[max(r0 - grow, 0):r1 + grow, max(c0 - grow, 0):c1 + grow] = True
    return m


class GapNet(nn.Module):
    """Convolutions, global average pooling, one linear layer: the CAM architecture."""

    def __init__(self, in_channels: int = 1, k: int = 4, width: int = 6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(width, k)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def gapnet(seed: int = 0, **kwargs) -> GapNet:
    torch.manual_seed(seed)
    model = GapNet(**kwargs).double()
    # Non-trivial batch-norm statistics, so that training mode would change the output.
    model.features[1].running_mean.uniform_(-0.5, 0.5)
    model.features[1].running_var.uniform_(0.5, 2.0)
    return model


def images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=torch.float64)


# --------------------------------------------------------------------------- saliency


def check_saliency_of_linear_model(fn) -> None:
    """A linear classifier's saliency is |W_t| (largest over channels), whatever the image."""
    c, h, w, k = 2, 3, 4, 5
    model = linear_model(c, h, w, k)
    weight = model[1].weight.detach().view(k, c, h, w)  # (K, C, H, W)
    x = images(3, c, h, w)
    for target in (0, 3, [4, 1, 2]):
        t = torch.as_tensor(target).expand(3)
        expected = weight[t].abs().amax(dim=1)  # (N, H, W)
        torch.testing.assert_close(fn(model, x, target, device="cpu"), expected)
    # No target: the predicted class of each image.
    predicted = model(x).argmax(1)
    torch.testing.assert_close(fn(model, x, device="cpu"),
                               weight[predicted].abs().amax(dim=1))


def test_saliency_of_a_linear_model_is_the_absolute_weight():
    check_saliency_of_linear_model(saliency)
    # Worked by hand: S_0 = 2 x0 - 3 x1 + 0.5 x2 - x3 on one channel of 2x2 pixels.
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[2.0, -3.0, 0.5, -1.0], [1.0, 1.0, 1.0, 1.0]]))
    got = saliency(model, torch.zeros(1, 2, 2, dtype=torch.float64), 0, device="cpu")
    assert got.tolist() == [[2.0, 3.0], [0.5, 1.0]]


def test_planted_bug_saliency_of_the_wrong_class_is_caught():
    def wrong_class(model, x, target=None, *, device=None):
        # The common slip: explain the class after the intended one (or the runner-up).
        k = model(torch.as_tensor(x)).shape[1]
        if target is None:
            target = model(torch.as_tensor(x)).argmax(1)
        return saliency(model, x, (torch.as_tensor(target) + 1) % k, device=device)

    def signed(model, x, target=None, *, device=None):
        # Forgetting the absolute value: max over channels of the signed gradient.
        x = torch.as_tensor(x).clone().requires_grad_(True)
        scores = model(x)
        t = scores.argmax(1) if target is None else torch.as_tensor(target).expand(len(x))
        (g,) = torch.autograd.grad(scores.gather(1, t[:, None]).sum(), x)
        return g.amax(dim=1)

    for bug in (wrong_class, signed):
        with pytest.raises(AssertionError):
            check_saliency_of_linear_model(bug)


def finite_difference_saliency(model, x, target, h=1e-6):
    """max_c |dS_t/dx| by central differences, one pixel at a time (float64)."""
    grad = torch.zeros_like(x)
    flat = x.view(-1)
    with torch.no_grad():
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            up = model(x)[0, target].item()
            flat[i] = old - h
            down = model(x)[0, target].item()
            flat[i] = old
            grad.view(-1)[i] = (up - down) / (2 * h)
    return grad.abs().amax(dim=1)  # (1, H, W)


def test_saliency_matches_finite_differences_in_float64():
    torch.manual_seed(1)
    # Smooth activations, so that a difference quotient never straddles a kink.
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                          nn.Conv2d(3, 4, 3), nn.Softplus(), nn.Flatten(),
                          nn.Linear(4 * 2 * 1, 3)).double().eval()  # (8, 6) -> (4, 3) -> (2, 1)
    x = images(1, 2, 8, 6, seed=3)
    for target in range(3):
        expected = finite_difference_saliency(model, x.clone(), target)
        got = saliency(model, x, target, device="cpu")
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


def test_saliency_is_zero_outside_the_region_the_scores_read():
    h, w, region = 12, 10, (3, 7, 2, 5)
    torch.manual_seed(0)
    model = RegionNet(h, w, region).double()
    x = images(4, 1, h, w)
    maps = saliency(model, x, 1, device="cpu").numpy()
    seen = region_masks(h, w, region, grow=1)
    assert (maps[:, ~seen] == 0).all()
    assert (maps[:, seen].sum(axis=1) > 0).all()


# --------------------------------------------------------------------------- occlusion


def naive_occlusion(model, x, target, *, patch, stride, fill=0.0, output="probability"):
    """One image at a time, one window at a time, a running sum and count per pixel."""
    model.eval()
    n, _, h, w = x.shape
    out = np.zeros((n, h, w))
    rows = list(range(0, h - patch[0] + 1, stride[0]))
    cols = list(range(0, w - patch[1] + 1, stride[1]))
    if rows[-1] != h - patch[0]:
        rows.append(h - patch[0])
    if cols[-1] != w - patch[1]:
        cols.append(w - patch[1])

    def measure(img, t):
        with torch.no_grad():
            s = model(img[None])[0]
        return (s.softmax(0) if output == "probability" else s)[t].item()

    for k in range(n):
        total, count = np.zeros((h, w)), np.zeros((h, w))
        base = measure(x[k], target[k])
        for i in rows:
            for j in cols:
                img = x[k].clone()
                img[:, i:i + patch[0], j:j + patch[1]] = fill
                total[i:i + patch[0], j:j + patch[1]] += base - measure(img, target[k])
                count[i:i + patch[0], j:j + patch[1]] += 1
        out[k] = np.divide(total, count, out=np.zeros((h, w)), where=count > 0)
    return out


def check_occlusion_of_linear_model(fn) -> None:
    """Covering a window with 0 lowers a linear score by the window's sum of w * x."""
    c, h, w, k = 2, 6, 4, 3
    model = linear_model(c, h, w, k, seed=2)
    weight = model[1].weight.detach().view(k, c, h, w)
    x = images(2, c, h, w, seed=5)
    got = fn(model, x, [2, 0], patch=(3, 2), stride=None, fill=0.0, output="score",
             device="cpu")
    for n, t in enumerate([2, 0]):
        contrib = (weight[t] * x[n]).sum(dim=0)  # (H, W)
        expected = torch.zeros(h, w, dtype=torch.float64)
        for i in range(0, h, 3):
            for j in range(0, w, 2):
                expected[i:i + 3, j:j + 2] = contrib[i:i + 3, j:j + 2].sum()
        torch.testing.assert_close(got[n], expected)


def test_occlusion_of_a_linear_model_by_hand():
    check_occlusion_of_linear_model(occlusion)
    # Worked by hand: one channel, 2x2 image [[1, 2], [3, 4]], score = sum of pixels,
    # a 1x2 patch (stride 1 along rows): each row's drop is its sum.
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)
    got = occlusion(model, x, 0, patch=(1, 2), output="score", device="cpu")
    assert got.tolist() == [[3.0, 3.0], [7.0, 7.0]]
    # The same windows filled with 1 instead: the drops are 1 and 5.
    got = occlusion(model, x, 0, patch=(1, 2), fill=1.0, output="score", device="cpu")
    assert got.tolist() == [[1.0, 1.0], [5.0, 5.0]]


def test_planted_bug_occlusion_variants_are_caught():
    def wrong_sign(model, x, target, **kw):
        return -occlusion(model, x, target, **kw)

    def first_channel_only(model, x, target, *, patch, stride, fill, output, device):
        # Covering one channel instead of all of them.
        x = torch.as_tensor(x)
        base = model(x).gather(1, torch.as_tensor(target)[:, None])[:, 0].detach()
        n, _, h, w = x.shape
        out = torch.zeros(n, h, w, dtype=x.dtype)
        for i in range(0, h, patch[0]):
            for j in range(0, w, patch[1]):
                img = x.clone()
                img[:, 0, i:i + patch[0], j:j + patch[1]] = fill
                s = model(img).gather(1, torch.as_tensor(target)[:, None])[:, 0].detach()
                out[:, i:i + patch[0], j:j + patch[1]] = (base - s)[:, None, None]
        return out

    for bug in (wrong_sign, first_channel_only):
        with pytest.raises(AssertionError):
            check_occlusion_of_linear_model(bug)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(4, 11), w=st.integers(4, 11),
       ph=st.integers(1, 4), pw=st.integers(1, 4), sh=st.integers(1, 5), sw=st.integers(1, 5),
       fill=st.sampled_from([0.0, 0.5]), output=st.sampled_from(["probability", "score"]),
       batch_size=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_occlusion_batched_equals_a_plain_loop(n, c, h, w, ph, pw, sh, sw, fill, output,
                                               batch_size, seed):
    model = gapnet(seed % 7, in_channels=c, k=3)
    x = images(n, c, h, w, seed)
    target = [(seed + i) % 3 for i in range(n)]
    got = occlusion(model, x, target, patch=(ph, pw), stride=(sh, sw), fill=fill,
                    output=output, batch_size=batch_size, device="cpu")
    expected = naive_occlusion(model, x, target, patch=(ph, pw), stride=(sh, sw), fill=fill,
                               output=output)
    assert got.shape == (n, h, w)
    # Pixels that no window covers (stride > patch) are 0 in both.
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_occlusion_lights_up_only_where_the_scores_read():
    h, w, region = 12, 12, (4, 8, 5, 9)
    torch.manual_seed(4)
    model = RegionNet(h, w, region).double()
    x = images(3, 1, h, w, seed=1) + 0.5
    patch = 3
    maps = occlusion(model, x, 0, patch=patch, stride=1, device="cpu").numpy()
    # A window changes the scores only if it reaches the region grown by the conv's one
    # pixel; a pixel is non-zero only if some window covering it does, so the map is zero
    # outside the region grown by 1 + (patch - 1).
    reach = region_masks(h, w, region, grow=1 + patch - 1)
    assert (maps[:, ~reach] == 0).all()
    assert (np.abs(maps[:, region_masks(h, w, region, grow=0)]).sum(axis=1) > 0).all()


# --------------------------------------------------------------------------- grad_cam


def cam_by_hand(model: GapNet, x: torch.Tensor, target) -> torch.Tensor:
    """Zhou et al.'s CAM, ReLU(sum_k W_tk A^k), divided by the number of positions."""
    model.eval()
    with torch.no_grad():
        a = model.features(x)  # (N, K, h, w)
        wt = model.fc.weight[torch.as_tensor(target).expand(len(x))]  # (N, K)
        cam = torch.einsum("nk,nkhw->nhw", wt, a)
    return F.relu(cam) / (a.shape[2] * a.shape[3])


def check_grad_cam_is_cam(fn) -> None:
    model = gapnet(4)
    x = images(4, 1, 10, 8, seed=9)
    for target in (0, 2, [3, 1, 0, 2]):
        got = fn(model, x, target, layer="features", upsample=False, device="cpu")
        torch.testing.assert_close(got, cam_by_hand(model, x, target))


def test_grad_cam_on_a_global_average_pooling_head_is_the_cam():
    check_grad_cam_is_cam(grad_cam)
    # The check has teeth: the unrectified CAM of these images, for every class, is
    # negative in some places and positive in others.
    model = gapnet(4)
    x = images(4, 1, 10, 8, seed=9)
    with torch.no_grad():
        raw = torch.einsum("tk,nkhw->tnhw", model.eval().fc.weight, model.features(x))
    assert all((r < 0).any() and (r > 0).any() for r in raw)


def test_planted_bug_grad_cam_without_relu_or_of_the_wrong_class_is_caught():
    def no_relu(model, x, target, *, layer, upsample, device):
        acts = {}
        handle = model.get_submodule(layer).register_forward_hook(
            lambda m, i, o: acts.setdefault("a", o))
        scores = model.eval()(x)
        handle.remove()
        t = torch.as_tensor(target).expand(len(x))
        (g,) = torch.autograd.grad(scores.gather(1, t[:, None]).sum(), acts["a"])
        return (g.mean(dim=(2, 3), keepdim=True) * acts["a"]).sum(1).detach()

    def wrong_class(model, x, target, **kw):
        k = model.fc.out_features
        return grad_cam(model, x, (torch.as_tensor(target) + 1) % k, **kw)

    for bug in (no_relu, wrong_class):
        with pytest.raises(AssertionError):
            check_grad_cam_is_cam(bug)


class InPlaceAfterLayer(nn.Module):
    """A block that changes its first layer's output in place, as ResNet's ``+=`` does."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 5, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        a = self.conv(x)
        a += 0.25  # in place, after the layer Grad-CAM reads
        a = F.relu(self.pool(a))
        return self.fc(a.amax(dim=(2, 3)))


def test_grad_cam_from_a_network_split_by_hand_despite_in_place_operations():
    torch.manual_seed(6)
    model = InPlaceAfterLayer().double()
    x = images(3, 2, 8, 10, seed=2)
    target = [0, 1, 2]
    got = grad_cam(model, x, target, layer="conv", device="cpu")
    # Split by hand: activations as a leaf, the rest of the network on top of them.
    a = model.conv(x).detach().requires_grad_(True)
    rest = F.relu(model.pool(a + 0.25))
    scores = model.fc(rest.amax(dim=(2, 3)))
    (g,) = torch.autograd.grad(scores.gather(1, torch.tensor(target)[:, None]).sum(), a)
    expected = F.relu((g.mean(dim=(2, 3), keepdim=True) * a.detach()).sum(1))
    torch.testing.assert_close(got, expected)


def test_grad_cam_lights_up_only_the_region_the_scores_read():
    h, w, region = 10, 12, (2, 6, 6, 11)
    torch.manual_seed(2)
    model = RegionNet(h, w, region, k=2).double()
    x = images(2, 1, h, w, seed=3)
    inside = region_masks(h, w, region, grow=0)
    maps = [grad_cam(model, x, t, layer="masked", device="cpu").numpy() for t in range(2)]
    for m in maps:
        assert (m[:, ~inside] == 0).all()
    # The two classes' weights differ in sign somewhere, so one of them lights up inside.
    assert any((m[:, inside].sum(axis=1) > 0).all() for m in maps)


def test_grad_cam_upsamples_bilinearly_to_the_input():
    model = gapnet(1)
    x = images(2, 1, 9, 14, seed=4)
    small = grad_cam(model, x, 1, layer="features", upsample=False, device="cpu")
    assert small.shape == (2, 4, 7)
    big = grad_cam(model, x, 1, layer="features", device="cpu")
    torch.testing.assert_close(big, F.interpolate(small[:, None], size=(9, 14), mode="bilinear",
                                                  align_corners=False)[:, 0])


def test_grad_cam_on_a_zoo_resnet_and_a_frozen_network():
    torch.manual_seed(0)
    model = models.small_resnet(depth=8, num_classes=4, width=4)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(2, 1, 16, 16)
    maps = grad_cam(model, x, layer="layer3", device="cpu")
    assert maps.shape == (2, 16, 16) and (maps >= 0).all() and torch.isfinite(maps).all()


# --------------------------------------------------------------------------- all three


def run_all(model, x, target, layer="features"):
    return {"saliency": saliency(model, x, target, device="cpu"),
            "occlusion": occlusion(model, x, target, patch=3, stride=2, device="cpu"),
            "grad_cam": grad_cam(model, x, target, layer=layer, device="cpu")}


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 4), c=st.integers(1, 3), h=st.integers(4, 13), w=st.integers(4, 13),
       k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_shapes_signs_and_images_explained_one_at_a_time(n, c, h, w, k, seed):
    model = gapnet(seed % 5, in_channels=c, k=k)
    x = images(n, c, h, w, seed)
    maps = run_all(model, x, None)
    for name, m in maps.items():
        assert m.shape == (n, h, w), name
        assert m.device.type == "cpu" and torch.isfinite(m).all(), name
    assert (maps["saliency"] >= 0).all() and (maps["grad_cam"] >= 0).all()
    # In evaluation mode the images of a batch do not interact (the model has a batch
    # norm): each image's map is the one it gets alone, as a (C, H, W) image.
    predicted = model.eval()(x).argmax(1)
    for i in range(n):
        alone = run_all(model, x[i], int(predicted[i]))
        for name, m in alone.items():
            assert m.shape == (h, w)
            torch.testing.assert_close(m, maps[name][i], msg=name)


def test_modes_and_parameter_gradients_are_left_as_they_were():
    model = gapnet(0)
    model.train()
    model.features[1].eval()  # a frozen batch norm, as in chapter 12
    modes = [m.training for m in model.modules()]
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    x = images(2, 1, 8, 8)
    with torch.no_grad():  # a caller's no_grad does not stop the gradients we need
        run_all(model, x, 1)
    assert [m.training for m in model.modules()] == modes
    assert (model.fc.weight.grad == 1).all()
    assert all(p.grad is None for name, p in model.named_parameters() if name != "fc.weight")


def test_numpy_float32_input_and_the_package_exports():
    torch.manual_seed(0)
    model = GapNet(k=3)
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    maps = run_all(model, x, [0, 2])
    assert all(m.dtype == torch.float32 for m in maps.values())
    assert cnnlib.torch.saliency is saliency and cnnlib.torch.occlusion is occlusion
    assert cnnlib.torch.grad_cam is grad_cam


def test_bad_arguments_are_named():
    model = gapnet(0)
    x = images(2, 1, 8, 8)
    with pytest.raises(ValueError, match="x must be one image"):
        saliency(model, x[0, 0], device="cpu")
    with pytest.raises(TypeError, match="floating-point"):
        saliency(model, torch.ones(1, 1, 4, 4, dtype=torch.long), device="cpu")
    with pytest.raises(ValueError, match="NaN"):
        saliency(model, x * float("nan"), device="cpu")
    with pytest.raises(ValueError, match="outside 0..3"):
        saliency(model, x, 4, device="cpu")
    with pytest.raises(ValueError, match="one per image"):
        saliency(model, x, [0, 1, 2], device="cpu")
    with pytest.raises(TypeError, match="target"):
        saliency(model, x, 1.0, device="cpu")
    with pytest.raises(ValueError, match="larger than the images"):
        occlusion(model, x, 0, patch=9, device="cpu")
    with pytest.raises(ValueError, match="stride must be at least 1"):
        occlusion(model, x, 0, patch=2, stride=0, device="cpu")
    with pytest.raises(ValueError, match="output"):
        occlusion(model, x, 0, patch=2, output="logits", device="cpu")
    with pytest.raises(ValueError, match="no module 'feature'"):
        grad_cam(model, x, 0, layer="feature", device="cpu")
    with pytest.raises(ValueError, match=r"\(N, K, h, w\)"):
        grad_cam(model, x, 0, layer="fc", device="cpu")
    with pytest.raises(TypeError, match="nn.Module"):
        saliency(lambda t: t, x, device="cpu")
