"""fit and evaluate on the CPU: learning, reproducibility, resuming, AMP and channels-last."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnnlib.data import load_digits
from cnnlib.torch import load_pretrained, models
from cnnlib.torch.train import EarlyStopping, Evaluation, evaluate, fit


@pytest.fixture(scope="module")
def digits8():
    """The 8x8 digits: small enough that a few epochs take a fraction of a second."""
    d = load_digits(8, seed=0)
    return (torch.from_numpy(d.x_train), torch.from_numpy(d.y_train),
            torch.from_numpy(d.x_test), torch.from_numpy(d.y_test))


def tiny_cnn(dropout: float = 0.0, bn: bool = False) -> nn.Module:
    layers = [nn.Conv2d(1, 8, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(dropout),
               nn.Linear(8 * 4 * 4, 10)]
    return nn.Sequential(*layers)


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_fit_learns_the_digits(digits8):
    x, y, xt, yt = digits8
    torch.manual_seed(0)
    model = tiny_cnn()
    before = evaluate(model, (xt, yt), device="cpu")
    history = fit(model, (x, y), (xt, yt), epochs=4, batch_size=32, lr=1e-2, device="cpu",
                  progress=False, seed=0)
    after = evaluate(model, (xt, yt), device="cpu")
    assert history.epoch == [1, 2, 3, 4]
    assert len(history.train_loss) == len(history.val_accuracy) == 4
    assert history.train_loss[-1] < history.train_loss[0]
    assert before.accuracy < 0.3  # chance is 0.1
    assert after.accuracy > 0.9
    # The history's last validation figures are evaluate's.
    assert history.val_accuracy[-1] == pytest.approx(after.accuracy)
    assert history.val_loss[-1] == pytest.approx(after.loss, rel=1e-6)


def test_lenet5_on_digits_with_a_dataloader():
    d = load_digits(32, seed=0)
    torch.manual_seed(0)
    model = models.lenet5()
    train = DataLoader(TensorDataset(torch.from_numpy(d.x_train), torch.from_numpy(d.y_train)),
                       batch_size=999, shuffle=False)
    history = fit(model, train, (d.x_test, d.y_test), epochs=3, batch_size=64, lr=3e-3,
                  scheduler="onecycle", device="cpu", progress=False, seed=0)
    assert history.val_accuracy[-1] > 0.85
    # OneCycle anneals to (nearly) zero by the last step.
    assert history.lr[-1] < 1e-4


def test_evaluate_matches_a_hand_computed_confusion_matrix():
    # The "model" outputs the first K input values as its scores, so the predictions,
    # the loss and the confusion matrix are known in advance.
    class Echo(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return x.flatten(1)[:, :3] + self.dummy

    scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0],
                           [1.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    labels = torch.tensor([0, 1, 2, 1, 1])  # right, right, right, 1->0, 1->2
    x = scores.reshape(5, 1, 1, 3)
    expected = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 1]])
    for batch_size in (1, 2, 5):
        result = evaluate(Echo(), (x, labels), batch_size=batch_size, device="cpu")
        assert isinstance(result, Evaluation)
        np.testing.assert_array_equal(result.confusion_matrix, expected)
        assert result.accuracy == pytest.approx(3 / 5)
        assert result.n == 5
        assert result.loss == pytest.approx(F.cross_entropy(scores, labels).item(), rel=1e-6)


def test_evaluate_restores_training_mode(digits8):
    x, y, *_ = digits8
    model = tiny_cnn(dropout=0.5)
    model.train()
    first = evaluate(model, (x[:50], y[:50]), device="cpu")
    second = evaluate(model, (x[:50], y[:50]), device="cpu")
    assert model.training
    assert first.loss == second.loss  # dropout was off during evaluation


def test_same_seed_same_weights_and_different_seed_different(digits8):
    x, y, *_ = digits8

    def run(seed):
        torch.manual_seed(1)
        model = tiny_cnn(dropout=0.3)
        fit(model, (x[:256], y[:256]), epochs=2, batch_size=32, device="cpu", progress=False,
            seed=seed)
        return weights(model)

    a, b, c = run(0), run(0), run(1)
    assert same(a, b)
    assert not same(a, c)


class Interrupted(Exception):
    """Stands for the kill signal that ends a job on a cluster."""


def interrupt_at(stop_epoch):
    def hook(epoch, model):
        if epoch == stop_epoch:
            raise Interrupted

    return hook


@pytest.mark.parametrize("scheduler", [None, "onecycle"])
def test_resume_from_checkpoint_gives_the_uninterrupted_weights(digits8, tmp_path, scheduler):
    x, y, xt, yt = digits8
    kwargs = dict(epochs=3, batch_size=32, device="cpu", progress=False, seed=3,
                  scheduler=scheduler)
    train, val = (x[:320], y[:320]), (xt[:100], yt[:100])

    torch.manual_seed(0)
    straight = tiny_cnn(dropout=0.3, bn=True)
    h_straight = fit(straight, train, val, **kwargs)

    ckpt = tmp_path / "run.pt"
    torch.manual_seed(0)
    first = tiny_cnn(dropout=0.3, bn=True)
    with pytest.raises(Interrupted):
        fit(first, train, val, checkpoint=ckpt, on_epoch_start=interrupt_at(1), **kwargs)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    # A new process builds the model from scratch; so do we (with other weights).
    torch.manual_seed(123)
    resumed = tiny_cnn(dropout=0.3, bn=True)
    h_resumed = fit(resumed, train, val, checkpoint=ckpt, **kwargs)

    assert same(weights(straight), weights(resumed))  # bit for bit, BN buffers included
    assert h_resumed.epoch == [1, 2, 3]
    assert h_resumed.train_loss == h_straight.train_loss
    assert h_resumed.val_accuracy == h_straight.val_accuracy
    assert h_resumed.lr == h_straight.lr
    assert torch.load(ckpt, weights_only=True)["epoch"] == 3


def test_two_epochs_equal_one_plus_one_resumed(digits8, tmp_path):
    """Extending a finished run: epochs=1 with a checkpoint, then epochs=2."""
    x, y, *_ = digits8
    kwargs = dict(batch_size=32, device="cpu", progress=False, seed=5)
    torch.manual_seed(0)
    straight = tiny_cnn(dropout=0.2)
    fit(straight, (x[:256], y[:256]), epochs=2, **kwargs)
    ckpt = tmp_path / "run.pt"
    torch.manual_seed(0)
    part = tiny_cnn(dropout=0.2)
    fit(part, (x[:256], y[:256]), epochs=1, checkpoint=ckpt, **kwargs)
    assert not same(weights(part), weights(straight))
    resumed = tiny_cnn(dropout=0.2)
    fit(resumed, (x[:256], y[:256]), epochs=2, checkpoint=ckpt, **kwargs)
    assert same(weights(resumed), weights(straight))
    # A schedule planned over the whole run cannot be stretched after the fact.
    fit(tiny_cnn(), (x[:64], y[:64]), epochs=1, checkpoint=tmp_path / "oc.pt",
        scheduler="onecycle", **kwargs)
    with pytest.raises(ValueError, match="epochs=1"):
        fit(tiny_cnn(), (x[:64], y[:64]), epochs=2, checkpoint=tmp_path / "oc.pt",
            scheduler="onecycle", **kwargs)


def test_resume_refuses_another_seed(digits8, tmp_path):
    x, y, *_ = digits8
    ckpt = tmp_path / "run.pt"
    fit(tiny_cnn(), (x[:64], y[:64]), epochs=1, batch_size=32, device="cpu", progress=False,
        seed=0, checkpoint=ckpt)
    with pytest.raises(ValueError, match="seed"):
        fit(tiny_cnn(), (x[:64], y[:64]), epochs=2, batch_size=32, device="cpu",
            progress=False, seed=1, checkpoint=ckpt)


def test_checkpoint_loads_with_load_pretrained(tmp_path):
    d = load_digits(32, seed=0)
    torch.manual_seed(0)
    model = models.lenet5()
    ckpt = tmp_path / "lenet.pt"
    fit(model, (d.x_train[:64], d.y_train[:64]), epochs=1, batch_size=32, device="cpu",
        progress=False, seed=0, checkpoint=ckpt)
    loaded = load_pretrained("lenet5", ckpt)
    assert same(weights(loaded), weights(model))


def test_amp_and_channels_last_paths_run_on_the_cpu(digits8):
    """The CUDA settings, exercised on the CPU: bf16 autocast and NHWC batches."""
    x, y, xt, yt = digits8
    seen = []

    class Probe(nn.Module):
        # Probes the second convolution: with 8 input channels, NCHW and NHWC memory
        # orders differ (with one channel they coincide).
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                      nn.Linear(8 * 4 * 4, 10))

        def forward(self, inp):
            h = torch.relu(self.conv1(inp))
            out = self.conv2(h)
            seen.append((out.dtype, h.is_contiguous(memory_format=torch.channels_last),
                         self.conv2.weight.is_contiguous(memory_format=torch.channels_last)))
            return self.head(out)

    torch.manual_seed(0)
    model = Probe()
    history = fit(model, (x, y), (xt, yt), epochs=3, batch_size=32, lr=1e-2, device="cpu",
                  amp=True, channels_last=True, progress=False, seed=0)
    assert seen and all(s == (torch.bfloat16, True, True) for s in seen)
    # Learning still works in bfloat16, and the weights stay float32 master copies.
    assert history.val_accuracy[-1] > 0.85
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # The model leaves fit in the ordinary memory format.
    assert model.conv2.weight.is_contiguous()

    seen.clear()
    fit(model, (x[:32], y[:32]), epochs=1, batch_size=32, device="cpu", amp=False,
        channels_last=False, progress=False)
    assert seen and all(s == (torch.float32, False, False) for s in seen)


def test_auto_flags_are_off_on_the_cpu(digits8):
    x, y, *_ = digits8
    seen = []
    model = tiny_cnn()
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    fit(model, (x[:32], y[:32]), epochs=1, batch_size=32, device="cpu", progress=False)
    assert seen == [torch.float32]


def test_float64_model_trains_in_float64(digits8):
    """Inputs are cast to the model's dtype and the loss is not rounded to float32."""
    x, y, *_ = digits8
    x, y = x[:64], y[:64]
    torch.manual_seed(0)
    model = tiny_cnn().double()
    reference = tiny_cnn().double()
    reference.load_state_dict(model.state_dict())
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(i[0].dtype))
    fit(model, (x, y), epochs=1, batch_size=64, device="cpu", progress=False,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.5))
    assert seen == [torch.float64]
    # One full-batch SGD step by hand, all in float64.
    opt = torch.optim.SGD(reference.parameters(), lr=0.5)
    F.cross_entropy(reference(x.double()), y).backward()
    opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


