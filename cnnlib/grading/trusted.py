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

Without bubblewrap, autograding refuses to start unless ``allow_unsandboxed`` is set
(``--TrustedExecute.allow_unsandboxed=True``, or ``CNNLIB_GRADING_UNSAFE=1``): the judge
still runs here, but the student's kernel then has the grader's rights over the files.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
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
           "STATUS_DIRECTORY", "read_status"]

STATUS_DIRECTORY = "grading_status"
_KERNEL_ENV_PASS = ("CNNLIB_GRADING_TIMEOUT", "CNNLIB_GRADING_CELL_TIMEOUT")


class KernelLost(RuntimeError):
    """The sandboxed kernel died or stopped answering."""


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
        self._wait_ready()
        self._execute_quiet("import cnnlib.grading.remote as _r; _r.install(globals()); del _r",
                            timeout=self.start_timeout)

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


def write_status(course, assignment, student, notebook, *, graded, reasons=(), notes=()):
    path = status_path(course, assignment, student, notebook)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"graded": bool(graded), "reasons": list(reasons), "notes": list(notes),
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
        sandboxed = jail.bwrap_works()
        if not sandboxed and not (self.allow_unsandboxed
                                  or os.environ.get("CNNLIB_GRADING_UNSAFE") == "1"):
            reason = ("bubblewrap (bwrap) is not available, so the notebook cannot be run "
                      "in a sandbox; install it (Debian: apt-get install bubblewrap) or, for "
                      "trusted submissions only, pass --TrustedExecute.allow_unsandboxed=True")
            write_status(course, assignment, student, notebook, graded=False, reasons=[reason])
            raise RuntimeError(reason)
        module = specs.load(assignment)
        # What the notebook needs from the grader's machine (a5-transfer: the pre-trained
        # network in the weight cache). Without it every cell after the first would fail
        # and the notebook would look graded with 0: flag it as not graded instead.
        try:
            _prepare(module)
        except Exception as exc:  # noqa: BLE001 - flagged, never a silent zero
            reason = (f"the grader could not prepare {assignment} ({type(exc).__name__}: "
                      f"{exc}); run its set-up (see the instructors' guide) and grade again")
            write_status(course, assignment, student, notebook, graded=False, reasons=[reason])
            raise RuntimeError(reason) from None
        # An assignment whose notebook trains a network gives its cells more time.
        cell_timeout = max(float(self.timeout), specs.cell_timeout(module))
        # Which cells run here, and their text, come from the gradebook, never from the
        # notebook: a student can give any cell of theirs test-cell metadata.
        try:
            tests = self.trusted_tests(course, assignment, notebook)
        except Exception as exc:  # noqa: BLE001 - flagged, never a silent zero
            reason = f"the gradebook has no test cells for this notebook ({exc})"
            write_status(course, assignment, student, notebook, graded=False, reasons=[reason])
            raise RuntimeError(reason) from None

        def test_source(cell):
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            return tests.get(grade_id) if cell.cell_type == "code" else None
        from .harness import _load_reference
        lib = _load_reference(os.environ.get("CNNLIB_GRADING_REFERENCE", "cnnlib.numpy"))
        timeout = float(os.environ.get("CNNLIB_GRADING_TIMEOUT", self.check_timeout))
        # The student's notebook as submitted: not the copy being graded, whose locked
        # cells nbgrader has already restored, hidden tests included.
        submitted = self._submitted(course, student, assignment, notebook)
        limits = jail.Limits(memory_mb=self.memory_mb, processes=self.processes,
                             cpu_seconds=self.cpu_seconds)
        kernel = SandboxedKernel(notebook=submitted,
                                 limits=limits, sandboxed=sandboxed)
        reasons, notes = [], []
        if not sandboxed:
            notes.append("graded WITHOUT a sandbox (allow_unsandboxed)")
        count = 0
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
                if finished:
                    ran.append(cell.source)
                else:
                    notes.append(f"cell {count} was interrupted after {cell_timeout:g} s")
            grader = TrustedGrader(kernel, module, lib, timeout=timeout)
            names = list(module.FUNCTIONS)
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
        write_status(course, assignment, student, notebook, graded=not reasons,
                     reasons=reasons, notes=notes)
        return nb, resources


_PREPARED = set()


def _prepare(module):
    """Run the spec module's ``prepare()`` once per grading process, if it has one."""
    step = getattr(module, "prepare", None)
    if step is not None and module.ASSIGNMENT not in _PREPARED:
        step()
        _PREPARED.add(module.ASSIGNMENT)


def _error(ename, evalue):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=[f"{ename}: {evalue}"])
