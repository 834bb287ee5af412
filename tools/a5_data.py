"""Write the arrays Assignment 5 ships: ``cnnlib/grading/a5_target.npz``.

The notebook gets the labelled images of the target task it may use as arrays (20 to train
on, 20 to choose settings with, 400 to measure), never the generator that could draw
thousands more. This script draws them once with the grader's generator and public seeds;
``tests/grading/test_a5.py`` checks that the committed file is what it writes.

    python tools/a5_data.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# name: (number of images, seed): five per class to train on, five per class to validate
SPLITS = {"train": (20, 2024), "val": (20, 2025), "test": (400, 2026)}


def arrays():
    """``{x_train, y_train, x_val, y_val, x_test, y_test}`` drawn by the grader's generator."""
    from cnnlib.grading.a5_task import target_images

    out = {}
    for split, (n, seed) in SPLITS.items():
        out[f"x_{split}"], out[f"y_{split}"] = target_images(n, seed)
    return out


def npz_bytes():
    """The file's bytes (compressed, no pickle); the same on every run."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays())
    return buffer.getvalue()


def main():
    from cnnlib.grading.a5 import TARGET_DATA

    TARGET_DATA.write_bytes(npz_bytes())
    print(f"wrote {TARGET_DATA.relative_to(ROOT)} ({TARGET_DATA.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
