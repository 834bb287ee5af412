"""get_device: CUDA, then MPS, then CPU; and nothing calls .cuda() directly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import cnnlib
from cnnlib.torch import get_device


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has ``cuda`` CUDA devices and MPS or not."""

    def set_(cuda: int = 0, mps: bool = False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return set_


def test_order_cuda_then_mps_then_cpu(machine):
    machine(cuda=0, mps=False)
    assert get_device() == torch.device("cpu")
    machine(cuda=0, mps=True)
    assert get_device() == torch.device("mps")
    machine(cuda=2, mps=True)
    assert get_device() == torch.device("cuda", 0)


def test_local_rank_picks_the_gpu_of_a_torchrun_process(machine, monkeypatch):
    machine(cuda=2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert get_device() == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ValueError, match="index 2 does not exist"):
        get_device()


def test_preferred_device(machine):
    machine(cuda=0, mps=False)
    assert get_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        get_device("cuda")
    with pytest.raises(ValueError, match="MPS is not available"):
        get_device(torch.device("mps"))
    with pytest.raises(ValueError, match="prefer"):
        get_device("gpu please")
    machine(cuda=1)
    assert get_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="index 3"):
        get_device("cuda:3")


def test_real_machine_default_is_usable():
    device = get_device()
    assert torch.zeros(2, device=device).sum().item() == 0


def test_nothing_calls_cuda_directly():
    root = Path(cnnlib.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if re.search(r"\.cuda\(", p.read_text(encoding="utf-8"))]
    assert offenders == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_models_run_on_the_gpu():
    from cnnlib.torch import models, summarize

    device = get_device()
    assert device.type == "cuda"
    model = models.resnet18(num_classes=10).to(device)
    out = model(torch.randn(2, 3, 64, 64, device=device))
    out.sum().backward()
    assert out.device.type == "cuda" and torch.isfinite(model.fc.weight.grad).all()
    assert summarize(model, (3, 224, 224)).gmacs == pytest.approx(1.81, rel=0.02)
