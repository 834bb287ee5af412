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


# --------------------------------------------------------------------------- the shapes network

def test_ensure_pretrained_shapes_trains_its_own_file(cache, monkeypatch, capsys):
    calls = []

    def fake(path, *, progress):
        calls.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(models.small_resnet(num_classes=8).state_dict(), path)
        return {}

    monkeypatch.setattr(pretrain, "pretrain_shapes", fake)
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: pytest.fail("digits trained"))
    path = pretrain.ensure_pretrained("small_resnet_shapes", progress=True)
    assert path == cache / "small_resnet_shapes.pth" and calls == [path]
    assert "small_resnet_shapes" in capsys.readouterr().out
    assert pretrain.ensure_pretrained("small_resnet_shapes") == path and len(calls) == 1
    # The digits network is a different file, untouched by the shapes entry.
    assert not (cache / "small_resnet.pth").exists()
    model = models.small_resnet(num_classes=8, weights=path)
    assert model.fc.out_features == 8


def test_ensure_pretrained_rejects_an_unknown_name(cache):
    with pytest.raises(ValueError, match="small_resnet_shapes"):
        pretrain.ensure_pretrained("resnet_on_everything")


def test_command_line_names_the_network(cache, capsys):
    cache.mkdir(parents=True)
    (cache / "small_resnet_shapes.pth").write_bytes(b"not touched")
    assert pretrain.main(["--name", "small_resnet_shapes"]) == 0
    assert "exists" in capsys.readouterr().out
    assert (cache / "small_resnet_shapes.pth").read_bytes() == b"not touched"
    with pytest.raises(SystemExit):
        pretrain.main(["--name", "nothing"])


def test_shapes_pretraining_is_deterministic_and_leaves_the_thread_count(tmp_path):
    """Two short runs give identical weights; the caller's thread count is restored."""
    threads = torch.get_num_threads()
    a = pretrain.pretrain_shapes(tmp_path / "a.pth", epochs=1, n_train=256, progress=False)
    b = pretrain.pretrain_shapes(tmp_path / "b.pth", epochs=1, n_train=256, progress=False)
    assert torch.get_num_threads() == threads
    sa = torch.load(tmp_path / "a.pth", weights_only=True)
    sb = torch.load(tmp_path / "b.pth", weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["test_accuracy"] == b["test_accuracy"] and a["n_train"] == 256
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["classes"] == list(pretrain.SHAPES_RECIPE["classes"])


@pytest.mark.slow
def test_pretrained_shapes_network_recognizes_new_source_shapes(cache, capsys):
    from cnnlib.data import OTHER_SHAPE_CLASSES, make_shapes

    start = time.perf_counter()
    path = pretrain.ensure_pretrained("small_resnet_shapes", progress=False)
    seconds = time.perf_counter() - start
    report = json.loads(path.with_suffix(".json").read_text())
    with capsys.disabled():
        print(f"\nsmall ResNet on shapes: test accuracy {report['test_accuracy']:.4f} "
              f"in {seconds:.0f} s (one thread)")
    assert seconds < 180
    model = models.small_resnet(num_classes=8, weights=path)
    x, y = make_shapes(500, size=16, seed=7, classes=OTHER_SHAPE_CLASSES, grey=True)
    assert evaluate(model, (x, y), device="cpu").accuracy >= 0.97
