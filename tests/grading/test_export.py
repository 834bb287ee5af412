"""grades.csv rows (cnnlib/grading/export.py) from a gradebook as nbgrader records it:
the late penalty on the final score, and a status that never turns a failure into 0."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace as NS

from nbgrader.api import MissingEntry

from cnnlib.grading.export import CourseCsvExport
from cnnlib.grading.late import LatePenalty

DUE = dt.datetime(2026, 10, 2, 23, 59)


def _grade(kind, auto=None, manual=None):
    return NS(cell=NS(cell_type="code" if kind == "test" else "markdown"), auto_score=auto,
              manual_score=manual)


def _submission(grades, *, late_hours=0.0, manual_pending=False):
    score = sum((g.manual_score if g.manual_score is not None else g.auto_score) or 0
                for g in grades)
    nb = NS(name="convolution", grades=grades)
    return NS(notebooks=[nb], score=score, needs_manual_grade=manual_pending,
              timestamp=DUE + dt.timedelta(hours=late_hours),
              total_seconds_late=max(0.0, late_hours * 3600.0),
              late_submission_penalty=0.0)


class FakeGradebook:
    def __init__(self, submissions, students):
        self.assignments = [NS(name="a1-convolution", duedate=DUE, max_score=25.0)]
        self.students = [NS(id=s, first_name="", last_name="", email="") for s in students]
        self.submissions = submissions

    def find_submission(self, assignment, student):
        if student not in self.submissions:
            raise MissingEntry()
        return self.submissions[student]


def _rows(gradebook, **late):
    export = CourseCsvExport()
    export.config.AssignLatePenalties.plugin_class = "cnnlib.grading.late.LatePenalty"
    for k, v in late.items():
        setattr(export.config.LatePenalty, k, v)
    return {r["student_id"]: r for r in export.rows(gradebook)}


def test_late_penalty_covers_manual_points_whatever_the_order():
    # autograded 21, then a manual 4: nbgrader's autograde-time penalty saw only the 21
    graded = _submission([_grade("test", 21.0), _grade("task", manual=4.0)], late_hours=36)
    graded.late_submission_penalty = 4.2  # what autograde recorded (20 % of 21)
    rows = _rows(FakeGradebook({"bob": graded}, ["bob"]))
    assert (rows["bob"]["raw_score"], rows["bob"]["late_submission_penalty"],
            rows["bob"]["score"], rows["bob"]["status"]) == ("25.0", "5.0", "20.0", "graded")


def test_grace_and_cap_from_the_configuration():
    subs = {"a": _submission([_grade("test", 20.0)], late_hours=0.2),   # 12 min late
            "b": _submission([_grade("test", 20.0)], late_hours=0.3),   # 18 min
            "c": _submission([_grade("test", 20.0)], late_hours=24 * 9)}
    rows = _rows(FakeGradebook(subs, list(subs)), grace_minutes=15.0, max_percent=50.0)
    assert [rows[s]["score"] for s in "abc"] == ["20.0", "18.0", "10.0"]


def test_not_graded_is_never_a_zero():
    failed = _submission([_grade("test"), _grade("test"), _grade("task")])
    zero = _submission([_grade("test", 0.0), _grade("test", 0.0), _grade("task")],
                       manual_pending=True)
    rescued = _submission([_grade("test"), _grade("test", manual=3.0), _grade("task", manual=1)])
    gb = FakeGradebook({"failed": failed, "zero": zero, "rescued": rescued},
                       ["failed", "zero", "rescued", "absent"])
    rows = _rows(gb)
    assert (rows["failed"]["status"], rows["failed"]["raw_score"], rows["failed"]["score"]) \
        == ("not graded", "", "")
    assert "convolution.ipynb: autograde failed" in rows["failed"]["detail"]
    assert (rows["zero"]["status"], rows["zero"]["score"]) == ("needs manual grading", "0.0")
    assert (rows["rescued"]["status"], rows["rescued"]["score"]) == ("graded", "4.0")
    assert (rows["absent"]["status"], rows["absent"]["score"]) == ("not submitted", "0.0")


def test_a_collected_submission_never_autograded_is_listed(tmp_path):
    (tmp_path / "submitted" / "ghost" / "a1-convolution").mkdir(parents=True)
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Configurable

    app = Configurable()
    app.coursedir = CourseDirectory(root=str(tmp_path))  # as ExportApp has one
    export = CourseCsvExport(parent=app)
    rows = {r["student_id"]: r for r in export.rows(FakeGradebook({}, []))}
    assert rows["ghost"]["status"] == "not graded"
    assert rows["ghost"]["detail"] == "collected but never autograded"
    assert rows["ghost"]["score"] == ""


def test_the_trusted_graders_marker_is_read(tmp_path):
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Configurable

    from cnnlib.grading.trusted import write_status

    def submission(sid):
        sub = _submission([_grade("test", 5.0), _grade("test", None)])
        sub.assignment, sub.student = NS(name="a1-convolution"), NS(id=sid)
        return sub

    write_status(str(tmp_path), "a1-convolution", "dora", "convolution", graded=False,
                 reasons=["the kernel died 3 times"])
    write_status(str(tmp_path), "a1-convolution", "eve", "convolution", graded=True)
    app = Configurable()
    app.coursedir = CourseDirectory(root=str(tmp_path))
    export = CourseCsvExport(parent=app)
    gradebook = FakeGradebook({s: submission(s) for s in ("dora", "eve", "finn")},
                              ["dora", "eve", "finn"])
    rows = {r["student_id"]: r for r in export.rows(gradebook)}
    assert (rows["dora"]["status"], rows["dora"]["score"]) == ("not graded", "")
    assert "the kernel died 3 times" in rows["dora"]["detail"]
    # graded by the trusted grader, or by a course that does not use it (no marker)
    assert rows["eve"]["status"] == rows["finn"]["status"] == "graded"
    assert rows["eve"]["score"] == rows["finn"]["score"] == "5.0"


def test_the_rule_is_the_configured_plugin():
    export = CourseCsvExport()
    assert isinstance(export._late_plugin(), LatePenalty)
    export.config.AssignLatePenalties.plugin_class = "nbgrader.plugins.LateSubmissionPlugin"
    sub = _submission([_grade("test", 10.0)], late_hours=5)
    rows = {r["student_id"]: r for r in export.rows(FakeGradebook({"s": sub}, ["s"]))}
    assert rows["s"]["late_submission_penalty"] == "0.0"  # nbgrader's default: no penalty
