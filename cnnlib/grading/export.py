"""The course's ``nbgrader export``: ``grades.csv`` with the late penalty on the final score
and a status for every row, so nothing the pipeline failed on is exported as a zero.

Columns: nbgrader's own (``assignment, duedate, timestamp, student_id, last_name,
first_name, email, raw_score, late_submission_penalty, score, max_score``) and two more:

``status``
    ``graded``; ``needs manual grading`` (the score so far, without the cells still to grade
    by hand); ``not graded`` (the scores are left empty: see ``detail``); ``not submitted``
    (a real 0, as nbgrader writes it).
``detail``
    for a row that is not graded, why: the notebook whose autograde failed, or a submission
    that was collected but never autograded.

How "not graded" is detected, from what nbgrader records (so it holds whatever runs the
notebooks): a submitted notebook none of whose autograded cells (code grade cells) has a
score, automatic or manual, was not graded; nbgrader creates every grade of a submission
empty and fills the autograded ones only when the notebook ran to the end. A student with
a folder in ``submitted/<id>/<assignment>/`` but no submission in the gradebook was never
autograded. A failed notebook given a manual score in the formgrader counts as graded. Under
the trusted autograder (:mod:`cnnlib.grading.trusted`), its per-notebook marker in
``grading_status/`` is read as well: a notebook it marks as not graded is exported as such.

``late_submission_penalty`` is the late rule (``AssignLatePenalties.plugin_class``, the
course's :class:`cnnlib.grading.late.LatePenalty`) applied to the final raw score, manual
points included, at export time, whatever the order of grading.
"""

from __future__ import annotations

import csv
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin, LateSubmissionPlugin
from traitlets.utils.importstring import import_item

from .late import LatePenalty

__all__ = ["CourseCsvExport", "COLUMNS", "notebook_status", "submission_status"]

COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name",
           "email", "raw_score", "late_submission_penalty", "score", "max_score", "status",
           "detail"]


def notebook_status(notebook) -> str | None:
    """``None`` when the submitted notebook was graded, else why it was not."""
    auto = [g for g in notebook.grades if g.cell.cell_type == "code"]
    if auto and all(g.auto_score is None and g.manual_score is None for g in auto):
        return f"{notebook.name}.ipynb: autograde failed (no check was scored)"
    return None


def _marker_status(course_root, submission, notebook) -> str | None:
    """Why the trusted autograder's marker says a notebook was not graded, or ``None``
    (graded, or no marker: a course graded without :mod:`cnnlib.grading.trusted`)."""
    from .trusted import read_status, status_path

    path = status_path(course_root, submission.assignment.name, submission.student.id,
                       notebook.name)
    if not Path(path).exists():
        return None
    status = read_status(course_root, submission.assignment.name, submission.student.id,
                         notebook.name)
    if status is not None and status.get("graded"):
        return None
    reasons = "; ".join((status or {}).get("reasons", [])) or "unreadable grading status"
    return f"{notebook.name}.ipynb: not graded ({reasons})"


def submission_status(submission, course_root=None) -> tuple[str, str]:
    """(status, detail) of a submission in the gradebook.

    With ``course_root``, the trusted autograder's marker of each notebook is read too, so a
    notebook it could not grade (a kernel that died for good, a forged test cell) is not
    graded even when some of its cells were scored."""
    failed = []
    for nb in submission.notebooks:
        why = notebook_status(nb)
        if why is None and course_root is not None:
            why = _marker_status(course_root, submission, nb)
        if why:
            failed.append(why)
    if failed:
        return "not graded", "; ".join(failed)
    if submission.needs_manual_grade:
        return "needs manual grading", ""
    return "graded", ""


def _num(x) -> str:
    return "" if x is None else str(round(float(x), 6))


class CourseCsvExport(ExportPlugin):
    """CSV export with the late penalty on the final score and a status per row."""

    def _late_plugin(self) -> LateSubmissionPlugin:
        name = self.config.get("AssignLatePenalties", {}).get("plugin_class")
        cls = import_item(name) if isinstance(name, str) else (name or LatePenalty)
        return cls(parent=self)

    def _submitted_students(self, assignment: str) -> set[str]:
        coursedir = getattr(self.parent, "coursedir", None)
        if coursedir is None:
            return set()
        root = Path(coursedir.root) / coursedir.submitted_directory
        return {p.parent.name for p in root.glob(f"*/{assignment}") if p.is_dir()}

    def rows(self, gradebook: Gradebook) -> list[dict]:
        late = self._late_plugin()
        students = [str(s) for s in self.student]
        assignments = [str(a) for a in self.assignment]
        rows = []
        for assignment in gradebook.assignments:
            if assignments and assignment.name not in assignments:
                continue
            known = {s.id: s for s in gradebook.students}
            submitted = self._submitted_students(assignment.name)
            for sid in sorted(set(known) | submitted):
                if students and sid not in students:
                    continue
                student = known.get(sid)
                row = dict(assignment=assignment.name, duedate=assignment.duedate or "",
                           student_id=sid, last_name=getattr(student, "last_name", None) or "",
                           first_name=getattr(student, "first_name", None) or "",
                           email=getattr(student, "email", None) or "",
                           max_score=_num(assignment.max_score), timestamp="", detail="")
                try:
                    sub = gradebook.find_submission(assignment.name, sid)
                except MissingEntry:
                    if sid in submitted:
                        row.update(status="not graded", raw_score="",
                                   late_submission_penalty="", score="",
                                   detail="collected but never autograded")
                    else:
                        row.update(status="not submitted", raw_score="0.0",
                                   late_submission_penalty="0.0", score="0.0")
                    rows.append(row)
                    continue
                coursedir = getattr(self.parent, "coursedir", None)
                status, detail = submission_status(
                    sub, coursedir.root if coursedir is not None else None)
                row.update(timestamp=sub.timestamp or "", status=status, detail=detail)
                if status == "not graded":
                    row.update(raw_score="", late_submission_penalty="", score="")
                else:
                    raw = float(sub.score)
                    penalty = late.late_submission_penalty(sid, raw, sub.total_seconds_late)
                    penalty = float(penalty or 0.0)
                    row.update(raw_score=_num(raw), late_submission_penalty=_num(penalty),
                               score=_num(max(0.0, raw - penalty)))
                rows.append(row)
        return rows

    def export(self, gradebook: Gradebook) -> None:
        dest = self.to or "grades.csv"
        rows = self.rows(gradebook)
        with open(dest, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row.get(k) is None else str(row.get(k))
                                 for k in COLUMNS})
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        self.log.info("Exported %d rows to %s: %s", len(rows), dest,
                      ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        for row in rows:
            if row["status"] == "not graded":
                self.log.warning("NOT GRADED: %s %s: %s", row["student_id"], row["assignment"],
                                 row["detail"])
