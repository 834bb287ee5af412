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


# --------------------------------------------------------------------------- TrustedExecute

def _cell(source, **nbgrader):
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = nbgrader
    return cell


class _FakeGrader:
    def check(self, op, fn, *, seed, cases=(), random=0, timeout=None):
        assert fn.name == op
        if seed == 1:
            print(f"{op}: all 1 configurations match the reference")
            return
        raise AssertionError(f"{op}: 1 of 1 configurations differ: the bias is missing")


def test_test_cells_report_the_verdict_only_and_never_write_stderr():
    from cnnlib.grading.trusted import run_test_cell

    ok = run_test_cell('GRADER.check("conv2d", conv2d, seed=1, cases=[dict(x=[1])])',
                       _FakeGrader(), ["conv2d"])
    assert [o.output_type for o in ok] == ["stream"] and ok[0].name == "stdout"
    bad = run_test_cell('import sys\nprint("secret", file=sys.stderr)\n'
                        'GRADER.check("conv2d", conv2d, seed=98765, cases=[dict(x=[1])])',
                        _FakeGrader(), ["conv2d"])
    assert [o.output_type for o in bad] == ["error"]
    assert bad[0].evalue.endswith("the bias is missing")
    assert "98765" not in str(bad) and "GRADER.check" not in str(bad)
    broken = run_test_cell("1 / 0", _FakeGrader(), [])
    assert broken[0].ename == "ZeroDivisionError" and "1 / 0" not in str(broken)


def test_autograding_refuses_without_bubblewrap(tmp_path, monkeypatch):
    import nbformat

    from cnnlib.grading import jail, trusted

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CNNLIB_GRADING_UNSAFE", raising=False)
    monkeypatch.setattr(jail, "bwrap_works", lambda: False)
    monkeypatch.setattr(trusted.TrustedExecute, "trusted_tests", lambda *a: {})
    nb = nbformat.v4.new_notebook(cells=[_cell("print(1)")])
    resources = {"nbgrader": {"assignment": "a1-convolution", "student": "s",
                              "notebook": "convolution"}}
    # synthetic notebooks of a course folder without sources: no preflight in these tests
    with pytest.raises(RuntimeError, match="bubblewrap"):
        trusted.TrustedExecute(preflight=False).preprocess(nb, resources)
    status = trusted.read_status(str(tmp_path), "a1-convolution", "s", "convolution")
    assert status["graded"] is False and "allow_unsandboxed" in status["reasons"][0]


def test_unsafe_flag_grades_without_bubblewrap_and_says_so(tmp_path, monkeypatch):
    import nbformat

    from cnnlib.grading import jail, trusted

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLIB_GRADING_UNSAFE", "1")
    monkeypatch.setattr(jail, "bwrap_works", lambda: False)
    source = ('GRADER.check("conv_output_size", conv_output_size, seed=5, '
              'cases=[dict(n=8, kernel_size=3, stride=2, padding=1)])')
    monkeypatch.setattr(trusted.TrustedExecute, "trusted_tests",
                        lambda self, course, assignment, notebook: {"t": source})
    # a student cell dressed up as a test cell runs in the kernel, not in the grader
    forged = _cell(f"import os\nopen(os.path.join({str(tmp_path)!r}, str(os.getpid())), 'w')",
                   grade=True, solution=False, locked=True, points=5, grade_id="forged")
    test = _cell('GRADER.check("conv_output_size", conv_output_size, seed=5, '
                 'cases=[dict(n=8, kernel_size=3, stride=2, padding=1)])',
                 grade=True, solution=False, locked=True, points=1, grade_id="t")
    nb = nbformat.v4.new_notebook(cells=[
        _cell("def conv_output_size(n, k, s=1, p=0):\n    return (n + 2 * p - k + 1) // s + 1"),
        forged, test])
    resources = {"nbgrader": {"assignment": "a1-convolution", "student": "s",
                              "notebook": "convolution"}}
    nb, _ = trusted.TrustedExecute(preflight=False).preprocess(nb, resources)
    (out,) = nb.cells[2].outputs
    assert out.output_type == "error" and "(n + 2p - k + 1)/s + 1" in out.evalue
    import os
    ran_in = [p.name for p in tmp_path.iterdir() if p.name.isdigit()]
    assert ran_in and str(os.getpid()) not in ran_in
    assert "seed=5" not in out.evalue
    status = trusted.read_status(str(tmp_path), "a1-convolution", "s", "convolution")
    assert status["graded"] is True and "WITHOUT a sandbox" in status["notes"][0]


def test_a_top_level_hang_costs_that_cell_only(tmp_path, monkeypatch):
    """A cell that swallows the interrupt: the kernel is restarted, the cells before it
    replayed, and the checks still see the student's functions."""
    import nbformat

    from cnnlib.grading import jail, trusted

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLIB_GRADING_UNSAFE", "1")
    if not jail.bwrap_works():
        monkeypatch.setattr(jail, "bwrap_works", lambda: False)
    source = ('GRADER.check("conv_output_size", conv_output_size, seed=5, '
              'cases=[dict(n=8, kernel_size=3, stride=2, padding=1)])')
    monkeypatch.setattr(trusted.TrustedExecute, "trusted_tests", lambda *a: {"t": source})
    hang = ("import time\nwhile True:\n    try:\n        time.sleep(0.1)\n"
            "    except BaseException:\n        pass")
    nb = nbformat.v4.new_notebook(cells=[
        _cell("def conv_output_size(n, k, s=1, p=0):\n    return (n + 2 * p - k) // s + 1"),
        _cell(hang),
        _cell(source, grade=True, solution=False, locked=True, points=1, grade_id="t")])
    resources = {"nbgrader": {"assignment": "a1-convolution", "student": "s",
                              "notebook": "convolution"}}
    # a 3 s cell limit (a1's spec module allows 60 s, which would only make this wait)
    monkeypatch.setattr(trusted.specs, "cell_timeout", lambda module: 3.0)
    nb, _ = trusted.TrustedExecute(timeout=3, preflight=False).preprocess(nb, resources)
    assert nb.cells[1].outputs[0].ename == "KernelLost"
    assert [o.output_type for o in nb.cells[2].outputs] == ["stream"]
    status = trusted.read_status(str(tmp_path), "a1-convolution", "s", "convolution")
    assert status["graded"] is True and "did not answer the interrupt" in status["notes"][-1]
