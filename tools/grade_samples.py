"""Grade the sample class in examples/submissions/ with the real nbgrader flow (`make grade`).

Everything happens in a scratch copy of the course directory, so no real gradebook,
``submitted/`` or ``feedback/`` folder of the repository is touched:

1. copy ``nbgrader_config.py`` and ``solutions/`` into the scratch directory and run
   ``nbgrader generate_assignment`` (it records the graded cells in a fresh gradebook);
2. copy ``examples/submissions/<student>/<assignment>/`` to ``submitted/``;
3. ``nbgrader autograde`` every student in one call, ``nbgrader generate_feedback``,
   ``nbgrader export`` (``grades.csv``);
4. check each student's notebook came through (a corrupt or missing notebook is reported
   by student and file, the others are still graded), scan the feedback for hidden-test
   code, and print a score table;
5. print the similarity report (``tools/similarity_report.py``: pairs of students, or a
   student and the library, whose code is nearly the same) and write ``similarity.csv``.

Usage: ``python tools/grade_samples.py [--assignment a1-convolution] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
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
                                      r"|get_ipython"),
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


def scores(course, assignment):
    """{student: {"total": float, "max": float, cell_name: score, ...}} from the gradebook."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}") as gb:
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


def grade_all(course, submissions, assignment):
    """The whole flow; return a dict with scores, problems, leaks and timings."""
    timings = {}
    students = submit(course, submissions, assignment)
    start = time.perf_counter()
    autograde = run_nbgrader(course, "autograde", assignment, "--force", check=False)
    timings["autograde"] = time.perf_counter() - start
    start = time.perf_counter()
    feedback = run_nbgrader(course, "generate_feedback", assignment, "--force", check=False)
    timings["feedback"] = time.perf_counter() - start
    run_nbgrader(course, "export")
    html = sorted((Path(course) / "feedback").glob(f"*/{assignment}/*.html"))
    return {
        "students": students,
        "scores": scores(course, assignment),
        "problems": problems(course, assignment, students),
        "review": review_flags(course, assignment, students),
        "feedback": html,
        "leaks": leaks(html, hidden_snippets(course, assignment)),
        "timings": timings,
        "autograde_log": autograde.stdout + autograde.stderr,
        "feedback_log": feedback.stdout + feedback.stderr,
        "grades_csv": Path(course) / "grades.csv",
    }


TABLE_COLUMNS = [
    ("conv_output_size", "size"), ("pad2d", "pad"), ("correlate2d", "corr"), ("conv2d", "conv"),
]


def table(result):
    """The score table: points per graded function, the total, and problems."""
    rows = [f"{'student':<20}" + "".join(f"{short:>7}" for _, short in TABLE_COLUMNS)
            + f"{'auto':>8}{'task':>6}"]
    for student in result["students"]:
        row = result["scores"].get(student)
        if row is None:
            rows.append(f"{student:<20}  not graded")
            continue
        cells = []
        for func, _ in TABLE_COLUMNS:
            cells.append(sum(v for k, v in row.items() if k.startswith(f"test_{func}_")
                             and not isinstance(v, bool) and isinstance(v, (int, float))))
        auto = sum(cells)
        task = row.get("task_edges")
        task_s = "-" if task is None else "todo" if row.get("task_edges:to-grade") else f"{task:g}"
        rows.append(f"{student:<20}" + "".join(f"{c:>7g}" for c in cells)
                    + f"{auto:>8g}{task_s:>6}")
    for message in result["problems"].values():
        rows.append(f"problem: {message}")
    for student, reasons in result.get("review", {}).items():
        rows.append(f"review: {student}: {'; '.join(reasons)}")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="a1-convolution")
    parser.add_argument("--submissions", default=str(ROOT / "examples" / "submissions"))
    parser.add_argument("--keep", help="use this directory as the scratch course and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cnn-grade-") as tmp:
        course = Path(args.keep) if args.keep else Path(tmp) / "course"
        if course.exists() and args.keep:
            shutil.rmtree(course)
        make_course(course, [args.assignment])
        result = grade_all(course, args.submissions, args.assignment)
        print(table(result))
        print(f"\nautograde {result['timings']['autograde']:.1f} s for "
              f"{len(result['students'])} students; feedback "
              f"{result['timings']['feedback']:.1f} s; task: 'todo' = waits for manual grading")
        print(f"\n{result['grades_csv'].name}:\n{result['grades_csv'].read_text().strip()}")
        if result["leaks"]:
            print("HIDDEN TEST OR SOLUTION CODE IN FEEDBACK:", *result["leaks"], sep="\n  ")
            return 1
        print(f"feedback: {len(result['feedback'])} HTML files, no hidden-test code found")
        if not result["students"]:
            print("no submissions found")
            return 1
        print()
        similarity_report(course, args.assignment)
    return 0


def similarity_report(course, assignment):
    """Print the similarity report of the graded class and write ``similarity.csv`` next
    to ``grades.csv`` (``tools/similarity_report.py``; it changes no grade)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "similarity_report", Path(__file__).resolve().parent / "similarity_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([assignment, "--course", str(course)])


if __name__ == "__main__":
    sys.exit(main())
