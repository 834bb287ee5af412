"""nbgrader settings of the course. The repository root is the course directory.

Every command runs from the repository root with these settings, both the plain nbgrader
commands of the instructors' guide and ``make release`` / ``make grade``::

    nbgrader generate_assignment a1-convolution --force   # solutions/ -> assignments/
    nbgrader zip_collect a1-convolution                   # downloaded/ -> submitted/
    nbgrader autograde a1-convolution
    nbgrader generate_feedback a1-convolution
    nbgrader export
"""

c = get_config()  # noqa: F821 - injected by traitlets when nbgrader loads this file

# --- where things live -------------------------------------------------------------------
c.CourseDirectory.course_id = "cnn-course"
c.CourseDirectory.source_directory = "solutions"  # instructor sources with hidden tests
c.CourseDirectory.release_directory = "assignments"  # what students get (committed)
# submitted/, autograded/, feedback/, downloaded/ and gradebook.db keep nbgrader's
# defaults; all are git-ignored.
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
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
# Late submissions: 10 % of the score per started day, at most 100 %. The due date is the
# assignment's in the gradebook:
#   nbgrader db assignment add a1-convolution --duedate="2026-10-02 23:59:00 UTC"
c.AssignLatePenalties.plugin_class = "cnnlib.grading.nbgrader_plugins.PercentPerDayLate"
c.PercentPerDayLate.percent_per_day = 10.0
c.PercentPerDayLate.max_percent = 100.0

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
# Put the files an LMS exports in downloaded/a1-convolution/archive/, named
# <student_id>_<anything>_<notebook>.ipynb, for example
# "jdoe_attempt_2026-10-01_convolution.ipynb".
c.ZipCollectApp.archive_directory = "archive"
c.FileNameCollectorPlugin.named_regexp = (
    r"^(?P<student_id>[A-Za-z0-9.\-]+)_(?:.*_)?(?P<file_id>[A-Za-z0-9\-]+\.ipynb)$"
)
c.FileNameCollectorPlugin.valid_ext = [".ipynb"]

# --- export ------------------------------------------------------------------------------
c.ExportApp.plugin_class = "nbgrader.plugins.CsvExportPlugin"
c.CsvExportPlugin.to = "grades.csv"
