"""Trusted autograding: the student's code computes in a sandbox, the grader judges here.

:class:`TrustedExecute` replaces nbgrader's ``Execute`` preprocessor under ``nbgrader
autograde`` (``nbgrader_config.py``). For each notebook it

1. starts a kernel in a bubblewrap jail (``jail``: an unprivileged uid, no network, its
   own pid namespace, a read-only environment, one scratch folder, resource limits) and
   defines the call entry point there (``remote.install``) before any student cell;
2. runs every cell that is not an autograded test, in order, in that kernel: the
   student's cells, the locked set-up, imports and figures. Outputs are bounded. A cell
   that hangs is interrupted; if the kernel does not answer, it is restarted and the
   cells before are replayed, so one hang costs that cell only;
3. then runs each autograded test cell (a graded, locked code cell with points, as the
   gradebook recorded it: its metadata and text in the submission are not trusted) *here*, in
   the grading process, with ``GRADER`` a :class:`TrustedGrader` and each graded function
   name a :class:`RemoteFunction`. The test's source, seeds and configurations never
   enter the student's process; the inputs are built and the references computed here
   from ``cnnlib``, and only the calls' arguments and results cross, as plain data. Since
   every student cell has already run, nothing the student prints can show those inputs;
4. records whether the notebook was graded in ``grading_status/<assignment>/<student>/
   <notebook>.json`` (``{"graded": false, "reasons": [...]}`` when it could not be).

Before the first student of an assignment, once per grading process, the *preflight*
grades the assignment's own source notebook the same way (same sandbox, same library, same
limits). Unless it earns full autograded marks, grading stops before any student's code
runs: every notebook is NOT GRADED with the cause ("the sandboxed kernel cannot import
cnnlib: ..."), and ``nbgrader autograde`` exits non-zero. The grader's own failures
(:class:`GraderEnvironmentError`: a kernel that cannot start or that imports another
``cnnlib`` than this process, a locked set-up cell that fails, an assignment that cannot be
prepared) are never a student's 0: the notebook is NOT GRADED (``"environment": true`` in
its status) and gets no feedback until it is graded again.

Without bubblewrap, autograding refuses to start unless ``allow_unsandboxed`` is set
(``--TrustedExecute.allow_unsandboxed=True``, or ``CNNLIB_GRADING_UNSAFE=1``): the judge
still runs here, but the student's kernel then has the grader's rights over the files.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Float, Integer

from . import checks, jail, remote, specs

__all__ = ["TrustedExecute", "TrustedGrader", "RemoteFunction", "SandboxedKernel",
           "GraderEnvironmentError", "STATUS_DIRECTORY", "read_status"]

STATUS_DIRECTORY = "grading_status"
_KERNEL_ENV_PASS = ("CNNLIB_GRADING_TIMEOUT", "CNNLIB_GRADING_CELL_TIMEOUT")


class KernelLost(RuntimeError):
    """The sandboxed kernel died or stopped answering."""


class GraderEnvironmentError(RuntimeError):
    """The grader's own environment failed (a kernel that cannot start or import the
    library, a missing weight cache, a locked set-up cell that fails): never the student's
    fault, so the notebook is NOT GRADED with this reason, never given 0."""


class SandboxedKernel:
    """An IPython kernel in a bubblewrap jail (or, unsafe, a plain local process)."""

    def __init__(self, *, notebook=None, limits=None, sandboxed=True, start_timeout=60.0):
        self.notebook = notebook
        self.limits = limits or jail.Limits()
        self.sandboxed = sandboxed
        self.start_timeout = start_timeout
        self.proc = None
        self.kc = None
        self.base = None

    # ----------------------------------------------------------------- lifetime
    def start(self):
        from jupyter_client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        self.base = tempfile.mkdtemp(prefix="cnnlib-kernel-")
        os.chmod(self.base, 0o755)
        runtime = os.path.join(self.base, "runtime")
        scratch = os.path.join(self.base, "home")
        uid = jail.sandbox_uid()
        for d in (runtime, scratch):
            os.mkdir(d, 0o700)
            if self.sandboxed and os.geteuid() == 0:
                os.chown(d, uid, uid)
        conn, _ = write_connection_file(os.path.join(runtime, "kernel.json"), transport="ipc",
                                        ip=os.path.join(runtime, "k"),
                                        key=secrets.token_hex(32).encode())
        os.chmod(conn, 0o644)
        if self.sandboxed and os.geteuid() == 0:
            os.chown(conn, uid, uid)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", conn,
                "--HistoryManager.hist_file=:memory:"]
        env = {
            "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
            # the kernel imports the very cnnlib this process judges with (jail.py)
            "PYTHONPATH": jail.kernel_pythonpath(),
            "HOME": scratch, "IPYTHONDIR": os.path.join(scratch, ".ipython"),
            "MPLCONFIGDIR": os.path.join(scratch, ".matplotlib"), "MPLBACKEND": "Agg",
            "JUPYTER_RUNTIME_DIR": runtime, "JUPYTER_DATA_DIR": os.path.join(scratch, ".jd"),
            "JUPYTER_CONFIG_DIR": os.path.join(scratch, ".jc"),
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
            "NBGRADER_EXECUTION": "autograde", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "TQDM_DISABLE": "1",
        }
        for key in _KERNEL_ENV_PASS:
            if key in os.environ:
                env[key] = os.environ[key]
        if self.sandboxed:
            cmd = jail.jail_command(argv, scratch=scratch, runtime_dir=runtime,
                                    notebook=self.notebook, limits=self.limits, env=env,
                                    uid=uid)
            popen_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            cmd, popen_env = argv, env
        self.proc = subprocess.Popen(cmd, cwd=scratch, env=popen_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.kc = BlockingKernelClient(connection_file=conn)
        self.kc.load_connection_file()
        self.kc.start_channels(hb=False)  # liveness is the jail process's, not a heartbeat
        try:
            self._wait_ready()
        except KernelLost as exc:
            raise GraderEnvironmentError(f"the sandboxed kernel did not start ({exc}); check "
                                         "the sandbox's limits and the Python environment"
                                         ) from None
        self._install()

    def _install(self):
        """Define the grader's entry point in the fresh kernel, and check that the kernel
        imported the same ``cnnlib`` as this process: a kernel that cannot, or that finds
        another copy, would turn every student's work into a 0."""
        expected = jail.reference_package()
        reply = self._execute_quiet(
            "import cnnlib.grading.remote as _r; _r.install(globals()); del _r",
            timeout=self.start_timeout,
            user_expressions={"where": "__import__('cnnlib').__file__"})
        content = reply.get("content", {})
        if content.get("status") != "ok":
            self.shutdown()
            raise GraderEnvironmentError(
                f"the sandboxed kernel cannot import cnnlib: {content.get('ename', '?')}: "
                f"{content.get('evalue', '')} (the grader uses {expected})")
        where = content.get("user_expressions", {}).get("where", {})
        try:
            found = os.path.dirname(ast.literal_eval(where["data"]["text/plain"]))
        except (KeyError, TypeError, ValueError, SyntaxError):
            found = None
        # both paths as the kernel sees them: the jail binds the package at its own path
        if found is None or os.path.realpath(found) != expected:
            self.shutdown()
            raise GraderEnvironmentError(
                f"the sandboxed kernel imports cnnlib from {found}, the grader from "
                f"{expected}: both must use one and the same library")

    def _wait_ready(self):
        from queue import Empty

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not self.alive():
                break
            self.kc.kernel_info()
            try:
                reply = self.kc.get_shell_msg(timeout=1.0)
            except Empty:
                continue
            if reply.get("msg_type") == "kernel_info_reply":  # to any of the requests
                # drain the start-up messages on iopub
                with contextlib.suppress(Empty):
                    while True:
                        self.kc.get_iopub_msg(timeout=0.2)
                return
        code = self.proc.poll() if self.proc else None
        self.shutdown()
        raise KernelLost(f"the kernel did not start (exit status {code})")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def shutdown(self):
        """Kill the kernel and everything it started, and delete its folders."""
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
            self.kc = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self.proc = None
        if self.sandboxed and os.geteuid() == 0:
            _kill_uid(jail.sandbox_uid())
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    # ----------------------------------------------------------------- running code
    def _interrupt(self):
        msg = self.kc.session.msg("interrupt_request", {})
        self.kc.control_channel.send(msg)

    def _wait_idle(self, msg_id, deadline, on_output=None):
        """Collect iopub messages of ``msg_id`` until the kernel is idle; False on timeout."""
        from queue import Empty

        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not self.alive():
                raise KernelLost("the kernel died")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 1.0))
            except Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"].get("execution_state") == "idle":
                return True
            if on_output is not None:
                on_output(msg)

    def execute(self, code, *, timeout, max_output=1_000_000):
        """Run one cell; return ``(outputs, finished)``. ``finished`` is False when the cell
        ran past ``timeout`` (it was interrupted, or the kernel stopped answering)."""
        outputs = Outputs(max_output)
        msg_id = self.kc.execute(code, store_history=True, allow_stdin=False)
        if self._wait_idle(msg_id, time.monotonic() + timeout, outputs.add):
            return outputs.cells, True
        self._interrupt()
        if self._wait_idle(msg_id, time.monotonic() + 5, outputs.add):
            outputs.error("CellTimeout", f"this cell ran for more than {timeout:g} s while "
                          "grading and was interrupted")
            return outputs.cells, False
        raise KernelLost(f"a cell ran for more than {timeout:g} s and the kernel did not "
                         "answer the interrupt")

    def _execute_quiet(self, code, *, timeout, user_expressions=None):
        """Run grader code (not stored in the history); return the execute reply."""
        from queue import Empty

        msg_id = self.kc.execute(code, silent=False, store_history=False, allow_stdin=False,
                                 user_expressions=user_expressions or {})
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KernelLost(f"the kernel did not answer within {timeout:g} s")
            if not self.alive():
                raise KernelLost("the kernel died")
            try:
                reply = self.kc.get_shell_msg(timeout=min(left, 1.0))
            except Empty:
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return reply

    def call(self, name, op, assignment, calls, timeout):
        """Outcomes of ``name(*args)`` for each call, run in the kernel's forked child."""
        request = remote.encode_request(name, op, assignment, calls, timeout)
        code = f"{remote.RESULT_NAME} = None\n{remote.CALL_NAME}({request!r})"
        reply = self._execute_quiet(code, timeout=timeout + 20,
                                    user_expressions={"r": remote.RESULT_NAME})
        try:
            data = reply["content"]["user_expressions"]["r"]["data"]["text/plain"]
            if len(data) > remote.MAX_ANSWER_CHARS + 1000:
                raise ValueError("the answer is too large")
            return remote.decode_outcomes(ast.literal_eval(data), len(calls))
        except (KeyError, TypeError, ValueError, SyntaxError, MemoryError) as exc:
            detail = f"gave no readable result ({type(exc).__name__})"
            if reply["content"].get("status") == "error":
                detail = "gave no result: the grader's entry point in the notebook was broken"
            return [{"kind": "crashed", "detail": detail}] * len(calls)


