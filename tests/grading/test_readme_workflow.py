"""The README's instructor section, run command by command in a scratch course.

The commands are read from the README's ``bash`` blocks under "### 1." to "### 6." of
"## For instructors", so the test follows the README when it changes. Every command runs
as written (bash, in the course directory, the course's environment first on PATH, a
scratch HOME whose ``~/Downloads/submissions.zip`` is the LMS download), except the few
in ``NOT_RUN`` (with the reason) and ``jupyter lab``, for which the test enters the manual
scores the way the formgrader does. A command the test does not know fails it.

The class: ``ada_l`` (complete, on time), ``bob2`` (a buggy first attempt on time, then a
partial one 36 h late, renamed ``-1`` by the LMS), ``c_3po`` (buggy, on time), ``dan`` (a
notebook that is not JSON), ``eve`` (on the class list, submitted nothing). Every number
of the export is checked.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow
SAMPLES = ROOT / "examples" / "submissions"

NOT_RUN = {
    ("make", "release"): "regenerates the repository's assignments/; tests/grading/"
                         "test_pipeline.py checks the release against a fresh generation",
    ("git",): "the instructor's review of the release",
}


def instructor_commands(readme: str) -> list[tuple[str, str]]:
    """(step heading, command line) for every line of the bash blocks of steps 1-6."""
    section = readme.split("\n## For instructors", 1)[1].split("\n## ", 1)[0]
    steps = re.split(r"\n(?=### )", section)
    out = []
    for step in steps:
        heading = step.splitlines()[0]
        if not re.match(r"### [1-6]\. ", heading):
            continue
        for block in re.findall(r"```bash\n(.*?)```", step, re.S):
            for line in block.splitlines():
                if shlex.split(line, comments=True):
                    out.append((heading, line))
    return out


def test_the_readme_commands_are_found():
    commands = [c for _, c in instructor_commands((ROOT / "README.md").read_text())]
    words = [shlex.split(c, comments=True)[:2] for c in commands]
    for expected in (["nbgrader", "zip_collect"], ["nbgrader", "autograde"],
                     ["nbgrader", "export"], ["jupyter", "lab"]):
        assert expected in words, commands


def _students_csv():
    return ("id,first_name,last_name,email\n"
            "ada_l,Ada,Lovelace,ada@example.org\n"
            "bob2,Bob,Second,bob@example.org\n"
            "c_3po,See,Threepio,c3po@example.org\n"
            "dan,Dan,Broken,dan@example.org\n"
            "eve,Eve,Absent,eve@example.org\n")


def _lms_zip(path: Path, due: dt.datetime):
    """The LMS download: <id>_<YYYY-MM-DD-HH-MM-SS>_<notebook>.ipynb files in a zip."""
    def name(student, when, notebook="convolution.ipynb"):
        return f"{student}_{when:%Y-%m-%d-%H-%M-%S}_{notebook}"

    nb = "a1-convolution/convolution.ipynb"
    files = {
        name("ada_l", due - dt.timedelta(hours=2)): (SAMPLES / "alice_complete" / nb).read_text(),
        name("bob2", due - dt.timedelta(days=1)): (SAMPLES / "carol_buggy" / nb).read_text(),
        name("bob2", due + dt.timedelta(hours=36), "convolution-1.ipynb"):
            (SAMPLES / "bob_partial" / nb).read_text(),
        name("c_3po", due - dt.timedelta(minutes=5)): (SAMPLES / "carol_buggy" / nb).read_text(),
        name("dan", due - dt.timedelta(hours=1)): "{ this is not a notebook",
        "readme.txt": "downloaded from the LMS",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for n, text in files.items():
            zf.writestr(n, text)


MANUAL = {"ada_l": 3.0, "bob2": 4.0}  # the task, out of 4


def _grade_by_hand(course):
    """What the formgrader does when a score is entered (its GradeHandler.put)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student, score in MANUAL.items():
            grade = gb.find_grade("task_edges", "convolution", "a1-convolution", student)
            grade.manual_score = score
            grade.needs_manual_grade = False
        gb.db.commit()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readme")
    course, home = tmp / "course", tmp / "home"
    course.mkdir()
    # what the instructor's clone of the repository holds
    shutil.copy2(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / "a1-convolution", course / "solutions" / "a1-convolution")
    shutil.copytree(ROOT / "assignments" / "a1-convolution",
                    course / "assignments" / "a1-convolution")
    (course / "tools").symlink_to(ROOT / "tools")
    (course / "students.csv").write_text(_students_csv())
    readme = (ROOT / "README.md").read_text()
    commands = instructor_commands(readme)
    due_text = re.search(r'--duedate="([^"]+)"', readme)[1]
    from cnnlib.grading.collect import parse_time
    due = parse_time(due_text).replace(tzinfo=None)
    _lms_zip(home / "Downloads" / "submissions.zip", due)

    env = {k: v for k, v in os.environ.items() if k != "GRADEBOOK_URL"}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", HOME=str(home), TQDM_DISABLE="1",
               MPLBACKEND="Agg", OMP_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1",
               CNNLIB_GRADING_TIMEOUT="5")
    log = []
    for heading, line in commands:
        words = shlex.split(line, comments=True)
        if any(tuple(words[:len(k)]) == k for k in NOT_RUN):
            log.append((heading, line, None))
            continue
        if words[:2] == ["jupyter", "lab"] or words[:2] == ["jupyter", "notebook"]:
            _grade_by_hand(course)
            log.append((heading, line, "manual scores entered"))
            continue
        if words[0] not in {"nbgrader", "python", "mkdir", "cp"}:
            pytest.fail(f"README command not covered by this test: {line}")
        proc = subprocess.run(["bash", "-c", line], cwd=course, env=env, capture_output=True,
                              text=True, timeout=1800)
        output = proc.stdout + proc.stderr
        # dan's notebook cannot be graded: autograde reports it by id and grades the others
        grading = words[:2] == ["nbgrader", "autograde"] or "cnnlib.grading.workers" in words
        if proc.returncode != 0 and not (grading and "dan" in output):
            pytest.fail(f"{heading}: `{line}` exited {proc.returncode}:\n{output[-4000:]}")
        log.append((heading, line, output))
    return {"course": course, "due": due, "log": log}


