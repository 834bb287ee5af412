"""nbgrader plug-ins the course's ``nbgrader_config.py`` uses.

- :class:`StripErrorTracebacks`: in feedback, reduce every error output to its last line
  (``AssertionError: <the grader's diagnosis>``). IPython tracebacks quote the source
  lines around the failing call, which in a hidden test cell are the hidden test itself
  (its seed and configurations); ``ClearHiddenTests`` removes them from the cell's source
  but not from its outputs.
- :class:`PercentPerDayLate`: a late-submission penalty of a fixed share of the score per
  started day, capped; nbgrader itself offers only "none" and "zero".
"""

from __future__ import annotations

import math
import re

from nbconvert.preprocessors import Preprocessor
from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Bool, Float

__all__ = ["StripErrorTracebacks", "PercentPerDayLate"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class StripErrorTracebacks(Preprocessor):
    """Replace each error output's traceback by the error's one-line summary."""

    # nbconvert registers configured preprocessors disabled unless they say otherwise
    enabled = Bool(True).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                evalue = _ANSI.sub("", str(output.get("evalue", "")))
                output["traceback"] = [f"{output.get('ename', 'Error')}: {evalue}"]
        return cell, resources


class PercentPerDayLate(LateSubmissionPlugin):
    """Subtract ``percent_per_day`` of the score for each started day late.

    A submission 1 second to 24 hours late loses ``percent_per_day`` percent, 24 to 48 hours
    twice that, and so on, never more than ``max_percent``. nbgrader records the penalty
    next to the score, so the formgrader and ``nbgrader export`` show both.
    """

    percent_per_day = Float(10.0, help="Percent of the score lost per started day late.").tag(
        config=True)
    max_percent = Float(100.0, help="Largest total penalty, in percent of the score.").tag(
        config=True)

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        if total_seconds_late <= 0:
            return None
        days = math.ceil(total_seconds_late / 86400.0)
        percent = min(self.max_percent, days * self.percent_per_day)
        penalty = score * percent / 100.0
        self.log.info("%s is %d day(s) late: penalty %.2f of %.2f", student_id, days, penalty,
                      score)
        return penalty
