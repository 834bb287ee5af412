"""Layer classes: each equals its functional op exactly and its torch.nn twin in float64.

The functional ops have their own four-way tests; here the point is that a class adds
bookkeeping and no math (so it must reproduce its op bit for bit), that it wires its
parameters like PyTorch (so the twin agrees), and that Sequential chains gradients
correctly (checked against a numerical gradient).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnlib.numpy as cn
from cnnlib.numpy import layers as L


@pytest.fixture(autouse=True, scope="module")
def torch_float64():
    """Twins are built in float64; restore the global default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def to_torch_state(layer):
    return {k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()}


class TorchGeM(torch.nn.Module):
    """The usual PyTorch GeM layer, flattened to (N, C)."""

    def __init__(self, p, eps):
        super().__init__()
        self.p = torch.nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x):
        pooled = x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3))
        return pooled.pow(1.0 / self.p)


class TorchMinPool(torch.nn.Module):
    def __init__(self, k, s, p):
        super().__init__()
        self.args = (k, s, p)

    def forward(self, x):
        return -torch.nn.functional.max_pool2d(-x, *self.args)


def compare_with_twin(layer, twin, x, *, training, rng, atol=1e-10):
    """Forward, backward and parameter gradients of a layer against its torch twin."""
    missing = twin.load_state_dict(to_torch_state(layer), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    twin.train(training)
    twin.zero_grad(set_to_none=True)
    out = layer(x, training=training)
    xt = torch.tensor(x, requires_grad=True)
    out_t = twin(xt)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-9, atol=atol)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-8, atol=atol)
    tgrads = {k: p.grad.numpy() for k, p in twin.named_parameters()}
    assert set(layer.grads) == set(tgrads)
    for k, g in layer.grads.items():
        np.testing.assert_allclose(g, tgrads[k], rtol=1e-8, atol=atol, err_msg=k)
    # Buffers (running statistics) evolve alike.
    for k, v in twin.state_dict().items():
        np.testing.assert_allclose(layer.state_dict()[k], v.numpy(), rtol=1e-9, atol=atol,
                                   err_msg=k)


# Each case: layer factory (dtype -> layer), torch twin factory, input shape, and the
# functional op the layer must reproduce exactly: (x, params) -> out, and
# (dout, cache) -> (dx, grads dict).
def _conv_case(cin, cout, k, stride, padding, dilation, bias):
    return (
        lambda dt: cn.Conv2d(cin, cout, k, stride, padding, dilation, bias=bias, rng=1,
                             dtype=dt),
        lambda: torch.nn.Conv2d(cin, cout, k, stride, padding, dilation, bias=bias),
        lambda x, p: cn.conv2d_forward(x, p["weight"], p.get("bias"), stride=stride,
                                       padding=padding, dilation=dilation),
        lambda d, c: _named(cn.conv2d_backward(d, c), ("weight", "bias")),
    )


def _named(grads, names):
    dx, *rest = grads
    return dx, {n: g for n, g in zip(names, rest) if g is not None}


def _no_params(backward):
    return lambda d, c: (backward(d, c), {})


