"""Tests of cnnlib.viz: every figure renders headless, and shows the right numbers.

Expected values are computed here independently of cnnlib (plain NumPy loops or
torch.nn.functional), never taken from the code under test. Each explorer is built, a
control is changed, and its output (array, shape label, PNG) is checked to update.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from cnnlib import viz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def render(fig) -> bytes:
    assert isinstance(fig, Figure)
    png = viz.figure_to_png(fig, dpi=40)
    assert png.startswith(PNG_MAGIC)
    return png


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def cell_texts(ax) -> np.ndarray:
    """The numbers written in a show_matrix-style grid, as an (H, W) array."""
    h = int(round(ax.get_ylim()[0] + 0.5))
    w = int(round(ax.get_xlim()[1] + 0.5))
    out = np.full((h, w), np.nan)
    for t in ax.texts:
        x, y = t.get_position()
        out[int(round(y)), int(round(x))] = float(t.get_text())
    return out


def pool_reference(x, k, s, mode):
    """Pooling by an explicit loop over windows (independent of cnnlib)."""
    oh, ow = (x.shape[0] - k) // s + 1, (x.shape[1] - k) // s + 1
    f = {"max": np.max, "avg": np.mean, "min": np.min}[mode]
    return np.array([[f(x[i * s:i * s + k, j * s:j * s + k]) for j in range(ow)]
                     for i in range(oh)])


# ----------------------------------------------------------------------------- image grids


@pytest.mark.parametrize("images", [
    np.random.default_rng(0).random((5, 8, 8)),
    np.random.default_rng(1).random((3, 1, 7, 9)),
    np.random.default_rng(2).random((4, 3, 6, 5)),
    [np.zeros((20, 20)), np.ones((9, 9, 3)), np.random.default_rng(3).random((3, 5, 5))],
])
def test_show_images_renders_one_panel_per_image(images):
    fig = viz.show_images(images, ncols=3)
    render(fig)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == len(images)
    # CHW input is displayed as HWC with the same pixels.
    first = np.asarray(images[0])
    data = shown[0].images[0].get_array()
    if first.ndim == 3 and first.shape[0] == 3 and first.shape[-1] != 3:
        np.testing.assert_allclose(data, np.moveaxis(first, 0, -1))
    elif first.ndim == 3 and first.shape[0] == 1:
        np.testing.assert_allclose(data, first[0])


def test_show_images_titles_and_errors():
    fig = viz.show_images(np.zeros((2, 4, 4)), titles=["left", "right"])
    assert titles(fig)[:2] == ["left", "right"]
    with pytest.raises(ValueError, match="titles has 1 entries but there are 2"):
        viz.show_images(np.zeros((2, 4, 4)), titles=["one"])
    with pytest.raises(ValueError, match=r"\(2, 5, 4, 4, 4\)"):
        viz.show_images(np.zeros((2, 5, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"\(5, 4, 4\)"):
        viz.show_images(np.zeros((2, 5, 4, 4)))
    with pytest.raises(TypeError, match="images"):
        viz.show_images(42)


def test_show_kernels_grid_and_symmetric_scale():
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3))
    fig = viz.show_kernels(w)
    render(fig)
    assert len([ax for ax in fig.axes if ax.images]) == 12
    for ax in fig.axes:
        vmin, vmax = ax.images[0].get_clim()
        assert vmin == -vmax > -np.inf  # zero sits at the centre of the colour map
    fig1 = viz.show_kernels(w[:, :1], titles=list("abcd"))
    assert titles(fig1)[:4] == list("abcd")
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        viz.show_kernels(np.zeros((2, 2)))


def test_show_feature_maps():
    maps = np.random.default_rng(0).random((6, 10, 12))
    fig = viz.show_feature_maps(maps[None], ncols=4)
    render(fig)
    assert titles(fig)[:6] == [f"map {c}" for c in range(6)]
    np.testing.assert_array_equal(fig.axes[5].images[0].get_array(), maps[5])
    with pytest.raises(ValueError, match="maps must have shape"):
        viz.show_feature_maps(np.zeros((4, 4)))


# ----------------------------------------------------------------------------- number grids


def test_show_matrix_writes_every_value_and_outlines_windows():
    a = np.arange(12).reshape(3, 4) * 1.5
    fig = viz.show_matrix(a, title="a", fmt="{:.1f}",
                          highlight=[(slice(0, 2), slice(0, 2)), (slice(1, 3), slice(2, 4))])
    render(fig)
    np.testing.assert_allclose(cell_texts(fig.axes[0]), a)
    outlined = [p for p in fig.axes[0].patches if not p.get_fill()]
    assert len(outlined) == 2
    assert outlined[0].get_edgecolor() != outlined[1].get_edgecolor()
    red = viz.show_matrix(a, highlight=[(slice(0, 1), slice(0, 1)), (slice(2, 3), slice(3, 4))],
                          highlight_color="red")
    assert {p.get_edgecolor() for p in red.axes[0].patches} == {(1.0, 0.0, 0.0, 1.0)}
    with pytest.raises(ValueError, match=r"2-D array, got shape \(2, 2, 2\)"):
        viz.show_matrix(np.zeros((2, 2, 2)))
    with pytest.raises(TypeError, match="highlight"):
        viz.show_matrix(a, highlight=[(0, 1)])


def test_show_matrix_symmetric_centres_the_colour_scale_on_zero():
    a = np.array([[-1.0, 0.0], [2.0, 0.5]])
    plain = viz.show_matrix(a, cmap="RdBu_r").axes[0].images[0]
    assert plain.get_clim() == (-1.0, 2.0)
    fig = viz.show_matrix(a, cmap="RdBu_r", symmetric=True)
    render(fig)
    image = fig.axes[0].images[0]
    assert image.get_clim() == (-2.0, 2.0)
    # zero sits in the white middle of the diverging map
    np.testing.assert_allclose(image.cmap(image.norm(0.0))[:3], image.cmap(0.5)[:3])
    np.testing.assert_allclose(cell_texts(fig.axes[0]), a)
    # text is white on the dark red cell (2) and black on the pale ones
    colours = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert colours["2"] == "white" and colours["0"] == "black" and colours["-1"] == "black"
    # one scale for several panels
    assert viz.show_matrix(a, symmetric=True, vmax=4.0).axes[0].images[0].get_clim() == (-4.0, 4.0)
    assert viz.show_matrix(a, vmin=-3.0, vmax=5.0).axes[0].images[0].get_clim() == (-3.0, 5.0)
    # all zeros: still a valid, centred scale
    assert viz.show_matrix(np.zeros((2, 2)), symmetric=True).axes[0].images[0].get_clim() == (
        -1.0, 1.0)


@pytest.mark.parametrize("n,k,p,s,d", [
    (7, 3, 0, 1, 1), (5, 3, 1, 2, 1), (7, 3, "same", 1, 2), (6, 4, "same", 1, 1),
    (4, 3, "full", 1, 1), (9, 2, 0, 3, 1), (3, 3, 0, 5, 1),
])
def test_padding_stride_diagram_output_size(n, k, p, s, d):
    fig = viz.padding_stride_diagram(n, k, padding=p, stride=s, dilation=d)
    render(fig)
    # Count window positions by sliding one over the padded input, as a reader would.
    pads = {"valid": 0, "full": 2 * d * (k - 1), "same": d * (k - 1)}
    padded = n + (pads[p] if isinstance(p, str) else 2 * p)
    span = d * (k - 1) + 1
    out = len([start for start in range(0, padded, s) if start + span <= padded])
    assert f"output size {out}x{out}" in fig.get_suptitle()
    assert f"padded {padded}x{padded}" in fig.axes[0].get_title()


def test_padding_stride_diagrams_side_by_side_in_subfigures():
    fig = Figure(layout="constrained")
    subs = fig.subfigures(1, 2)
    for sub, stride in zip(subs, (1, 2)):
        assert viz.padding_stride_diagram(7, 3, stride=stride, fig=sub) is sub
    assert subs[0].get_suptitle().endswith("output size 5x5")
    assert subs[1].get_suptitle().endswith("output size 3x3")
    assert len(fig.axes) == 4
    render(fig)


def test_padding_stride_diagram_rejects_bad_settings():
    with pytest.raises(ValueError, match="stride 1"):
        viz.padding_stride_diagram(7, 3, padding="same", stride=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        viz.padding_stride_diagram(4, 5)
    with pytest.raises(ValueError, match="stride"):
        viz.padding_stride_diagram(4, 3, stride=0)


@pytest.mark.parametrize("mode", ["max", "avg", "min"])
@pytest.mark.parametrize("shape,k,s", [((4, 4), 2, None), ((6, 6), 3, 2), ((5, 7), 2, 1)])
def test_pooling_diagram_shows_the_pooled_values(mode, shape, k, s):
    x = np.random.default_rng(sum(shape)).integers(0, 20, size=shape).astype(float)
    fig = viz.pooling_diagram(x, kernel_size=k, stride=s, mode=mode, fmt="{:.4f}")
    render(fig)
    ax_in, ax_out = fig.axes[:2]
    np.testing.assert_allclose(cell_texts(ax_in), x)
    np.testing.assert_allclose(cell_texts(ax_out), pool_reference(x, k, s or k, mode),
                               atol=1e-4)


def test_gradient_routing_diagram_adds_overlapping_windows():
    # The centre value wins all four overlapping 3x3 windows (stride 2).
    x = np.zeros((5, 5))
    x[2, 2] = 9.0
    dout = np.array([[1.0, 2.0], [3.0, 4.0]])
    fig = viz.gradient_routing_diagram(x, dout, kernel_size=3, stride=2)
    render(fig)
    dx = cell_texts(fig.axes[2])
    expected = np.zeros((5, 5))
    expected[2, 2] = 10.0
    np.testing.assert_allclose(dx, expected)
    # Average pooling spreads each gradient evenly; compare with torch's autograd.
    xr = np.random.default_rng(0).random((6, 6))
    fig = viz.gradient_routing_diagram(xr, dout, kernel_size=3, stride=3, mode="avg",
                                       fmt="{:.6f}")
    t = torch.tensor(xr[None, None], requires_grad=True)
    F.avg_pool2d(t, 3, 3).backward(torch.tensor(dout[None, None]))
    np.testing.assert_allclose(cell_texts(fig.axes[2]), t.grad[0, 0].numpy(), atol=1e-6)
    # Signed gradients: dout and dx on diverging scales centred on zero, no "-0" printed.
    signed = np.array([[1.0, -2.0], [0.5, -4.0]])
    fig = viz.gradient_routing_diagram(np.arange(16.0).reshape(4, 4), signed, kernel_size=2,
                                       mode="avg")
    render(fig)
    for ax, m in ((fig.axes[1], 4.0), (fig.axes[2], 1.0)):
        image = ax.images[0]
        assert image.get_clim() == (-m, m)
        np.testing.assert_allclose(image.cmap(image.norm(0.0))[:3], image.cmap(0.5)[:3])
    maxfig = viz.gradient_routing_diagram(np.arange(16.0).reshape(4, 4), signed, kernel_size=2)
    assert "-0" not in texts(maxfig)
    with pytest.raises(ValueError, match=r"dout must have the pooled output's shape \(2, 2\)"):
        viz.gradient_routing_diagram(xr, np.ones((3, 3)), kernel_size=3)


def test_plot_activations_curves_match_torch():
    x = np.linspace(-3, 3, 61)
    fig = viz.plot_activations(("relu", "sigmoid", "tanh"), x=x)
    render(fig)
    assert titles(fig) == ["relu", "sigmoid", "tanh"]
    for ax, fn in zip(fig.axes, (F.relu, torch.sigmoid, torch.tanh)):
        f_line, df_line = [ln for ln in ax.lines if len(ln.get_xdata()) == len(x)]
        t = torch.tensor(x, requires_grad=True)
        y = fn(t)
        y.sum().backward()
        np.testing.assert_allclose(f_line.get_ydata(), y.detach().numpy(), atol=1e-12)
        # relu's slope at exactly 0 is a convention; compare elsewhere.
        keep = x != 0
        np.testing.assert_allclose(df_line.get_ydata()[keep], t.grad.numpy()[keep],
                                   atol=1e-12)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        viz.plot_activations(("swish",))


# ----------------------------------------------------------------------------- training


def test_plot_history_skips_missing_keys():
    full = dict(train_loss=[2.0, 1.0, 0.5], val_loss=[2.1, 1.2, 0.8],
                train_acc=[0.3, 0.6, 0.9], val_acc=[0.3, 0.5, 0.8])
    fig = viz.plot_history(full)
    render(fig)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[1].lines[1].get_ydata(), full["val_acc"])
    fig = viz.plot_history({"train_loss": [1.0, 0.5]})
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1
    with pytest.raises(ValueError, match="none of train_loss"):
        viz.plot_history({"lr": [0.1]})


def test_plot_history_takes_the_torch_history_as_it_is():
    from cnnlib.torch.train import History

    h = History(epoch=[1, 2], train_loss=[1.0, 0.5], train_accuracy=[0.4, 0.7],
                val_loss=[1.1, 0.6], val_accuracy=[0.3, 0.6])
    fig = viz.plot_history(h)
    render(fig)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[1].lines[1].get_ydata(), h.val_accuracy)
    # no validation data: empty val_* lists are skipped, not drawn
    fig = viz.plot_history(History(epoch=[1], train_loss=[1.0], train_accuracy=[0.5]))
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]


def test_plot_confusion_matrix_counts_and_row_fractions():
    cm = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    assert texts(viz.plot_confusion_matrix(cm))[:3] == ["8", "2", "0"]
    fig = viz.plot_confusion_matrix(cm, class_names=["a", "b", "c"], normalize=True)
    render(fig)
    assert texts(fig)[:6] == ["0.80", "0.20", "0.00", "0.25", "0.75", "0.00"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"square \(K, K\) array, got shape \(2, 3\)"):
        viz.plot_confusion_matrix(np.zeros((2, 3)))


def test_show_misclassified_titles_the_mistakes():
    x = np.random.default_rng(0).random((6, 1, 8, 8))
    y_true = np.array([0, 1, 2, 0, 1, 2])
    y_pred = np.array([0, 2, 2, 1, 1, 0])
    fig = viz.show_misclassified(x, y_true, y_pred, class_names=["cat", "dog", "owl"])
    render(fig)
    assert titles(fig)[:3] == ["dog -> owl", "cat -> dog", "owl -> cat"]
    none = viz.show_misclassified(x, y_true, y_true)
    assert "no misclassified examples among 6" in texts(none)
    with pytest.raises(ValueError, match="length N"):
        viz.show_misclassified(x, y_true[:3], y_pred)


# ----------------------------------------------------------------------------- explorers


def torch_conv(img, kernel, padding, stride, dilation):
    if padding == "full":
        padding = dilation * (kernel.shape[0] - 1)
    return F.conv2d(torch.tensor(img[None, None]), torch.tensor(kernel[None, None]),
                    stride=stride, padding=padding, dilation=dilation)[0, 0].numpy()


def test_conv_explorer_updates_when_a_control_changes():
    image = np.random.default_rng(0).random((40, 30))
    ex = viz.conv_explorer(image)
    assert ex.result.shape == (38, 28)
    assert "output 38x28" in ex.shape_label.value
    png_before = bytes(ex.image.value)
    assert png_before.startswith(PNG_MAGIC)

    ex.kernel.value = "sobel x (vertical edges)"
    ex.stride.value = 2
    np.testing.assert_allclose(
        ex.result, torch_conv(image, viz.DEFAULT_KERNELS[ex.kernel.value], 0, 2, 1),
        atol=1e-12)
    assert "output 19x14" in ex.shape_label.value
    assert bytes(ex.image.value) != png_before

    ex.stride.value = 1
    ex.padding.value = "full"
    ex.dilation.value = 2
    assert ex.result.shape == (44, 34)
    np.testing.assert_allclose(
        ex.result, torch_conv(image, viz.DEFAULT_KERNELS[ex.kernel.value], "full", 1, 2),
        atol=1e-12)

    # An invalid combination is explained in the label rather than raised.
    ex.padding.value = "same"
    ex.stride.value = 3
    assert ex.result is None and "not allowed" in ex.shape_label.value
    assert "stride" in ex.error


def test_conv_explorer_static_figure_renders_a_grid_of_settings():
    image = np.random.default_rng(1).random((24, 24))
    ex = viz.conv_explorer(image, kernels={"box": np.full((3, 3), 1 / 9)})
    fig = ex.static_figure()
    render(fig)
    shown = titles(fig)
    assert shown[0] == "input\n24x24"
    assert "p=valid, s=1, d=1\n22x22" in shown
    assert "p=same, s=1, d=1\n24x24" in shown
    assert "p=full, s=1, d=1\n26x26" in shown
    assert "p=1, s=2, d=1\n12x12" in shown
    assert "p=0, s=3, d=1\n8x8" in shown
    assert "p=0, s=1, d=3\n18x18" in shown
    fig = viz.conv_explorer_static(image, settings=[dict(padding=2, stride=2)])
    assert titles(fig)[1] == "p=2, s=2, d=1\n13x13"
    with pytest.raises(ValueError, match="kernel must be one of"):
        viz.conv_explorer_static(image, kernel="nope")


def test_conv_explorer_subsamples_large_images_and_takes_colour():
    rgb = np.random.default_rng(2).integers(0, 256, size=(300, 200, 3), dtype=np.uint8)
    ex = viz.conv_explorer(rgb, max_size=100)
    assert max(ex.input.shape) <= 100 and ex.input.max() <= 1.0
    with pytest.raises(ValueError, match=r"got shape \(3, 4, 5, 6\)"):
        viz.conv_explorer(np.zeros((3, 4, 5, 6)))


def test_pooling_explorer_updates_when_a_control_changes():
    image = np.random.default_rng(3).random((20, 20))
    ex = viz.pooling_explorer(image)
    np.testing.assert_allclose(ex.result, pool_reference(image, 2, 2, "max"))
    assert "output 10x10" in ex.shape_label.value
    before = bytes(ex.image.value)
    ex.kernel_size.value = 3
    ex.mode.value = "avg"
    np.testing.assert_allclose(ex.result, pool_reference(image, 3, 2, "avg"), atol=1e-12)
    assert "output 9x9" in ex.shape_label.value and "avg" in ex.shape_label.value
    assert bytes(ex.image.value) != before
    ex.mode.value = "min"
    ex.stride.value = 5
    np.testing.assert_allclose(ex.result, pool_reference(image, 3, 5, "min"))


def test_explorers_display_as_widgets():
    ex = viz.conv_explorer(np.random.default_rng(4).random((12, 12)))
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_html_table_escapes_and_aligns():
    table = viz.html_table([[1, "a<b", 2.5], [10, "c", 3.0]], header=["n", "name", "x"])
    html = table.data
    assert html.count("<tr>") == 3 and "a&lt;b" in html and "a<b" not in html
    assert '<td style="text-align: right">10</td>' in html
    assert '<td style="text-align: left">c</td>' in html
    with pytest.raises(ValueError, match="row 1 has 2 cells but header has 3 columns"):
        viz.html_table([[1, 2, 3], [1, 2]], header=["a", "b", "c"])


def _png_pixel_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which follows the 8-byte signature."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_figures_display_sharp_by_default():
    # A 4-inch-wide figure renders at least 150 pixels per inch by default (sharp on
    # high-resolution screens); an explicit dpi still wins.
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(4, 2))
    fig.patches.append(Rectangle((0, 0), 1, 1, transform=fig.transFigure, fill=False, lw=2))
    assert viz.FIGURE_DPI >= 150
    width, height = _png_pixel_size(viz.figure_to_png(fig))
    assert width >= 4 * 150 and height >= 2 * 150
    width40, _ = _png_pixel_size(viz.figure_to_png(fig, dpi=40))
    assert width40 < 4 * 60


# ----------------------------------------------------------------------- network diagrams


def _out(n, k, s, p=0):
    """Output size of a convolution or pool, from the formula (independent of cnnlib)."""
    return (n + 2 * p - k) // s + 1


def _check_inception_blocks(blocks):
    """GoogLeNet's modules output the channel sums of the paper's table (Szegedy et al. 2015)."""
    shapes = {b.name: b.shape for b in blocks}
    assert shapes["inception3a"] == (64 + 128 + 32 + 32, 28, 28)
    assert shapes["inception4e"] == (256 + 320 + 128 + 128, 14, 14)
    assert shapes["inception5b"] == (384 + 384 + 128 + 128, 7, 7)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(8, 24), k=st.integers(1, 5), s=st.integers(1, 3), c=st.integers(1, 6),
       pool=st.integers(1, 3))
def test_network_blocks_follow_the_layers_of_a_small_network(n, k, s, c, pool):
    from torch import nn

    from cnnlib.torch import summarize

    h = _out(n, k, s, k // 2)
    hp = _out(h, pool, pool)
    assume(hp >= 1)
    net = nn.Sequential(nn.Conv2d(2, c, k, stride=s, padding=k // 2), nn.ReLU(),
                        nn.BatchNorm2d(c), nn.MaxPool2d(pool), nn.Flatten(),
                        nn.Linear(c * hp * hp, 7), nn.Dropout())
    blocks = viz.network_blocks(net, summarize(net, (2, n, n)))
    assert [(b.kind, b.shape) for b in blocks] == [
        ("input", (2, n, n)), ("conv", (c, h, h)), ("pool", (c, hp, hp)), ("dense", (7,))]
    assert blocks[1].label == f"conv {k}x{k}" + (f" /{s}" if s > 1 else "")
    assert blocks[2].label == f"max pool {pool}x{pool} /{pool}"


def test_network_blocks_merge_concatenated_branches():
    from cnnlib.torch import models, summarize
    from cnnlib.torch.models.googlenet import Inception

    with torch.device("meta"):
        net = models.googlenet()
    names = [n for n, m in net.named_children() if isinstance(m, Inception)]
    blocks = viz.network_blocks(net, summarize(net, (3, 224, 224)), merge=names)
    _check_inception_blocks(blocks)
    assert [b.name for b in blocks if b.kind == "module"] == names
    assert blocks[-2].label == "global avg pool" and blocks[-1].shape == (1000,)

    # Planted bug: a module's shape read from its last row (the pooling branch's 1x1
    # convolution) instead of the concatenation. The check above must reject it.
    def last_row_variant(model, summary, merge):
        out = []
        for b in viz.network_blocks(model, summary, merge=merge):
            if b.kind == "module":
                row = [r for r in summary.rows if r.name.startswith(b.name + ".")][-1]
                b = b._replace(shape=tuple(row.output_shape))
            out.append(b)
        return out

    with pytest.raises(AssertionError):
        _check_inception_blocks(last_row_variant(net, summarize(net, (3, 224, 224)), names))


def test_network_blocks_label_adaptive_pools_by_their_output():
    from torch import nn

    from cnnlib.torch import summarize

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(3), nn.AdaptiveMaxPool2d(1))
    labels = [b.label for b in viz.network_blocks(net, summarize(net, (1, 9, 9)))]
    assert labels == ["input", "conv 3x3", "adaptive avg pool", "global max pool"]


def test_network_blocks_refuse_branches_of_different_sizes():
    from torch import nn

    from cnnlib.torch import summarize

    class TwoSizes(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3)
            self.b = nn.Conv2d(1, 2, 1)

        def forward(self, x):
            return self.a(x).sum() + self.b(x).sum()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.mod = TwoSizes()

        def forward(self, x):
            return self.mod(x)

    net = Net()
    with pytest.raises(ValueError, match="different spatial sizes"):
        viz.network_blocks(net, summarize(net, (1, 6, 6)), merge=["mod"])


def test_network_diagram_draws_one_box_and_two_labels_per_block():
    from cnnlib.torch import models, summarize

    with torch.device("meta"):
        net = models.alexnet()
    summary = summarize(net, (3, 224, 224))
    blocks = viz.network_blocks(net, summary)
    fig = viz.network_diagram(net, summary, ncols=5, title="AlexNet")
    render(fig)
    ax = fig.axes[0]
    assert len(ax.patches) == len(blocks)
    assert {"64x55x55", "256x6x6", "4096", "1000"} <= set(texts(fig))
    assert titles(fig) == ["AlexNet"]
    # Boxes shrink with the spatial size: the input is the tallest box.
    heights = [p.get_height() for p in ax.patches]
    assert heights[0] == max(heights[:9])
