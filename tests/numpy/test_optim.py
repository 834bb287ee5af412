"""Tests of cnnlib.numpy.optim: update rules against hand-computed steps and torch.optim."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from cnnlib.numpy import adam, sgd, sgd_momentum

# --- worked examples -------------------------------------------------------------------


def test_sgd_worked_example():
    w = np.array([1.0, -2.0])
    next_w, config = sgd(w, np.array([0.5, 1.0]), {"learning_rate": 0.1})
    np.testing.assert_allclose(next_w, [0.95, -2.1])
    assert config["learning_rate"] == 0.1
    # the default learning rate is 1e-2
    next_w, config = sgd(w, np.array([1.0, 1.0]))
    np.testing.assert_allclose(next_w, [0.99, -2.01])
    # weight decay adds wd * w to the gradient: 0.5 + 0.1 * 1 = 0.6
    next_w, _ = sgd(w, np.array([0.5, 1.0]), {"learning_rate": 1.0, "weight_decay": 0.1})
    np.testing.assert_allclose(next_w, [1.0 - 0.6, -2.0 - 0.8])


def test_sgd_momentum_worked_example():
    # constant gradient 1, momentum 0.5, lr 0.1: v = 1, 1.5, 1.75; w = 0 - 0.1, -0.25, -0.425
    w, config = np.array([0.0]), {"learning_rate": 0.1, "momentum": 0.5}
    expected_v, expected_w = [1.0, 1.5, 1.75], [-0.1, -0.25, -0.425]
    for v, ww in zip(expected_v, expected_w):
        w, config = sgd_momentum(w, np.array([1.0]), config)
        np.testing.assert_allclose(config["velocity"], [v])
        np.testing.assert_allclose(w, [ww])


def test_adam_worked_example():
    # the first step of Adam moves each weight by lr * sign(g) (up to epsilon): the bias
    # corrections make m_hat = g and v_hat = g**2
    w = np.array([1.0, 1.0, 1.0])
    g = np.array([1e-3, -5.0, 200.0])
    next_w, config = adam(w, g, {"learning_rate": 0.01, "epsilon": 0.0})
    np.testing.assert_allclose(next_w, [0.99, 1.01, 0.99], rtol=1e-14)
    assert config["t"] == 1
    np.testing.assert_allclose(config["m"], 0.1 * g)
    np.testing.assert_allclose(config["v"], 0.001 * g**2)
    # second step with the same gradient: m = 0.19 g, v = 0.001999 g**2; corrections
    # 1 - 0.81 = 0.19 and 1 - 0.998001 = 0.001999 give m_hat = g, v_hat = g**2 again
    next_w, config = adam(next_w, g, config)
    np.testing.assert_allclose(next_w, [0.98, 1.02, 0.98], rtol=1e-12)
    assert config["t"] == 2


# --- agreement with torch.optim --------------------------------------------------------

def _run_torch(opt_cls, w0, grads, **kwargs):
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = opt_cls([p], **kwargs)
    history = []
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        history.append(p.detach().numpy().copy())
    return history


settings_common = dict(shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
                       seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 6))


@settings(max_examples=20)
@given(lr=st.sampled_from([1e-3, 0.1, 1.0]), weight_decay=st.sampled_from([0.0, 1e-2]),
       **settings_common)
def test_sgd_matches_torch(shape, seed, steps, lr, weight_decay):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) for _ in range(steps)]
    expected = _run_torch(torch.optim.SGD, w0, grads, lr=lr, weight_decay=weight_decay)
    w, config = w0, {"learning_rate": lr, "weight_decay": weight_decay}
    for g, e in zip(grads, expected):
        w, config = sgd(w, g, config)
        np.testing.assert_allclose(w, e, rtol=1e-13, atol=1e-15)


@settings(max_examples=25)
@given(lr=st.sampled_from([1e-3, 0.1]), momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
       weight_decay=st.sampled_from([0.0, 1e-2]), nesterov=st.booleans(), **settings_common)
def test_sgd_momentum_matches_torch(shape, seed, steps, lr, momentum, weight_decay, nesterov):
    if nesterov and momentum == 0:
        nesterov = False  # torch requires momentum > 0 for Nesterov
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) for _ in range(steps)]
    expected = _run_torch(torch.optim.SGD, w0, grads, lr=lr, momentum=momentum,
                          weight_decay=weight_decay, nesterov=nesterov, dampening=0)
    w = w0
    config = {"learning_rate": lr, "momentum": momentum, "weight_decay": weight_decay,
              "nesterov": nesterov}
    for g, e in zip(grads, expected):
        w, config = sgd_momentum(w, g, config)
        np.testing.assert_allclose(w, e, rtol=1e-12, atol=1e-14)


@settings(max_examples=25)
@given(lr=st.sampled_from([1e-3, 0.05]), betas=st.sampled_from([(0.9, 0.999), (0.5, 0.9),
                                                                (0.0, 0.99)]),
       eps=st.sampled_from([1e-8, 1e-3]), weight_decay=st.sampled_from([0.0, 1e-2]),
       grad_scale=st.sampled_from([1e-4, 1.0, 1e3]), **settings_common)
def test_adam_matches_torch(shape, seed, steps, lr, betas, eps, weight_decay, grad_scale):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(shape)
    grads = [grad_scale * rng.standard_normal(shape) for _ in range(steps)]
    expected = _run_torch(torch.optim.Adam, w0, grads, lr=lr, betas=betas, eps=eps,
                          weight_decay=weight_decay)
    w = w0
    config = {"learning_rate": lr, "beta1": betas[0], "beta2": betas[1], "epsilon": eps,
              "weight_decay": weight_decay}
    for g, e in zip(grads, expected):
        w, config = adam(w, g, config)
        np.testing.assert_allclose(w, e, rtol=1e-12, atol=1e-14)


def test_adam_matches_torch_over_many_steps_on_a_quadratic():
    # gradients that depend on w, as in training: minimize 0.5 * |A w - b|^2
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 4))
    b = rng.standard_normal(6)
    w0 = rng.standard_normal(4)
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.Adam([p], lr=0.05)
    w, config = w0, {"learning_rate": 0.05}
    for _ in range(100):
        opt.zero_grad()
        loss = 0.5 * torch.sum((torch.tensor(a) @ p - torch.tensor(b)) ** 2)
        loss.backward()
        opt.step()
        w, config = adam(w, a.T @ (a @ w - b), config)
    np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert config["t"] == 100


# --- purity, dtypes --------------------------------------------------------------------

@pytest.mark.parametrize("rule", [sgd, sgd_momentum, adam])
def test_nothing_is_modified_in_place(rule):
    w = np.array([1.0, 2.0])
    dw = np.array([0.5, -0.5])
    config = {"learning_rate": 0.1}
    w1, config1 = rule(w, dw, config)
    np.testing.assert_array_equal(w, [1.0, 2.0])
    np.testing.assert_array_equal(dw, [0.5, -0.5])
    assert config == {"learning_rate": 0.1}
    assert config1 is not config
    if rule is not sgd:
        state = {k: v.copy() for k, v in config1.items() if isinstance(v, np.ndarray)}
        rule(w1, dw, config1)
        for k, v in state.items():
            np.testing.assert_array_equal(config1[k], v)


@pytest.mark.parametrize("rule", [sgd, sgd_momentum, adam])
def test_float32_stays_float32(rule):
    w = np.ones(3, dtype=np.float32)
    next_w, config = rule(w, np.ones(3, dtype=np.float32))
    next_w, config = rule(next_w, np.ones(3, dtype=np.float32), config)
    assert next_w.dtype == np.float32
    assert all(v.dtype == np.float32 for v in config.values() if isinstance(v, np.ndarray))


def test_defaults_are_pytorch_and_cs231n_values():
    _, c = sgd_momentum(np.zeros(1), np.zeros(1))
    assert (c["learning_rate"], c["momentum"]) == (1e-2, 0.9)
    _, c = adam(np.zeros(1), np.zeros(1))
    assert (c["learning_rate"], c["beta1"], c["beta2"], c["epsilon"]) == (1e-3, 0.9, 0.999,
                                                                          1e-8)


# --- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("rule", [sgd, sgd_momentum, adam])
def test_bad_inputs(rule):
    w = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"dw has shape \(3, 2\) but w has shape \(2, 3\)"):
        rule(w, np.ones((3, 2)))
    with pytest.raises(TypeError, match="dw has dtype float32 but w has dtype float64"):
        rule(w, np.ones((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="w must have a floating dtype"):
        rule(np.ones((2, 3), dtype=int), np.ones((2, 3), dtype=int))
    with pytest.raises(ValueError, match=r"unknown config keys \['lr'\]"):
        rule(w, w, {"lr": 0.1})
    with pytest.raises(ValueError, match="learning_rate"):
        rule(w, w, {"learning_rate": -1.0})
    with pytest.raises(ValueError, match="learning_rate"):
        rule(w, w, {"learning_rate": math.nan})
    with pytest.raises(TypeError, match=r"config\['learning_rate'\] must be a real number"):
        rule(w, w, {"learning_rate": "0.1"})
    with pytest.raises(TypeError, match="config must be a dict"):
        rule(w, w, 0.1)
    bad = np.ones((2, 3))
    bad[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"dw contains NaN or infinity \(shape \(2, 3\)\)"):
        rule(w, bad)
    bad[1, 2] = math.inf
    with pytest.raises(ValueError, match=r"^w contains NaN or infinity"):
        rule(bad, w)


def test_state_from_another_parameter_is_rejected():
    _, config = sgd_momentum(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match=r"velocity.*shape \(2, 3\).*another parameter"):
        sgd_momentum(np.ones((2, 3)), np.ones((2, 3)), config)
    _, config = adam(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match=r"config\['m'\].*another parameter"):
        adam(np.ones(4), np.ones(4), config)
    with pytest.raises(TypeError, match=r"config\['v'\] has dtype float32"):
        adam(np.ones(3), np.ones(3), {"v": np.ones(3, dtype=np.float32)})
    with pytest.raises(ValueError, match="beta2"):
        adam(np.ones(3), np.ones(3), {"beta2": 1.0})
    with pytest.raises(ValueError, match=r"config\['t'\]"):
        adam(np.ones(3), np.ones(3), {"t": -1})
    with pytest.raises(TypeError, match="nesterov"):
        sgd_momentum(np.ones(3), np.ones(3), {"nesterov": 1})
