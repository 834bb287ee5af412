"""Images per second of the small ResNet's training step: fp32 against channels-last.

One training step is what :func:`cnnlib.torch.fit` does per batch: forward under
autocast (when on), cross-entropy, backward, AdamW step. The variants run in this
process, in turn within every repeat, so a burst of load from other processes hits
all of them; the figure is the median over repeats, and the ratios are to eager
float32 (NCHW) on the same device.

- CPU: float32 NCHW, float32 channels-last, and channels-last with bfloat16 autocast
  (fast only on CPUs with bfloat16 instructions, such as AMX or AVX512-BF16).
- CUDA, when present: the same three, bfloat16 autocast being the GPU default of fit.

Run with ``python -m benchmarks torch`` (or ``make bench`` for every benchmark).
"""

from __future__ import annotations

import statistics
import time

BATCH = 64
SHAPE = (3, 32, 32)  # CIFAR-sized images, the small ResNet's intended input
REPEATS = 7
STEPS_PER_REPEAT = 3


def _variants(device_type: str):
    return [("fp32 NCHW (eager)", False, False), ("fp32 channels-last", True, False),
            ("bf16 autocast + channels-last", True, True)]


def _make(device, channels_last: bool):
    import torch

    from cnnlib.torch.models import small_resnet

    torch.manual_seed(0)
    model = small_resnet(depth=8, width=16, num_classes=10, in_channels=SHAPE[0]).to(device)
    x = torch.rand(BATCH, *SHAPE, device=device)
    y = torch.randint(0, 10, (BATCH,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, x, y, opt


def _step(model, x, y, opt, amp: bool, device) -> None:
    import torch
    import torch.nn.functional as F

    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    F.cross_entropy(logits.float(), y).backward()
    opt.step()


def bench_device(device) -> list[tuple[str, float]]:
    """Median images per second of each variant on ``device``."""
    import torch

    variants = _variants(device.type)
    setups = [_make(device, cl) for _, cl, _ in variants]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for (_, _, amp), (model, x, y, opt) in zip(variants, setups):
        for _ in range(2):  # warm-up: oneDNN/cuDNN pick their kernels on first use
            _step(model, x, y, opt, amp, device)
    sync()
    samples: list[list[float]] = [[] for _ in variants]
    for _ in range(REPEATS):
        for i, ((_, _, amp), (model, x, y, opt)) in enumerate(zip(variants, setups)):
            start = time.perf_counter()
            for _ in range(STEPS_PER_REPEAT):
                _step(model, x, y, opt, amp, device)
            sync()
            samples[i].append(BATCH * STEPS_PER_REPEAT / (time.perf_counter() - start))
    return [(name, statistics.median(s)) for (name, _, _), s in zip(variants, samples)]


def main() -> None:
    import torch

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    print(f"small_resnet(depth=8, width=16) training step, batch {BATCH} of {SHAPE}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          f"median of {REPEATS} repeats")
    for device in devices:
        results = bench_device(device)
        base = results[0][1]
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"  {label}:")
        for name, ips in results:
            print(f"    {name:<32}{ips:>9.0f} img/s   x{ips / base:.2f}")
    if not torch.cuda.is_available():
        print("  (no CUDA device: the GPU figures are skipped)")


if __name__ == "__main__":
    main()
