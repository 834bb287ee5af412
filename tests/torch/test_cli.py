"""The training command (cnnlib/torch/cli.py, run as ``python -m cnnlib.torch.train``): in
process, as a subprocess, and under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlib.torch import load_pretrained
from cnnlib.torch.cli import main

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--model", "lenet5", "--dataset", "digits", "--epochs", "2"]
# One epoch is enough to compare one process with two: the same steps either way.
ONE_EPOCH = ["--model", "lenet5", "--dataset", "digits", "--epochs", "1"]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_main_trains_evaluates_and_prints_one_json_line(capsys, tmp_path):
    saved = tmp_path / "lenet5.pt"
    metrics = main([*ARGS, "--no-progress", "--save", str(saved)])
    out = capsys.readouterr().out
    lines = json_lines(out)
    assert len(lines) == 1 and out.strip() == json.dumps(metrics)
    assert lines[0]["model"] == "lenet5" and lines[0]["dataset"] == "digits"
    assert lines[0]["epochs"] == 2 and lines[0]["world_size"] == 1
    assert lines[0]["n_val"] == 359 and lines[0]["parameters"] == 61706
    assert lines[0]["val_accuracy"] >= 0.95  # the defaults give a good first result
    # The saved weights are the evaluated model's: they reproduce its accuracy.
    from cnnlib.data import load_digits
    from cnnlib.torch.train import evaluate

    model = load_pretrained("lenet5", saved)
    d = load_digits(32, seed=0)
    result = evaluate(model, (d.x_test, d.y_test), device="cpu")
    assert result.accuracy == pytest.approx(lines[0]["val_accuracy"], abs=1e-5)


def test_main_rejects_unknown_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--model", "nonexistent"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_python_dash_m_and_torchrun_agree():
    single = subprocess.run([sys.executable, "-m", "cnnlib.torch.train", *ONE_EPOCH],
                            capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert single.returncode == 0, single.stderr
    assert "epoch 1/1" in single.stdout  # progress bars on stdout
    [one] = json_lines(single.stdout)

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    ddp = subprocess.run(
        [str(torchrun), "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={_free_port()}", "-m", "cnnlib.torch.train", *ONE_EPOCH],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert ddp.returncode == 0, ddp.stderr
    [two] = json_lines(ddp.stdout)  # only rank 0 printed
    # Rank 0 alone draws the progress bars: each bar starts once.
    start_of_bar = "epoch 1/1:   0%"
    assert single.stdout.count(start_of_bar) == 1
    assert ddp.stdout.count(start_of_bar) == 1
    assert two["world_size"] == 2 and two["n_val"] == one["n_val"] == 359
    # Same global batches, same steps: float32 sums in another order move the accuracy
    # by at most a couple of the 359 test images.
    assert abs(two["val_accuracy"] - one["val_accuracy"]) <= 2 / 359 + 1e-9
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-2)
