"""Run untrusted student functions in a forked child that is killed on timeout.

A hidden test must survive anything a student's function can do: loop forever while
swallowing ``KeyboardInterrupt``, crash the interpreter, call ``os._exit``, print to
stderr, or hand the work to a library it is not allowed to use. So the function runs in
a child made with ``os.fork``: the child has the student's definitions (it is a copy of
the kernel), its file descriptors 1 and 2 point at ``/dev/null`` (nbgrader zeroes a test
cell that writes to stderr, and ipykernel forwards fd 2 into the cell), and its results
come back through a pipe as plain bytes, never as pickles. Whatever happens in the child
costs the cases that were still running, nothing else.

While the student's function runs, a profile hook watches every call it makes, and an
audit hook watches imports, file opens and process creation. A call into a denied module
(by module name *and* by the file the executed code comes from, so aliases, ``importlib``
and names built from strings are all caught) ends the child at once with a ``denied``
outcome naming what was called.

The grading machinery only, no cases: those live in the hidden test cells.
"""

from __future__ import annotations

import builtins
import errno
import importlib.util
import json
import os
import select
import signal
import struct
import sys
import threading
import time

import numpy as np

__all__ = ["Outcome", "DenyList", "run_cases", "encode_value", "decode_value", "FORK_AVAILABLE"]

FORK_AVAILABLE = hasattr(os, "fork")

# Pristine references, bound when this module is imported (before any student code
# runs, because the notebook's locked setup cell imports it first). Student cells can
# rebind ``numpy.ndarray`` or ``builtins.isinstance``; these names keep the originals.
_type = builtins.type
_isinstance = builtins.isinstance
_len = builtins.len
_int = builtins.int
_str = builtins.str
_ndarray = np.ndarray
_np_integer = np.integer
_np_floating = np.floating
_frombuffer = np.frombuffer
_ascontiguousarray = np.ascontiguousarray
_dumps = json.dumps
_loads = json.loads
_pack = struct.pack
_unpack = struct.unpack
_setprofile = sys.setprofile
_settrace = sys.settrace
_thread_setprofile = threading.setprofile
import _thread  # noqa: E402

# Starting a thread: a raw _thread thread is never profiled, so its work goes unwatched
# (and Python 3.11 raises no audit event for it).
_THREAD_STARTS = {id(f): f for f in (_thread.start_new_thread,
                                     getattr(_thread, "start_new", None),
                                     getattr(_thread, "start_joinable_thread", None)) if f}
_os_read, _os_write, _os_close, _os_pipe = os.read, os.write, os.close, os.pipe
_os_fork, _os_exit, _os_kill, _os_waitpid = getattr(os, "fork", None), os._exit, os.kill, os.waitpid
_os_dup2, _os_open = os.dup2, os.open
_monotonic = time.monotonic
# The built-in exceptions whose messages are shown: each class's own C __str__ (NameError,
# UnboundLocalError and AttributeError have their own: "module 'numpy' has no attribute
# 'int'" is what a student using an alias removed in NumPy 2 needs to read).
_BUILTIN_STRS = {BaseException.__str__, KeyError.__str__, OSError.__str__,
                 UnicodeError.__str__, ImportError.__str__, SyntaxError.__str__,
                 StopIteration.__str__, AttributeError.__str__, NameError.__str__}
_select = select.select
_BuiltinFunction = _type(len)

# Modules whose code is never the student's own work in this course's NumPy assignments.
DEFAULT_DENIED_MODULES = (
    "cnnlib", "torch", "torchvision", "scipy.signal", "scipy.ndimage", "skimage", "cv2",
    "tensorflow", "keras", "jax", "sklearn", "PIL",
)
_SANDBOX_ESCAPES = {
    # Turning the watcher off, or starting other processes to do the work elsewhere.
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "sys.settrace", "sys.setprofile",
    "_thread.start_new_thread",
}


