"""A broken grading environment never turns into zeros.

- The sandboxed kernel imports the very ``cnnlib`` the grading process judges with, however
  the course is laid out: the repository with its editable install, a copy of the course
  folder (with its own ``cnnlib/``) next to this checkout's virtualenv, and a wheel
  installed into a folder on ``PYTHONPATH``. Each layout grades the solution to full marks
  with the real ``nbgrader autograde``, and its preflight names the package it checked.
- Preflight: before the first student, ``nbgrader autograde`` grades the assignment's own
  source notebook in the same sandbox. When the environment is broken (a kernel that cannot
  import the course folder's ``cnnlib``, a kernel that cannot start, a5's weight cache that
  cannot be filled) it stops: nbgrader exits non-zero, every student is NOT GRADED with the
  cause (never 0), no autograded notebook or feedback is written for anyone, and
  ``make grade``'s tool stops with the cause. The grading workers preflight once.
- In-process: a locked set-up cell that fails, and a kernel that imports another
  ``cnnlib``, are the grader's failures (NOT GRADED with the reason), not the student's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from course_tools import load_tool
from system_tools import require_sandbox

from cnnlib.grading import jail, trusted

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT, NOTEBOOK = "a1-convolution", "convolution"
SAMPLES = ROOT / "examples" / "submissions"
pytestmark = pytest.mark.slow
grade_samples = load_tool("grade_samples")


def _course(tmp, *, students=("alice_complete", "carol_buggy"), with_library=False):
    """A scratch a1 course with the given sample students submitted."""
    course = grade_samples.make_course(tmp / "course", [ASSIGNMENT])
    if with_library:
        shutil.copytree(ROOT / "cnnlib", course / "cnnlib",
                        ignore=shutil.ignore_patterns("__pycache__"))
    for student in students:
        shutil.copytree(SAMPLES / student / ASSIGNMENT,
                        course / "submitted" / student / ASSIGNMENT)
    return course


def _autograde(course, *args, env=None):
    full = grade_samples.nbgrader_env()
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT,
                           "--force", *args], cwd=course, env=full, capture_output=True,
                          text=True, timeout=600)


def _status(course, student):
    return trusted.read_status(str(course), ASSIGNMENT, student, NOTEBOOK)


def _preflight_package(log):
    """The cnnlib folder the preflight checked, from the autograde log."""
    match = re.search(r"preflight of a1-convolution/convolution\.ipynb: full marks in [\d.]+ s "
                      r"\(cnnlib from (\S+)\)", log)
    assert match, log[-3000:]
    return match.group(1)


def _full_marks(course, student):
    scores = grade_samples.scores(course, ASSIGNMENT)[student]
    auto = {k: v for k, v in scores.items()
            if k.startswith("test_") and not k.endswith(":to-grade")}
    return auto and all(v and v > 0 for v in auto.values())


# --------------------------------------------------------------------------- layouts

def _graded_with(course, package, env=None):
    """Autograde ``course``'s one student (alice_complete); assert the preflight checked
    ``package`` and the student got full autograded marks; return the log."""
    proc = _autograde(course, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert _preflight_package(log) == str(Path(package).resolve())
    assert _status(course, "alice_complete")["graded"] is True
    assert _full_marks(course, "alice_complete")
    return log


def test_repository_layout_grades_with_the_editable_install(tmp_path):
    course = _course(tmp_path, students=("alice_complete",))
    log = _graded_with(course, ROOT / "cnnlib")
    # the preflight grades one notebook per assignment and process, not one per student
    assert log.count("preflight of ") == 1


def test_a_copy_of_the_course_folder_grades_with_its_own_cnnlib(tmp_path):
    """The course folder, copied with its own cnnlib/, graded with this checkout's venv:
    the grading process imports the copy (it runs in the course folder), and so must the
    sandboxed kernel (once, it imported the venv's editable install, which the jail did
    not show, and every student got 0)."""
    course = _course(tmp_path, students=("alice_complete",), with_library=True)
    _graded_with(course, course / "cnnlib")


def test_a_wheel_install_grades(tmp_path):
    # built from a copy of the package's sources: setuptools writes build/ beside them
    src = tmp_path / "src"
    shutil.copytree(ROOT / "cnnlib", src / "cnnlib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(src)], check=True,
                   capture_output=True, timeout=300, cwd=tmp_path)
    (wheel,) = wheels.glob("cnnlib-*.whl")
    site = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(site), str(wheel)], check=True, capture_output=True,
                   timeout=300)
    course = _course(tmp_path, students=("alice_complete",))
    _graded_with(course, site / "cnnlib", env={"PYTHONPATH": str(site)})


# --------------------------------------------------------------------------- broken

def _assert_stopped(course, proc, cause):
    """nbgrader failed, nobody got a grade or feedback, and every status names ``cause``."""
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert cause in log, log[-3000:]
    for student in ("alice_complete", "carol_buggy"):
        status = _status(course, student)
        assert status["graded"] is False and status["environment"] is True, status
        assert cause in status["reasons"][0], status
        assert not (course / "autograded" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb").exists()
    export = grade_samples.run_nbgrader(course, "export")
    assert export.returncode == 0
    rows = grade_samples.exported(course, ASSIGNMENT)
    assert {rows[s]["status"] for s in ("alice_complete", "carol_buggy")} == {"not graded"}
    assert all(rows[s]["score"] in ("", None) for s in ("alice_complete", "carol_buggy"))
    return log


def test_a_kernel_that_cannot_read_the_course_library_stops_at_preflight(tmp_path):
    """A course folder copied with private permissions: the sandbox's unprivileged user
    cannot read its cnnlib. Before the preflight this gave every student 0."""
    require_sandbox()
    if os.geteuid() != 0:
        pytest.skip("the sandbox drops to another user only when grading runs as root")
    course = _course(tmp_path, with_library=True)
    os.chmod(course / "cnnlib", 0o700)
    proc = _autograde(course)
    log = _assert_stopped(course, proc, "the sandboxed kernel cannot import cnnlib")
    assert "preflight stopped grading before any student" in log
    # the second student was never run: its reason is the same cached preflight verdict
    assert log.count("preflight of ") <= 1


def test_a_kernel_that_cannot_start_stops_at_preflight(tmp_path):
    require_sandbox()
    course = _course(tmp_path)
    proc = _autograde(course, "--TrustedExecute.memory_mb=40")
    _assert_stopped(course, proc, "the sandboxed kernel did not start")


def test_a5_without_its_weight_cache_is_not_graded_and_stops_make_grade(tmp_path):
    """a5's pre-trained network cannot be put in the weight cache (CNNLIB_CACHE names a
    file): nobody is graded, and the sample-grading tool stops with the cause."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    subs = tmp_path / "subs"
    shutil.copytree(SAMPLES / "alice_complete" / "a5-transfer",
                    subs / "alice_complete" / "a5-transfer")
    env = {"CNNLIB_CACHE": str(blocker)}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "grade_samples.py"),
                           "--assignment", "a5-transfer", "--submissions", str(subs)],
                          env={**grade_samples.nbgrader_env(), **env}, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "STOPPED: the grader's own environment failed" in out
    assert "could not prepare a5-transfer" in out
    assert "NOT GRADED" in out or "not graded" in out


