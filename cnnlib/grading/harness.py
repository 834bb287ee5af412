"""The grader object that an assignment's locked setup cell creates, and its reference process.

The first cell of every assignment notebook is read-only and runs before any student
code (nbgrader restores it if it is edited or deleted)::

    from cnnlib.grading import Grader
    GRADER = Grader()

Creating the grader forks a *reference process*: a copy of the kernel as it is at that
moment, with ``cnnlib.numpy`` imported and no student code in it. Hidden tests send it a
seed and a list of configurations; it builds the inputs, the student's function runs on
them in a separate throw-away child (``sandbox.run_cases``), and the reference process
compares the results with ``cnnlib`` and explains any difference. Inputs, references and
verdicts are therefore computed where no student cell can patch anything: not numpy's
testing helpers, not ``cnnlib``, not ``__eq__``.

A hidden test cell reads::

    GRADER.check("conv2d", conv2d, seed=..., cases=[...])   # raises AssertionError on failure

Under ``nbgrader autograde`` the grader also guards the kernel itself: every later cell gets
a time limit and ``os._exit`` raises instead of ending the kernel, so a student's own
top-level call to a hanging or exiting function costs that cell, not the notebook.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import os
import signal
import sys

from . import sandbox, specs
from .sandbox import encode_value, read_frame, run_cases, write_frame

__all__ = ["Grader", "GradingError"]

_AssertionError = builtins.AssertionError
_print = builtins.print


class GradingError(RuntimeError):
    """The grading machinery itself failed (not the student's code)."""


def _load_reference(name):
    """Import the reference library: a module name, or a path to a .py file (tests)."""
    if name.endswith(".py"):
        spec = importlib.util.spec_from_file_location("_cnnlib_grading_reference", name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(name)


class Grader:
    """Checks students' functions against ``cnnlib`` from a process they cannot reach.

    Parameters
    ----------
    assignment : str, optional
        The assignment whose spec module describes the graded functions (``"a1"`` or
        ``"a1-convolution"``); by default each function is looked up by name among all
        spec modules.
    reference : str
        The reference library module (``cnnlib.numpy``). The
        environment variable ``CNNLIB_GRADING_REFERENCE`` (read once, here) overrides it;
        the grading tests use that to pin a private copy.
    timeout : float
        Seconds one test cell's calls may take together before the child running them is
        killed (``CNNLIB_GRADING_TIMEOUT`` overrides it). nbgrader's own per-cell timeout
        (``nbgrader_config.py``) is larger, a backstop only.
    """

    def __init__(self, assignment=None, *, reference="cnnlib.numpy", timeout=10.0):
        # An instructor (or the grading tests) may shorten the budget for a whole run.
        self.timeout = float(os.environ.get("CNNLIB_GRADING_TIMEOUT", timeout))
        self._problem = self._environment_problem()
        name = os.environ.get("CNNLIB_GRADING_REFERENCE", reference)
        lib = _load_reference(name)
        self.assignment = assignment
        modules = [specs.load(assignment)] if assignment else list(specs.assignments().values())
        needs = [f for m in modules for f in getattr(m, "REFERENCE_NEEDS", ())]
        missing = [f for f in needs if not callable(getattr(lib, f, None))]
        if missing:
            raise GradingError(f"the reference library {name} lacks {', '.join(missing)}")
        self._start_server(lib)
        if os.environ.get("NBGRADER_EXECUTION") == "autograde":
            # below the grader's own limit per cell (60 s, or the assignment's CELL_TIMEOUT)
            limit = 0.75 * (specs.cell_timeout(modules[0]) if assignment
                            else specs.DEFAULT_CELL_TIMEOUT)
            _guard_kernel(float(os.environ.get("CNNLIB_GRADING_CELL_TIMEOUT", limit)))

    # ----------------------------------------------------------------- setup checks
    @staticmethod
    def _environment_problem():
        """Why grading cannot be trusted in this kernel, or None (checked under nbgrader)."""
        if not os.environ.get("NBGRADER_EXECUTION"):
            return None
        cwd = os.getcwd()
        for name in ("numpy", "cnnlib"):
            origin = getattr(sys.modules.get(name), "__file__", None) or ""
            if origin in (os.path.join(cwd, f"{name}.py"),
                          os.path.join(cwd, name, "__init__.py")):
                return (f"a file or folder named {name} next to the notebook replaces the real "
                        f"{name}; remove it from the submission")
        ip = getattr(builtins, "get_ipython", lambda: None)()
        # Under nbgrader's executor the first cell already sees one earlier entry in the
        # input history (the kernel's start-up), so "first" means at most two entries.
        history = getattr(getattr(ip, "history_manager", None), "input_hist_raw", [])
        if len(history) > 2:
            return ("the grading setup cell did not run first (other cells ran before it); "
                    "keep it as the first cell of the notebook")
        return None

    # ----------------------------------------------------------------- reference process
    def _start_server(self, lib):
        from . import checks

        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        pid = os.fork() if sandbox.FORK_AVAILABLE else None
        if pid == 0:
            try:
                os.close(req_w)
                os.close(rep_r)
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                import io
                sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                sandbox.one_thread_after_fork()
                _serve(lib, checks, self.assignment, req_r, rep_w)
            finally:
                os._exit(0)
        if pid is None:  # no fork (Windows): serve in-process, no isolation
            self._inline = (lib, checks, {}, self.assignment)
            self._pid = None
            return
        os.close(req_r)
        os.close(rep_w)
        self._inline = None
        self._pid, self._req, self._rep = pid, req_w, rep_r

    def _ask(self, header, blobs=()):
        if self._inline is not None:
            return _handle(*self._inline, header, list(blobs))
        try:
            write_frame(self._req, header, blobs)
            return read_frame(self._rep, None)
        except (OSError, EOFError, ValueError) as exc:
            raise GradingError("the grader's reference process is gone; re-run the setup cell "
                               f"({type(exc).__name__})") from None

    def close(self):
        """Stop the reference process (the kernel's exit does it too)."""
        if getattr(self, "_pid", None):
            for fd in (self._req, self._rep):
                try:
                    os.close(fd)
                except OSError:
                    pass
            try:
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self._pid = None

    def __del__(self):
        self.close()

    # ----------------------------------------------------------------- checks
    def _private_fds(self):
        return () if self._inline is not None else (self._req, self._rep)

    def _spec(self, op):
        try:
            return specs.find(op, self.assignment)
        except KeyError as exc:
            raise _AssertionError(str(exc.args[0])) from None

    def _run(self, op, fn, calls, timeout):
        spec = self._spec(op)
        return run_cases(fn, calls, deny=spec.deny(), timeout=timeout or self.timeout,
                         close_fds=self._private_fds(), adapter=spec.adapter)

    def check(self, op, fn, *, seed, cases=(), random=0, timeout=None):
        """Hidden check: compare ``fn`` with the reference on generated inputs.

        Raises AssertionError with a diagnosis when any configuration differs; prints a
        one-line summary otherwise.
        """
        if self._problem:
            raise _AssertionError(self._problem)
        if not callable(fn):
            raise _AssertionError(f"{op} is not a function (got {type(fn).__name__})")
        self._spec(op)
        header, blobs = self._ask({"cmd": "inputs", "op": op, "seed": int(seed),
                                   "cases": list(cases), "random": int(random)})
        calls = _decode_calls(header["calls"], blobs)
        outcomes = self._run(op, fn, calls, timeout)
        verdict, _ = self._ask(*_encode_outcomes({"cmd": "judge", "id": header["id"]},
                                                 outcomes))
        if not verdict["passed"]:
            raise _AssertionError(verdict["report"])
        _print(verdict["report"])

    def expect(self, op, fn, calls, expected, labels=None, *, timeout=None):
        """Visible check: ``fn(*args)`` must equal each worked-example value."""
        if self._problem:
            raise _AssertionError(self._problem)
        if not callable(fn):
            raise _AssertionError(f"{op} is not a function (got {type(fn).__name__})")
        calls = [(tuple(args), {}) for args in calls]
        labels = labels or [f"example {i + 1}" for i in range(len(calls))]
        outcomes = self._run(op, fn, calls, timeout)
        header, blobs = _encode_outcomes({"cmd": "expect", "op": op, "labels": list(labels)},
                                         outcomes)
        descs = []
        for value in expected:
            desc, vb = encode_value(value)
            desc["_first"], desc["_nblobs"] = len(blobs), len(vb)
            blobs.extend(vb)
            descs.append(desc)
        header["expected"] = descs
        verdict, _ = self._ask(header, blobs)
        if not verdict["passed"]:
            raise _AssertionError(verdict["report"])
        _print(verdict["report"])

    def run(self, op, fn, *args, timeout=None):
        """Call ``fn(*args)`` in the sandbox and return its result (or raise AssertionError)."""
        (outcome,) = self._run(op, fn, [(args, {})], timeout)
        if outcome["kind"] == "denied":
            reason = self._spec(op).deny().reason
            raise _AssertionError(f"{op} earns no points here: while it ran it called "
                                  f"{outcome.get('detail')}" + (f"; {reason}" if reason else ""))
        if outcome["kind"] != "ok":
            raise _AssertionError(f"{op} {outcome.get('detail', outcome['kind'])}")
        value = outcome["value"]
        return value.copy() if hasattr(value, "copy") else value


class CellTimeLimit(BaseException):
    """A student cell ran past the grader's per-cell limit (autograding only)."""


class ProcessExitRefused(SystemExit):
    """os._exit was called in the kernel while grading."""


def _guard_kernel(limit):
    """While nbgrader autogrades, keep one student cell from ending the whole run.

    nbgrader gives up on a notebook when its kernel dies or stops answering, so a student
    cell that calls a function which hangs (swallowing KeyboardInterrupt) or calls
    ``os._exit`` at the top level would cost every point. Here each cell gets a time
    limit, enforced by SIGALRM with an exception ``except KeyboardInterrupt`` does not
    catch (raised again every second if swallowed), and ``os._exit`` raises instead of
    ending the kernel. The limit is below nbgrader's own cell timeout; the checks
    themselves run in forked children with their own, smaller, budget.
    """
    ip = getattr(builtins, "get_ipython", lambda: None)()
    if ip is None or not hasattr(signal, "setitimer"):
        return

    def on_alarm(signum, frame):
        signal.setitimer(signal.ITIMER_REAL, 1.0)  # again, if this one is swallowed
        raise CellTimeLimit(f"this cell ran for more than {limit:g} s while grading and was "
                            "stopped; the rest of the notebook is still graded")

    def arm(*args):
        signal.setitimer(signal.ITIMER_REAL, limit)

    def disarm(*args):
        signal.setitimer(signal.ITIMER_REAL, 0)

    def refuse_exit(status=0):
        raise ProcessExitRefused(f"os._exit({status}) was called: ending the Python process "
                                 "is not allowed while grading")

    signal.signal(signal.SIGALRM, on_alarm)
    ip.events.register("pre_run_cell", arm)
    ip.events.register("post_run_cell", disarm)
    os._exit = refuse_exit


def _encode_outcomes(header, outcomes):
    blobs, items = [], []
    for o in outcomes:
        item = {k: v for k, v in o.items() if k not in ("value", "blobs")}
        if o["kind"] == "ok":
            item["_blob"] = len(blobs)
            item["_nblobs"] = len(o.get("blobs", []))
            blobs.extend(o.get("blobs", []))
        items.append(item)
    return dict(header, outcomes=items), blobs


def _encode_calls(calls):
    """(descriptions, blobs) of the arguments of each call: arrays and numbers as results
    travel, and also the strings and booleans a spec's inputs may hold (an adapter's
    settings)."""
    out_blobs, descs = [], []
    for args, _ in calls:
        row = []
        for a in args:
            if type(a) in (str, bool):
                row.append({"kind": "plain", "value": a})
                continue
            desc, vb = encode_value(a)
            if desc["kind"] not in ("array", "int", "float", "none"):
                raise GradingError(f"a spec's input of type {type(a).__name__} cannot be "
                                   "sent to the student's function")
            if vb:
                desc["_blob"] = len(out_blobs)
                out_blobs.extend(vb)
            row.append(desc)
        descs.append(row)
    return descs, out_blobs


def _decode_calls(descs, blobs):
    calls = []
    for args in descs:
        values = []
        for d in args:
            if d.get("kind") == "plain" and type(d.get("value")) in (str, bool):
                values.append(d["value"])
                continue
            v = sandbox.decode_value(d, blobs[d["_blob"]:d["_blob"] + 1] if "_blob" in d else [])
            values.append(v.copy() if hasattr(v, "copy") else v)  # writable copies
        calls.append((tuple(values), {}))
    return calls


# --------------------------------------------------------------------------- server side

def _serve(lib, checks, assignment, req_fd, rep_fd):
    sessions = {}
    while True:
        try:
            header, blobs = read_frame(req_fd, None)
        except (EOFError, OSError, ValueError):
            return
        try:
            reply = _handle(lib, checks, sessions, assignment, header, blobs)
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            reply = ({"passed": False, "report": f"grader error: {type(exc).__name__}: {exc}",
                      "error": True}, [])
        write_frame(rep_fd, *reply)


def _handle(lib, checks, sessions, assignment, header, blobs):
    cmd = header.get("cmd")
    if cmd == "inputs":
        spec = specs.find(header["op"], assignment)
        configs, calls = checks.make_inputs(spec, header["seed"], header["cases"],
                                            header.get("random", 0))
        sid = str(len(sessions) + 1)
        sessions[sid] = (spec, configs, calls)
        descs, out_blobs = _encode_calls(calls)
        return {"id": sid, "calls": descs}, out_blobs
    if cmd == "judge":
        spec, configs, calls = sessions.pop(header["id"])
        outcomes = _decode_outcomes(header["outcomes"], blobs)
        passed, report = checks.judge(spec, lib, configs, calls, outcomes)
        return {"passed": passed, "report": report}, []
    if cmd == "expect":
        outcomes = _decode_outcomes(header["outcomes"], blobs)
        expected = []
        for d in header["expected"]:
            v = sandbox.decode_value(d, blobs[d["_first"]:d["_first"] + d["_nblobs"]])
            expected.append(v)
        passed, report = checks.judge_expected(specs.find(header["op"], assignment), outcomes,
                                               expected,
                                               header["labels"])
        return {"passed": passed, "report": report}, []
    raise ValueError(f"unknown request {cmd!r}")


def _decode_outcomes(items, blobs):
    outcomes = []
    for item in items:
        o = dict(item)
        if o["kind"] == "ok":
            d = o["desc"]
            o["value"] = sandbox.decode_value(d, blobs[o["_blob"]:o["_blob"] + o["_nblobs"]])
        outcomes.append(o)
    return outcomes
