"""nbgrader settings of the course. The repository root is the course directory.

Every command runs from the repository root with these settings, both the plain nbgrader
commands of the instructors' guide and ``make release`` / ``make grade``::

    nbgrader generate_assignment a1-convolution --force   # solutions/ -> assignments/
    nbgrader zip_collect a1-convolution                   # downloaded/ -> submitted/
    nbgrader autograde a1-convolution
    nbgrader generate_feedback a1-convolution
    nbgrader export

The gradebook is ``gradebook.db`` (SQLite) unless ``GRADEBOOK_URL`` names another
database, for example PostgreSQL when several graders or grading workers share it::

    export GRADEBOOK_URL=postgresql://grader@dbhost/cnn_course
"""

import os
import warnings

c = get_config()  # noqa: F821 - injected by traitlets when nbgrader loads this file

# nbgrader 0.9 adds gradebook rows through SQLAlchemy 1.x's backref cascade; SQLAlchemy 2.x
# prints "Object of type <Submitted...> not in session" for each, although every grade is
# stored (tests/grading/test_workers.py compares a PostgreSQL export with SQLite's). Keep the
# instructor's terminal for the messages that matter.
warnings.filterwarnings("ignore", message=r"Object of type <\w+> not in session")

# --- where things live -------------------------------------------------------------------
c.CourseDirectory.course_id = "cnn-course"
c.CourseDirectory.source_directory = "solutions"  # instructor sources with hidden tests
c.CourseDirectory.release_directory = "assignments"  # what students get (committed)
# submitted/, autograded/, feedback/, downloaded/ and gradebook.db keep nbgrader's
# defaults; all are git-ignored. SQLite for one grader; a PostgreSQL URL (the driver,
# psycopg, comes with the grading extra) for several graders or parallel workers
# (python -m cnnlib.grading.workers).
c.CourseDirectory.db_url = os.environ.get("GRADEBOOK_URL") or "sqlite:///gradebook.db"
# Only notebooks are released, collected and graded: nothing else from solutions/ (data,
# notes, scratch files) reaches students, and nothing but the notebooks a student submits
# reaches the grader (a stray numpy.py next to a notebook could shadow the library).
# nbgrader copies every file its `ignore` globs do not match, and globs cannot say "not
# *.ipynb": these match every name that does not end in ".ipynb" (the last five, every
# name too short to).
NOT_A_NOTEBOOK = ["*[!b]", "*[!n]b", "*[!y]nb", "*[!p]ynb", "*[!i]pynb", "*[!.]ipynb",
                  "?", "??", "???", "????", "?????"]
c.CourseDirectory.include = ["*.ipynb"]
c.CourseDirectory.ignore = [".ipynb_checkpoints", "__pycache__", ".*", *NOT_A_NOTEBOOK]
c.CourseDirectory.max_file_size = 5000  # kB per file: a notebook with a few figures

# --- releasing ---------------------------------------------------------------------------
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.enforce_metadata = True
c.ClearHiddenTests.enforce_metadata = True
c.GenerateAssignment.create_assignment = True