CASES = {
    "conv": (_conv_case(3, 4, 3, 1, 1, 1, True), (2, 3, 7, 6)),
    "conv-stride-dilation-nobias": (_conv_case(2, 3, (3, 2), (2, 1), 0, (1, 2), False),
                                    (2, 2, 9, 8)),
    "conv-same": (_conv_case(2, 2, 4, 1, "same", 1, True), (1, 2, 5, 6)),
    "conv-transpose": ((
        lambda dt: cn.ConvTranspose2d(3, 2, 3, 2, 1, 1, rng=2, dtype=dt),
        lambda: torch.nn.ConvTranspose2d(3, 2, 3, 2, 1, 1),
        lambda x, p: cn.conv_transpose2d_forward(x, p["weight"], p["bias"], stride=2,
                                                 padding=1, output_padding=1),
        lambda d, c: _named(cn.conv_transpose2d_backward(d, c), ("weight", "bias")),
    ), (2, 3, 4, 5)),
    "maxpool-overlap": ((
        lambda dt: cn.MaxPool2d(3, 2, 1),
        lambda: torch.nn.MaxPool2d(3, 2, 1),
        lambda x, p: cn.maxpool2d_forward(x, kernel_size=3, stride=2, padding=1),
        _no_params(cn.maxpool2d_backward),
    ), (2, 3, 7, 8)),
    "avgpool": ((
        lambda dt: cn.AvgPool2d((2, 3), padding=1),
        lambda: torch.nn.AvgPool2d((2, 3), padding=1),
        lambda x, p: cn.avgpool2d_forward(x, kernel_size=(2, 3), padding=1),
        _no_params(cn.avgpool2d_backward),
    ), (2, 2, 6, 7)),
    "minpool": ((
        lambda dt: cn.MinPool2d(2, 3),
        lambda: TorchMinPool(2, 3, 0),
        lambda x, p: cn.minpool2d_forward(x, kernel_size=2, stride=3),
        _no_params(cn.minpool2d_backward),
    ), (1, 2, 8, 7)),
    "global-avg": ((
        lambda dt: cn.GlobalAvgPool(),
        lambda: torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()),
        lambda x, p: cn.global_avgpool_forward(x),
        _no_params(cn.global_avgpool_backward),
    ), (3, 4, 5, 3)),
    "global-max": ((
        lambda dt: cn.GlobalMaxPool(),
        lambda: torch.nn.Sequential(torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten()),
        lambda x, p: cn.global_maxpool_forward(x),
        _no_params(cn.global_maxpool_backward),
    ), (3, 4, 5, 3)),
    "gem": ((
        lambda dt: cn.GeMPool(2.5, 1e-6, dtype=dt),
        lambda: TorchGeM(2.5, 1e-6),
        lambda x, p: cn.gem_pool_forward(x, p["p"], eps=1e-6),
        lambda d, c: _named(cn.gem_pool_backward(d, c), ("p",)),
    ), (2, 3, 4, 5)),
    "relu": ((lambda dt: cn.ReLU(), torch.nn.ReLU, lambda x, p: cn.relu_forward(x),
              _no_params(cn.relu_backward)), (2, 3, 4, 4)),
    "leaky-relu": ((lambda dt: cn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2),
                    lambda x, p: cn.leaky_relu_forward(x, negative_slope=0.2),
                    _no_params(cn.leaky_relu_backward)), (2, 5)),
    "elu": ((lambda dt: cn.ELU(0.7), lambda: torch.nn.ELU(0.7),
             lambda x, p: cn.elu_forward(x, alpha=0.7), _no_params(cn.elu_backward)),
            (2, 3, 4)),
    "sigmoid": ((lambda dt: cn.Sigmoid(), torch.nn.Sigmoid, lambda x, p: cn.sigmoid_forward(x),
                 _no_params(cn.sigmoid_backward)), (4, 6)),
    "tanh": ((lambda dt: cn.Tanh(), torch.nn.Tanh, lambda x, p: cn.tanh_forward(x),
              _no_params(cn.tanh_backward)), (4, 2, 3, 3)),
    "flatten": ((lambda dt: cn.Flatten(), torch.nn.Flatten, lambda x, p: cn.flatten_forward(x),
                 _no_params(cn.flatten_backward)), (2, 3, 4, 5)),
    "linear": ((
        lambda dt: cn.Linear(7, 4, rng=3, dtype=dt),
        lambda: torch.nn.Linear(7, 4),
        lambda x, p: cn.linear_forward(x, p["weight"], p["bias"]),
        lambda d, c: _named(cn.linear_backward(d, c), ("weight", "bias")),
    ), (5, 7)),
    "linear-nobias": ((
        lambda dt: cn.Linear(3, 2, bias=False, rng=3, dtype=dt),
        lambda: torch.nn.Linear(3, 2, bias=False),
        lambda x, p: cn.linear_forward(x, p["weight"]),
        lambda d, c: _named(cn.linear_backward(d, c), ("weight", "bias")),
    ), (4, 3)),
    "dropout-eval": ((
        lambda dt: cn.Dropout(0.4, rng=0),
        lambda: torch.nn.Dropout(0.4),
        lambda x, p: cn.dropout_forward(x, p=0.4, training=False),
        _no_params(cn.dropout_backward),
    ), (3, 8)),
    "batchnorm": ((
        lambda dt: cn.BatchNorm2d(3, dtype=dt),
        lambda: torch.nn.BatchNorm2d(3),
        lambda x, p: cn.batchnorm2d_forward(x, p["weight"], p["bias"], np.zeros(3),
                                            np.ones(3), training=False)[:2],
        lambda d, c: _named(cn.batchnorm2d_backward(d, c), ("weight", "bias")),
    ), (4, 3, 2, 3)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_layer_equals_functional_op(name):
    (make, _, fwd, bwd), shape = CASES[name]
    rng = np.random.default_rng(0)
    layer = make(np.float64)
    x = rng.standard_normal(shape)
    out = layer(x)  # evaluation mode, so dropout and batch norm are deterministic
    ref_out, ref_cache = fwd(x, layer.params)
    np.testing.assert_array_equal(out, ref_out)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    ref_dx, ref_grads = bwd(dout, ref_cache)
    np.testing.assert_array_equal(dx, ref_dx)
    assert set(layer.grads) == set(ref_grads) == set(layer.params)
    for k in ref_grads:
        np.testing.assert_array_equal(layer.grads[k], ref_grads[k])


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
# Dropout's random masks cannot match torch's; its training mode is tested separately.
@pytest.mark.parametrize("name, training", [(n, t) for n in CASES for t in (False, True)
                                            if not (n == "dropout-eval" and t)])
def test_layer_matches_torch_twin(name, training):
    (make, make_twin, _, _), shape = CASES[name]
    rng = np.random.default_rng(1)
    layer, twin = make(np.float64), make_twin()
    x = rng.standard_normal(shape)
    if name == "gem":
        x = np.abs(x) + 0.1  # GeM is meant for non-negative (post-ReLU) features
    compare_with_twin(layer, twin, x, training=training, rng=rng)


def test_batchnorm_running_stats_follow_torch_over_steps():
    rng = np.random.default_rng(2)
    layer, twin = cn.BatchNorm2d(2, momentum=0.3, dtype=np.float64), torch.nn.BatchNorm2d(
        2, momentum=0.3)
    # Learned scale and shift that are not the identity.
    layer.load_state_dict({"weight": np.array([1.5, -0.5]), "bias": np.array([0.2, 0.1])},
                          strict=False)
    for _ in range(3):
        compare_with_twin(layer, twin, rng.standard_normal((3, 2, 4, 4)) * 2 + 1,
                          training=True, rng=rng)
    assert int(layer.buffers["num_batches_tracked"]) == 3
    # Evaluation uses the running statistics accumulated above.
    compare_with_twin(layer, twin, rng.standard_normal((2, 2, 3, 3)), training=False, rng=rng)


def test_dropout_training_uses_its_generator():
    x = np.ones((50, 40))
    a = cn.Dropout(0.3, rng=7)(x, training=True)
    mask_ref, _ = cn.dropout_forward(x, p=0.3, training=True, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, mask_ref)
    layer = cn.Dropout(0.3, rng=7)
    layer(x, training=True)
    second = layer(x, training=True)
    assert not np.array_equal(second, a)  # a new mask every call
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), second)
    np.testing.assert_array_equal(cn.Dropout(0.3, rng=7)(x), x)  # evaluation: identity