def _kill_uid(uid):
    """SIGKILL every process of the sandbox uid (none should outlive its kernel: the pid
    namespace ends them; this is a second line)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            continue


class Outputs:
    """nbformat outputs of one cell, at most ``limit`` characters of text in total."""

    def __init__(self, limit):
        self.limit = limit
        self.used = 0
        self.cells = []
        self.truncated = False

    def _room(self, n):
        if self.used + n > self.limit:
            if not self.truncated:
                self.truncated = True
                self.cells.append(nbformat.v4.new_output(
                    "stream", name="stdout",
                    text=f"\n[output truncated: more than {self.limit} characters]\n"))
            return False
        self.used += n
        return True

    def add(self, msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "clear_output":
            self.cells = [o for o in self.cells if o.get("output_type") == "error"]
            return
        if kind not in ("stream", "display_data", "execute_result", "error"):
            return
        size = len(json.dumps(content))
        if not self._room(size):
            return
        try:
            out = nbformat.v4.output_from_msg(msg)
        except (ValueError, KeyError):
            return
        if (kind == "stream" and self.cells and self.cells[-1].get("output_type") == "stream"
                and self.cells[-1].get("name") == out.get("name")):
            self.cells[-1]["text"] += out["text"]
        else:
            self.cells.append(out)

    def error(self, ename, evalue):
        self.cells.append(nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                                 traceback=[f"{ename}: {evalue}"]))


# --------------------------------------------------------------------------- the judge side

class RemoteFunction:
    """Stands, in a test cell run by the grader, for the student's function of that name."""

    def __init__(self, grader, name):
        self._grader = grader
        self.name = name

    def __call__(self, *args):
        return self._grader.run(self.name, self, *args)

    def __repr__(self):
        return f"<the notebook's {self.name}>"