def test_grad_clip_bounds_the_step(digits8):
    x, y, *_ = digits8

    def step_norm(clip):
        torch.manual_seed(0)
        model = tiny_cnn()
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        fit(model, (x[:64], y[:64]), epochs=1, batch_size=64, optimizer=opt, device="cpu",
            grad_clip=clip, progress=False, seed=0)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        return (after - before).norm().item()

    unclipped = step_norm(None)
    assert unclipped > 0.05
    # One SGD step with lr 1 moves the weights by the (clipped) gradient itself.
    assert step_norm(0.01) == pytest.approx(0.01, rel=1e-4)


def test_early_stopping_stops_and_restores_the_best_weights(digits8):
    x, y, xt, yt = digits8
    torch.manual_seed(0)
    model = tiny_cnn()
    start = weights(model)
    # lr = 0: the validation loss never improves after the first epoch.
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    history = fit(model, (x[:64], y[:64]), (xt[:64], yt[:64]), epochs=10, batch_size=32,
                  optimizer=opt, device="cpu", early_stopping=2, progress=False)
    assert history.stopped_early
    assert history.epoch == [1, 2, 3]
    assert history.best_epoch == 1
    assert same(weights(model), start)

    # Now a learning run monitored on accuracy: the restored weights are the best epoch's.
    torch.manual_seed(0)
    model = tiny_cnn()
    history = fit(model, (x, y), (xt, yt), epochs=6, batch_size=32, lr=3e-2, device="cpu",
                  early_stopping=EarlyStopping(patience=6, monitor="val_accuracy"),
                  progress=False, seed=0)
    assert not history.stopped_early
    assert history.best_epoch == int(np.argmax(history.val_accuracy)) + 1


