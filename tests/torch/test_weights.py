"""load_pretrained with weight files the tests write; the network is never used."""

from __future__ import annotations

import re

import pytest
import torch

from cnnlib.torch import load_pretrained, models
from cnnlib.torch.weights import PUBLISHED_URLS, cache_dir, weight_filename


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty course cache and torch hub cache, and a network that must not be used."""
    monkeypatch.setenv("CNNLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(*args, **kwargs):
        raise AssertionError(f"tried to download {args} {kwargs}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def trained(builder=models.small_resnet, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = builder(**kwargs)
    # Non-default buffers too, so that a forgotten running statistic shows.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_()
            m.num_batches_tracked.fill_(11)
    return model


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("CNNLIB_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "cnnlib")


def test_load_from_a_file_into_a_given_model(tmp_path):
    source = trained()
    path = tmp_path / "mine.pt"
    torch.save(source.state_dict(), path)
    target = models.small_resnet()
    out = load_pretrained("small_resnet", path, model=target)
    assert out is target
    assert_same_state(source, target)


def test_load_from_the_cache_and_from_a_directory(tmp_path):
    source = trained()
    cache_dir().mkdir(parents=True)
    torch.save(source.state_dict(), cache_dir() / "small_resnet.pth")
    assert_same_state(source, load_pretrained("small_resnet"))
    assert_same_state(source, load_pretrained("small_resnet", cache_dir()))
    assert_same_state(source, models.small_resnet(weights="DEFAULT"))
    assert_same_state(source, models.small_resnet(weights=cache_dir() / "small_resnet.pth"))


def test_imagenet_model_from_the_torch_hub_cache(tmp_path):
    # A file torchvision cached earlier is found under its published name; its name
    # carries the SHA-256 prefix, so a file that does not match is refused.
    source = trained(models.resnet18)
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    path = hub / weight_filename("resnet18")
    torch.save(source.state_dict(), path)
    with pytest.raises(RuntimeError, match="damaged or incomplete"):
        load_pretrained("resnet18")
    path.unlink()
    cache_dir().mkdir(parents=True)
    torch.save(source.state_dict(), cache_dir() / "resnet18.pth")
    assert_same_state(source, load_pretrained("resnet18"))


def test_missing_weights_say_what_to_put_where():
    with pytest.raises(FileNotFoundError) as info:
        load_pretrained("resnet50")
    message = str(info.value)
    assert "resnet50-0676ba61.pth" in message
    assert str(cache_dir()) in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert "CNNLIB_CACHE" in message and "'download'" in message

    with pytest.raises(FileNotFoundError) as info:
        load_pretrained("small_resnet")
    assert "small_resnet.pth" in str(info.value)
    assert "python -m cnnlib.torch.pretrain" in str(info.value)

    with pytest.raises(FileNotFoundError, match="neither a file nor a directory"):
        load_pretrained("lenet5", "/no/such/file.pth")


def test_download_only_when_asked(monkeypatch):
    source = trained(models.mobilenet_v2)
    calls = []

    def fake(url, **kwargs):
        calls.append((url, kwargs))
        return source.state_dict()

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake)
    with pytest.raises(FileNotFoundError):
        load_pretrained("mobilenet_v2")
    assert calls == []
    model = load_pretrained("mobilenet_v2", "download", progress=False)
    assert_same_state(source, model)
    (url, kwargs), = calls
    assert url == PUBLISHED_URLS["mobilenet_v2"]
    assert kwargs["check_hash"] is True and kwargs["progress"] is False
    assert kwargs["model_dir"] == str(cache_dir())
    with pytest.raises(ValueError, match="no published weights"):
        load_pretrained("small_resnet", "download")


def test_old_densenet_key_names_are_renamed(tmp_path):
    source = trained(models.densenet121)
    # The published file names layers "norm.1" where the module says "norm1", and
    # predates the batch-norm step counters.
    pattern = re.compile(r"(denselayer\d+\.(?:norm|conv))([12])\.")
    old = {pattern.sub(r"\1.\2.", k): v for k, v in source.state_dict().items()
           if not k.endswith("num_batches_tracked")}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "d.pth")
    model = load_pretrained("densenet121", tmp_path / "d.pth")
    for k, v in model.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, source.state_dict()[k]), k


def test_googlenet_file_with_aux_heads_loads_into_the_default_model(tmp_path):
    source = trained(models.googlenet, aux_logits=True)
    torch.save(source.state_dict(), tmp_path / "g.pth")
    model = load_pretrained("googlenet", tmp_path / "g.pth")
    assert model.aux1 is None and model.transform_input
    for k, v in model.state_dict().items():
        assert torch.equal(v, source.state_dict()[k]), k


def test_checkpoints_and_ddp_prefixes_are_unwrapped(tmp_path):
    source = trained()
    wrapped = {"module." + k: v for k, v in source.state_dict().items()}
    torch.save({"model": wrapped, "epoch": 3, "optimizer": {"lr": torch.tensor(0.1)}},
               tmp_path / "ckpt.pt")
    assert_same_state(source, load_pretrained("small_resnet", tmp_path / "ckpt.pt"))


def test_mismatched_weights_are_explained(tmp_path):
    torch.save(trained(num_classes=10).state_dict(), tmp_path / "w.pth")
    with pytest.raises(RuntimeError, match=r"shapes differ: fc.weight: file \(10, 64\), "
                                           r"model \(3, 64\)") as info:
        load_pretrained("small_resnet", tmp_path / "w.pth", model=models.small_resnet(
            num_classes=3))
    assert "replace the head" in str(info.value)
    with pytest.raises(RuntimeError, match="missing from the file"):
        load_pretrained("small_resnet", tmp_path / "w.pth",
                        model=models.small_resnet(depth=14))


def test_non_weight_files_are_refused(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_pretrained("lenet5", tmp_path / "list.pt")


def test_bad_arguments():
    with pytest.raises(ValueError, match="model_name"):
        load_pretrained("resnet19")
    with pytest.raises(TypeError, match="model"):
        load_pretrained("lenet5", model="lenet5")


def test_published_names_carry_their_hash_and_match_builders():
    assert set(PUBLISHED_URLS) <= set(models.list_models())
    for name, url in PUBLISHED_URLS.items():
        assert url.startswith("https://download.pytorch.org/models/")
        assert re.search(r"-[0-9a-f]{8}\.pth$", url), name