def _package_dirs(names):
    """Directories holding the code of the named packages, found without importing them."""
    dirs = []
    for name in names:
        top = name.split(".")[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        subdirs = list(spec.submodule_search_locations or [])
        base = name.split(".")[1:]
        for d in subdirs:
            path = os.path.join(os.path.realpath(d), *base)
            dirs.append((path + os.sep if base == [] or os.path.isdir(path) else path, name))
    return tuple(dirs)


class DenyList:
    """What one graded function may not call while it runs.

    Parameters
    ----------
    modules : sequence of str
        Module prefixes (``"torch"``, ``"scipy.signal"``). A call is denied when the code
        it runs belongs to such a module, judged both by the module name in the frame's
        globals and by the source file the code object comes from.
    functions : sequence of callable
        Individual functions (``np.pad``, ``np.convolve``); Python functions are matched by
        code object, C functions by identity.
    reason : str
        A sentence for the student: what the function must do itself.
    """

    def __init__(self, modules=DEFAULT_DENIED_MODULES, functions=(), reason=""):
        self.modules = tuple(dict.fromkeys(modules))
        self.reason = reason
        self._dirs = _package_dirs(self.modules)
        self._codes = {}
        self._cfuncs = {}
        for f in functions:
            impl = getattr(f, "_implementation", f)  # NumPy 2 wraps functions in dispatchers
            code = getattr(impl, "__code__", None)
            label = f"{getattr(f, '__module__', '?')}.{getattr(f, '__name__', '?')}"
            for private in ("numpy._core.numeric", "numpy.lib._arraypad_impl"):
                label = label.replace(private, "numpy")
            if code is not None:
                self._codes[id(code)] = (code, label)
            else:
                self._cfuncs[id(f)] = (f, label)

    def _module_denied(self, modname):
        if not modname:
            return None
        for prefix in self.modules:
            if modname == prefix or modname.startswith(prefix + "."):
                return prefix
        return None

    def _file_denied(self, filename):
        if not filename:
            return None
        real = os.path.realpath(filename)
        for d, name in self._dirs:
            if real.startswith(d) or real + os.sep == d or real == d + ".py":
                return name
        return None

    def check_frame(self, frame):
        """A label for what is denied about this Python call, or None."""
        code = frame.f_code
        hit = self._codes.get(id(code))
        if hit is not None and hit[0] is code:
            return hit[1]
        prefix = self._module_denied(frame.f_globals.get("__name__"))
        if prefix:
            return f"{prefix} ({frame.f_globals.get('__name__')}.{code.co_name})"
        name = self._file_denied(code.co_filename)
        if name:
            return f"{name} ({code.co_name} in {os.path.basename(code.co_filename)})"
        return None

    def check_cfunc(self, func):
        """A label for a denied C function, or None."""
        hit = self._cfuncs.get(id(func))
        if hit is not None and hit[0] is func:
            return hit[1]
        mod = getattr(func, "__module__", None)
        if not _isinstance(mod, str):
            owner = getattr(func, "__self__", None)
            mod = getattr(owner, "__name__", None) if _type(owner).__name__ == "module" else None
        prefix = self._module_denied(mod if _isinstance(mod, str) else None)
        if prefix:
            return f"{prefix} ({mod}.{getattr(func, '__name__', '?')})"
        # a method of an object from a denied library (a torch tensor's .conv2d, .unfold)
        owner = getattr(func, "__self__", None)
        if owner is not None and _type(owner).__name__ != "module":
            owner_mod = getattr(_type(owner), "__module__", None)
            prefix = self._module_denied(owner_mod if _isinstance(owner_mod, str) else None)
            if prefix:
                return f"{prefix} ({_type(owner).__name__}.{getattr(func, '__name__', '?')})"
        return None

    def check_path(self, path):
        if _isinstance(path, (str, bytes, os.PathLike)):
            try:
                p = os.fsdecode(path)
            except (TypeError, ValueError):
                return None
            name = self._file_denied(os.path.abspath(p))
            if name:
                return f"{name} (loading {os.path.basename(p)})"
        return None


# --------------------------------------------------------------------------- wire format
# One frame = 4-byte big-endian header length, JSON header, then the blobs whose byte
# lengths the header lists. No pickles: the reader never runs code the writer chose.

def write_frame(fd, header, blobs=()):
    blobs = [bytes(b) for b in blobs]
    header = dict(header, _blobs=[_len(b) for b in blobs])
    raw = _dumps(header).encode()
    data = _pack(">I", _len(raw)) + raw + b"".join(blobs)
    view = memoryview(data)
    while view:
        n = _os_write(fd, view[:1 << 20])
        view = view[n:]


def _read_exact(fd, n, deadline=None):
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - _monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = _select([fd], [], [], left)
            if not ready:
                raise TimeoutError
        chunk = _os_read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += _len(chunk)
    return b"".join(chunks)


def read_frame(fd, deadline=None):
    (hlen,) = _unpack(">I", _read_exact(fd, 4, deadline))
    if hlen > 1 << 24:
        raise ValueError("frame header too large")
    header = _loads(_read_exact(fd, hlen, deadline).decode())
    blobs = [_read_exact(fd, n, deadline) for n in header.pop("_blobs", [])]
    return header, blobs


MAX_PARTS = 16  # elements of a tuple result


def _encode_one(value):
    t = _type(value)
    if t is _ndarray:
        if value.dtype.kind not in "biuf":
            return {"kind": "badtype", "type": f"numpy.ndarray of dtype {value.dtype}"}, []
        arr = _ascontiguousarray(value)
        return {"kind": "array", "dtype": arr.dtype.str, "shape": list(arr.shape)}, [arr.tobytes()]
    if t is bool or t is np.bool_:
        return {"kind": "badtype", "type": t.__name__}, []
    if t is int or (_isinstance(value, _np_integer) and t.__module__ == "numpy"):
        return {"kind": "int", "value": _int(value)}, []
    if t is float or (_isinstance(value, _np_floating) and t.__module__ == "numpy"):
        f = float(value)
        return {"kind": "float", "value": f if f == f and abs(f) != float("inf") else _str(f)}, []
    if value is None:
        return {"kind": "none"}, []
    return {"kind": "badtype", "type": f"{t.__module__}.{t.__qualname__}"}, []


def encode_value(value):
    """(description, blobs) for a result, checking its type exactly.

    Only a plain ``numpy.ndarray`` of a numeric dtype, a Python or NumPy integer, a
    float, None, or a plain ``tuple`` of at most 16 of those travel back; anything else
    (subclasses, objects that claim equality with everything, object arrays, nested
    tuples) is reported by type name and never compared.
    """
    if _type(value) is tuple:
        if _len(value) > MAX_PARTS:
            return {"kind": "badtype", "type": f"tuple of {_len(value)} elements"}, []
        items, blobs = [], []
        for i, part in enumerate(value):
            desc, part_blobs = _encode_one(part)
            if desc["kind"] == "badtype":
                return {"kind": "badtype",
                        "type": f"tuple whose element {i} is a {desc['type']}"}, []
            if part_blobs:
                desc["_blob"] = _len(blobs)
                blobs.extend(part_blobs)
            items.append(desc)
        return {"kind": "tuple", "items": items}, blobs
    return _encode_one(value)


def decode_value(desc, blobs):
    """Inverse of :func:`encode_value` (arrays come back read-only).

    ``blobs`` holds the blobs of this value: one for an array, one per array element for
    a tuple (each element's ``_blob`` indexes into it).
    """
    if desc.get("kind") == "tuple":
        return tuple(decode_value(d, blobs[d["_blob"]:d["_blob"] + 1] if "_blob" in d else [])
                     for d in desc["items"])
    if desc.get("kind") == "array":
        arr = _frombuffer(blobs[0], dtype=np.dtype(desc["dtype"]))
        return arr.reshape(tuple(desc["shape"]))  # (shape as sent)
    if desc.get("kind") in ("int", "float"):
        v = desc["value"]
        return float(v) if _isinstance(v, str) else v
    return None


# --------------------------------------------------------------------------- the child

class Outcome(dict):
    """What one call produced: ``kind`` is ``ok``, ``raised``, ``denied``, ``badtype``,
    ``timeout``, ``crashed``, ``exited`` or ``skipped``; ``value`` for ``ok``;
    ``detail`` a short human-readable explanation for everything else."""

    @property
    def kind(self):
        return self["kind"]


class _Denied(BaseException):
    pass


def one_thread_after_fork():
    """In a forked child: let torch compute on one thread. OpenMP's thread pool does not
    survive a fork, so a child that enters a parallel region its parent had used (the
    student's kernel ran torch on several threads, or set them) waits forever. Only the
    built-in ``set_num_threads`` is called: whatever a student put in its place is not."""
    module = sys.modules.get("torch._C")
    setter = getattr(module, "set_num_threads", None) if module is not None else None
    if _type(setter) is _BuiltinFunction and getattr(setter, "__name__", "") == "set_num_threads":
        try:
            setter(1)
        except Exception:  # noqa: BLE001 - then the child computes as the parent did
            pass


def _child_main(fn, cases, deny, out_fd, cpu_seconds=None, adapter=None):
    """Body of the forked child: run each case, stream one frame per case, exit."""
    one_thread_after_fork()
    if cpu_seconds:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        used = int(sum(os.times()[:2]))  # a fork inherits its parent's CPU time
        limit = used + int(cpu_seconds)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (limit, hard))
    import faulthandler
    faulthandler.disable()  # a crash of student code is an outcome, not a dump on stderr
    os._exit = _os_exit  # the kernel's guard against os._exit is not needed in a throw-away child
    devnull = _os_open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        _os_dup2(devnull, fd)
    # Python-level streams too: ipykernel's OutStream would otherwise try to talk to the
    # kernel's sockets from the child.
    import io
    import warnings
    sys.stdout = io.StringIO()
    sys.stderr = io.StringIO()
    warnings.simplefilter("ignore")
    state = {"denied": None, "active": False}

    def deny_now(label):
        if state["active"]:
            state["active"] = False
            _setprofile(None)
            write_frame(out_fd, {"kind": "denied", "detail": label})
            _os_exit(0)

    def profile(frame, event, arg):
        if not state["active"]:
            return
        if event == "call":
            label = deny.check_frame(frame)
            if label:
                deny_now(label)
        elif event == "c_call":
            if arg is _setprofile or arg is _settrace or arg is _thread_setprofile:
                deny_now("sys.setprofile/settrace (switching off the grader's watch)")
            if _THREAD_STARTS.get(id(arg)) is arg:
                deny_now("_thread.start_new_thread (work in a thread the grader cannot watch)")
            label = deny.check_cfunc(arg)
            if label:
                deny_now(label)

    def audit(event, args):
        if not state["active"]:
            return
        if event == "import" and args and _isinstance(args[0], str):
            prefix = deny._module_denied(args[0])
            if prefix:
                deny_now(f"import of {args[0]}")
        elif event == "open" and args:
            label = deny.check_path(args[0])
            if label:
                deny_now(label)
        elif event in _SANDBOX_ESCAPES or event.startswith("os.exec") or event.startswith(
                "os.spawn"):
            deny_now(f"{event} (starting other processes or switching off the grader's watch)")

    sys.addaudithook(audit)

    def watch(f, *args, **kwargs):
        if state["active"]:  # already watched: a nested call
            return f(*args, **kwargs)
        _thread_setprofile(profile)
        _setprofile(profile)
        state["active"] = True
        try:
            return f(*args, **kwargs)
        finally:
            state["active"] = False
            _setprofile(None)

    def run_one(args, kwargs):
        if adapter is None:
            return watch(fn, *args, **kwargs)
        # The spec's adapter (grading machinery) runs unwatched; only what it hands to
        # ``watch`` (the student's code) runs under the deny list.
        return adapter(fn, watch, *args, **kwargs)
    for args, kwargs in cases:
        try:
            # warnings are recorded, never shown: a spec may judge a worked example by them
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")  # each warning once per line of code
                value = run_one(args, kwargs)
        except BaseException as exc:  # noqa: BLE001 - any student exception is an outcome
            # Only the built-in exception classes' messages are read: a class the student
            # defined could run any code in its __str__, outside the watch.
            msg = ""
            if _type(exc).__module__ == "builtins" and _type(exc).__str__ in _BUILTIN_STRS:
                try:
                    msg = _type(exc).__str__(exc)
                except BaseException:  # noqa: BLE001
                    msg = ""
            write_frame(out_fd, {"kind": "raised", "type": _type(exc).__name__,
                                 "detail": msg[:300]})
            continue
        try:
            desc, blobs = encode_value(value)
        except BaseException as exc:  # noqa: BLE001
            desc, blobs = {"kind": "badtype", "type": f"unencodable ({_type(exc).__name__})"}, []
        if desc["kind"] != "badtype":
            desc = {"kind": "ok", "value": desc}
            said = _warning_texts(caught)
            if said:
                desc["warnings"] = said
        write_frame(out_fd, desc, blobs)
    _os_exit(0)