@settings(max_examples=25)
@given(n=st.integers(1, 2), cin=st.integers(1, 3), cout=st.integers(1, 3),
       h=st.integers(3, 9), w=st.integers(3, 9), k=st.integers(1, 3), s=st.integers(1, 4),
       p=st.integers(0, 1), bias=st.booleans())
def test_conv2d_layer_matches_torch_over_shapes(n, cin, cout, h, w, k, s, p, bias):
    layer = cn.Conv2d(cin, cout, k, s, p, bias=bias, rng=0, dtype=np.float64)
    twin = torch.nn.Conv2d(cin, cout, k, s, p, bias=bias)
    rng = np.random.default_rng(0)
    compare_with_twin(layer, twin, rng.standard_normal((n, cin, h, w)), training=True, rng=rng)


@settings(max_examples=25)
@given(kind=st.sampled_from(["max", "avg"]), h=st.integers(2, 9), w=st.integers(2, 9),
       k=st.integers(1, 3), s=st.integers(1, 4), p=st.integers(0, 1))
def test_pool_layers_match_torch_over_shapes(kind, h, w, k, s, p):
    if 2 * p > k or k > min(h, w) + 2 * p:
        return
    layer = (cn.MaxPool2d if kind == "max" else cn.AvgPool2d)(k, s, p)
    twin = (torch.nn.MaxPool2d if kind == "max" else torch.nn.AvgPool2d)(k, s, p)
    rng = np.random.default_rng(0)
    compare_with_twin(layer, twin, rng.standard_normal((2, 2, h, w)), training=True, rng=rng)


