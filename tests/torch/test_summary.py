"""count_parameters, summarize and receptive_field.

Multiply-add totals are checked against torchvision's published GMACs, single rows
against hand computations, and receptive fields against hand derivations and against
an independent measurement: the extent of the input gradient of one output unit.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlib.torch import count_parameters, models, receptive_field, summarize


def meta(builder, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return builder(**kwargs)


# ------------------------------------------------------------------ count_parameters


def test_count_parameters_trainable_only_and_shared_weights():
    lin = nn.Linear(3, 4)  # 12 + 4
    model = nn.Sequential(lin, nn.ReLU(), lin, nn.Linear(4, 2))  # shared layer counts once
    assert count_parameters(model) == 16 + 10
    model[3].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 16 + 2
    with pytest.raises(TypeError, match="nn.Module"):
        count_parameters([lin])


# ------------------------------------------------------------------------- summarize

# torchvision's published multiply-adds at 224x224 (its tables call them GFLOPS).
PUBLISHED_GMACS = {"alexnet": 0.71, "vgg16": 15.47, "resnet18": 1.81, "resnet50": 4.09,
                   "googlenet": 1.50, "densenet121": 2.83, "mobilenet_v2": 0.30}


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_total_macs_agree_with_published_figures(name):
    s = summarize(meta(getattr(models, name)), (3, 224, 224))
    assert s.gmacs == pytest.approx(PUBLISHED_GMACS[name], rel=0.02)
    assert s.total_params == count_parameters(meta(getattr(models, name)))


def test_alexnet_rows_by_hand():
    rows = {r.name: r for r in summarize(meta(models.alexnet), (3, 224, 224)).rows}
    conv1 = rows["features.0"]
    # (224 + 2*2 - 11) // 4 + 1 = 55; each of 64*55*55 outputs sums 3*11*11 products.
    assert conv1.output_shape == (64, 55, 55)
    assert conv1.macs == 64 * 55 * 55 * 3 * 11 * 11 == 70_276_800
    assert conv1.params == 64 * 3 * 121 + 64
    assert conv1.activation_bytes == 4 * 64 * 55 * 55
    fc6 = rows["classifier.1"]
    assert fc6.macs == 9216 * 4096 and fc6.output_shape == (4096,)
    assert rows["features.1"].macs == 0 and rows["features.2"].params == 0


def test_grouped_transposed_and_linear_macs():
    model = nn.Sequential(
        nn.Conv2d(8, 16, 3, groups=4),  # 16x8x8 outputs, each 8/4*9 products
        nn.ConvTranspose2d(16, 4, 2, stride=2),  # each of 16x8x8 inputs feeds 4*2*2 outputs
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 5),
    )
    s = summarize(model, (8, 10, 10))
    assert [r.macs for r in s.rows] == [16 * 64 * 18, 16 * 64 * 16, 0, 1024 * 5]
    assert [r.output_shape for r in s.rows] == [(16, 8, 8), (4, 16, 16), (1024,), (5,)]
    assert s.total_macs == sum(r.macs for r in s.rows)


def test_summary_is_per_example_and_restores_training_mode():
    torch.manual_seed(0)
    model = models.lenet5()
    model.train()
    real = summarize(model, (1, 32, 32))
    assert model.training
    on_meta = summarize(meta(models.lenet5), (1, 32, 32))
    assert real.rows == on_meta.rows
    assert real.total_params == 61_706
    # Every layer's float32 output bytes: 6*28*28*4 = 18,816 for conv1, and so on.
    assert real.rows[0].activation_bytes == 18_816
    assert real.total_activation_bytes == 4 * sum(math.prod(r.output_shape) for r in real.rows)


def test_summary_counts_a_reused_layer_once():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    s = summarize(model, (4,))
    assert [r.params for r in s.rows] == [20, 0, 0]
    assert [r.macs for r in s.rows] == [16, 0, 16]


def test_summary_of_a_single_layer_has_its_row():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    s = summarize(conv, (3, 16, 16))
    assert [(r.name, r.output_shape, r.params) for r in s.rows] == [
        ("Conv2d", (8, 16, 16), 8 * 3 * 9 + 8)]
    assert s.rows[0].macs == 8 * 16 * 16 * 3 * 9
    # a container is never a row of its own
    assert [r.name for r in summarize(nn.Sequential(conv), (3, 16, 16)).rows] == ["0"]


def test_summary_prints_a_table():
    s = summarize(meta(models.resnet18), (3, 224, 224))
    text = str(s)
    assert "layer4.1.conv2" in text and "BatchNorm2d" in text
    assert "11,689,512" in text and "1.81 G" in text
    html = s._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == len(s.rows) + 1


def test_summary_runs_on_the_requested_device():
    model = models.small_resnet()
    s = summarize(model, (1, 8, 8), device="cpu")
    assert s.rows[-1].output_shape == (10,)


@pytest.mark.parametrize(("size", "exc"), [((3, 0, 5), ValueError), ("3x224", TypeError),
                                           ((3.0, 4, 4), TypeError), ((), ValueError)])
def test_summary_rejects_bad_input_size(size, exc):
    with pytest.raises(exc, match="input_size"):
        summarize(models.lenet5(), size)


# ------------------------------------------------------------------- receptive field


def test_two_and_three_stacked_3x3_convs():
    assert receptive_field([(3, 1, 1), (3, 1, 1)]).rows[-1].size == (5,)
    stack = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)]
    rf = receptive_field(stack)
    assert [r.size for r in rf.rows] == [(3, 3), (5, 5), (7, 7)]
    assert rf.rows[-1].jump == (1, 1) and rf.rows[-1].start == (0.0, 0.0)


def test_vgg16_receptive_fields():
    # Per block: 3x3 convs add 2*jump, a 2x2/2 pool adds jump and doubles it.
    # block1: 3, 5, pool 6 (j=2); block2: 10, 14, pool 16 (j=4);
    # block3: 24, 32, 40, pool 44 (j=8); block4: 60, 76, 92, pool 100 (j=16);
    # block5: 132, 164, 196 = conv5_3, pool5: 212 (j=32).
    rf = receptive_field(meta(models.vgg16))
    assert rf["features.28"].size == (196, 196)  # conv5_3
    assert rf["features.30"].size == (212, 212)  # pool5
    assert rf["features.30"].jump == (32, 32)
    assert [r.size[0] for r in rf.rows if r.type == "MaxPool2d"] == [6, 16, 44, 100, 212]


def test_alexnet_receptive_field():
    # conv1 11/4: 11 (j=4); pool 3/2: 19 (j=8); conv2 5: 51; pool: 67 (j=16);
    # conv3-5 3x3: 99, 131, 163; pool: 195 (j=32).
    rf = receptive_field(meta(models.alexnet))
    assert [r.size[0] for r in rf.rows] == [11, 19, 51, 67, 99, 131, 163, 195]
    assert receptive_field(list(meta(models.alexnet).features)).rows == [
        r._replace(name=str(i)) for i, r in zip([0, 2, 3, 5, 6, 8, 10, 12], rf.rows)]


def test_resnet50_last_stage_receptive_field():
    # stem 7/2: 7 (j=2); max pool 3/2: 11 (j=4); layer1, 3 blocks with one 3x3 each:
    # 35; layer2: its first 3x3 strides, 35+8 = 43 (j=8), then 3 blocks: 91;
    # layer3: 107 (j=16), 5 blocks: 267; layer4: 299 (j=32), 2 blocks: 427.
    rf = receptive_field(meta(models.resnet50))
    last = rf["layer4.2.conv3"]
    assert last.size == (427, 427) and last.jump == (32, 32) and last.start == (0.0, 0.0)
    assert rf["layer1.2.conv2"].size == (35, 35)
    assert rf.size == (427, 427)


def test_receptive_field_table_and_errors():
    rf = receptive_field(meta(models.lenet5))
    text = str(rf)
    assert "AvgPool2d" in text and "RF size" in text and rf["3"].size == (14, 14)
    assert "<table>" in rf._repr_html_()
    with pytest.raises(KeyError, match="no convolution or pooling layer named 'fc'"):
        rf["fc"]
    with pytest.raises(TypeError, match="layer 1"):
        receptive_field([(3, 1, 1), "conv"])
    with pytest.raises(ValueError, match="stride"):
        receptive_field([(3, 0, 1)])


def _gradient_extent(model: nn.Module, channels: int, length: int, unit: int):
    """Input rows and columns that influence output unit (unit, unit), measured."""
    x = torch.ones(1, channels, length, length, requires_grad=True)
    out = model(x)
    assert out.shape[-1] > unit, "input too small for the chosen unit"
    out[0, :, unit, unit].sum().backward()
    rows = torch.nonzero(x.grad[0].abs().sum(dim=(0, 2)) > 0).flatten()
    cols = torch.nonzero(x.grad[0].abs().sum(dim=(0, 1)) > 0).flatten()
    return (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))


def _positive(model: nn.Module) -> nn.Module:
    """Same geometry, but every path from input to output carries gradient.

    Max pools become average pools of the same size (a max routes gradient to one
    input only), weights become positive averages and batch norms identities, so no
    sum can cancel and every input the field covers gets a non-zero gradient.
    """
    for m in list(model.modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(m, child_name, nn.AvgPool2d(child.kernel_size, child.stride,
                                                    child.padding, ceil_mode=child.ceil_mode))
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
    return model.eval()


def _check_against_gradient(model, channels, rf_row):
    # Square geometry: the height axis stands for both.
    lo = rf_row.start[0] - (rf_row.size[0] - 1) / 2
    hi = rf_row.start[0] + (rf_row.size[0] - 1) / 2
    j = rf_row.jump[0]
    unit = max(0, math.ceil(-lo / j))  # first unit whose field lies inside the image
    length = int(hi + unit * j) + 1 + 2 * j
    for _ in range(4):
        try:
            got = _gradient_extent(model, channels, length, unit)
            break
        except AssertionError:
            length += 4 * j
    expected = (int(lo + unit * j), int(hi + unit * j))
    assert got == (expected, expected)


layer_spec = st.tuples(
    st.sampled_from(["conv", "avg"]),
    st.integers(1, 5),  # kernel
    st.integers(1, 3),  # stride
    st.integers(0, 2),  # padding
    st.integers(1, 2),  # dilation (convolutions only)
)


@settings(max_examples=25)
@given(st.lists(layer_spec, min_size=1, max_size=4))
def test_receptive_field_equals_gradient_extent_on_random_stacks(specs):
    layers: list[nn.Module] = []
    for kind, k, s, p, d in specs:
        if kind == "conv":
            layers += [nn.Conv2d(2, 2, k, stride=s, padding=min(p, d * (k - 1)), dilation=d),
                       nn.ReLU()]
        else:
            layers.append(nn.AvgPool2d(k, s, padding=min(p, k // 2)))
    model = _positive(nn.Sequential(*layers))
    rf = receptive_field(model)  # the graph of the Sequential
    as_list = receptive_field(list(model))  # the same layers as a list
    assert [r[2:] for r in rf.rows] == [r[2:] for r in as_list.rows]
    _check_against_gradient(model, 2, rf.rows[-1])


class _TwoBranches(nn.Module):
    """A 3x3 branch and a 5x5 branch concatenated, then a residual 3x3: RF 5 + 2."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 2, 5, padding=2)
        self.c = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = torch.cat([self.a(x), F.relu(self.b(x))], 1)
        return y + self.c(y)