class TrustedGrader:
    """``GRADER`` as test cells see it under trusted autograding (same methods as
    :class:`~cnnlib.grading.Grader`), judging in the grading process."""

    def __init__(self, kernel, module, lib, *, timeout=10.0, show=1):
        self.kernel = kernel
        self.module = module
        self.lib = lib
        self.timeout = timeout
        self.show = show

    def _spec(self, op):
        spec = self.module.FUNCTIONS.get(op)
        if spec is None:
            raise AssertionError(f"no graded function named {op!r}")
        return spec

    def _call(self, op, fn, calls, timeout):
        name = fn.name if isinstance(fn, RemoteFunction) else op
        return self.kernel.call(name, op, self.module.ASSIGNMENT, calls,
                                float(timeout or self.timeout))

    def check(self, op, fn, *, seed, cases=(), random=0, timeout=None):
        spec = self._spec(op)
        configs, calls = checks.make_inputs(spec, seed, cases, random)
        outcomes = self._call(op, fn, calls, timeout)
        passed, report = checks.judge(spec, self.lib, configs, calls, outcomes, show=self.show)
        if not passed:
            raise AssertionError(report)
        print(report)

    def expect(self, op, fn, calls, expected, labels=None, *, timeout=None):
        spec = self._spec(op)
        calls = [(tuple(args), {}) for args in calls]
        labels = labels or [f"example {i + 1}" for i in range(len(calls))]
        outcomes = self._call(op, fn, calls, timeout)
        passed, report = checks.judge_expected(spec, outcomes, expected, labels)
        if not passed:
            raise AssertionError(report)
        print(report)

    def run(self, op, fn, *args, timeout=None):
        self._spec(op)
        (outcome,) = self._call(op, fn, [(args, {})], timeout)
        if outcome["kind"] != "ok":
            raise AssertionError(f"{op} {outcome.get('detail', outcome['kind'])}")
        value = outcome["value"]
        return value.copy() if hasattr(value, "copy") else value