# --------------------------------------------------------------------------- init

@pytest.mark.parametrize("make, make_twin", [
    (lambda: cn.Conv2d(16, 32, 3, rng=0), lambda: torch.nn.Conv2d(16, 32, 3)),
    (lambda: cn.Linear(300, 200, rng=0), lambda: torch.nn.Linear(300, 200)),
    (lambda: cn.ConvTranspose2d(8, 24, 4, rng=0), lambda: torch.nn.ConvTranspose2d(8, 24, 4)),
])
def test_default_init_matches_pytorch(make, make_twin):
    """Uniform on +-1/sqrt(fan_in) with PyTorch's fan_in, for weights and biases."""
    torch.manual_seed(0)
    layer, twin = make(), make_twin()
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(twin.weight)
    bound = 1 / np.sqrt(fan_in)
    for name, p in twin.named_parameters():
        ours, theirs = layer.params[name], p.detach().numpy()
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound
    # The weights are many draws: their extremes and spread pin the distribution.
    w = layer.params["weight"]
    assert np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)  # std of U(-b, b)
    assert abs(w.mean()) < 0.05 * bound


def test_seed_determinism_and_dtype():
    a, b, c = cn.Conv2d(2, 3, 3, rng=5), cn.Conv2d(2, 3, 3, rng=5), cn.Conv2d(2, 3, 3, rng=6)
    np.testing.assert_array_equal(a.params["weight"], b.params["weight"])
    assert not np.array_equal(a.params["weight"], c.params["weight"])
    x = np.zeros((1, 2, 5, 5), np.float32)
    assert a(x).dtype == np.float32
    a.astype(np.float64)
    assert a.params["weight"].dtype == np.float64 and a(x.astype(np.float64)).dtype == np.float64
    with pytest.raises(TypeError, match="dtype"):
        cn.Linear(2, 2, dtype=np.int32)
    with pytest.raises(TypeError, match="rng"):
        cn.Linear(2, 2, rng="seed")


# --------------------------------------------------------------------------- Sequential

def tiny_net(dtype=np.float64):
    return cn.Sequential(
        cn.Conv2d(2, 3, 3, padding=1, bias=False, rng=0, dtype=dtype),  # BN has the bias
        cn.BatchNorm2d(3, dtype=dtype),
        cn.ELU(),
        cn.MaxPool2d(2),
        cn.Conv2d(3, 2, 2, rng=1, dtype=dtype),
        cn.Tanh(),
        cn.Flatten(),
        cn.Linear(2 * 2 * 2, 3, rng=2, dtype=dtype),
    )


def test_sequential_backward_equals_numerical_gradient():
    rng = np.random.default_rng(0)
    net = tiny_net()
    net.load_state_dict({"1.weight": rng.uniform(0.5, 1.5, 3),
                         "1.bias": rng.standard_normal(3)}, strict=False)
    x = rng.standard_normal((2, 2, 6, 6))
    out = net(x, training=True)
    dout = rng.standard_normal(out.shape)
    dx = net.backward(dout)
    grads = net.grads

    def f(_):
        return net(x, training=True)

    num_dx = cn.numerical_gradient(f, x, dout)
    assert cn.rel_error(dx, num_dx) < 1e-6
    for name, p in net.params.items():  # the layers' own arrays: perturbed in place
        num = cn.numerical_gradient(f, p, dout)
        assert cn.rel_error(grads[name], num) < 1e-6, name


