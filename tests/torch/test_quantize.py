"""quantize_static, quantize_dynamic, weight_bytes and state_dict_bytes.

Sizes are checked against hand counts and against the file ``torch.save`` writes; a
quantized convolution against ``torch.nn.functional.conv2d`` on the dequantized input and
weights (the integer kernel must compute the same thing up to one output step); a
quantized network against its float original; and planted bugs (a byte count that ignores
the element size, a calibration on the wrong data) must be caught by those checks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import cnnlib.torch as ct
from cnnlib.torch.quantize import (
    _tensor_bytes,
    quantize_dynamic,
    quantize_static,
    state_dict_bytes,
    weight_bytes,
)

# ------------------------------------------------------------------------ sizes


def check_linear_sizes(count):
    """The worked example: a 100x1000 dense layer in float32 and float64, and a batch norm."""
    lin = nn.Linear(1000, 100)
    assert count(lin) == 4 * (100 * 1000 + 100) == 400_400
    assert count(lin.double()) == 800_800
    # weight, bias, running mean and variance of 8 channels in float32, one int64 counter
    assert count(nn.BatchNorm2d(8)) == 4 * 4 * 8 + 8


def test_weight_bytes_worked_examples():
    check_linear_sizes(weight_bytes)


def test_a_byte_count_that_ignores_the_element_size_is_caught():
    def numel_only(model):  # planted bug: one byte per number, whatever its dtype
        return sum(v.numel() for v in model.state_dict().values())

    with pytest.raises(AssertionError):
        check_linear_sizes(numel_only)


def test_weight_bytes_of_quantized_layers_worked_examples():
    torch.manual_seed(0)
    dynamic = quantize_dynamic(nn.Sequential(nn.Linear(1000, 100)))
    # int8 weights, their float64 scale and int64 zero point, float32 bias, and the
    # layer's own float32 scale and int64 zero point
    assert weight_bytes(dynamic) == 100_000 + 16 + 400 + 4 + 8
    static = quantize_static(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()),
                             torch.randn(16, 3, 6, 6))
    # input scale (float32) and zero point (int64); int8 weights with one float64 scale
    # and one int64 zero point per output channel; float32 bias; output scale, zero point
    assert weight_bytes(static) == 12 + (8 * 3 * 9 + 8 * 8 + 8 * 8) + 8 * 4 + 12


def test_quantized_tensor_bytes_per_tensor_and_per_channel():
    values = torch.randn(4, 5)
    per_tensor = torch.quantize_per_tensor(values, 0.1, 3, torch.qint8)
    per_channel = torch.quantize_per_channel(values, torch.rand(4, dtype=torch.float64) + 0.1,
                                             torch.zeros(4, dtype=torch.int64), 0, torch.qint8)
    assert _tensor_bytes(per_tensor) == 20 + 16
    assert _tensor_bytes(per_channel) == 20 + 4 * 8 + 4 * 8
    assert _tensor_bytes(torch.float32) == 0  # a setting, not data


def test_state_dict_bytes_is_the_size_of_the_saved_file(tmp_path):
    for model in (nn.Linear(300, 20), nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)),
                  quantize_dynamic(nn.Sequential(nn.Linear(50, 7)))):
        path = tmp_path / "weights.pt"
        torch.save(model.state_dict(), path)
        assert state_dict_bytes(model) == path.stat().st_size
        assert state_dict_bytes(model) > weight_bytes(model)


def test_int8_weights_take_about_a_quarter_of_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 64, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    q = quantize_static(model, torch.randn(32, 16, 8, 8))
    ratio = weight_bytes(q) / weight_bytes(model)
    assert 0.25 < ratio < 0.30  # scales, zero points and float32 biases add a little
    assert state_dict_bytes(q) < state_dict_bytes(model) / 3


def test_sizes_reject_what_is_not_a_module():
    for f in (weight_bytes, state_dict_bytes):
        with pytest.raises(TypeError, match="nn.Module"):
            f({"w": torch.zeros(3)})


# ------------------------------------------------------------ static quantization


def _input_qparams(q):
    """Scale and zero point with which the graph quantizes its input."""
    for node in q.graph.nodes:
        if node.op == "call_function" and node.target is torch.quantize_per_tensor:
            scale, zero_point = (getattr(q, a.target) for a in node.args[1:3])
            return float(scale), int(zero_point)
    raise AssertionError("the graph quantizes no input")


@settings(max_examples=25, deadline=None)
@given(c_in=st.integers(1, 4), c_out=st.integers(1, 6), k=st.integers(1, 3),
       stride=st.integers(1, 2), padding=st.integers(0, 1), size=st.integers(3, 7),
       relu=st.booleans(), seed=st.integers(0, 2**16))
def test_a_quantized_conv_computes_conv2d_of_its_int8_values(c_in, c_out, k, stride, padding,
                                                             size, relu, seed):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding)]
    model = nn.Sequential(*layers, *([nn.ReLU()] if relu else []))
    x = torch.randn(8, c_in, size, size)
    q = quantize_static(model, x)
    (conv,) = [m for m in q.modules() if type(m).__name__ in ("Conv2d", "ConvReLU2d")
               and hasattr(m, "scale")]
    s_in, z_in = _input_qparams(q)
    x_int8 = torch.quantize_per_tensor(x, s_in, z_in, torch.quint8).dequantize()
    expected = F.conv2d(x_int8, conv.weight().dequantize(), conv.bias(), stride=stride,
                        padding=padding)
    if relu:
        expected = F.relu(expected)
    expected = torch.quantize_per_tensor(expected, conv.scale, conv.zero_point,
                                         torch.quint8).dequantize()
    with torch.no_grad():
        got = q(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    # the integer kernel rounds once more (its requantization multiplier): one step at most
    assert (got - expected).abs().max().item() <= conv.scale * 1.001


def check_close_to_float(quantized, model, x):
    """Scores of the int8 network within a few percent of the float network's."""
    with torch.no_grad():
        want, got = model(x), quantized(x)
    error = (got - want).norm() / want.norm()
    assert error < 0.05, f"relative error {error:.3f}"


