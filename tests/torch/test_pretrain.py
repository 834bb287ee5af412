"""The course's pre-trained small ResNet: the cache logic, and the real training run."""

from __future__ import annotations

import json
import time

import pytest
import torch

from cnnlib.data import load_digits
from cnnlib.torch import models, pretrain
from cnnlib.torch.train import evaluate


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_ensure_pretrained_trains_only_when_missing(cache, monkeypatch, capsys):
    calls = []

    def fake_pretrain(path, *, progress):
        calls.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(models.small_resnet().state_dict(), path)
        return {}

    monkeypatch.setattr(pretrain, "pretrain", fake_pretrain)
    path = pretrain.ensure_pretrained(progress=True)
    assert path == cache / "small_resnet.pth" and calls == [path]
    assert "training the course's small ResNet" in capsys.readouterr().out
    assert pretrain.ensure_pretrained() == path and len(calls) == 1  # cached now
    pretrain.ensure_pretrained(force=True, progress=False)
    assert len(calls) == 2
    # The builder finds it in the cache.
    assert isinstance(models.small_resnet(weights="DEFAULT"), torch.nn.Module)


def test_processes_asking_at_once_train_once(cache, monkeypatch):
    """Parallel test workers and a book build may ask for the weights together."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    counter = ctx.Value("i", 0)

    def slow_pretrain(path, *, progress):
        with counter.get_lock():
            counter.value += 1
        time.sleep(1.0)
        path.write_bytes(b"weights")
        return {}

    monkeypatch.setattr(pretrain, "pretrain", slow_pretrain)
    procs = [ctx.Process(target=pretrain.ensure_pretrained, kwargs={"progress": False})
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert counter.value == 1 and (cache / "small_resnet.pth").read_bytes() == b"weights"


def test_an_unwritable_cache_fails_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CNNLIB_CACHE", str(blocker))
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: pytest.fail("trained anyway"))
    with pytest.raises(OSError, match="not a folder that can be created"):
        pretrain.ensure_pretrained(progress=False)


def test_command_line_keeps_an_existing_file(cache, capsys):
    cache.mkdir(parents=True)
    (cache / "small_resnet.pth").write_bytes(b"not touched")
    assert pretrain.main([]) == 0
    assert "exists" in capsys.readouterr().out
    assert (cache / "small_resnet.pth").read_bytes() == b"not touched"


@pytest.mark.slow
def test_pretrained_small_resnet_reaches_98_percent(cache, capsys):
    start = time.perf_counter()
    path = pretrain.ensure_pretrained(progress=False)
    seconds = time.perf_counter() - start
    report = json.loads(path.with_suffix(".json").read_text())
    with capsys.disabled():
        print(f"\nsmall ResNet on digits: test accuracy {report['test_accuracy']:.4f} "
              f"in {seconds:.0f} s ({torch.get_num_threads()} threads)")
    # Load it the way a chapter does and score it on the held-out digits ourselves.
    model = models.small_resnet(weights="DEFAULT")
    d = load_digits(pretrain.RECIPE["image_size"], seed=pretrain.RECIPE["split_seed"])
    result = evaluate(model, (d.x_test, d.y_test), device="cpu")
    assert result.n == 359
    assert result.accuracy >= 0.98
    assert result.accuracy == pytest.approx(report["test_accuracy"], abs=1e-9)
