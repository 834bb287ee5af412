"""Autograding a class of 200 Assignment 1 submissions with 1 and 2 worker processes
(goal: 200 submissions in under 10 minutes on 2 cores).

The class is made from the sample students with variations, in every ten: four correct,
two partial, two buggy (a different known mistake each time), one whose conv2d hangs (the
grader stops it after its budget) and one notebook that is not JSON. Each run grades a
fresh scratch course into a scratch PostgreSQL gradebook (``tools/scratch_postgres.py``;
SQLite when no server is installed) with ``cnnlib.grading.workers``, and prints
submissions per minute. ``BENCH_CLASS_SIZE=40 python -m benchmarks class`` measures a
smaller class.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "a1-convolution"
GOAL_SECONDS, GOAL_SIZE = 600.0, 200


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_class(dest: Path, size: int) -> dict[str, str]:
    """Write ``size`` submissions under ``dest/<student>/a1-convolution/``; return
    {student: kind}."""
    sys.path.insert(0, str(ROOT / "tests" / "grading"))
    import a1_students as S

    bugs = [{"conv2d": S.CONV_NO_BIAS}, {"conv2d": S.CONV_FLIPPED},
            {"conv_output_size": S.SIZE_PLUS_ONE}, {"pad2d": S.PAD_MINUS_P},
            {"correlate2d": S.CORR_FLIPPED}, {"conv2d": S.CONV_STRIDE_IGNORED}]
    correct = {"conv_output_size": S.SIZE, "pad2d": S.PAD, "correlate2d": S.CORR,
               "conv2d": S.CONV}
    kinds = ["correct"] * 4 + ["partial"] * 2 + ["buggy"] * 2 + ["hanging", "broken"]
    out = {}
    for i in range(size):
        kind = kinds[i % len(kinds)]
        student = f"s{i:04d}_{kind}"
        if kind == "correct":
            nb = S.complete()
        elif kind == "partial":
            nb = S.partial()
        elif kind == "buggy":
            nb = S.fill({**correct, **bugs[i % len(bugs)]})
        elif kind == "hanging":
            nb = S.fill({**correct, "conv2d": S.HANG.format(name="conv2d")})
        else:
            nb = None
        path = dest / student / ASSIGNMENT / "convolution.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{ not a notebook" if nb is None else json.dumps(nb))
        out[student] = kind
    return out


@contextlib.contextmanager
def _gradebook():
    sys.path.insert(0, str(ROOT / "tools"))
    from scratch_postgres import postgres_bin, scratch_postgres

    if postgres_bin() is None:
        yield "SQLite (no PostgreSQL server installed)"
        return
    with scratch_postgres() as url:
        os.environ["GRADEBOOK_URL"] = url
        try:
            yield "PostgreSQL"
        finally:
            del os.environ["GRADEBOOK_URL"]


def run(size: int, workers: int) -> tuple[float, int, str]:
    g = _tool("grade_samples")
    from cnnlib.grading import workers as W

    with tempfile.TemporaryDirectory(prefix="cnn-bench-class-") as tmp, _gradebook() as db:
        kinds = make_class(Path(tmp) / "class", size)
        course = g.make_course(Path(tmp) / "course", [ASSIGNMENT])
        g.submit(course, Path(tmp) / "class", ASSIGNMENT)
        start = time.perf_counter()
        results = W.grade(course, ASSIGNMENT, sorted(kinds), workers=workers,
                          log=lambda _: None)
        seconds = time.perf_counter() - start
        failed = sorted(r["student"] for r in results if not r["success"])
        unexpected = [s for s in failed if kinds[s] != "broken"]
        if unexpected:
            print(f"  unexpected failures: {unexpected[:5]}")
        return seconds, len(results), db


def main():
    size = int(os.environ.get("BENCH_CLASS_SIZE") or GOAL_SIZE)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"class of {size} Assignment 1 submissions (4 correct, 2 partial, 2 buggy, "
          "1 hanging, 1 broken in every ten)")
    for workers in (1, 2):
        seconds, n, db = run(size, workers)
        per_min = n / seconds * 60
        projected = GOAL_SIZE / per_min * 60
        print(f"{workers} worker(s), {db}: {n} submissions in {seconds:6.0f} s = "
              f"{per_min:5.1f} per minute; 200 would take {projected:4.0f} s "
              f"(goal < {GOAL_SECONDS:.0f} s: {'met' if projected < GOAL_SECONDS else 'NOT MET'})",
              flush=True)


if __name__ == "__main__":
    main()
