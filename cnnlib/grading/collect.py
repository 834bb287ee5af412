"""Collecting submissions from a learning-management system's download (``nbgrader zip_collect``).

:class:`LMSCollector` is the course's ``ZipCollectApp.collector_plugin``. For every file of
``downloaded/<assignment>/extracted/`` (the archive, unzipped by nbgrader) it decides, once
for the whole download:

- **who and what**: ``named_regexp`` is searched in the file's path relative to the
  download folder (``/``-separated, so a pattern can read a per-student folder name as well
  as a file name). Its ``student_id`` and ``file_id`` groups are required; ids keep every
  character the pattern gives them (underscores, digits, dots).
- **which notebook**: an LMS renames a second upload ``convolution-1.ipynb`` or
  ``convolution (1).ipynb``; such a name maps to the released notebook it copies.
- **when**: from the pattern's ``timestamp`` group, else from a CSV the LMS exports with
  one row per submission (``timestamps_file``), read in ``timezone`` when the time has no
  UTC offset. ``nbgrader zip_collect`` writes it to ``submitted/<id>/<assignment>/
  timestamp.txt``, which ``nbgrader autograde`` and the late penalty read.
- **which attempt**: of several files for the same student and notebook, the latest is
  collected (by time, then by the LMS's copy number ``-2`` > ``-1`` > none); the others are
  skipped and listed in the log and in ``collection_report.csv`` next to the download, with
  every file that matched no pattern.

Settings (``nbgrader_config.py``)::

    c.ZipCollectApp.collector_plugin = "cnnlib.grading.collect.LMSCollector"
    c.LMSCollector.named_regexp = r"^(?P<student_id>.+)_(?P<timestamp>\\d{4}-...)_(?P<file_id>...)"
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import dateutil.parser
from nbgrader.plugins import FileNameCollectorPlugin
from traitlets import Unicode

__all__ = ["LMSCollector", "notebook_name", "parse_time", "copy_number"]

# "convolution-1.ipynb", "convolution (1).ipynb", "convolution(12).ipynb"
_COPY = re.compile(r"^(?P<stem>.+?)(?:-(?P<dash>\d+)| ?\((?P<paren>\d+)\))(?P<ext>\.ipynb)$")
# 2026-10-03-14-05-00, 2026-10-03_140500, 2026-10-03T14:05:00 (any of - _ T or space between)
_COMPACT = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})[-_ T](\d{2})[-:.]?(\d{2})[-:.]?(\d{2})"
                      r"(?P<rest>.*)$")


def copy_number(file_name: str) -> int:
    """The LMS's copy number of a renamed upload: 1 for ``convolution-1.ipynb`` or
    ``convolution (1).ipynb``, 0 for ``convolution.ipynb``."""
    m = _COPY.match(file_name)
    return int(m["dash"] or m["paren"]) if m else 0


def notebook_name(file_id: str, released: set[str] | frozenset[str]) -> str:
    """The released notebook a submitted file stands for.

    ``file_id`` is the name the pattern captured (a path part is dropped). A released name
    is kept; a renamed copy (``convolution-1.ipynb``, ``convolution (2).ipynb``) of a
    released notebook becomes that notebook's name; anything else is returned unchanged
    (nbgrader then warns that the name is not one of the assignment's notebooks).
    """
    name = file_id.replace("\\", "/").rsplit("/", 1)[-1]
    if name in released:
        return name
    m = _COPY.match(name)
    if m and m["stem"] + m["ext"] in released:
        return m["stem"] + m["ext"]
    return name


def parse_time(text: str, *, fmt: str = "", timezone: str = "UTC") -> dt.datetime:
    """A submission time as an aware UTC datetime.

    ``fmt`` is a ``strptime`` format; without one, date-times written with any of ``-``,
    ``_``, ``T`` or a space between date and time and with or without separators in the
    time (``2026-10-03-14-05-00``, ``20261003_140500``) are read, then anything
    ``dateutil`` reads (``Friday, 2 October 2026, 11:59 PM``). A time without an offset is
    in ``timezone`` (an IANA name such as ``Europe/Berlin``).
    """
    text = text.strip()
    if fmt:
        when = dt.datetime.strptime(text, fmt)
    else:
        m = _COMPACT.match(text)
        if m:
            y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
            rest = m["rest"].strip()
            when = dt.datetime(y, mo, d, h, mi, s)
            if rest:  # an offset or a zone name after the time
                when = dateutil.parser.parse(f"{when.isoformat()} {rest}".replace(" Z", "Z"))
        else:
            when = dateutil.parser.parse(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(timezone))
    return when.astimezone(dt.timezone.utc)


class LMSCollector(FileNameCollectorPlugin):
    """Collect an LMS download: pattern on the file's path, time from the name or the
    LMS's CSV, renamed copies mapped to the notebook, the latest attempt kept."""

    timestamp_format = Unicode(
        "", help="strptime format of the pattern's timestamp group (empty: read common "
                 "date-time layouts, see cnnlib.grading.collect.parse_time).").tag(config=True)
    timezone = Unicode(
        "UTC", help="Time zone of submission times written without a UTC offset.").tag(
        config=True)
    timestamps_file = Unicode(
        "", help="CSV of submission times exported by the LMS, relative to "
                 "downloaded/<assignment>/ (or absolute). Used for files whose name has no "
                 "time.").tag(config=True)
    timestamps_id_column = Unicode("student_id", help="Column of the student in "
                                   "timestamps_file.").tag(config=True)
    timestamps_id_regexp = Unicode(
        r"(?P<student_id>.+)", help="Pattern that reads the student id (group student_id) "
        "out of the id column, e.g. 'Participant (?P<student_id>\\d+)' for Moodle.").tag(
        config=True)
    timestamps_time_column = Unicode("timestamp", help="Column of the submission time in "
                                     "timestamps_file.").tag(config=True)
    timestamps_time_format = Unicode("", help="strptime format of that column (empty: read "
                                     "common layouts).").tag(config=True)
    report_file = Unicode(
        "collection_report.csv", help="Where the collection report goes, relative to "
        "downloaded/<assignment>/ (empty: no file, the log only).").tag(config=True)

    _plan: dict | None = None

    # -- the plan for the whole download ---------------------------------------------------
    def _folders(self, any_file: str) -> tuple[Path, Path | None, set[str]]:
        """(extracted folder, downloaded/<assignment>/ or None, released notebook names)."""
        app = self.parent
        if app is not None and hasattr(app, "_format_collect_path"):
            extracted = Path(app._format_collect_path(app.extracted_directory))
            released_dir = Path(app.coursedir.format_path(
                app.coursedir.release_directory, ".", app.coursedir.assignment_id))
            released = {p.name for p in released_dir.glob("*.ipynb")}
            return extracted, extracted.parent, released
        return Path(any_file).parent, None, set()

    def _lms_times(self, base: Path | None) -> dict[str, dt.datetime]:
        if not self.timestamps_file:
            return {}
        path = Path(self.timestamps_file)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.exists():
            self.log.error("timestamps_file %s not found: submission times come from the "
                           "file names only", path)
            return {}
        times = {}
        id_re = re.compile(self.timestamps_id_regexp)
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                m = id_re.search(row.get(self.timestamps_id_column) or "")
                when = (row.get(self.timestamps_time_column) or "").strip()
                if not m or not when or when in {"-", "No submission"}:
                    continue
                try:
                    times[m["student_id"]] = parse_time(
                        when, fmt=self.timestamps_time_format, timezone=self.timezone)
                except (ValueError, OverflowError) as exc:
                    self.log.error("%s: unreadable time %r for %s (%s)", path.name, when,
                                   m["student_id"], exc)
        return times

    def _make_plan(self, any_file: str) -> dict:
        extracted, base, released = self._folders(any_file)
        lms_times = self._lms_times(base)
        pattern = re.compile(self.named_regexp)
        files = sorted(str(p) for p in extracted.rglob("*") if p.is_file()) if extracted.is_dir() \
            else [any_file]
        attempts: dict[tuple[str, str], list[dict]] = {}
        report = []
        for path in files:
            rel = Path(path).relative_to(extracted).as_posix() if extracted in Path(path).parents \
                else Path(path).name
            if os.path.splitext(path)[1] not in self.valid_ext:
                report.append(dict(file=rel, status="skipped: not a notebook"))
                continue
            m = pattern.search(rel)
            if not m or not m.groupdict().get("student_id") or not m.groupdict().get("file_id"):
                self.log.warning("%s matches no submission pattern: not collected", rel)
                report.append(dict(file=rel, status="skipped: the pattern does not match"))
                continue
            info = {k: v for k, v in m.groupdict().items() if v is not None}
            student, name = info["student_id"], notebook_name(info["file_id"], released)
            when = None
            if info.get("timestamp"):
                try:
                    when = parse_time(info["timestamp"], fmt=self.timestamp_format,
                                      timezone=self.timezone)
                except (ValueError, OverflowError) as exc:
                    self.log.error("%s: unreadable time %r (%s)", rel, info["timestamp"], exc)
            if when is None:
                when = lms_times.get(student)
            raw_name = Path(info["file_id"]).name
            info.update(student_id=student, file_id=name)
            info.pop("timestamp", None)
            if when is not None:
                info["timestamp"] = when
            attempts.setdefault((student, name), []).append(
                dict(path=path, rel=rel, info=info, when=when, copy=copy_number(raw_name)))
        plan = {}
        for (student, name), found in sorted(attempts.items()):
            # latest time first; files without a time rank below any timed one; then the
            # LMS's copy number (a re-upload is renamed -1, -2, ...), then the file name
            found.sort(key=lambda a: (a["when"] is not None,
                                      a["when"] or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
                                      a["copy"], a["rel"]), reverse=True)
            kept, others = found[0], found[1:]
            plan[kept["path"]] = kept["info"]
            report.append(dict(file=kept["rel"], student_id=student, notebook=name,
                               timestamp=_iso(kept["when"]), status="collected"))
            if kept["when"] is None:
                self.log.warning("%s: no submission time for %s (no late penalty can apply)",
                                 student, kept["rel"])
            for other in others:
                self.log.warning("%s: %s superseded by the later attempt %s: not collected",
                                 student, other["rel"], kept["rel"])
                report.append(dict(file=other["rel"], student_id=student, notebook=name,
                                   timestamp=_iso(other["when"]),
                                   status=f"superseded by {kept['rel']}"))
        if self.report_file and base is not None:
            out = base / self.report_file
            with open(out, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, ["student_id", "notebook", "timestamp", "status",
                                             "file"])
                writer.writeheader()
                for row in report:
                    writer.writerow(row)
            self.log.info("collection report: %s", out)
        self.report = report
        return plan

    # -- nbgrader's hook, once per file ----------------------------------------------------
    def collect(self, submitted_file: str) -> dict | None:
        if self._plan is None:
            self._plan = self._make_plan(submitted_file)
        info = self._plan.get(str(submitted_file))
        return dict(info) if info else None


def _iso(when: dt.datetime | None) -> str:
    return "" if when is None else when.isoformat(" ")