def run_test_cell(source, grader, names):
    """Run a test cell's source here; return its nbformat outputs (never stderr)."""
    import numpy as np

    namespace = {"__builtins__": builtins, "__name__": "__grading__", "np": np,
                 "GRADER": grader}
    namespace.update({name: RemoteFunction(grader, name) for name in names})
    out = io.StringIO()
    outputs = []
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            exec(compile(source, "<test cell>", "exec"), namespace)  # noqa: S102 - course code
        error = None
    except AssertionError as exc:
        error = ("AssertionError", str(exc) or "the check failed")
    except Exception as exc:  # noqa: BLE001 - a broken test is reported, never raised
        error = (type(exc).__name__, f"the check could not run: {type(exc).__name__}")
    text = out.getvalue()[:100_000]
    if text:
        outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text))
    if error:
        outputs.append(nbformat.v4.new_output("error", ename=error[0], evalue=error[1],
                                              traceback=[f"{error[0]}: {error[1]}"]))
    return outputs


# --------------------------------------------------------------------------- status marker

def status_path(course, assignment, student, notebook):
    return os.path.join(course, STATUS_DIRECTORY, assignment, student, f"{notebook}.json")


def write_status(course, assignment, student, notebook, *, graded, reasons=(), notes=(),
                 environment=False):
    path = status_path(course, assignment, student, notebook)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"graded": bool(graded), "reasons": list(reasons), "notes": list(notes),
                   "environment": bool(environment),
                   "assignment": assignment, "student": student, "notebook": notebook}, f,
                  indent=1)
    os.replace(tmp, path)  # never half-written


