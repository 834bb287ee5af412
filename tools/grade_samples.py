"""Grade the sample class in examples/submissions/ with the real nbgrader flow (`make grade`).

Everything happens in a scratch copy of the course directory, so no real gradebook,
``submitted/`` or ``feedback/`` folder of the repository is touched:

1. copy ``nbgrader_config.py`` and ``solutions/`` into the scratch directory and run
   ``nbgrader generate_assignment`` (it records the graded cells in a fresh gradebook);
2. copy ``examples/submissions/<student>/<assignment>/`` to ``submitted/``;
3. ``nbgrader autograde`` every student in one call (or ``--workers N`` processes,
   :mod:`cnnlib.grading.workers`), ``nbgrader generate_feedback``, ``nbgrader export``
   (``grades.csv``, with a status per student) and a summary naming every student who
   could not be graded;
4. check each student's notebook came through (a corrupt or missing notebook is reported
   by student and file, the others are still graded), scan the feedback for hidden-test
   code, and print a score table;
5. print the similarity report (``tools/similarity_report.py``: pairs of students, or a
   student and the library, whose code is nearly the same) and write
   ``similarity-<assignment>.csv``.

Every assignment in ``solutions/`` that has sample submissions is graded, one score table
per assignment (columns: its graded functions, from its spec module in ``cnnlib/grading``).

Usage: ``python tools/grade_samples.py [--assignment a1-convolution ...] [--keep DIR]
[--workers N]`` (``make grade WORKERS=N``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


def nbgrader_env():
    """Environment for nbgrader subprocesses: the venv first on PATH (nbgrader runs
    ``alembic`` by name), one BLAS thread, no progress bars, a headless matplotlib."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MPLBACKEND", "Agg")
    env["TQDM_DISABLE"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def run_nbgrader(course, *args, check=True):
    """Run ``nbgrader <args>`` in ``course``; return the CompletedProcess."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    proc = subprocess.run(cmd, cwd=course, env=nbgrader_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def make_course(dest, assignments=None):
    """A scratch course directory with the config, the solutions and a fresh release."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "nbgrader_config.py", dest / "nbgrader_config.py")
    names = assignments or sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    for name in names:
        shutil.copytree(ROOT / "solutions" / name, dest / "solutions" / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        run_nbgrader(dest, "generate_assignment", name, "--force")
    return dest


def submit(course, submissions, assignment):
    """Copy ``submissions/<student>/<assignment>/`` into the course's ``submitted/``."""
    students = []
    for student_dir in sorted(Path(submissions).iterdir()):
        src = student_dir / assignment
        if not src.is_dir():
            continue
        dst = Path(course) / "submitted" / student_dir.name / assignment
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        students.append(student_dir.name)
    return students


def notebook_names(course, assignment):
    return sorted(p.name for p in (Path(course) / "assignments" / assignment).glob("*.ipynb"))


def problems(course, assignment, students):
    """{student: message} for every notebook that could not be autograded."""
    found = {}
    for student in students:
        for name in notebook_names(course, assignment):
            sub = Path(course) / "submitted" / student / assignment / name
            out = Path(course) / "autograded" / student / assignment / name
            if not sub.exists():
                found[student] = f"{student}: {assignment}/{name} is missing from the submission"
                continue
            try:
                json.loads(sub.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                found[student] = (f"{student}: {assignment}/{name} is not a readable notebook "
                                  f"({type(exc).__name__}: {exc})")
                continue
            if not out.exists():
                found[student] = f"{student}: {assignment}/{name} could not be autograded"
                continue
            status = _status(course, assignment, student, name)
            if status is None or not status.get("graded"):
                reasons = "; ".join((status or {}).get("reasons", [])) or "no grading status"
                found[student] = f"{student}: {assignment}/{name} was NOT GRADED ({reasons})"
    return found


def _status(course, assignment, student, notebook_file):
    """The trusted autograder's marker for one notebook (cnnlib.grading.trusted)."""
    from cnnlib.grading.trusted import read_status

    return read_status(str(course), assignment, student, Path(notebook_file).stem)


# Code a student has no reason to write in these assignments, which could interfere with
# grading from inside the kernel. A match is not a verdict: it lists the submission for a
# human to look at, like the similarity report.
REVIEW_PATTERNS = {
    "uses the grader object": r"\bGRADER\b|\bGrader\b|cnnlib\.grading",
    "mentions cnnlib": r"\bcnnlib\b",
    "touches numpy's testing helpers": r"\b(np|numpy)\.testing\b",
    "assigns to a numpy attribute": r"^\s*(np|numpy)(\.\w+)+\s*=[^=]",
    "touches interpreter internals": (r"sys\.(setprofile|settrace|modules|addaudithook|_getframe)"
                                      r"|__code__|__globals__|__builtins__|\bbuiltins\b"
                                      r"|get_ipython|\bgc\.|\bimport gc\b|object\.__setattr__"),
    "ends or starts processes": r"os\._exit|os\.(fork|kill|system)|subprocess|ctypes|\bsignal\.",
    "imports indirectly": r"importlib|__import__",
}


def review_flags(course, assignment, students):
    """{student: [reason, ...]} for submissions whose own cells match REVIEW_PATTERNS."""
    flags = {}
    for student in students:
        for nb_path in sorted((Path(course) / "submitted" / student / assignment).glob("*.ipynb")):
            try:
                cells = json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
                continue
            own = []
            for cell in cells:
                meta = cell.get("metadata", {}).get("nbgrader", {})
                if cell.get("cell_type") == "code" and not meta.get("locked"):
                    src = cell.get("source", "")
                    own.append(src if isinstance(src, str) else "".join(src))
            text = "\n".join(own)
            reasons = [why for why, pattern in REVIEW_PATTERNS.items()
                       if re.search(pattern, text, re.M)]
            if reasons:
                flags[student] = reasons
    return flags


def hidden_snippets(course, assignment, *, solutions=False):
    """Non-trivial lines of the hidden tests (and, optionally, of the solution regions) of
    the source notebooks. Feedback is scanned for hidden tests only: a student's own code
    may well coincide with a line of the solution."""
    lines = set()
    for nb in (Path(course) / "solutions" / assignment).glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            src = "".join(cell["source"])
            regions = HIDDEN.findall(src) + (SOLUTION.findall(src) if solutions else [])
            for region in regions:
                lines.update(ln.strip() for ln in region.splitlines() if len(ln.strip()) > 12)
    return lines


def leaks(paths, snippets):
    """(file, line) for every snippet found in the given files."""
    found = []
    for path in paths:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        text = text.replace("&quot;", '"').replace("&#39;", "'").replace("&lt;", "<").replace(
            "&gt;", ">").replace("&amp;", "&")
        text = re.sub(r"<[^>]+>", "", text)  # highlighted code is split into spans
        found += [(str(path), s) for s in snippets if s in text]
    return found


def gradebook_url(course):
    """The course's gradebook: ``GRADEBOOK_URL`` when set (as in ``nbgrader_config.py``),
    else the course's ``gradebook.db``."""
    return os.environ.get("GRADEBOOK_URL") or f"sqlite:///{Path(course) / 'gradebook.db'}"


def exported(course, assignment=None):
    """The rows of the course's ``grades.csv`` for one assignment (``{student: row}``, all
    assignments' rows when there is only one), with their status."""
    import csv

    path = Path(course) / "grades.csv"
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["student_id"]: row for row in csv.DictReader(fh)
                if assignment is None or row.get("assignment") == assignment}


def summary(result):
    """One line per status of the export, naming every student who was not graded."""
    rows = result.get("export", {})
    counts = {}
    for row in rows.values():
        counts.setdefault(row.get("status", "?"), []).append(row["student_id"])
    parts = [f"{len(ids)} {status}" for status, ids in sorted(counts.items())]
    lines = [f"summary: {len(rows)} students in grades.csv: {', '.join(parts)}"]
    for sid, row in sorted(rows.items()):
        if row.get("status") == "not graded":
            lines.append(f"NOT GRADED: {sid}: {row.get('detail', '')} (empty score in "
                         "grades.csv, not 0)")
    return "\n".join(lines)


def scores(course, assignment):
    """{student: {"total": float, "max": float, cell_name: score, ...}} from the gradebook."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(gradebook_url(course)) as gb:
        for sub in gb.assignment_submissions(assignment):
            row = {"total": sub.score, "max": sub.max_score,
                   "late_penalty": sub.late_submission_penalty}
            for nb in sub.notebooks:
                for grade in nb.grades:
                    row[grade.name] = grade.score
                    if grade.needs_manual_grade:
                        row[f"{grade.name}:to-grade"] = True
            out[sub.student.id] = row
    return out


def autograde_with_workers(course, assignment, students, workers):
    """``python -m cnnlib.grading.workers``: one worker process per core asked for;
    returns an object shaped like a CompletedProcess, for the log."""
    import contextlib
    import io
    import types

    from cnnlib.grading import workers as W

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        results = W.grade(course, assignment, students, workers=workers, force=True)
    log = out.getvalue() + "".join(r["error"] for r in results if not r["success"])
    return types.SimpleNamespace(returncode=int(any(not r["success"] for r in results)),
                                 stdout=log, stderr="")


def prepare(assignment):
    """What grading the assignment needs on this machine first: its spec module's
    ``prepare()`` when it has one (a5-transfer: the pre-trained network in the weight cache,
    which the grading sandbox shows read-only)."""
    from cnnlib.grading import specs

    step = getattr(specs.load(assignment), "prepare", None)
    if step is not None:
        step()


def grade_all(course, submissions, assignment, workers=1):
    """The whole flow; return a dict with scores, problems, leaks and timings. With
    ``workers`` > 1, autograde runs in that many worker processes (one gradebook)."""
    timings = {}
    students = submit(course, submissions, assignment)
    try:
        prepare(assignment)
    except Exception as exc:  # noqa: BLE001 - the grader's failure: stop, grade nobody
        return {"stopped": f"the grader could not prepare {assignment} "
                           f"({type(exc).__name__}: {exc})", "students": students,
                "assignment": assignment}
    start = time.perf_counter()
    if workers > 1:
        autograde = autograde_with_workers(course, assignment, students, workers)
    else:
        autograde = run_nbgrader(course, "autograde", assignment, "--force", check=False)
    timings["autograde"] = time.perf_counter() - start
    start = time.perf_counter()
    feedback = run_nbgrader(course, "generate_feedback", assignment, "--force", check=False)
    timings["feedback"] = time.perf_counter() - start
    run_nbgrader(course, "export")
    html = sorted((Path(course) / "feedback").glob(f"*/{assignment}/*.html"))
    log = autograde.stdout + autograde.stderr
    return {
        "stopped": environment_failure(course, assignment, students, log),
        "students": students,
        "scores": scores(course, assignment),
        "problems": problems(course, assignment, students),
        "review": review_flags(course, assignment, students),
        "feedback": html,
        "leaks": leaks(html, hidden_snippets(course, assignment)),
        "timings": timings,
        "autograde_log": log,
        "feedback_log": feedback.stdout + feedback.stderr,
        "grades_csv": Path(course) / "grades.csv",
        "export": exported(course, assignment),
        "assignment": assignment,
    }


def environment_failure(course, assignment, students, log=""):
    """Why grading stopped for a failure of the grader's own environment (the preflight or
    a kernel that cannot run the course's set-up), or None. Such a notebook is NOT GRADED,
    never 0; the instructor fixes the environment and grades again."""
    match = re.search(r"STOPPED before grading anyone: (.*)", log)
    if match:
        return match.group(1).strip()
    for student in students:
        for name in notebook_names(course, assignment):
            status = _status(course, assignment, student, name)
            if status and status.get("environment"):
                return "; ".join(status.get("reasons", [])) or "the grader's environment failed"
    return None


def columns(assignment):
    """The table's columns for an assignment: its graded functions, in the spec module's
    order (a notebook's autograded cells are named ``test_<function>_<what>``)."""
    from cnnlib.grading import specs

    return list(specs.load(assignment).FUNCTIONS)


def table(result, assignment=None):
    """The score table of one assignment: points per graded function, the autograded
    total, the hand-graded tasks (``task_*`` cells; 'todo' while they wait), and problems."""
    assignment = assignment or result.get("assignment") or "a1-convolution"
    funcs = columns(assignment)
    width = {f: max(6, len(f) + 1) for f in funcs}
    name_width = max([20] + [len(s) + 2 for s in result["students"]])
    rows = [f"{'student':<{name_width}}" + "".join(f"{f:>{width[f]}}" for f in funcs)
            + f"{'auto':>8}{'task':>6}"]
    export = result.get("export", {})
    for student in result["students"]:
        row = result["scores"].get(student)
        if row is None or export.get(student, {}).get("status") == "not graded":
            rows.append(f"{student:<{name_width}}  not graded")
            continue
        cells = [sum(v for k, v in row.items() if k.startswith(f"test_{func}_")
                     and not isinstance(v, bool) and isinstance(v, (int, float)))
                 for func in funcs]
        tasks = {k: v for k, v in row.items() if k.startswith("task_") and ":" not in k}
        if not tasks:
            task_s = "-"
        elif any(row.get(f"{k}:to-grade") for k in tasks):
            task_s = "todo"
        else:
            task_s = f"{sum(v or 0 for v in tasks.values()):g}"
        rows.append(f"{student:<{name_width}}" + "".join(f"{c:>{width[f]}g}" for f, c in zip(
            funcs, cells)) + f"{sum(cells):>8g}{task_s:>6}")
    for message in result["problems"].values():
        rows.append(f"problem: {message}")
    for student, reasons in result.get("review", {}).items():
        rows.append(f"review: {student}: {'; '.join(reasons)}")
    return "\n".join(rows)


def assignments_with_samples(submissions):
    """The assignments in ``solutions/`` that at least one sample student submitted."""
    names = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    subs = Path(submissions)
    return [a for a in names if any((d / a).is_dir() for d in subs.iterdir() if d.is_dir())]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", action="append",
                        help="grade only this assignment (repeatable); default: every "
                             "assignment in solutions/ that has sample submissions")
    parser.add_argument("--submissions", default=str(ROOT / "examples" / "submissions"))
    parser.add_argument("--keep", help="use this directory as the scratch course and keep it")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS") or 1),
                        help="autograde with this many worker processes (default 1, or "
                             "$WORKERS); more than one grades into a scratch PostgreSQL "
                             "gradebook when the server is installed")
    args = parser.parse_args(argv)
    names = args.assignment or assignments_with_samples(args.submissions)
    if not names:
        print(f"no submissions found in {args.submissions}")
        return 1
    status = 0
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="cnn-grade-"))
        if args.workers > 1 and not os.environ.get("GRADEBOOK_URL"):
            stack.enter_context(_shared_gradebook())
        course = Path(args.keep) if args.keep else Path(tmp) / "course"
        if course.exists() and args.keep:
            shutil.rmtree(course)
        make_course(course, names)
        for assignment in names:
            status |= _grade_one(course, args, assignment)
            if status & 2:
                return status
        print(f"\n{course / 'grades.csv' if args.keep else 'grades.csv'} (every assignment):\n"
              f"{(course / 'grades.csv').read_text().strip()}")
        if args.keep:
            print(f"\nthe scratch course is kept in {course.resolve()}")
        else:
            print("\nThe scratch course (grades.csv, similarity-*.csv, feedback) is deleted now; "
                  "--keep DIR keeps it.")
    return status


