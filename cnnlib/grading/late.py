"""The course's late-submission rule.

A submission more than ``grace_minutes`` after the due date loses ``percent_per_day`` of
its score for each started day after the due date, never more than ``max_percent``::

    c.LatePenalty.percent_per_day = 10.0   # per started day
    c.LatePenalty.grace_minutes = 15.0     # up to 15 minutes late counts as on time
    c.LatePenalty.max_percent = 50.0       # cap

With a grace of 15 minutes, a submission 10 minutes late loses nothing, one 16 minutes late
loses 10 %, one 24 h 1 s late 20 %. The due date is the assignment's in the gradebook
(``nbgrader db assignment add a1-convolution --duedate=...``), the submission time the one
``nbgrader zip_collect`` recorded (:mod:`cnnlib.grading.collect`).

The penalty applies to the whole score, manual points included: the course's export
(:class:`cnnlib.grading.export.CourseCsvExport`) computes it from the final score when it
writes ``grades.csv``, so the order of autograding and manual grading does not matter.
nbgrader also calls the rule at autograde time (``AssignLatePenalties.plugin_class``), on
the autograded points only; that figure, shown in the formgrader, is provisional.
"""

from __future__ import annotations

import math

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float

__all__ = ["LatePenalty"]


class LatePenalty(LateSubmissionPlugin):
    """``percent_per_day`` per started day late after a grace period, capped."""

    percent_per_day = Float(10.0, help="Percent of the score lost per started day late.").tag(
        config=True)
    grace_minutes = Float(0.0, help="A submission at most this many minutes late counts as "
                          "on time.").tag(config=True)
    max_percent = Float(100.0, help="Largest total penalty, in percent of the score.").tag(
        config=True)

    def percent(self, total_seconds_late: float) -> float:
        """Percent of the score lost by a submission ``total_seconds_late`` after the due
        date (days are counted from the due date, not from the end of the grace period)."""
        if total_seconds_late is None or total_seconds_late <= self.grace_minutes * 60.0:
            return 0.0
        days = math.ceil(total_seconds_late / 86400.0)
        return min(self.max_percent, days * self.percent_per_day)

    def penalty(self, score: float, total_seconds_late: float) -> float:
        """Points lost by a score of ``score``."""
        return max(0.0, score) * self.percent(total_seconds_late) / 100.0

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        """nbgrader's hook (autograde time, autograded points only: provisional)."""
        percent = self.percent(total_seconds_late)
        if percent == 0.0:
            return None
        penalty = self.penalty(score, total_seconds_late)
        self.log.info("%s is %.0f s late: %g %% of the score (%.2f of %.2f so far; the export "
                      "applies it to the final score)", student_id, total_seconds_late,
                      percent, penalty, score)
        return penalty