def test_workers_preflight_once_and_stop_before_anyone(tmp_path, monkeypatch):
    from cnnlib.grading import workers as W

    course = _course(tmp_path)
    calls = []
    real = trusted.preflight

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(trusted, "preflight", counted)
    lines = []
    results = W.grade(course, ASSIGNMENT, ["alice_complete", "carol_buggy"], workers=2,
                      force=True, log=lines.append)
    assert len(calls) == 1 and all(r["success"] for r in results), lines
    assert any(line.startswith("preflight: ") for line in lines)
    # a broken environment: the same check says why, and no worker grades anyone
    monkeypatch.setattr(trusted, "preflight", lambda *a, **k: "the sandboxed kernel "
                        "cannot import cnnlib: ModuleNotFoundError: No module named 'cnnlib'")
    lines.clear()
    results = W.grade(course, ASSIGNMENT, ["alice_complete"], workers=2, force=True,
                      log=lines.append)
    assert [r["success"] for r in results] == [False]
    assert "cannot import cnnlib" in results[0]["error"]
    assert lines[0].startswith("STOPPED before grading anyone")


# --------------------------------------------------------------------------- in-process

def _cell(source, **nbgrader):
    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = dict(nbgrader, schema_version=3)
    return cell


def _step(**kwargs):
    """TrustedExecute with the course's source directory name."""
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.source_directory = "solutions"
    return trusted.TrustedExecute(config=config, **kwargs)


