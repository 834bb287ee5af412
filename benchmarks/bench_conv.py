"""conv2d forward + backward: cnnlib.numpy against PyTorch on CPU, side by side.

Both run in this process with the same number of threads (PyTorch's is set to what
NumPy's BLAS uses), in float32, on LeNet- and VGG-like layers. The two libraries take
turns, five timed steps at a time, so a burst of load from other processes hits both;
each turn starts after a pause that lets the other library's idle threads stop spinning
and with at least 0.1 s of untimed steps, so that each library is timed as a training
loop of its own sees it (see ``benchmarks._timing.side_by_side``). The figure is the
median over the repeats. A second table repeats the measurement with one thread each,
the figure least sensitive to other processes on a shared machine (the load average is
printed with each table).

Run with ``python -m benchmarks conv`` (or ``make bench`` for every benchmark).
"""

from __future__ import annotations

import os

import numpy as np

from benchmarks._timing import blas_threads, geometric_mean, side_by_side

# (N, C_in, H, C_out, k, stride, padding); H = W.
SHAPES = [
    (128, 1, 32, 6, 5, 1, 0),     # LeNet-5 C1
    (128, 6, 14, 16, 5, 1, 0),    # LeNet-5 C3
    (32, 3, 64, 32, 3, 1, 1),     # first VGG-like layer
    (32, 64, 32, 64, 3, 1, 1),    # VGG-like 3x3 block
    (32, 64, 32, 128, 3, 2, 1),   # strided downsampling conv
]
GOAL = 1.5  # geometric mean of cnnlib / torch we aim to stay under
BLOCK = 5  # timed steps of one library in a row


def bench_shape(shape, *, repeats: int, rng: np.random.Generator):
    """Median milliseconds of one forward + backward step: (cnnlib, torch)."""
    import torch
    import torch.nn.functional as F

    from cnnlib.numpy import conv2d_backward, conv2d_forward

    n, c_in, h, c_out, k, stride, padding = shape
    x = rng.standard_normal((n, c_in, h, h), dtype=np.float32)
    w = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32) * np.float32(0.1)
    b = rng.standard_normal(c_out, dtype=np.float32)
    h_out = (h + 2 * padding - k) // stride + 1
    dout = rng.standard_normal((n, c_out, h_out, h_out), dtype=np.float32)

    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    doutt = torch.from_numpy(dout)

    def step_cnnlib():
        out, cache = conv2d_forward(x, w, b, stride=stride, padding=padding)
        return conv2d_backward(dout, cache)

    def step_torch():
        xt.grad = wt.grad = bt.grad = None
        out = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
        out.backward(doutt)

    ours, theirs = side_by_side(step_cnnlib, step_torch, repeats, warmup=2, block=BLOCK,
                                lead_in=2, lead_in_seconds=0.1, settle=0.15)
    return 1e3 * ours, 1e3 * theirs


def run_table(threads: int, repeats: int) -> tuple[float, list[float]]:
    """Print one table with ``threads`` BLAS and torch threads.

    Returns the geometric mean of the ratios and torch's milliseconds per shape.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    print(f"\n{threads} thread(s): BLAS limited to {threads}, torch.get_num_threads() = "
          f"{torch.get_num_threads()}; load average before: {load:.1f} on {os.cpu_count()} CPUs")
    header = f"{'N, C_in, H, C_out, k, s, p':<30}{'cnnlib ms':>11}{'torch ms':>11}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    ratios, torch_ms = [], []
    with threadpool_limits(limits=threads, user_api="blas"):
        for shape in SHAPES:
            ours, theirs = bench_shape(shape, repeats=repeats, rng=rng)
            ratios.append(ours / theirs)
            torch_ms.append(theirs)
            print(f"{str(shape):<30}{ours:>11.2f}{theirs:>11.2f}{ratios[-1]:>7.2f}x", flush=True)
    geomean = geometric_mean(ratios)
    print("-" * len(header))
    print(f"{'geometric mean':<52}{geomean:>7.2f}x")
    return geomean, torch_ms


def main(repeats: int = 30) -> float:
    import torch

    blas, threads = blas_threads()
    print(f"NumPy {np.__version__} with {blas} ({threads} thread(s) by default); "
          f"torch {torch.__version__}")
    print(f"float32 conv2d, forward + backward (dx, dw, db): median of {repeats} repeats, the "
          f"libraries taking turns {BLOCK} steps at a time; ratio = cnnlib / torch")
    geomean, torch_many = run_table(threads, repeats)
    verdict = "met" if geomean <= GOAL else f"NOT met ({geomean / GOAL:.2f}x over the goal)"
    print(f"goal: geometric mean <= {GOAL}x torch CPU with {threads} thread(s): {verdict}")
    if threads > 1:
        # One thread each is the comparison least disturbed by other processes: on a busy
        # machine the multi-threaded figures measure scheduling as much as arithmetic.
        single, torch_one = run_table(1, max(5, repeats // 2))
        print(f"(for reference, not the goal: one thread each gives {single:.2f}x)")
        # On the 2-core course machine torch with 2 threads was sometimes measured 4 to 8
        # times slower than with 1 (a 75 ms step that takes 10 ms in the next run), which
        # turned the goal into a false "met". Such a run says nothing about cnnlib.
        slower = [str(s) for s, many, one in zip(SHAPES, torch_many, torch_one)
                  if many > 1.5 * one]
        if slower:
            print(f"WARNING: torch with {threads} threads took over 1.5 times as long as with 1 on "
                  f"{', '.join(slower)}: the {threads}-thread verdict above is unreliable; "
                  f"rerun on a quiet machine")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return geomean


if __name__ == "__main__":
    main()