def _rows(course):
    with open(course / "grades.csv", newline="") as fh:
        return {r["student_id"]: r for r in csv.DictReader(fh)}


def test_every_step_ran(run):
    steps = {heading.split(".")[0] for heading, _, _ in run["log"]}
    assert steps == {"### 1", "### 2", "### 3", "### 4", "### 5", "### 6"}


def test_collection_kept_the_latest_attempt_and_its_time(run):
    course, due = run["course"], run["due"]
    submitted = course / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == ["ada_l", "bob2", "c_3po", "dan"]
    bob = submitted / "bob2" / "a1-convolution"
    assert sorted(p.name for p in bob.iterdir()) == ["convolution.ipynb", "timestamp.txt"]
    partial = (SAMPLES / "bob_partial/a1-convolution/convolution.ipynb").read_text()
    assert json.loads((bob / "convolution.ipynb").read_text()) == json.loads(partial)
    late = due + dt.timedelta(hours=36)
    assert (bob / "timestamp.txt").read_text().startswith(f"{late:%Y-%m-%d %H:%M:%S}")
    with open(course / "downloaded/a1-convolution/collection_report.csv") as fh:
        report = list(csv.DictReader(fh))
    superseded = [r for r in report if r["status"].startswith("superseded")]
    assert [(r["student_id"], r["file"].rsplit("_", 1)[-1]) for r in superseded] == [
        ("bob2", "convolution.ipynb")]


def test_export_has_every_number(run):
    rows = _rows(run["course"])
    due = run["due"]
    assert sorted(rows) == ["ada_l", "bob2", "c_3po", "dan", "eve"]
    for row in rows.values():
        assert row["assignment"] == "a1-convolution"
        assert row["max_score"] == "25.0"  # 21 autograded + the task's 4
        assert row["duedate"] == f"{due:%Y-%m-%d %H:%M:%S}"
    expect = {  # raw, penalty, score, status, timestamp
        "ada_l": ("24.0", "0.0", "24.0", "graded", due - dt.timedelta(hours=2)),
        # 36 h late = 2 started days = 20 % of 14 autograded + 4 manual
        "bob2": ("18.0", "3.6", "14.4", "graded", due + dt.timedelta(hours=36)),
        "c_3po": ("1.0", "0.0", "1.0", "needs manual grading", due - dt.timedelta(minutes=5)),
        "dan": ("", "", "", "not graded", due - dt.timedelta(hours=1)),
        "eve": ("0.0", "0.0", "0.0", "not submitted", None),
    }
    for student, (raw, penalty, score, status, when) in expect.items():
        row = rows[student]
        got = (row["raw_score"], row["late_submission_penalty"], row["score"], row["status"])
        assert got == (raw, penalty, score, status), (student, row)
        assert row["timestamp"] == ("" if when is None else f"{when:%Y-%m-%d %H:%M:%S}")
    assert "convolution.ipynb" in rows["dan"]["detail"]
    assert (rows["ada_l"]["first_name"], rows["ada_l"]["last_name"],
            rows["ada_l"]["email"]) == ("Ada", "Lovelace", "ada@example.org")


def test_feedback_for_every_graded_student(run):
    feedback = run["course"] / "feedback"
    assert sorted(p.name for p in feedback.iterdir()) == ["ada_l", "bob2", "c_3po"]


def test_make_grade_summary_names_the_broken_submission_and_no_deleted_file(tmp_path):
    """``make grade`` (tools/grade_samples.py) on a class of one good and one broken
    notebook, without --keep."""
    subs = tmp_path / "class"
    (subs / "ada_l" / "a1-convolution").mkdir(parents=True)
    shutil.copy2(SAMPLES / "alice_complete/a1-convolution/convolution.ipynb",
                 subs / "ada_l/a1-convolution/convolution.ipynb")
    (subs / "dan" / "a1-convolution").mkdir(parents=True)
    (subs / "dan/a1-convolution/convolution.ipynb").write_text("{ not a notebook")
    env = {**os.environ, "CNNLIB_GRADING_TIMEOUT": "5", "TQDM_DISABLE": "1"}
    env.pop("GRADEBOOK_URL", None)
    proc = subprocess.run([sys.executable, str(ROOT / "tools/grade_samples.py"),
                           "--submissions", str(subs)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "summary: 2 students in grades.csv: 1 needs manual grading, 1 not graded" in out
    assert "NOT GRADED: dan: convolution.ipynb: autograde failed" in out
    assert re.search(r"^dan\s+not graded$", out, re.M)
    for path in re.findall(r"(?:^|[\s'\"(])(/[\w./-]+\.(?:csv|html|ipynb|db))", out, re.M):
        assert Path(path).exists(), f"the output names {path}, which no longer exists"
    assert "similarity-a1-convolution.csv" in out and "--keep DIR keeps it" in out