@pytest.mark.parametrize("name", list(CASES))
def test_backward_without_dx_stores_the_same_gradients(name):
    """need_dx=False returns None and leaves exactly the gradients of a full backward."""
    (make, _, _, _), shape = CASES[name]
    rng = np.random.default_rng(1)
    layer = make(np.float64)
    x = rng.standard_normal(shape)
    out = layer(x)
    dout = rng.standard_normal(out.shape)
    layer.backward(dout)
    full = {k: v.copy() for k, v in layer.grads.items()}
    assert layer.backward(dout, need_dx=False) is None
    assert set(layer.grads) == set(full)
    for k in full:
        np.testing.assert_array_equal(layer.grads[k], full[k])
    with pytest.raises(TypeError, match="need_dx"):
        layer.backward(dout, need_dx=0)


def _record_need_dx(monkeypatch, op_name):
    """Wrap the layers module's ``op_name`` so that each call records its need_dx."""
    asked, op = [], getattr(L, op_name)

    def spy(d, cache, **kwargs):
        asked.append(kwargs.get("need_dx", True))
        return op(d, cache, **kwargs)

    monkeypatch.setattr(L, op_name, spy)
    return asked


def test_sequential_backward_without_dx_skips_only_the_first_layer(monkeypatch):
    """The first conv is asked for no input gradient, every other layer for its own."""
    rng = np.random.default_rng(2)
    net = tiny_net()
    x = rng.standard_normal((2, 2, 6, 6))
    dout = rng.standard_normal(net(x, training=True).shape)
    net.backward(dout)
    full = {k: v.copy() for k, v in net.grads.items()}
    asked = _record_need_dx(monkeypatch, "conv2d_backward")
    assert net.backward(dout, need_dx=False) is None
    assert asked == [True, False]  # backward runs from the last conv to the first
    for k, v in full.items():
        np.testing.assert_array_equal(net.grads[k], v)
    assert cn.Sequential().backward(dout) is dout
    assert cn.Sequential().backward(dout, need_dx=False) is None


def test_sequential_backward_without_dx_passes_it_to_a_first_layer_of_the_users_own():
    """A layer of the user's own built on Module (``_forward``/``_backward``) takes
    need_dx through the interface: with False it keeps its gradients and returns None."""

    class Scale(cn.Module):
        def __init__(self):
            super().__init__()
            self.params = {"weight": np.array([2.0])}

        def _forward(self, x, training):
            return x * self.params["weight"], x

        def _backward(self, dout, x):
            self.calls = getattr(self, "calls", 0) + 1
            return dout * self.params["weight"], {"weight": np.array([np.sum(dout * x)])}

    first = Scale()
    net = cn.Sequential(first, cn.Tanh(), cn.Linear(3, 2, rng=1, dtype=np.float64))
    x = np.random.default_rng(4).standard_normal((5, 3))
    dout = np.ones_like(net(x, training=True))
    dx = net.backward(dout)
    full = {k: v.copy() for k, v in net.grads.items()}
    assert net.backward(dout, need_dx=False) is None and first.calls == 2
    for k, v in full.items():
        np.testing.assert_array_equal(net.grads[k], v)
    assert dx.shape == x.shape


def test_sequential_backward_without_dx_skips_leading_layers_without_parameters(
        monkeypatch):
    """An MLP's leading Flatten is not run backward, its Linear computes no dx, and the
    gradients are those of the full backward."""
    net = cn.Sequential(cn.Flatten(), cn.Linear(12, 5, rng=0, dtype=np.float64), cn.ReLU(),
                        cn.Linear(5, 3, rng=1, dtype=np.float64))
    x = np.random.default_rng(5).standard_normal((4, 3, 2, 2))
    dout = np.ones_like(net(x, training=True))
    net.backward(dout)
    full = {k: v.copy() for k, v in net.grads.items()}
    flatten_calls = []
    monkeypatch.setattr(cn.Flatten, "backward", lambda self, d, **kw: flatten_calls.append(1))
    asked = _record_need_dx(monkeypatch, "linear_backward")
    assert net.backward(dout, need_dx=False) is None
    assert flatten_calls == [] and asked == [True, False]
    for k, v in full.items():
        np.testing.assert_array_equal(net.grads[k], v)
    no_params = cn.Sequential(cn.Flatten(), cn.ReLU())
    no_params(x)
    assert no_params.backward(np.ones((4, 12)), need_dx=False) is None


