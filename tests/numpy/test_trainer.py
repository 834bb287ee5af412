"""The NumPy trainer: it reproduces a PyTorch training loop step for step, is seeded,
prints only to stdout, and trains LeNet-5 to >= 98 % on the digits (the acceptance test).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnnlib.numpy as cn
from cnnlib.data import load_digits, random_shift


def small_problem(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 32, 32))
    y = rng.integers(0, 10, n)
    return x, y


@pytest.mark.parametrize("optimizer, torch_opt, config", [
    ("sgd_momentum", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), {"momentum": 0.9}),
    ("adam", lambda p: torch.optim.Adam(p, lr=0.05), {}),
])
def test_one_epoch_equals_pytorch_loop(optimizer, torch_opt, config):
    x, y = small_problem()
    net = cn.lenet5(rng=0, dtype=np.float64)
    twin = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84),
        nn.Tanh(), nn.Linear(84, 10)).double()
    twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in net.state_dict().items()})
    trainer = cn.Trainer(net, optimizer=optimizer, learning_rate=0.05, optim_config=config,
                         batch_size=16, normalize=False, seed=7, progress=False)
    history = trainer.fit(x, y, epochs=1)

    # The same loop in PyTorch, with the trainer's documented shuffle.
    opt = torch_opt(twin.parameters())
    order = np.random.default_rng(7).permutation(len(x))
    losses = []
    for b in range(0, len(x), 16):
        idx = order[b:b + 16]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(twin(torch.from_numpy(x[idx])),
                                           torch.from_numpy(y[idx]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for k, v in twin.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[k], v.numpy(), rtol=1e-7, atol=1e-10,
                                   err_msg=k)
    assert history["train_loss"][0] == pytest.approx(np.mean(losses), rel=1e-9)


class _AlwaysDx:
    """A model that takes need_dx, as the interface says, and computes dx anyway."""

    def __init__(self, net):
        self.net = net

    def forward(self, x, *, training=False):
        return self.net.forward(x, training=training)

    def backward(self, dout, *, need_dx=True):
        return self.net.backward(dout, need_dx=True)

    @property
    def params(self):
        return self.net.params

    @property
    def grads(self):
        return self.net.grads


def test_first_layer_skips_the_image_gradient(monkeypatch):
    """The trainer asks a Sequential for no image gradient (LeNet's first conv then skips
    it), and trains exactly as a model whose backward always computes it."""
    x, y = small_problem()
    asked = []
    first_backward = cn.Conv2d.backward

    def spy(self, dout, **kwargs):
        asked.append(kwargs.get("need_dx", True))
        return first_backward(self, dout, **kwargs)

    monkeypatch.setattr(cn.Conv2d, "backward", spy)
    settings = dict(optimizer="adam", learning_rate=0.01, batch_size=16, normalize=False,
                    seed=3, progress=False)
    net = cn.lenet5(rng=0)
    cn.Trainer(net, **settings).fit(x, y, epochs=1)
    assert asked == [True, False] * 3  # C3 then C1, for each of 3 batches
    full = _AlwaysDx(cn.lenet5(rng=0))
    asked.clear()
    cn.Trainer(full, **settings).fit(x, y, epochs=1)
    assert asked == [True, True] * 3
    for k, v in net.params.items():
        np.testing.assert_array_equal(full.params[k], v)


def test_history_evaluate_and_learning():
    split = load_digits(8)
    net = cn.Sequential(cn.Flatten(), cn.Linear(64, 32, rng=0), cn.ReLU(),
                        cn.Linear(32, 10, rng=1))
    trainer = cn.Trainer(net, learning_rate=3e-3, batch_size=32, seed=0, progress=False)
    history = trainer.fit(split.x_train, split.y_train, epochs=4, x_val=split.x_test,
                          y_val=split.y_test)
    assert set(history) == {"train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
    assert all(len(v) == 4 for v in history.values())
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_acc"][-1] > 0.85
    assert all(s > 0 for s in history["seconds"])
    # evaluate == the loss and accuracy of the normalised forward pass, computed here.
    x_norm = ((split.x_test - trainer.mean) / trainer.std).astype(np.float32)
    scores = net(x_norm)
    loss, _ = cn.softmax_cross_entropy(scores, split.y_test)
    assert trainer.evaluate(split.x_test, split.y_test) == pytest.approx(
        (float(loss), float(np.mean(scores.argmax(1) == split.y_test))), rel=1e-5)
    assert history["val_acc"][-1] == trainer.evaluate(split.x_test, split.y_test)[1]
    # A second fit continues the same history.
    trainer.fit(split.x_train, split.y_train, epochs=1)
    assert len(history["train_loss"]) == 5 and np.isnan(history["val_acc"][-1])


def test_normalisation_statistics():
    rng = np.random.default_rng(0)
    x = rng.random((40, 3, 5, 5)) * np.array([1, 2, 4])[None, :, None, None]
    y = rng.integers(0, 2, 40)
    net = cn.Sequential(cn.Flatten(), cn.Linear(75, 2, rng=0))
    trainer = cn.Trainer(net, seed=0, progress=False)
    trainer.fit(x, y, epochs=1)
    np.testing.assert_allclose(trainer.mean.ravel(), x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(trainer.std.ravel(), x.std(axis=(0, 2, 3)))
    given = cn.Trainer(net, normalize=([0.5, 1, 2], [1, 1, 2]), progress=False)
    expected = net(((x - np.array([0.5, 1, 2])[None, :, None, None])
                    / np.array([1, 1, 2])[None, :, None, None]).astype(np.float32))
    np.testing.assert_allclose(given.predict(x), expected, rtol=1e-6)
    raw = cn.Trainer(net, normalize=False, progress=False)
    np.testing.assert_array_equal(raw.predict(x.astype(np.float32)), net(x.astype(np.float32)))


def test_seeded_runs_repeat_and_augment_is_called():
    x, y = small_problem(40)
    calls = []

    def augment(xb, *, rng):
        calls.append((xb.shape, isinstance(rng, np.random.Generator)))
        return random_shift(xb, 2, rng)

    runs = []
    for seed in (3, 3, 4):
        net = cn.lenet5(rng=0)
        trainer = cn.Trainer(net, augment=augment, batch_size=16, seed=seed, progress=False)
        trainer.fit(x, y, epochs=1)
        runs.append((trainer.history["train_loss"][0], net.params["0.weight"].copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]
    assert [c[0][0] for c in calls[:3]] == [16, 16, 8] and all(c[1] for c in calls)


def test_schedules_set_the_learning_rate():
    x, y = small_problem(16)
    net = cn.Sequential(cn.Flatten(), cn.Linear(1024, 10, rng=0))
    seen = []
    trainer = cn.Trainer(net, optimizer="sgd", learning_rate=0.1, schedule="cosine",
                         batch_size=16, progress=False)
    for _ in range(4):
        trainer.fit(x, y, epochs=1)
        seen.append(trainer.configs["1.weight"]["learning_rate"])
    assert seen == [0.1] * 4  # each fit is its own cosine: epoch 0 of 1 has the full rate
    trainer = cn.Trainer(net, optimizer="sgd", learning_rate=0.1, schedule="cosine",
                         batch_size=16, progress=False)
    rates = []
    trainer._step = lambda rate: rates.append(rate)  # record instead of updating
    trainer.fit(x, y, epochs=4)
    np.testing.assert_allclose(rates, 0.1 * 0.5 * (1 + np.cos(np.pi * np.arange(4) / 4)))
    trainer = cn.Trainer(net, optimizer="sgd", learning_rate=0.1, schedule=lambda e: 0.5 ** e,
                         batch_size=16, progress=False)
    rates = []
    trainer._step = lambda rate: rates.append(rate)
    trainer.fit(x, y, epochs=3)
    np.testing.assert_allclose(rates, [0.1, 0.05, 0.025])


def test_progress_goes_to_stdout_only(capsys):
    x, y = small_problem(32)
    net = cn.Sequential(cn.Flatten(), cn.Linear(1024, 10, rng=0))
    cn.Trainer(net, batch_size=16, progress=True).fit(x, y, epochs=2, x_val=x, y_val=y)
    out, err = capsys.readouterr()
    assert err == ""
    assert "epoch 1" in out and "epoch 2" in out and "val_acc" in out
    cn.Trainer(net, batch_size=16, progress=False).fit(x, y, epochs=1)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"optimizer": "rmsprop"}, ValueError, "optimizer"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ({"augment": 3}, TypeError, "augment"),
    ({"schedule": "linear"}, ValueError, "schedule"),
])
def test_bad_settings(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cn.Trainer(cn.lenet5(rng=0), **kwargs)


def test_bad_data():
    trainer = cn.Trainer(cn.lenet5(rng=0), progress=False)
    x, y = small_problem(8)
    with pytest.raises(ValueError, match="y must"):
        trainer.fit(x, y[:5])
    with pytest.raises(TypeError, match="integer"):
        trainer.fit(x, y.astype(float))
    with pytest.raises(ValueError, match="x_val"):
        trainer.fit(x, y, x_val=x)


@pytest.mark.slow
def test_lenet5_reaches_98_percent_on_digits():
    """The acceptance recipe, seed 0; ``make bench`` runs seeds 0-2 and their mean."""
    from benchmarks.bench_lenet_acceptance import TARGET, test_accuracy

    accuracy = test_accuracy(0)
    print(f"\nLeNet-5 on digits, seed 0: test accuracy {accuracy:.4f}")
    assert accuracy >= TARGET
