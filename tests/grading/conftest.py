"""One graded class for every test of the nbgrader flow (``test_pipeline``, ``test_trusted``).

The sample students, the hostile and broken notebooks, and the adversarial corpus
(``adversaries.py``) are autograded together with the real CLI, in one scratch course,
with honest students graded before (``aa_honest_first``) and after (``zz_honest_last``)
the attackers. nbgrader's start-up is paid once; each test asserts on the gradebook, the
files, the feedback, and on snapshots taken before and after the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import a1_students as S
import adversaries as A
import pytest
from course_tools import load_tool
from system_tools import sandbox_available

from cnnlib.grading import jail

ROOT = Path(__file__).resolve().parents[2]
# What the run itself writes in the course directory; everything else must be unchanged.
RUN_OUTPUTS = ("gradebook.db", "autograded", "feedback", "grading_status", "grades.csv",
               ".nbgrader.log", "similarity.csv")




def snapshot(folder, skip=()):
    """{relative path: sha256} of every file under ``folder``, except the ``skip`` tops."""
    out = {}
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if (rel.parts and rel.parts[0] in skip) or "__pycache__" in rel.parts:
            continue
        if path.is_file() and not path.is_symlink():
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_symlink():
            out[str(rel)] = "symlink -> " + os.readlink(path)
    return out


def sandbox_processes():
    """(pid, uid, cmdline) of every process that outlived its grader: a process of a sandbox
    uid whose grading process (the uid's pid, ``jail.sandbox_uid``) has ended, or of an
    attack marker. Kernels of a grading run still going on (another pytest-xdist worker
    grading another class) are not orphans."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        orphan = uid >= jail.SANDBOX_UID_BASE and not os.path.exists(
            f"/proc/{uid - jail.SANDBOX_UID_BASE}")
        if orphan or "CNNLIB-ATTACK-MARKER" in cmd:
            found.append((int(pid), uid, cmd[:200]))
    return found


def _students(course):
    """Every student of the test class: {name: notebook JSON, text or None}."""
    solution = json.loads((ROOT / "solutions/a1-convolution/convolution.ipynb").read_text())
    complete = S.complete()
    students = {
        "aa_honest_first": S.complete(),
        "solution": solution,
        "released": json.loads(S.RELEASE.read_text()),
        "hostile": S.fill({
            "conv_output_size": S.NOISY_CORRECT,
            "pad2d": S.EXIT.format(name="pad2d"),
            "correlate2d": S.SEGFAULT.format(name="correlate2d"),
            "conv2d": S.HANG.format(name="conv2d"),
        }, task="conv2d(x_photo, np.ones((1, 1, 3, 3)), np.zeros(1))",  # hangs at top level
           extra_cells=["pad2d(np.ones((2, 2)), 1)",  # os._exit at top level
                        "print('still running')",
                        "print('x' * 10_000_000)"]),  # 10 MB of output
        "delegator": S.fill({
            "conv_output_size": S.SIZE, "pad2d": S.DELEGATE_NP_PAD,
            "correlate2d": S.DELEGATE_TORCH, "conv2d": S.DELEGATE_CNNLIB,
        }),
        "tamperer": S.fill({"conv_output_size": S.TAMPER, "pad2d": "pass",
                            "correlate2d": "pass", "conv2d": "pass"}),
        # deletes the setup cell, a visible and a hidden check and the task; empties others
        "rewriter": S.edit_cells(
            S.without_cells(complete, {"setup", "test_conv2d_strided", "test_pad2d_visible",
                                       "task_edges"}),
            {"test_conv_output_size_edges", "test_conv2d_stride1", "test_pad2d_4d"},
            "pass"),
        # runs its own code before the grading setup
        "mover": S.move_cell(S.complete(), "setup", after="conv_output_size"),
        "corrupt": "{ this is not a notebook",
        "missing": None,
        # crashes its own kernel at the top level after defining correct functions
        "crasher": S.fill({"conv_output_size": S.SIZE, "pad2d": S.PAD, "correlate2d": S.CORR,
                           "conv2d": S.CONV},
                          extra_cells=["import ctypes\nctypes.string_at(0)"]),
        "zz_honest_last": S.complete(),
    }
    # The adversarial corpus is graded only in the sandbox (its tests, test_trusted.py, skip
    # without one); the course's own samples above are graded either way.
    if sandbox_available():
        students.update(A.attackers(str(course), str(ROOT)))
    return students


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    grade_samples = load_tool("grade_samples")
    tmp = tmp_path_factory.mktemp("grading")
    course = grade_samples.make_course(tmp / "course", ["a1-convolution"])
    # A stray non-notebook file in solutions/ must never reach the release.
    (course / "solutions/a1-convolution/answers.py").write_text("SECRET = 'solution notes'\n")
    grade_samples.run_nbgrader(course, "generate_assignment", "a1-convolution", "--force")
    subs = tmp / "submissions"
    for student in ("alice_complete", "bob_partial", "carol_buggy"):
        src = ROOT / "examples/submissions" / student
        for f in src.rglob("*.ipynb"):
            dst = subs / f.relative_to(ROOT / "examples/submissions")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(f.read_bytes())
    for name, nb in _students(course).items():
        path = subs / name / "a1-convolution" / "convolution.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        if nb is None:
            (path.parent / "notes.txt").write_text("forgot the notebook")
        else:
            path.write_text(nb if isinstance(nb, str) else json.dumps(nb))
    grade_samples.submit(course, subs, "a1-convolution")
    before = snapshot(course, RUN_OUTPUTS)
    library_before = snapshot(ROOT / "cnnlib")
    site_before = sorted(os.listdir(Path(sys.prefix) / "lib" / "python3.11" / "site-packages"))
    startup = Path.home() / ".ipython" / "profile_default" / "startup"
    startup_before = sorted(os.listdir(startup)) if startup.is_dir() else []
    # shorter budgets than a real run: 3 s per check cell, 10 s per student cell
    os.environ["CNNLIB_GRADING_TIMEOUT"] = "3"
    os.environ["CNNLIB_GRADING_CELL_TIMEOUT"] = "10"
    try:
        result = grade_samples.grade_all(course, subs, "a1-convolution")
    finally:
        del os.environ["CNNLIB_GRADING_TIMEOUT"], os.environ["CNNLIB_GRADING_CELL_TIMEOUT"]
    result["course"] = course
    result["processes_after"] = sandbox_processes()
    result["changed"] = {
        "course": _diff(before, snapshot(course, RUN_OUTPUTS)),
        "library": _diff(library_before, snapshot(ROOT / "cnnlib")),
        "site-packages": sorted(set(site_before) ^ set(os.listdir(
            Path(sys.prefix) / "lib" / "python3.11" / "site-packages"))),
        "ipython startup": sorted(set(startup_before) ^ set(
            os.listdir(startup) if startup.is_dir() else [])),
    }
    return result


def _diff(a, b):
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
