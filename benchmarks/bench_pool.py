"""Max pooling, forward plus backward: cnnlib.numpy against PyTorch on the CPU.

Both run in this process, float32, with one thread each (NumPy's element-wise ops are
single-threaded, so giving torch more would compare thread counts, not code). The two
are timed in alternation, repeat after repeat, so that load from other processes hits
both alike; each figure is the median over the repeats. The goal is cnnlib within 2x of
torch (geometric mean over the shapes).
"""

from __future__ import annotations

import numpy as np

from benchmarks._timing import geometric_mean, side_by_side
from cnnlib.numpy import pool

# (N, C, H=W, kernel, stride, padding): LeNet's first pool, a ResNet-stem-like 3x3/2
# pool with padding, and a VGG-like 2x2/2 pool on many channels.
CASES = [
    (128, 6, 28, 2, 2, 0),
    (32, 64, 32, 3, 2, 1),
    (32, 64, 32, 2, 2, 0),
]
REPEATS = 21
GOAL = 2.0


def measure(case, repeats: int = REPEATS) -> tuple[float, float]:
    """Median seconds of (cnnlib, torch) for one forward+backward of ``case``."""
    import torch
    import torch.nn.functional as F

    n, c, size, k, s, p = case
    x = np.random.default_rng(0).standard_normal((n, c, size, size)).astype(np.float32)
    xt = torch.from_numpy(x)
    out, _ = pool.maxpool2d_forward(x, kernel_size=k, stride=s, padding=p)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    dout_t = torch.from_numpy(dout)

    def ours():
        _, cache = pool.maxpool2d_forward(x, kernel_size=k, stride=s, padding=p)
        pool.maxpool2d_backward(dout, cache)

    def theirs():
        leaf = xt.detach().requires_grad_(True)
        F.max_pool2d(leaf, k, s, p).backward(dout_t)

    return side_by_side(ours, theirs, repeats)


def main() -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        print("max pooling forward+backward, float32, 1 thread each, "
              f"median of {REPEATS} alternating repeats")
        print(f"{'(N, C, H, k, stride, pad)':<28}{'cnnlib ms':>10}{'torch ms':>10}{'ratio':>8}")
        ratios = []
        for case in CASES:
            t_ours, t_theirs = measure(case)
            ratio = t_ours / t_theirs
            ratios.append(ratio)
            print(f"{str(case):<28}{t_ours * 1e3:>10.2f}{t_theirs * 1e3:>10.2f}{ratio:>8.2f}")
        geo = geometric_mean(ratios)
        verdict = "met" if geo <= GOAL else "NOT met"
        print(f"geometric mean ratio cnnlib/torch: {geo:.2f} (goal <= {GOAL:g}x: {verdict}; "
              f"worst case {max(ratios):.2f})")
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
