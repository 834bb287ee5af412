"""A PostgreSQL gradebook and parallel workers (cnnlib/grading/workers.py).

A real PostgreSQL server (Debian's ``postgresql`` package, started by
``tools/scratch_postgres.py`` on a free local port) holds the gradebook; two worker
processes autograde the class into it; the export must equal the one of the same class
graded by plain ``nbgrader autograde`` into SQLite, and the gradebook must hold each
student's grades once.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from course_tools import load_tool
from system_tools import require_postgres

from cnnlib.grading import workers as W

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
sys.path.insert(0, str(ROOT / "tools"))
from scratch_postgres import postgres_bin, scratch_postgres  # noqa: E402

grade_samples = load_tool("grade_samples")
ASSIGNMENT = "a1-convolution"
STUDENTS = ["alice_complete", "bob_partial", "carol_buggy", "x_broken_7"]


def test_shards_cover_the_class_once():
    students = [f"s{i:03d}" for i in range(23)]
    for count in (1, 2, 5, 23, 40):
        parts = [W.shard(students, i, count) for i in range(count)]
        flat = [s for part in parts for s in part]
        assert sorted(flat) == students and len(flat) == len(set(flat))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError):
        W.shard(students, 2, 2)


def _class(tmp):
    subs = tmp / "class"
    for student in STUDENTS[:3]:
        shutil.copytree(ROOT / "examples/submissions" / student, subs / student)
    broken = subs / STUDENTS[3] / ASSIGNMENT
    broken.mkdir(parents=True)
    (broken / "convolution.ipynb").write_text("{ not a notebook")
    return subs


def _export(course):
    grade_samples.run_nbgrader(course, "export")
    with open(course / "grades.csv", newline="") as fh:
        return {r["student_id"]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if postgres_bin() is None:
        require_postgres("the grading workers' shared PostgreSQL gradebook")
    tmp = tmp_path_factory.mktemp("workers")
    subs = _class(tmp)
    saved = {k: os.environ.get(k) for k in ("GRADEBOOK_URL", "CNNLIB_GRADING_TIMEOUT")}
    os.environ["CNNLIB_GRADING_TIMEOUT"] = "5"
    try:
        # SQLite, plain nbgrader autograde: the reference
        os.environ.pop("GRADEBOOK_URL", None)
        lite = grade_samples.make_course(tmp / "sqlite", [ASSIGNMENT])
        grade_samples.submit(lite, subs, ASSIGNMENT)
        grade_samples.run_nbgrader(lite, "autograde", ASSIGNMENT, check=False)
        lite_rows = _export(lite)
        with scratch_postgres() as url:
            os.environ["GRADEBOOK_URL"] = url
            course = grade_samples.make_course(tmp / "postgres", [ASSIGNMENT])
            grade_samples.submit(course, subs, ASSIGNMENT)
            students = W.submitted_students(course, ASSIGNMENT)
            results = W.grade(course, ASSIGNMENT, students, workers=2, log=lambda _: None)
            pg_rows = _export(course)
            from sqlalchemy import create_engine, text

            engine = create_engine(url)
            with engine.connect() as conn:
                counts = {row[0]: tuple(row[1:]) for row in conn.execute(text(
                    "select s.student_id, count(g.id), count(distinct g.cell_id) "
                    "from submitted_assignment s "
                    "join submitted_notebook n on n.assignment_id = s.id "
                    "join grade g on g.notebook_id = n.id group by s.student_id"))}
                submissions = conn.execute(text(
                    "select count(*) from submitted_assignment")).scalar()
            engine.dispose()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return dict(lite=lite_rows, pg=pg_rows, results=results, counts=counts,
                submissions=submissions, url=url)


def test_each_student_graded_once_by_two_workers(graded):
    results = graded["results"]
    assert sorted(r["student"] for r in results) == sorted(STUDENTS)
    assert len({r["pid"] for r in results}) == 2  # both workers took students
    ok = {r["student"]: r["success"] for r in results}
    assert ok == {"alice_complete": True, "bob_partial": True, "carol_buggy": True,
                  "x_broken_7": False}


def test_postgres_gradebook_holds_each_grade_once(graded):
    assert graded["url"].startswith("postgresql://")
    assert graded["submissions"] == len(STUDENTS)
    # one grade per graded cell (13 checks) and task (the edge-detection task) of the
    # notebook, per student: none lost, none twice
    nb = json.loads((ROOT / "solutions" / ASSIGNMENT / "convolution.ipynb").read_text())
    meta = [c["metadata"].get("nbgrader", {}) for c in nb["cells"]]
    cells = sum(1 for m in meta if m.get("grade") or m.get("task"))
    assert graded["counts"] == dict.fromkeys(STUDENTS, (cells, cells))


def test_postgres_export_equals_sqlite_export(graded):
    lite, pg = graded["lite"], graded["pg"]
    assert sorted(pg) == sorted(STUDENTS)
    assert pg == lite
    assert pg["alice_complete"]["raw_score"] == "21.0"
    assert pg["bob_partial"]["raw_score"] == "14.0"
    assert pg["carol_buggy"]["raw_score"] == "1.0"
    assert pg["x_broken_7"]["status"] == "not graded" and pg["x_broken_7"]["score"] == ""