def test_plateau_scheduler_and_optimizer_factory(digits8):
    x, y, xt, yt = digits8
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    fit(model, (x[:64], y[:64]), (xt[:32], yt[:32]), epochs=3, batch_size=32, optimizer=opt,
        scheduler=plateau, device="cpu", progress=False, seed=0)
    assert opt.param_groups[0]["lr"] <= 0.1
    history = fit(tiny_cnn(), (x[:64], y[:64]), epochs=1, batch_size=32, device="cpu",
                  optimizer=lambda params: torch.optim.SGD(params, lr=0.25), progress=False)
    assert history.lr == [0.25]


def test_progress_goes_to_stdout_only(digits8, capsys):
    x, y, xt, yt = digits8
    fit(tiny_cnn(), (x[:64], y[:64]), (xt[:32], yt[:32]), epochs=2, batch_size=32,
        device="cpu", progress=True)
    out, err = capsys.readouterr()
    assert "epoch 1/2" in out and "epoch 2/2" in out and "val_acc" in out
    assert err == ""
    fit(tiny_cnn(), (x[:64], y[:64]), epochs=1, batch_size=32, device="cpu", progress=False)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": -1}, "epochs"),
    ({"epochs": 1, "batch_size": 0}, "batch_size"),
    ({"epochs": 1, "optimizer": "adagrad"}, "optimizer"),
    ({"epochs": 1, "grad_clip": 0.0}, "grad_clip"),
    ({"epochs": 1, "early_stopping": 3}, "val_data"),
    ({"epochs": 1, "amp": "yes"}, "amp"),
])
def test_bad_arguments_raise_before_training(digits8, kwargs, match):
    x, y, *_ = digits8
    with pytest.raises((ValueError, TypeError), match=match):
        fit(tiny_cnn(), (x[:32], y[:32]), device="cpu", progress=False, **kwargs)


def test_bad_data_raise(digits8):
    x, y, *_ = digits8
    with pytest.raises(ValueError, match="differ in length"):
        fit(tiny_cnn(), (x[:32], y[:31]), epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="integer"):
        fit(tiny_cnn(), (x[:32], y[:32].float()), epochs=1, device="cpu", progress=False)
    with pytest.raises(TypeError, match="train_data"):
        fit(tiny_cnn(), x[:32], epochs=1, device="cpu", progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_amp_and_channels_last_are_the_default(digits8):
    x, y, xt, yt = digits8
    seen = []
    torch.manual_seed(0)
    model = tiny_cnn()
    model[0].register_forward_hook(lambda m, i, o: seen.append(
        (o.dtype, o.device.type, m.weight.is_contiguous(memory_format=torch.channels_last))))
    history = fit(model, (x, y), (xt, yt), epochs=3, batch_size=32, lr=1e-2, progress=False,
                  seed=0)
    assert seen[0] == (torch.bfloat16, "cuda", True)
    assert history.val_accuracy[-1] > 0.85
    result = evaluate(model, (xt, yt))
    assert result.n == len(yt) and result.accuracy > 0.85