def _source_course(tmp_path, setup_source):
    """A course folder whose source notebook has a locked set-up cell, a solution cell and
    one test cell."""
    test = ('GRADER.check("conv_output_size", conv_output_size, seed=5, '
            'cases=[dict(n=8, kernel_size=3, stride=2, padding=1)])')
    cells = [
        _cell(setup_source, grade=False, solution=False, locked=True, grade_id="imports"),
        _cell("def conv_output_size(n, k, s=1, p=0):\n    return (n + 2 * p - k) // s + 1",
              grade=False, solution=True, locked=False, grade_id="conv_output_size"),
        _cell(test, grade=True, solution=False, locked=True, points=1, grade_id="t"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    folder = tmp_path / "solutions" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{NOTEBOOK}.ipynb")
    return nb, {"t": test}


def test_a_failing_locked_setup_cell_is_the_graders_failure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLIB_GRADING_UNSAFE", "1")
    nb, tests = _source_course(tmp_path, "import a_module_the_grader_lacks")
    monkeypatch.setattr(trusted.TrustedExecute, "trusted_tests", lambda *a: tests)
    resources = {"nbgrader": {"assignment": ASSIGNMENT, "student": "s", "notebook": NOTEBOOK}}
    with pytest.raises(RuntimeError, match="locked set-up cell 'imports' failed"):
        _step(preflight=False).preprocess(nb, resources)
    status = trusted.read_status(str(tmp_path), ASSIGNMENT, "s", NOTEBOOK)
    assert status["graded"] is False and status["environment"] is True
    assert "ModuleNotFoundError" in status["reasons"][0]
    # the same notebook with a working set-up cell is graded, and its preflight passes
    nb, tests = _source_course(tmp_path / "ok", "import numpy as np")
    monkeypatch.chdir(tmp_path / "ok")
    monkeypatch.setattr(trusted.TrustedExecute, "trusted_tests", lambda *a: tests)
    _step().preprocess(nb, resources)
    status = trusted.read_status(str(tmp_path / "ok"), ASSIGNMENT, "s", NOTEBOOK)
    assert status["graded"] is True and status["environment"] is False, status


def test_a_kernel_that_imports_another_cnnlib_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(jail, "reference_package", lambda: str(tmp_path / "elsewhere"))
    kernel = trusted.SandboxedKernel(sandboxed=False)
    try:
        with pytest.raises(trusted.GraderEnvironmentError,
                           match="imports cnnlib from .* the grader from .*elsewhere"):
            kernel.start()
    finally:
        kernel.shutdown()


def test_a_failing_preflight_blames_the_environment_in_every_status(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLIB_GRADING_UNSAFE", "1")
    monkeypatch.setattr(trusted, "_PREFLIGHT", {})
    # the instructor's own solution is wrong here: it loses the check
    nb, tests = _source_course(tmp_path, "import numpy as np")
    source = tmp_path / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    broken = nbformat.read(source, as_version=4)
    broken.cells[1].source = "def conv_output_size(n, k, s=1, p=0):\n    return 0"
    nbformat.write(broken, source)
    monkeypatch.setattr(trusted.TrustedExecute, "trusted_tests", lambda *a: tests)
    step = _step()
    for student in ("s1", "s2"):
        resources = {"nbgrader": {"assignment": ASSIGNMENT, "student": student,
                                  "notebook": NOTEBOOK}}
        with pytest.raises(RuntimeError, match="preflight stopped grading"):
            step.preprocess(nbformat.from_dict(json.loads(json.dumps(nb))), resources)
        status = trusted.read_status(str(tmp_path), ASSIGNMENT, student, NOTEBOOK)
        assert status["environment"] is True and "lost points in 1 check" in \
            status["reasons"][0], status
    assert len(trusted._PREFLIGHT) == 1


def test_an_assignments_preparation_runs_once_and_its_failure_is_not_hidden():
    import types

    calls = []
    ok_module = types.SimpleNamespace(ASSIGNMENT="a8-test", prepare=lambda: calls.append(1))
    trusted._prepare(ok_module)
    trusted._prepare(ok_module)
    assert calls == [1]

    def fail():
        raise FileNotFoundError("no weights in the cache")

    failing = types.SimpleNamespace(ASSIGNMENT="a9-test", prepare=fail)
    with pytest.raises(FileNotFoundError, match="no weights"):
        trusted._prepare(failing)
    # remembered: the next notebook is not graded at once, without preparing again
    failing.prepare = lambda: calls.append(2)
    with pytest.raises(FileNotFoundError, match="no weights"):
        trusted._prepare(failing)
    assert calls == [1]
    trusted._prepare(types.SimpleNamespace(ASSIGNMENT="a7-test"))  # nothing to prepare
