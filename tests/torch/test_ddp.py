"""Distributed data parallel on 2 CPU processes (gloo on the loopback interface).

The two processes join the group the way ``torchrun`` makes them join it: from
``MASTER_ADDR``, ``MASTER_PORT``, ``RANK`` and ``WORLD_SIZE`` in the environment, which
:func:`cnnlib.torch.fit` reads itself. Nothing talks to any address but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from cnnlib.data import load_digits
from cnnlib.torch.train import fit

N, GLOBAL_BATCH, EPOCHS, SEED, LR = 64, 16, 2, 7, 0.1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env(port: int, rank: int, world_size: int) -> dict[str, str]:
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
            "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
            # gloo would otherwise pick the interface the host name resolves to.
            "GLOO_SOCKET_IFNAME": "lo"}


def make_model() -> nn.Module:
    """Batch-norm free and dropout free, in float64: the processes must agree exactly."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 10)).double()


def make_data():
    d = load_digits(8, seed=0)
    return torch.from_numpy(d.x_train[:N]).double(), torch.from_numpy(d.y_train[:N])


def make_optimizer(params):
    return torch.optim.SGD(params, lr=LR, momentum=0.9)


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(loopback_env(port, rank, world_size))
    torch.set_num_threads(1)
    model = make_model()
    x, y = make_data()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # every rank asks for progress bars
        history = fit(model, (x, y), (x, y), epochs=EPOCHS, batch_size=GLOBAL_BATCH,
                      optimizer=make_optimizer, device="cpu", progress=True, seed=SEED)
    torch.save({"state": model.state_dict(), "history": history.as_dict(),
                "printed": printed.getvalue()}, os.path.join(out_dir, f"rank{rank}.pt"))


def reference_training() -> nn.Module:
    """Plain single-process SGD on the global batches the sampler defines.

    Epoch e visits the examples in the order ``torch.randperm(N)`` draws from a
    generator seeded with ``seed + e`` (DistributedSampler's order), cut into
    consecutive global batches; process r of W takes every W-th example of that order.
    """
    model = make_model()
    x, y = make_data()
    opt = make_optimizer(model.parameters())
    for epoch in range(EPOCHS):
        g = torch.Generator().manual_seed(SEED + epoch)
        order = torch.randperm(N, generator=g)
        for start in range(0, N, GLOBAL_BATCH):
            idx = order[start:start + GLOBAL_BATCH]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


@pytest.mark.slow
def test_two_cpu_ranks_match_single_process_training(tmp_path):
    world_size = 2
    mp.spawn(_worker, args=(world_size, free_port(), str(tmp_path)), nprocs=world_size,
             join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
               for r in range(world_size)]

    reference = reference_training().state_dict()
    torch.manual_seed(0)
    single = make_model()
    x, y = make_data()
    single_history = fit(single, (x, y), (x, y), epochs=EPOCHS, batch_size=GLOBAL_BATCH,
                         optimizer=make_optimizer, device="cpu", progress=False, seed=SEED)

    start = make_model().state_dict()
    for name, ref in reference.items():
        assert not torch.allclose(start[name], ref)  # training moved every tensor
        for result in results:
            torch.testing.assert_close(result["state"][name], ref, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(single.state_dict()[name], ref, rtol=1e-12, atol=1e-13)
    # Both ranks report the global figures, equal to the single process's.
    for result in results:
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert result["history"][key] == pytest.approx(single_history[key], rel=1e-12)
    # Both asked for progress bars; only rank 0 printed them.
    assert f"epoch {EPOCHS}/{EPOCHS}" in results[0]["printed"]
    assert results[1]["printed"] == ""
