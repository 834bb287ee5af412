"""Collection from an LMS download (cnnlib/grading/collect.py), the late rule
(cnnlib/grading/late.py), with the real ``nbgrader zip_collect`` in a scratch course."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from course_tools import load_tool

from cnnlib.grading.collect import copy_number, notebook_name, parse_time
from cnnlib.grading.late import LatePenalty

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc




grade_samples = load_tool("grade_samples")


# --- pure helpers ----------------------------------------------------------------------------
def test_renamed_copies_map_to_the_notebook():
    released = {"convolution.ipynb"}
    assert notebook_name("convolution.ipynb", released) == "convolution.ipynb"
    assert notebook_name("convolution-1.ipynb", released) == "convolution.ipynb"
    assert notebook_name("convolution (2).ipynb", released) == "convolution.ipynb"
    assert notebook_name("convolution(12).ipynb", released) == "convolution.ipynb"
    assert notebook_name("sub/convolution-3.ipynb", released) == "convolution.ipynb"
    # not a copy of a released notebook: unchanged (nbgrader warns about the name)
    assert notebook_name("pooling-1.ipynb", released) == "pooling-1.ipynb"
    assert notebook_name("conv-net-2d.ipynb", {"conv-net-2d.ipynb"}) == "conv-net-2d.ipynb"
    assert [copy_number(n) for n in ("c.ipynb", "c-1.ipynb", "c (2).ipynb", "c(13).ipynb")] \
        == [0, 1, 2, 13]


def test_times_in_names_and_lms_fields():
    expect = dt.datetime(2026, 10, 3, 14, 5, 0, tzinfo=UTC)
    for text in ("2026-10-03-14-05-00", "2026-10-03_140500", "2026-10-03T14:05:00",
                 "20261003_140500", "2026-10-03 14:05:00 UTC", "2026-10-03T16:05:00+02:00"):
        assert parse_time(text) == expect, text
    # no offset: the configured zone (summer time in Berlin is UTC+2)
    assert parse_time("2026-10-03 16:05:00", timezone="Europe/Berlin") == expect
    assert parse_time("Saturday, 3 October 2026, 2:05 PM") == expect  # Moodle's worksheet
    assert parse_time("03/10/2026 14.05", fmt="%d/%m/%Y %H.%M") == expect
    with pytest.raises(ValueError):
        parse_time("not a time")


def test_late_rule_per_started_day_with_grace_and_cap():
    rule = LatePenalty(percent_per_day=10.0, grace_minutes=15.0, max_percent=25.0)
    assert rule.percent(0) == 0 and rule.percent(-5) == 0
    assert rule.percent(10 * 60) == 0  # within the grace period
    assert rule.percent(16 * 60) == 10
    assert rule.percent(86400) == 10
    assert rule.percent(86401) == 20
    assert rule.percent(10 * 86400) == 25  # capped
    assert rule.penalty(25.0, 86401) == pytest.approx(5.0)
    assert rule.late_submission_penalty("s", 25.0, 60) is None
    plain = LatePenalty()
    assert plain.percent(1) == 10 and plain.percent(11 * 86400) == 100


# --- nbgrader zip_collect with the course's configuration ------------------------------------
def _notebook(tag):
    return json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": tag}],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course with the released Assignment 1 (all zip_collect needs) and the config."""
    course = tmp_path_factory.mktemp("collect") / "course"
    (course / "assignments").mkdir(parents=True)
    shutil.copytree(ROOT / "assignments" / "a1-convolution",
                    course / "assignments" / "a1-convolution")
    shutil.copy2(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    return course


def _collect(course, files, *, extra_config="", zip_name=None):
    """Put ``files`` ({name: text}) in the archive folder (zipped if ``zip_name``), run
    ``nbgrader zip_collect --force``; return (submitted/, report rows, log)."""
    for sub in ("downloaded", "submitted"):
        shutil.rmtree(course / sub, ignore_errors=True)
    archive = course / "downloaded" / "a1-convolution" / "archive"
    archive.mkdir(parents=True)
    if zip_name:
        with zipfile.ZipFile(archive / zip_name, "w") as zf:
            for name, text in files.items():
                zf.writestr(name, text)
    else:
        for name, text in files.items():
            (archive / name).parent.mkdir(parents=True, exist_ok=True)
            (archive / name).write_text(text)
    config = course / "nbgrader_config.py"
    base = (ROOT / "nbgrader_config.py").read_text()
    config.write_text(base + "\n" + extra_config)
    proc = grade_samples.run_nbgrader(course, "zip_collect", "a1-convolution", "--force",
                                      check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(course / "downloaded" / "a1-convolution" / "collection_report.csv") as fh:
        report = list(csv.DictReader(fh))
    return course / "submitted", report, proc.stdout + proc.stderr


def _tag(path):
    return json.loads(path.read_text())["cells"][0]["source"]


def test_default_names_latest_attempt_kept_and_others_reported(course):
    files = {
        "j_smith_2026-10-01-18-30-00_convolution.ipynb": _notebook("j_smith first"),
        "j_smith_2026-10-03-09-00-00_convolution-1.ipynb": _notebook("j_smith second"),
        "s1234_5_2026-10-02-10-00-00_convolution (1).ipynb": _notebook("s1234_5 only"),
        "anna_2026-10-02-23-00-00_convolution.ipynb": _notebook("anna"),
        "notes.txt": "not a notebook",
        "misnamed.ipynb": _notebook("nobody"),
    }
    submitted, report, log = _collect(course, files)
    assert sorted(p.name for p in submitted.iterdir()) == ["anna", "j_smith", "s1234_5"]
    js = submitted / "j_smith" / "a1-convolution"
    assert sorted(p.name for p in js.iterdir()) == ["convolution.ipynb", "timestamp.txt"]
    assert _tag(js / "convolution.ipynb") == "j_smith second"
    assert (js / "timestamp.txt").read_text().startswith("2026-10-03 09:00:00")
    s = submitted / "s1234_5" / "a1-convolution"
    assert _tag(s / "convolution.ipynb") == "s1234_5 only"
    assert (s / "timestamp.txt").read_text().startswith("2026-10-02 10:00:00")
    status = {r["file"]: r["status"] for r in report}
    assert status["j_smith_2026-10-03-09-00-00_convolution-1.ipynb"] == "collected"
    assert status["j_smith_2026-10-01-18-30-00_convolution.ipynb"] == (
        "superseded by j_smith_2026-10-03-09-00-00_convolution-1.ipynb")
    assert status["misnamed.ipynb"] == "skipped: the pattern does not match"
    assert status["notes.txt"] == "skipped: not a notebook"
    assert "superseded by the later attempt" in log


def test_canvas_names_with_times_from_a_csv(course):
    canvas = ('c.LMSCollector.named_regexp = (r"(?:^|/)(?P<student_id>[^/]+?)_(?:LATE_)?'
              r'\d+_\d+_(?P<file_id>[^/]+\.ipynb)$")' "\n"
              'c.LMSCollector.timestamps_file = "submission_times.csv"\n'
              'c.LMSCollector.timezone = "America/New_York"\n')
    files = {
        "lee_k2_4411_9001_convolution.ipynb": _notebook("lee first"),
        "lee_k2_LATE_4411_9002_convolution-1.ipynb": _notebook("lee second"),
        "omar_4412_9003_convolution.ipynb": _notebook("omar"),
    }
    times = course / "downloaded" / "a1-convolution" / "submission_times.csv"

    # the CSV sits next to the archive; write it after _collect's clean-up, then re-run
    def run():
        return _collect(course, files, extra_config=canvas, zip_name="submissions.zip")

    run()
    times.write_text("student_id,timestamp\nlee_k2,2026-10-03 09:00:00\n")
    proc = grade_samples.run_nbgrader(course, "zip_collect", "a1-convolution", "--force",
                                      check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    submitted = course / "submitted"
    lee = submitted / "lee_k2" / "a1-convolution"
    assert _tag(lee / "convolution.ipynb") == "lee second"  # copy -1 beats the original
    # 09:00 in New York (daylight time, UTC-4) is 13:00 UTC
    assert (lee / "timestamp.txt").read_text().startswith("2026-10-03 13:00:00")
    omar = submitted / "omar" / "a1-convolution"
    assert _tag(omar / "convolution.ipynb") == "omar"
    assert not (omar / "timestamp.txt").exists()  # no time known: reported, no penalty


def test_moodle_folders_with_times_from_the_grading_worksheet(course):
    moodle = ('c.LMSCollector.named_regexp = (r"(?:^|/)[^/]*_(?P<student_id>\\d+)'
              r'_assignsubmission_file_/(?P<file_id>[^/]+\.ipynb)$")' "\n"
              'c.LMSCollector.timestamps_file = "grading_worksheet.csv"\n'
              'c.LMSCollector.timestamps_id_column = "Identifier"\n'
              'c.LMSCollector.timestamps_id_regexp = r"Participant (?P<student_id>\\d+)"\n'
              'c.LMSCollector.timestamps_time_column = "Last modified (submission)"\n'
              'c.LMSCollector.timezone = "Europe/London"\n')
    files = {
        "Jane Smith_301_assignsubmission_file_/convolution.ipynb": _notebook("jane"),
        "Jane Smith_301_assignsubmission_file_/convolution (1).ipynb": _notebook("jane 2"),
        "Li Wei_302_assignsubmission_file_/convolution.ipynb": _notebook("li"),
    }
    _collect(course, files, extra_config=moodle, zip_name="moodle-download.zip")
    (course / "downloaded" / "a1-convolution" / "grading_worksheet.csv").write_text(
        "Identifier,Full name,Last modified (submission)\n"
        "Participant 301,Jane Smith,\"Saturday, 3 October 2026, 10:30 AM\"\n"
        "Participant 302,Li Wei,\"Friday, 2 October 2026, 11:00 PM\"\n")
    proc = grade_samples.run_nbgrader(course, "zip_collect", "a1-convolution", "--force",
                                      check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jane = course / "submitted" / "301" / "a1-convolution"
    assert _tag(jane / "convolution.ipynb") == "jane 2"
    assert (jane / "timestamp.txt").read_text().startswith("2026-10-03 09:30:00")  # BST
    li = course / "submitted" / "302" / "a1-convolution"
    assert (li / "timestamp.txt").read_text().startswith("2026-10-02 22:00:00")