def _warning_texts(caught, limit=3):
    """The first few warnings of a call as short texts (``RuntimeWarning: overflow
    encountered in exp``). Only built-in warning classes' messages are read: a class the
    student defined could run any code in its __str__."""
    out = []
    for w in caught[:limit]:
        try:
            msg = w.message
            kind = _type(msg)
            if kind.__module__ == "builtins" and kind.__str__ in _BUILTIN_STRS:
                out.append(f"{kind.__name__}: {kind.__str__(msg)}"[:200])
            else:
                out.append("a warning of a class defined outside Python's builtins")
        except BaseException:  # noqa: BLE001
            continue
    return out


def run_cases(fn, cases, *, deny=None, timeout=10.0, close_fds=(), cpu_seconds=None,
              adapter=None):
    """Call ``fn(*args, **kwargs)`` for each ``(args, kwargs)`` in a forked child.

    Parameters
    ----------
    fn : callable
        The student's function (a copy of it lives in the child after the fork).
    cases : list of (tuple, dict)
        Arguments for each call, made in order in one child.
    deny : DenyList, optional
        What the function may not call.
    timeout : float
        Seconds for all the cases together; the child is killed with SIGKILL after it.
    close_fds : sequence of int
        File descriptors the child closes before running student code (the grader's
        private channels).
    cpu_seconds : int, optional
        CPU time the child may use (RLIMIT_CPU): a function that burns CPU in threads the
        wall-clock timeout does not see is killed by the kernel.
    adapter : callable, optional
        ``adapter(fn, watch, *args)`` is called instead of ``fn(*args)`` (a spec's
        ``FunctionSpec.adapter``): it builds what cannot cross as plain data (a module, a
        callable), calls the student's code through ``watch(f, *a, **kw)``, the only part
        that runs under the deny list, and returns plain values.

    Returns
    -------
    list of Outcome
        One per case, in order. Cases the child never reached are ``skipped`` when an
        earlier case timed out, crashed, exited or was denied.
    """
    deny = deny or DenyList()
    if not FORK_AVAILABLE:  # Windows: no containment, but students can still run checks
        return _run_inline(fn, cases, adapter)
    r, w = _os_pipe()
    pid = _os_fork()
    if pid == 0:  # child
        try:
            _os_close(r)
            for fd in close_fds:
                try:
                    _os_close(fd)
                except OSError:
                    pass
            _child_main(fn, cases, deny, w, cpu_seconds, adapter)
        finally:
            _os_exit(70)
    _os_close(w)
    outcomes = []
    deadline = _monotonic() + timeout
    ended = None
    try:
        while _len(outcomes) < _len(cases):
            try:
                header, blobs = read_frame(r, deadline)
            except TimeoutError:
                ended = Outcome(kind="timeout", detail=f"did not finish within {timeout:g} s")
                break
            except (EOFError, ValueError, OSError):
                ended = None  # decided from the exit status below
                break
            outcomes.append(_outcome_from(header, blobs))
            if header.get("kind") == "denied":
                ended = outcomes[-1]
                break
    finally:
        try:
            _os_kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        status = _reap(pid)
        _os_close(r)
    if _len(outcomes) < _len(cases):
        if ended is None:
            ended = _death_outcome(status)
        if not outcomes or outcomes[-1] is not ended:
            outcomes.append(ended)
        while _len(outcomes) < _len(cases):
            outcomes.append(Outcome(kind="skipped", detail=f"not run: {ended['detail']}"))
    return outcomes