def test_branches_take_the_union_of_their_fields():
    model = _positive(_TwoBranches())
    rf = receptive_field(model)
    assert [r.size[0] for r in rf.rows] == [3, 5, 7]
    _check_against_gradient(model, 1, rf["c"])


def test_small_resnet_receptive_field_against_gradient():
    # stem 3; layer1 two 3x3: 7; layer2 3x3/2 then 3x3: 9, 13 (j=2); layer3: 17, 25 (j=4).
    model = _positive(models.small_resnet())
    features = nn.Sequential(model.conv1, model.bn1, model.relu, model.layer1, model.layer2,
                             model.layer3)
    rf = receptive_field(model)
    assert rf.size == (25, 25) and rf["layer3.0.conv2"].jump == (4, 4)
    assert receptive_field(features).size == (25, 25)
    _check_against_gradient(features, 1, rf["layer3.0.conv2"])


@pytest.mark.slow
def test_resnet50_receptive_field_against_gradient():
    torch.manual_seed(0)
    model = _positive(models.resnet50(in_channels=1))
    trunk = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1,
                          model.layer2, model.layer3, model.layer4)
    _check_against_gradient(trunk, 1, receptive_field(model)["layer4.2.conv3"])


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_same_padding_and_layer_lists_that_end_in_a_classifier():
    # An even kernel with padding="same" pads 1 before and 2 after: the field of output
    # 0 is input pixels -1..2, centred on 0.5.
    model = _positive(nn.Sequential(nn.Conv2d(1, 1, 4, padding="same"),
                                    nn.Conv2d(1, 1, 3, padding="valid")))
    rf = receptive_field(model)
    assert [(r.size[0], r.start[0]) for r in rf.rows] == [(4, 0.5), (6, 1.5)]
    _check_against_gradient(model, 1, rf.rows[-1])
    # The layers of LeNet-5 as a list: rows stop at the flatten.
    rows = receptive_field(list(models.lenet5())).rows
    assert [r.name for r in rows] == ["0", "2", "3", "5"]
    assert [r.size[0] for r in rows] == [5, 6, 14, 16]
