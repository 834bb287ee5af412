"""Tests of the scripts in examples/: the chapter material that lives beside the library."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def transfer_demo():
    return _load("transfer_demo")


@pytest.mark.slow
def test_transfer_demo_beats_training_from_scratch(transfer_demo, capsys):
    result = transfer_demo.transfer_demo()
    with capsys.disabled():
        print("\n" + result.table() + f"\n({result.seconds:.0f} s)")
    assert len(result.seeds) >= 5 and result.shots == 1
    assert all(len(result.accuracies[m]) == len(result.seeds) for m in transfer_demo.METHODS)
    assert result.source_accuracy > 0.95  # the source network learned its own task
    scratch = result.accuracies["scratch"]
    # The baseline works (chance is 0.2): transfer is not beating a broken model.
    assert result.mean("scratch") > 0.3
    # A clear margin: 5 points on average for both ways of transferring ...
    for method in ("feature extraction", "fine-tuning"):
        assert result.mean(method) - result.mean("scratch") >= 0.05, result.table()
    # ... and fine-tuning better on all seeds but at most one (same seed = same images).
    wins = sum(a > b for a, b in zip(result.accuracies["fine-tuning"], scratch))
    assert wins >= len(scratch) - 1, result.table()