def _outcome_from(header, blobs):
    kind = header.get("kind")
    if kind == "ok":
        out = Outcome(kind="ok", value=decode_value(header["value"], blobs),
                      desc=header["value"], blobs=blobs)
        said = header.get("warnings")
        if _type(said) is list:
            out["warnings"] = [str(t)[:200] for t in said[:3]]
        return out
    if kind == "raised":
        detail = f"raised {header.get('type')}"
        if header.get("detail"):
            detail += f": {header['detail']}"
        return Outcome(kind="raised", detail=detail, type=header.get("type"))
    if kind == "badtype":
        return Outcome(kind="badtype", detail=f"returned a {header.get('type')}",
                       type=header.get("type"))
    if kind == "denied":
        return Outcome(kind="denied", detail=header.get("detail", "a denied call"))
    return Outcome(kind="crashed", detail="sent an unreadable result")


def _reap(pid):
    while True:
        try:
            return _os_waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return None
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            return None


def _death_outcome(status):
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in {s.value for s in signal.Signals} else str(sig)
        return Outcome(kind="crashed", detail=f"crashed the Python process (signal {name})")
    if status is not None and os.WIFEXITED(status):
        return Outcome(kind="exited",
                       detail=f"ended the Python process (exit status {os.WEXITSTATUS(status)}, "
                              "for example through os._exit or sys.exit)")
    return Outcome(kind="crashed", detail="stopped without a result")


def _run_inline(fn, cases, adapter=None):
    outcomes = []
    for args, kwargs in cases:
        try:
            if adapter is None:
                value = fn(*args, **kwargs)
            else:
                value = adapter(fn, lambda f, *a, **k: f(*a, **k), *args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            outcomes.append(Outcome(kind="raised", detail=f"raised {_type(exc).__name__}: {exc}",
                                    type=_type(exc).__name__))
            continue
        desc, blobs = encode_value(value)
        outcomes.append(_outcome_from({"kind": "ok", "value": desc} if desc["kind"] != "badtype"
                                      else desc, blobs))
    return outcomes