# --- autograding -------------------------------------------------------------------------
# Deleted graded cells (the setup cell, test cells, the task) come back where they were;
# edited locked cells are restored from the gradebook's checksums.
c.OverwriteCells.add_missing_cells = True
# Per-cell timeout of nbgrader's own executor, a backstop only. Each check cell kills a
# hanging student function after its own budget (cnnlib.grading.Grader: 10 s per check
# cell), and under autograde the setup cell stops any cell after 45 s with an exception
# KeyboardInterrupt handlers do not swallow. nbgrader gives up on the whole notebook when
# its own timeout fires on a cell that ignores the interrupt, so it must stay above both.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
# Trusted grading (cnnlib.grading.trusted): the notebook runs in a bubblewrap sandbox (an
# unprivileged uid, no network, own pid namespace, read-only environment, one scratch
# folder, memory/process/CPU/file limits) and every autograded test cell runs here, in the
# grading process, asking the sandboxed kernel to call the student's function on inputs it
# sends; hidden test text, seeds and configurations never enter the student's process.
# Without bubblewrap autograding refuses to start unless the instructor passes
# --TrustedExecute.allow_unsandboxed=True (or sets CNNLIB_GRADING_UNSAFE=1). Hidden tests
# are removed from the autograded notebooks once they have run. Whether each notebook was
# graded is recorded in grading_status/<assignment>/<student>/<notebook>.json.
c.Autograde.autograde_preprocessors = [
    "cnnlib.grading.trusted.TrustedExecute",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.TrustedExecute.timeout = 60  # seconds per student cell in the sandboxed kernel
c.TrustedExecute.check_timeout = 10.0  # seconds for the calls of one test cell
c.TrustedExecute.memory_mb = 2048
c.TrustedExecute.processes = 64
c.TrustedExecute.max_output = 1_000_000  # characters of output kept per cell
c.Autograde.create_student = True
# Late submissions (cnnlib.grading.late): 10 % of the score per started day after the due
# date, nothing within the grace period, at most max_percent. The due date is the
# assignment's in the gradebook, the submission time the one zip_collect recorded:
#   nbgrader db assignment add a1-convolution --duedate="2026-10-02 23:59:00 UTC"
# The export applies the rule to the final score, manual points included; the figure
# nbgrader shows after autograding covers the autograded points only.
c.AssignLatePenalties.plugin_class = "cnnlib.grading.late.LatePenalty"
c.LatePenalty.percent_per_day = 10.0
c.LatePenalty.grace_minutes = 0.0
c.LatePenalty.max_percent = 100.0

# --- feedback ----------------------------------------------------------------------------
# By default feedback shows the autograded notebook as it is, hidden tests included.
# Remove the hidden-test regions from the sources and the tracebacks (which quote the
# failing line) from the outputs; the grader's diagnosis stays.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "cnnlib.grading.nbgrader_plugins.StripErrorTracebacks",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# --- collecting downloads from a learning-management system ------------------------------
# nbgrader zip_collect a1-convolution: the LMS's files (or zip) in
# downloaded/a1-convolution/archive/ -> submitted/<student_id>/a1-convolution/.
# cnnlib.grading.collect.LMSCollector searches named_regexp in each file's path relative to
# downloaded/a1-convolution/extracted/ (a zip's files sit in a folder named after the zip;
# a pattern may read a per-student folder), maps renamed copies
# ("convolution-1.ipynb", "convolution (1).ipynb") to the notebook, keeps each student's
# latest attempt and lists the others in downloaded/a1-convolution/collection_report.csv.
# The submission time comes from the pattern's timestamp group, else from the LMS's CSV
# (timestamps_file); times without an offset are in `timezone`.
#
# Default layout: <student_id>_<YYYY-MM-DD-HH-MM-SS>_<notebook>.ipynb, for example
# "j_smith_2026-10-01-18-30-00_convolution.ipynb" (ids may hold underscores and digits).
# Canvas ("<name>_[LATE_]<user id>_<submission id>_<file>", no time in the name):
#   c.LMSCollector.named_regexp = (r"(?:^|/)(?P<student_id>[^/]+?)_(?:LATE_)?\d+_\d+_"
#                                  r"(?P<file_id>[^/]+\.ipynb)$")
#   c.LMSCollector.timestamps_file = "submission_times.csv"  # student_id,timestamp
# Moodle ("<Full Name>_<participant>_assignsubmission_file_/<file>", times in the grading
# worksheet CSV, "Download grading worksheet"):
#   c.LMSCollector.named_regexp = (r"(?:^|/)[^/]*_(?P<student_id>\d+)_assignsubmission_file_/"
#                                  r"(?P<file_id>[^/]+\.ipynb)$")
#   c.LMSCollector.timestamps_file = "grading_worksheet.csv"
#   c.LMSCollector.timestamps_id_column = "Identifier"
#   c.LMSCollector.timestamps_id_regexp = r"Participant (?P<student_id>\d+)"
#   c.LMSCollector.timestamps_time_column = "Last modified (submission)"
#   c.LMSCollector.timezone = "Europe/London"  # the Moodle site's time zone
c.ZipCollectApp.archive_directory = "archive"
c.ZipCollectApp.collector_plugin = "cnnlib.grading.collect.LMSCollector"
c.LMSCollector.named_regexp = (
    r"(?:^|/)(?P<student_id>[^/]+)_(?P<timestamp>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})"
    r"_(?P<file_id>[^/]+\.ipynb)$"
)
c.LMSCollector.valid_ext = [".ipynb"]
c.LMSCollector.timezone = "UTC"

# --- export ------------------------------------------------------------------------------
# grades.csv: nbgrader's columns with the late penalty on the final score, plus `status`
# (graded / needs manual grading / not graded / not submitted) and `detail`. A submission
# that could not be graded has empty scores and says why, never a silent 0.0.
c.ExportApp.plugin_class = "cnnlib.grading.export.CourseCsvExport"
c.CourseCsvExport.to = "grades.csv"
