"""Autograde a class with several worker processes sharing one gradebook.

::

    python -m cnnlib.grading.workers a1-convolution --workers 8        # one machine
    python -m cnnlib.grading.workers a1-convolution --shard 3/50       # one job of an array

Every student with a folder ``submitted/<id>/<assignment>/`` is graded by exactly one
worker: locally a pool hands out one student at a time (a slow submission does not hold up
the others); with ``--shard I/N`` (a cluster job array, ``I`` from 0) the job takes every
N-th student of the sorted list, so N jobs cover the class once. Each student is graded by
nbgrader's own autograde (``NbGraderAPI.autograde``, the same converter and preprocessors
as ``nbgrader autograde <assignment> --student <id>``, with the course's
``nbgrader_config.py``), in a worker process that pays nbgrader's start-up once.

Several processes writing one gradebook need a database server: set ``GRADEBOOK_URL`` to a
PostgreSQL URL (see ``nbgrader_config.py``). SQLite serialises writers and may report
"database is locked" under load; one worker is always safe.

Like ``nbgrader autograde``, a student already autograded is skipped unless ``--force``.
A submission that fails is reported by id and the others are graded; the exit status is 1
when any failed. The export marks such students "not graded".
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

__all__ = ["submitted_students", "shard", "load_api", "grade", "main"]

_STATE: dict = {}


def submitted_students(course: Path, assignment: str, submitted_directory: str = "submitted"
                       ) -> list[str]:
    """Sorted ids of the students with a submission of ``assignment``."""
    root = Path(course) / submitted_directory
    return sorted(p.parent.name for p in root.glob(f"*/{assignment}") if p.is_dir())


def shard(students: list[str], index: int, count: int) -> list[str]:
    """The students job ``index`` of ``count`` grades: every ``count``-th from ``index``."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= index < count")
    return list(students)[index::count]


def load_api(course: Path, *, preflight: bool = True):
    """An ``NbGraderAPI`` with the course's ``nbgrader_config.py`` (and ``GRADEBOOK_URL``)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    course = Path(course).resolve()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    if not preflight:  # already done for this run, in the same environment (grade())
        config.TrustedExecute.preflight = False
    coursedir = CourseDirectory(config=config, root=str(course))
    # The API lists nbgrader's exchange when it starts and logs a CRITICAL line when the
    # course has none (a course collecting from an LMS); grading does not use it.
    quiet = logging.getLogger("traitlets")
    was = quiet.disabled
    quiet.disabled = True
    try:
        return NbGraderAPI(coursedir, config=config)
    finally:
        quiet.disabled = was


def _init(course: str, assignment: str, force: bool, preflight: bool = True) -> None:
    os.chdir(course)  # relative paths in the config (sqlite:///gradebook.db) mean the course
    if course not in sys.path:
        sys.path.insert(0, course)
    _STATE.update(api=load_api(Path(course), preflight=preflight), assignment=assignment,
                  force=force)


def _grade_one(student: str) -> dict:
    api, assignment = _STATE["api"], _STATE["assignment"]
    start = time.perf_counter()
    try:
        result = api.autograde(assignment, student, force=_STATE["force"], create=True)
    except Exception as exc:  # NbGraderAPI reports failures in its result; this is a bug
        result = {"success": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"student": student, "success": bool(result.get("success")),
            "error": result.get("error") or "", "seconds": time.perf_counter() - start,
            "pid": os.getpid()}


def _register_students(course: Path, students: list[str]) -> None:
    """Create every student before the workers start, so that no two workers race to
    insert the same row (nbgrader creates a missing student when it grades them)."""
    from nbgrader.api import Gradebook

    api = load_api(course)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        known = {s.id for s in gb.students}
        for student in students:
            if student not in known:
                gb.add_student(student)


def grade(course: Path, assignment: str, students: list[str], *, workers: int = 1,
          force: bool = False, log=print) -> list[dict]:
    """Autograde ``students`` with ``workers`` processes; one result dict per student.

    First the assignment's own source notebook is graded once, in the same sandbox and
    environment (``trusted.preflight``): unless it earns full marks, nobody is graded, every
    result says why, and the workers never start. The workers then skip their own."""
    from .trusted import preflight

    course = Path(course).resolve()
    if not students:
        return []
    start = time.perf_counter()
    problem = preflight(course, assignment)
    if problem:
        log(f"STOPPED before grading anyone: {problem}")
        return [{"student": s, "success": False, "error": problem, "seconds": 0.0,
                 "pid": os.getpid()} for s in students]
    log(f"preflight: {assignment}'s solution earns full marks here "
        f"({time.perf_counter() - start:.1f} s)")
    here = os.getcwd()
    try:
        os.chdir(course)
        _register_students(course, students)
    finally:
        os.chdir(here)
    results = []
    ctx = mp.get_context("spawn")  # a fresh interpreter: no state forked from the caller
    with ctx.Pool(max(1, workers), initializer=_init,
                  initargs=(str(course), assignment, force, False)) as pool:
        for result in pool.imap_unordered(_grade_one, students, chunksize=1):
            results.append(result)
            state = "ok" if result["success"] else "FAILED"
            log(f"[{len(results)}/{len(students)}] {result['student']}: {state} "
                f"({result['seconds']:.1f} s, worker {result['pid']})")
            if not result["success"]:
                log("    " + result["error"].strip().splitlines()[-1] if result["error"]
                    else "    (no error message; see the autograde log)")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", 1)),
                        help="worker processes on this machine (default 1, or $WORKERS)")
    parser.add_argument("--shard", default="",
                        help="I/N: grade only every N-th student from the I-th (0-based), "
                             "e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
    parser.add_argument("--student", action="append", default=[],
                        help="grade only this student (repeatable)")
    parser.add_argument("--force", action="store_true", help="regrade students already graded")
    parser.add_argument("--course", default=".", help="course directory (default: here)")
    args = parser.parse_args(argv)
    course = Path(args.course).resolve()
    students = args.student or submitted_students(course, args.assignment)
    if args.shard:
        index, count = (int(x) for x in args.shard.split("/"))
        students = shard(students, index, count)
    start = time.perf_counter()
    results = grade(course, args.assignment, students, workers=args.workers, force=args.force)
    failed = [r["student"] for r in results if not r["success"]]
    elapsed = time.perf_counter() - start
    print(f"{len(results)} submissions in {elapsed:.0f} s with {args.workers} worker(s)"
          + (f"; not graded: {', '.join(sorted(failed))}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