def _grade_one(course, args, assignment):
    """Grade one assignment's samples and print its table; 1 when feedback leaks, 2 when
    the grader's environment failed (grading stops)."""
    print(f"\n=== {assignment} ===")
    result = grade_all(course, args.submissions, assignment, workers=args.workers)
    if result["stopped"]:
        print(f"STOPPED: the grader's own environment failed, so nobody was given a grade "
              f"(every notebook is NOT GRADED, none is 0): {result['stopped']}")
        print("Fix the environment and run make grade again.")
        return 2
    print(table(result, assignment))
    n = len(result["students"])
    print(f"\nautograde {result['timings']['autograde']:.1f} s for {n} students "
          f"({result['timings']['autograde'] / max(n, 1):.1f} s each, {args.workers} "
          f"worker(s)); feedback {result['timings']['feedback']:.1f} s; task: 'todo' = waits "
          "for manual grading")
    print(summary(result))
    if result["leaks"]:
        print("HIDDEN TEST OR SOLUTION CODE IN FEEDBACK:", *result["leaks"], sep="\n  ")
        return 1
    print(f"feedback: {len(result['feedback'])} HTML files, no hidden-test code found")
    print()
    if args.keep:
        similarity_report(course, assignment)
    else:
        # the scratch course goes at exit: name its files, not their deleted paths
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            similarity_report(course, assignment)
        print(out.getvalue().replace(f"{course}{os.sep}", "").rstrip())
    return 0


@contextlib.contextmanager
def _shared_gradebook():
    """A scratch PostgreSQL gradebook for several workers (``GRADEBOOK_URL`` while it
    runs); SQLite, with a warning, when no server is installed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scratch_postgres import postgres_bin, scratch_postgres

    if postgres_bin() is None:
        print("warning: several workers share an SQLite gradebook (install the Debian package "
              "'postgresql' for a server)", file=sys.stderr)
        yield None
        return
    with scratch_postgres() as url:
        os.environ["GRADEBOOK_URL"] = url
        try:
            yield url
        finally:
            del os.environ["GRADEBOOK_URL"]


def similarity_report(course, assignment, top=15):
    """Print the ``top`` most similar pairs of the graded class and write them all to
    ``similarity-<assignment>.csv`` next to ``grades.csv`` (``tools/similarity_report.py``;
    it changes no grade). The samples share code by design, so their list is long."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "similarity_report", Path(__file__).resolve().parent / "similarity_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([assignment, "--course", str(course), "--top", str(top),
                        "--csv", str(Path(course) / f"similarity-{assignment}.csv")])


if __name__ == "__main__":
    sys.exit(main())
