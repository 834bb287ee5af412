"""The nbgrader plug-ins of ``cnnlib.grading.nbgrader_plugins``, without nbgrader's CLI."""

from __future__ import annotations

import pytest


def test_late_penalty_is_a_share_per_started_day():
    from cnnlib.grading.nbgrader_plugins import PercentPerDayLate

    plugin = PercentPerDayLate(percent_per_day=10.0, max_percent=50.0)
    assert plugin.late_submission_penalty("s", 20.0, 0) is None
    assert plugin.late_submission_penalty("s", 20.0, 1) == pytest.approx(2.0)
    assert plugin.late_submission_penalty("s", 20.0, 86400) == pytest.approx(2.0)
    assert plugin.late_submission_penalty("s", 20.0, 86401) == pytest.approx(4.0)
    assert plugin.late_submission_penalty("s", 20.0, 30 * 86400) == pytest.approx(10.0)


def test_feedback_tracebacks_keep_only_the_diagnosis():
    import nbformat

    from cnnlib.grading.nbgrader_plugins import StripErrorTracebacks

    cell = nbformat.v4.new_code_cell("# Hidden check: x (1 point)")
    cell.outputs = [nbformat.v4.new_output(
        "error", ename="AssertionError", evalue="conv2d: the bias is missing",
        traceback=["\x1b[31m----> 3 GRADER.check('conv2d', conv2d, seed=6151)\x1b[0m",
                   "AssertionError: conv2d: the bias is missing"])]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb, _ = StripErrorTracebacks()(nb, {})
    (out,) = nb.cells[0].outputs
    assert out.traceback == ["AssertionError: conv2d: the bias is missing"]