def test_sequential_matches_torch_twin():
    net = tiny_net()
    twin = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1, bias=False), torch.nn.BatchNorm2d(3), torch.nn.ELU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(3, 2, 2), torch.nn.Tanh(), torch.nn.Flatten(),
        torch.nn.Linear(8, 3))
    rng = np.random.default_rng(3)
    for training in (True, True, False):
        compare_with_twin(net, twin, rng.standard_normal((4, 2, 6, 6)), training=training,
                          rng=rng)


def test_sequential_names_counts_and_state_dict_round_trip():
    net = tiny_net(np.float32)
    twin_keys = ["0.weight", "1.weight", "1.bias", "1.running_mean",
                 "1.running_var", "1.num_batches_tracked", "4.weight", "4.bias", "7.weight",
                 "7.bias"]
    assert sorted(net.state_dict()) == sorted(twin_keys)
    assert list(net.params) == ["0.weight", "1.weight", "1.bias", "4.weight",
                                "4.bias", "7.weight", "7.bias"]
    # 2*3*9, 3+3, 3*2*4+2, 8*3+3
    assert net.parameters() == 54 + 6 + 26 + 27
    other = tiny_net(np.float32)
    other.load_state_dict({k: v + 1 for k, v in net.state_dict().items()})
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v + 1)
        assert other.state_dict()[k].dtype == v.dtype
    with pytest.raises(KeyError, match="missing keys"):
        other.load_state_dict({"0.weight": net.params["0.weight"]})
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict({**net.state_dict(), "7.bias": np.zeros(4)})


def test_sequential_container_behaviour_and_errors():
    net = tiny_net()
    assert len(net) == 8 and isinstance(net[0], cn.Conv2d)
    assert isinstance(net[:3], cn.Sequential) and len(net[:3]) == 3
    assert [type(m).__name__ for m in net][-1] == "Linear"
    relu = cn.ReLU()
    with pytest.raises(ValueError, match="twice"):
        cn.Sequential(relu, relu)
    with pytest.raises(TypeError, match="layer 1"):
        cn.Sequential(cn.ReLU(), torch.nn.ReLU())
    with pytest.raises(RuntimeError, match="before forward"):
        cn.Linear(2, 2).backward(np.zeros((1, 2), np.float32))
    with pytest.raises(TypeError, match="training"):
        net(np.zeros((1, 2, 6, 6)), training="yes")


def test_repr_matches_pytorch():
    ours = cn.Sequential(cn.Conv2d(1, 6, 5, rng=0), cn.Tanh(), cn.AvgPool2d(2), cn.Flatten(),
                         cn.Linear(6 * 14 * 14, 10, rng=0), cn.ReLU(), cn.Sigmoid())
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5), torch.nn.Tanh(),
                                 torch.nn.AvgPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(6 * 14 * 14, 10), torch.nn.ReLU(),
                                 torch.nn.Sigmoid())
    assert repr(ours) == repr(theirs)
    assert repr(cn.Conv2d(3, 8, 3, 2, 1, bias=False)) == repr(
        torch.nn.Conv2d(3, 8, 3, 2, 1, bias=False))
    assert repr(cn.LeakyReLU(0.2)) == repr(torch.nn.LeakyReLU(0.2))
    assert repr(cn.ELU(0.5)) == repr(torch.nn.ELU(0.5))


def test_summary_lists_shapes_and_counts():
    text = tiny_net().summary((2, 6, 6))
    lines = text.splitlines()
    assert "(3, 6, 6)" in lines[2] and lines[2].split()[-1] == "54"  # conv 0
    assert "(3, 3, 3)" in lines[5]  # after the max pool
    assert lines[-1].split()[-1] == "113"


def test_layers_module_exports_every_class():
    expected = {"Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "MinPool2d",
                "GlobalAvgPool", "GlobalMaxPool", "GeMPool", "ReLU", "LeakyReLU", "ELU",
                "Sigmoid", "Tanh", "Flatten", "Linear", "Dropout", "BatchNorm2d", "Sequential"}
    assert expected <= set(L.__all__)
    assert all(hasattr(cn, name) for name in expected)