def read_status(course, assignment, student, notebook):
    """The marker of one notebook: ``{"graded": bool, "reasons": [...], ...}``, or None when
    trusted autograding never finished it (treat as not graded)."""
    try:
        with open(status_path(course, assignment, student, notebook), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- the preprocessor

class TrustedExecute(NbGraderPreprocessor):
    """Execute a submission in a sandboxed kernel and judge its tests in this process."""

    enabled = Bool(True).tag(config=True)
    timeout = Integer(60, help=("Seconds a student cell may run in the kernel (an assignment's "
                                "spec module may allow more: CELL_TIMEOUT).")).tag(config=True)
    check_timeout = Float(10.0, help="Seconds the calls of one test cell may take together."
                          ).tag(config=True)
    max_output = Integer(1_000_000, help="Characters of output kept per cell.").tag(config=True)
    memory_mb = Integer(2048, help="Address space of each sandboxed process (MB)."
                        ).tag(config=True)
    processes = Integer(64, help="Processes the sandbox uid may run.").tag(config=True)
    cpu_seconds = Integer(900, help="CPU seconds of the kernel's whole run.").tag(config=True)
    preflight = Bool(True, help=(
        "Before grading the first student of an assignment, grade its source notebook in "
        "the same sandbox and stop unless it earns full marks (once per grading process)."
        )).tag(config=True)
    allow_unsandboxed = Bool(False, help=(
        "Grade without bubblewrap: the student's kernel then runs with the grader's rights. "
        "Only for trusted submissions (or CNNLIB_GRADING_UNSAFE=1).")).tag(config=True)

    def trusted_tests(self, course, assignment, notebook):
        """``{grade_id: source}`` of the notebook's autograded test cells, as the gradebook
        recorded them when the assignment was generated (graded code cells with points)."""
        from nbgrader.api import Gradebook
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config, root=course)
        with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
            nbm = gb.find_notebook(notebook, assignment)
            graded = {gc.name for gc in nbm.grade_cells
                      if gc.cell_type == "code" and (gc.max_score or 0) > 0}
            return {sc.name: sc.source for sc in nbm.source_cells
                    if sc.name in graded and sc.locked}

    def _submitted(self, course, student, assignment, notebook):
        from nbgrader.coursedir import CourseDirectory

        try:
            coursedir = CourseDirectory(config=self.config, root=course)
            path = coursedir.format_path(coursedir.submitted_directory, student, assignment)
        except Exception:  # noqa: BLE001 - then the kernel simply does not see it
            return None
        path = os.path.join(path, f"{notebook}.ipynb")
        return path if os.path.isfile(path) and not os.path.islink(path) else None

    def preprocess(self, nb, resources):
        meta = resources.get("nbgrader", {})
        assignment, student = meta.get("assignment", "?"), meta.get("student", "?")
        notebook = meta.get("notebook", "notebook")
        course = os.getcwd()
        write_status(course, assignment, student, notebook, graded=False,
                     reasons=["grading did not finish"])
        try:
            ctx = self._context(course, assignment, notebook)
            if self.preflight:
                self.run_preflight(ctx)
            # The student's notebook as submitted: not the copy being graded, whose locked
            # cells nbgrader has already restored, hidden tests included.
            submitted = self._submitted(course, student, assignment, notebook)
            reasons, notes = self._grade(nb, ctx, submitted)
        except GraderEnvironmentError as exc:
            # The grader's own failure: NOT GRADED with the cause, and nbgrader removes the
            # autograded copy, so no feedback of zeros goes out. Grading again once the
            # environment is fixed grades the notebook as usual.
            reason = str(exc)
            self.log.error("NOT GRADED %s/%s/%s: %s", assignment, student, notebook, reason)
            write_status(course, assignment, student, notebook, graded=False,
                         reasons=[reason], environment=True)
            raise RuntimeError(reason) from None
        write_status(course, assignment, student, notebook, graded=not reasons,
                     reasons=reasons, notes=notes)
        return nb, resources

    # ----------------------------------------------------------------- the grader's side
    def _context(self, course, assignment, notebook):
        """What grading one notebook needs besides the notebook; a failure here is the
        grader's, never the student's (:class:`GraderEnvironmentError`)."""
        sandboxed = jail.bwrap_works()
        if not sandboxed and not (self.allow_unsandboxed
                                  or os.environ.get("CNNLIB_GRADING_UNSAFE") == "1"):
            raise GraderEnvironmentError(
                "bubblewrap (bwrap) is not available, so the notebook cannot be run in a "
                "sandbox; install it (Debian: apt-get install bubblewrap) or, for trusted "
                "submissions only, pass --TrustedExecute.allow_unsandboxed=True")
        module = specs.load(assignment)
        # What the notebook needs from the grader's machine (a5-transfer: the pre-trained
        # network in the weight cache). Without it every cell after the first would fail
        # and the notebook would look graded with 0: flag it as not graded instead.
        try:
            _prepare(module)
        except Exception as exc:  # noqa: BLE001 - flagged, never a silent zero
            raise GraderEnvironmentError(
                f"the grader could not prepare {assignment} ({type(exc).__name__}: {exc}); "
                "run its set-up (see the instructors' guide) and grade again") from None
        # Which cells run here, and their text, come from the gradebook, never from the
        # notebook: a student can give any cell of theirs test-cell metadata.
        try:
            tests = self.trusted_tests(course, assignment, notebook)
        except Exception as exc:  # noqa: BLE001 - flagged, never a silent zero
            raise GraderEnvironmentError(
                f"the gradebook has no test cells for this notebook ({exc})") from None
        from .harness import _load_reference
        source = self._source(course, assignment, notebook)
        return _Context(
            course=course, assignment=assignment, notebook=notebook, module=module,
            tests=tests, sandboxed=sandboxed, source=source,
            setup_cells=_setup_cells(source, tests),
            lib=_load_reference(os.environ.get("CNNLIB_GRADING_REFERENCE", "cnnlib.numpy")),
            # an assignment whose notebook trains a network gives its cells more time
            cell_timeout=max(float(self.timeout), specs.cell_timeout(module)),
            check_timeout=float(os.environ.get("CNNLIB_GRADING_TIMEOUT", self.check_timeout)),
            limits=jail.Limits(memory_mb=self.memory_mb, processes=self.processes,
                               cpu_seconds=self.cpu_seconds))

    def _source(self, course, assignment, notebook):
        """The assignment's source notebook (solutions and hidden tests), or None."""
        from nbgrader.coursedir import CourseDirectory

        try:
            coursedir = CourseDirectory(config=self.config, root=course)
            folder = coursedir.format_path(coursedir.source_directory, ".", assignment)
        except Exception:  # noqa: BLE001 - then there is no source to check against
            return None
        path = os.path.join(folder, f"{notebook}.ipynb")
        return path if os.path.isfile(path) else None

    def run_preflight(self, ctx):
        """Grade the assignment's own source notebook, once per grading process, in the
        same sandbox and environment as the students; raise :class:`GraderEnvironmentError`
        (for this and every later notebook of the assignment) unless it earns full
        autograded marks. A grading environment that is subtly wrong would otherwise give
        every student 0."""
        key = (os.path.realpath(ctx.course), ctx.assignment, ctx.notebook)
        if key not in _PREFLIGHT:
            start = time.perf_counter()
            _PREFLIGHT[key] = self._preflight_problem(ctx)
            self.log.info("preflight of %s/%s.ipynb: %s in %.1f s (cnnlib from %s)",
                          ctx.assignment, ctx.notebook, _PREFLIGHT[key] or "full marks",
                          time.perf_counter() - start, jail.reference_package())
        if _PREFLIGHT[key]:
            raise GraderEnvironmentError(
                "preflight stopped grading before any student: the assignment's own solution, "
                f"graded in the same sandbox, {_PREFLIGHT[key]}")

    def _preflight_problem(self, ctx):
        """None when the source notebook earns full autograded marks, else why not."""
        if ctx.source is None:
            return (f"could not be found ({ctx.assignment}/{ctx.notebook}.ipynb in the "
                    "source directory); grade from the course directory that holds it, or "
                    "pass --TrustedExecute.preflight=False")
        canary = nbformat.read(ctx.source, as_version=4)
        with tempfile.TemporaryDirectory(prefix="cnnlib-preflight-") as folder:
            path = os.path.join(folder, f"{ctx.notebook}.ipynb")
            nbformat.write(canary, path)
            os.chmod(path, 0o644)
            try:
                reasons, _ = self._grade(canary, ctx, path)
            except GraderEnvironmentError as exc:
                return f"failed: {exc}"
        if reasons:
            return f"was not graded: {reasons[0]}"
        failed = []
        for cell in canary.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if cell.cell_type == "code" and grade_id in ctx.tests:
                errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
                if errors:
                    failed.append(f"{grade_id}: {errors[-1].get('ename')}: "
                                  f"{str(errors[-1].get('evalue', ''))[:300]}")
        if failed:
            return (f"lost points in {len(failed)} check(s), so the environment is wrong: "
                    + "; ".join(failed[:3]))
        return None

    def _grade(self, nb, ctx, submitted):
        """Run the notebook's cells in a sandboxed kernel and its tests here; return
        ``(reasons, notes)``: reasons why it could not be graded (the student's kernel was
        lost for good), notes for the instructor. Raises :class:`GraderEnvironmentError`
        when the grader's own part fails."""
        tests = ctx.tests

        def test_source(cell):
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            return tests.get(grade_id) if cell.cell_type == "code" else None

        kernel = SandboxedKernel(notebook=submitted, limits=ctx.limits,
                                 sandboxed=ctx.sandboxed)
        reasons, notes = [], []
        if not ctx.sandboxed:
            notes.append("graded WITHOUT a sandbox (allow_unsandboxed)")
        count = 0
        cell_timeout = ctx.cell_timeout
        try:
            kernel.start()
            ran = []  # sources of the kernel cells that finished, for a replay
            for cell in nb.cells:
                if cell.cell_type != "code" or test_source(cell) is not None:
                    continue
                count += 1
                cell.execution_count = count
                try:
                    outputs, finished = kernel.execute(cell.source, timeout=cell_timeout,
                                                       max_output=self.max_output)
                except KernelLost as exc:
                    cell.outputs = [_error("KernelLost", f"{exc}; the kernel was restarted "
                                           "and the cells before this one run again")]
                    notes.append(f"cell {count}: {exc}")
                    kernel.shutdown()
                    kernel.start()
                    for source in ran:
                        kernel.execute(source, timeout=cell_timeout, max_output=0)
                    continue
                cell.outputs = outputs
                grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                if grade_id in ctx.setup_cells:
                    failure = next((o for o in outputs if o.get("output_type") == "error"),
                                   None)
                    if failure is not None or not finished:
                        what = (f"{failure.get('ename')}: {failure.get('evalue')}"
                                if failure is not None else "it did not finish")
                        raise GraderEnvironmentError(
                            f"the course's locked set-up cell '{grade_id}' failed in the "
                            f"sandboxed kernel ({what})")
                if finished:
                    ran.append(cell.source)
                else:
                    notes.append(f"cell {count} was interrupted after {cell_timeout:g} s")
            grader = TrustedGrader(kernel, ctx.module, ctx.lib, timeout=ctx.check_timeout)
            names = list(ctx.module.FUNCTIONS)
            for cell in nb.cells:
                source = test_source(cell)
                if source is not None:
                    count += 1
                    cell.execution_count = count
                    cell.outputs = run_test_cell(source, grader, names)
                    if not kernel.alive():
                        notes.append("the kernel died during a check and was restarted")
                        kernel.shutdown()
                        kernel.start()
                        for source in ran:
                            kernel.execute(source, timeout=cell_timeout, max_output=0)
        except GraderEnvironmentError:
            raise
        except KernelLost as exc:
            reasons.append(f"the kernel was lost and could not be restarted: {exc}")
        except Exception as exc:  # noqa: BLE001 - flagged, never a silent zero
            reasons.append(f"grading failed: {type(exc).__name__}: {exc}")
        finally:
            kernel.shutdown()
        if reasons:
            for cell in nb.cells:
                if test_source(cell) is not None and not cell.get("outputs"):
                    cell.outputs = [_error("NotGraded", "this check did not run: " + reasons[0])]
        return reasons, notes