def small_net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
                         nn.Conv2d(8, 16, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


def test_a_quantized_network_stays_close_to_the_float_one():
    model = small_net()
    with torch.no_grad():  # batch norm statistics that are not the identity
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    x = torch.rand(64, 1, 12, 12)
    q = quantize_static(model, x)
    check_close_to_float(q, model, x)
    kinds = {type(m).__name__ for m in q.modules()}
    assert "BatchNorm2d" not in kinds  # folded into the convolution before it
    assert {"ConvReLU2d", "Linear"} <= kinds


def test_calibrating_on_the_wrong_data_is_caught():
    model = small_net()
    x = torch.rand(64, 1, 12, 12)
    wrong = quantize_static(model, x / 50)  # planted bug: ranges measured on faint images
    with pytest.raises(AssertionError, match="relative error"):
        check_close_to_float(wrong, model, x)


def test_quantize_static_leaves_the_model_alone_and_accepts_numpy():
    model = small_net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize_static(model, np.random.default_rng(0).random((16, 1, 12, 12)))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not q.training


def test_quantize_static_rejects_bad_arguments():
    model = small_net()
    with pytest.raises(ValueError, match="at least one input"):
        quantize_static(model, torch.zeros(0, 1, 12, 12))
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_static(model, torch.full((2, 1, 12, 12), float("nan")))
    with pytest.raises(ValueError, match="backend"):
        quantize_static(model, torch.rand(2, 1, 12, 12), backend="tpu")
    with pytest.raises(ValueError, match="batch_size"):
        quantize_static(model, torch.rand(2, 1, 12, 12), batch_size=0)
    with pytest.raises(ValueError, match="float32"):
        quantize_static(small_net().double(), torch.rand(2, 1, 12, 12))
    with pytest.raises(TypeError, match="nn.Module"):
        quantize_static(lambda x: x, torch.rand(2, 1, 12, 12))


# ----------------------------------------------------------- dynamic quantization


@settings(max_examples=20, deadline=None)
@given(n_in=st.integers(1, 40), n_out=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_a_dynamic_linear_computes_linear_of_its_int8_weights(n_in, n_out, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(n_in, n_out))
    q = quantize_dynamic(model)
    weight, bias = q[0]._packed_params._weight_bias()
    x = torch.randn(5, n_in)
    # the input is quantized with its own range, batch by batch: to 8 bits (7 on x86)
    expected = F.linear(x, weight.dequantize(), bias)
    with torch.no_grad():
        got = q(x)
    input_step = (x.max().clamp(min=0) - x.min().clamp(max=0)) / 127
    bound = input_step / 2 * weight.dequantize().abs().sum(1).max() + 1e-5
    assert (got - expected).abs().max() <= bound * 1.01
    assert type(model[0]) is nn.Linear  # the original is untouched


def test_quantize_dynamic_only_touches_the_asked_layers():
    model = small_net()
    q = quantize_dynamic(model)
    assert type(q[0]) is nn.Conv2d and type(q[-1]).__name__ == "Linear"
    assert q[-1].__module__.startswith("torch.ao.nn.quantized.dynamic")
    with pytest.raises(TypeError, match="layers"):
        quantize_dynamic(model, layers=nn.Linear)


def test_quantizing_and_running_are_silent():
    model = small_net()
    x = torch.rand(8, 1, 12, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = quantize_static(model, x)
        d = quantize_dynamic(model)
        with torch.no_grad():
            q(x)
            d(x)


def test_the_names_are_exported_lazily():
    assert ct.quantize_static is quantize_static
    assert ct.weight_bytes is weight_bytes
