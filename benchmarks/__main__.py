"""Run every benchmark module in turn (``python -m benchmarks [name ...]``).

On Linux with glibc the benchmarks run with malloc's thresholds fixed (``TUNABLES``): the
process re-executes itself with them unless ``GLIBC_TUNABLES`` is already set (set it
to the empty string to measure with glibc's defaults).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path

# glibc hands memory freed above its mmap threshold back to the system (the threshold
# adapts to the program), and a library that then allocates fresh buffers on every step
# pays a page fault for each 4 KB it touches. PyTorch's convolutions do: on the first
# VGG-like layer of bench_conv, with 2 threads, a forward + backward step took 12,800
# page faults and 27 ms in some processes, 1,500 faults and 11 ms in others, depending
# on the state malloc was left in (after a few cnnlib steps, always the slow one). cnnlib
# keeps its work buffers and measured the same either way. With these thresholds freed
# memory stays in the process, and torch is timed at its own speed, as with the
# jemalloc or tcmalloc that PyTorch's CPU performance guides recommend.
TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"


def environment_to_rerun_in(env: dict, libc: str) -> dict | None:
    """The environment to re-execute under, or ``None`` to run as we are: when not on
    glibc, or when ``GLIBC_TUNABLES`` is already set (by us or by the user)."""
    if libc != "glibc" or "GLIBC_TUNABLES" in env:
        return None
    return {**env, "GLIBC_TUNABLES": TUNABLES}


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in argv] or names
    tunables = os.environ.get("GLIBC_TUNABLES")
    print(f"malloc: GLIBC_TUNABLES={tunables!r}" if tunables is not None
          else "malloc: the C library's defaults", flush=True)
    for name in wanted:
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main()
        print(f"({name} took {time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    env = environment_to_rerun_in(dict(os.environ), platform.libc_ver()[0])
    if env is not None:
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]], env)
    sys.exit(main(sys.argv[1:]))