@dataclasses.dataclass(frozen=True)
class _Context:
    """What grading the notebooks of one assignment needs, besides each notebook."""

    course: str
    assignment: str
    notebook: str
    module: object
    tests: dict
    sandboxed: bool
    source: str | None
    setup_cells: frozenset
    lib: object
    cell_timeout: float
    check_timeout: float
    limits: jail.Limits


def _setup_cells(source, tests):
    """grade_ids of the course's locked set-up cells: the locked cells of the source
    notebook before its first solution cell (the grading set-up, the imports). They hold no
    student code, so when one fails in the kernel the grader's environment is at fault."""
    if source is None:
        return frozenset()
    try:
        cells = nbformat.read(source, as_version=4).cells
    except Exception:  # noqa: BLE001 - no source, no set-up cells to tell apart
        return frozenset()
    found = set()
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution"):
            break
        if cell.cell_type == "code" and meta.get("locked") and meta.get("grade_id") \
                and meta["grade_id"] not in tests:
            found.add(meta["grade_id"])
    return frozenset(found)


_PREFLIGHT = {}  # (course, assignment, notebook) -> None when the preflight passed, else why


_PREPARED = {}  # assignment -> None once prepared, or the exception it failed with


def _prepare(module):
    """Run the spec module's ``prepare()`` once per grading process, if it has one. A
    failure is remembered too: it is raised again for every later notebook, which is then
    NOT GRADED at once instead of failing the same minutes-long preparation again."""
    step = getattr(module, "prepare", None)
    if step is None:
        return
    if module.ASSIGNMENT not in _PREPARED:
        try:
            step()
            _PREPARED[module.ASSIGNMENT] = None
        except Exception as exc:  # noqa: BLE001 - raised again below, every time
            _PREPARED[module.ASSIGNMENT] = exc
    if _PREPARED[module.ASSIGNMENT] is not None:
        raise _PREPARED[module.ASSIGNMENT]


