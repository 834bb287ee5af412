"""Autograding time for Assignment 1 with the real nbgrader CLI (goal: < 20 s for one
submission on 2 cores, about 5 s of which is nbgrader's own start-up).

Measures, in a scratch course directory:
- one submission (the complete sample student) graded alone: what an instructor waits for
  when regrading one student;
- the whole sample class in one ``nbgrader autograde`` call, divided by the number of
  students: the cost per student of grading a class (start-up paid once);
- the start-up share: an ``nbgrader autograde`` call with no submissions to grade;
- the cost of trusted grading: the same submission graded by the course's configuration
  (kernel in a bubblewrap sandbox, test cells judged in the grading process) and by
  nbgrader's plain in-kernel ``Execute``, side by side.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "a1-convolution"
GOAL_ONE = 20.0
# Seconds one submission may take, everything included (issue goals per assignment).
GOALS = {"a1-convolution": 20.0, "a2-pooling": 20.0, "a3-backprop": 20.0,
         "a4-architectures": 45.0, "a5-transfer": 90.0}


def _tools():
    spec = importlib.util.spec_from_file_location("grade_samples",
                                                  ROOT / "tools" / "grade_samples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["grade_samples"] = module
    spec.loader.exec_module(module)
    return module


IN_KERNEL = ("--Autograde.autograde_preprocessors=['nbgrader.preprocessors.Execute', "
             "'nbgrader.preprocessors.IgnorePattern', "
             "'nbconvert.preprocessors.ClearMetadataPreprocessor', "
             "'nbgrader.preprocessors.LimitOutput', 'nbgrader.preprocessors.SaveAutoGrades', "
             "'nbgrader.preprocessors.AssignLatePenalties', "
             "'nbgrader.preprocessors.CheckCellMetadata']")


def _autograde(g, course, *extra):
    start = time.perf_counter()
    proc = g.run_nbgrader(course, "autograde", ASSIGNMENT, "--force", *extra, check=False)
    return time.perf_counter() - start, proc


def loop_margin():
    """Slowest hidden check cell with a plain four-loop student implementation, as a share
    of the grader's per-cell budget: the hidden inputs must stay small enough for loops."""
    import json

    import numpy as np

    sys.path.insert(0, str(ROOT / "tests" / "grading"))
    import a1_students as S

    from cnnlib.grading import Grader

    grader = Grader()
    ns = {"np": np, "__name__": "__main__", "GRADER": grader}
    for src in (S.SIZE, S.PAD, S.CORR, S.CONV):
        exec(src, ns)
    nb = json.loads((ROOT / "solutions" / ASSIGNMENT / "convolution.ipynb").read_text())
    slowest = (0.0, "")
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if "### BEGIN HIDDEN TESTS" not in src:
            continue
        code = src.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # each check prints its verdict
            exec(code, dict(ns))
        slowest = max(slowest, (time.perf_counter() - start, cell["metadata"]["nbgrader"][
            "grade_id"]))
    grader.close()
    return slowest, grader.timeout


def main():
    (t_cell, name), budget = loop_margin()
    print(f"slowest hidden check with a four-loop student: {t_cell:.2f} s ({name}); "
          f"budget {budget:.0f} s per cell = {budget / t_cell:.0f}x margin")
    g = _tools()
    samples = ROOT / "examples" / "submissions"
    with tempfile.TemporaryDirectory(prefix="cnn-bench-") as tmp:
        course = g.make_course(Path(tmp) / "course", [ASSIGNMENT])
        startup, _ = _autograde(g, course)  # nothing submitted yet

        one = Path(tmp) / "one"
        shutil.copytree(samples / "alice_complete", one / "alice_complete")
        g.submit(course, one, ASSIGNMENT)
        t_one, proc = _autograde(g, course)
        scores = g.scores(course, ASSIGNMENT)
        if proc.returncode != 0 or "alice_complete" not in scores:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            raise SystemExit("autograde failed")

        t_in_kernel, _ = _autograde(g, course, IN_KERNEL)
        in_kernel_scores = g.scores(course, ASSIGNMENT)["alice_complete"]["total"]

        students = g.submit(course, samples, ASSIGNMENT)
        t_all, _ = _autograde(g, course)

    per_student = t_all / len(students)
    print(f"nbgrader autograde start-up (no submissions):  {startup:6.1f} s")
    print(f"one submission, graded alone:                  {t_one:6.1f} s   "
          f"(goal < {GOAL_ONE:.0f} s: {'met' if t_one < GOAL_ONE else 'NOT MET'})")
    print(f"sample class ({len(students)} students) in one call:   {t_all:6.1f} s   "
          f"= {per_student:.1f} s per student")
    print(f"one submission alone / per-student cost in a class: {t_one / per_student:.2f}")
    print(f"one submission, sandboxed kernel + trusted judge: {t_one:6.1f} s")
    print(f"one submission, nbgrader's in-kernel Execute:    {t_in_kernel:6.1f} s   "
          f"(score {in_kernel_scores:g} vs {scores['alice_complete']['total']:g})")
    print(f"trusted / in-kernel: {t_one / t_in_kernel:.2f}")
    per_assignment(g, samples)


def per_assignment(g, samples):
    """One complete submission of every other assignment, graded alone with the real CLI
    (the nbgrader start-up, about 5 s, included), against the assignment's goal."""
    rows = []
    for name in sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir()):
        if name == ASSIGNMENT or not (samples / "alice_complete" / name).is_dir():
            continue
        with tempfile.TemporaryDirectory(prefix="cnn-bench-") as tmp:
            course = g.make_course(Path(tmp) / "course", [name])
            one = Path(tmp) / "one"
            shutil.copytree(samples / "alice_complete" / name, one / "alice_complete" / name)
            g.submit(course, one, name)
            start = time.perf_counter()
            proc = g.run_nbgrader(course, "autograde", name, "--force", check=False)
            seconds = time.perf_counter() - start
            row = g.scores(course, name).get("alice_complete", {})
        goal = GOALS.get(name)
        verdict = "" if goal is None else (f"(goal < {goal:.0f} s: "
                                           f"{'met' if seconds < goal else 'NOT MET'})")
        score = f"{row.get('total', 0):g}/{row.get('max', 0):g}" if row else "not graded"
        if proc.returncode != 0:
            score += " (autograde failed)"
        rows.append(f"{name:<18} one complete submission: {seconds:6.1f} s, score {score} "
                    f"{verdict}")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