def _error(ename, evalue):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=[f"{ename}: {evalue}"])


def preflight(course, assignment, *, log=None):
    """Grade ``assignment``'s own source notebooks in the sandbox, as ``nbgrader autograde``
    would grade a student's, with the course's ``nbgrader_config.py``; return None when they
    earn full autograded marks, else why not (the message names the cause). Grading workers
    run it once before the first student (``cnnlib.grading.workers``)."""
    import logging

    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    course = os.path.realpath(course)
    config = PyFileConfigLoader("nbgrader_config.py", path=course).load_config()
    coursedir = CourseDirectory(config=config, root=course)
    folder = coursedir.format_path(coursedir.source_directory, ".", assignment)
    notebooks = sorted(f[:-len(".ipynb")] for f in os.listdir(folder) if f.endswith(".ipynb")) \
        if os.path.isdir(folder) else []
    if not notebooks:
        return f"{assignment} has no source notebook in {folder}"
    here = os.getcwd()
    try:
        os.chdir(course)  # relative paths of the config (sqlite:///gradebook.db)
        step = TrustedExecute(config=config)
        step.log = log or logging.getLogger("cnnlib.grading.preflight")
        for notebook in notebooks:
            try:
                step.run_preflight(step._context(course, assignment, notebook))
            except GraderEnvironmentError as exc:
                return str(exc)
    finally:
        os.chdir(here)
    return None
