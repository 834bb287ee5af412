"""The forked-child sandbox (``sandbox``), the call format (``remote``) and the bubblewrap
jail (``jail``), each on its own. Fast: a fork per call, one jailed process at most."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from system_tools import require_sandbox

from cnnlib.grading import jail, remote
from cnnlib.grading.sandbox import DenyList, encode_value, run_cases


def define(src):
    ns = {"np": np, "__name__": "__main__"}
    exec(compile(src, "<student cell>", "exec"), ns)
    return ns


# --------------------------------------------------------------------------- run_cases

def test_results_come_back_in_order_with_exact_types():
    outs = run_cases(lambda a: a * 2, [((np.arange(3.0),), {}), ((4,), {})], timeout=5)
    assert [o.kind for o in outs] == ["ok", "ok"]
    assert outs[0]["value"].tolist() == [0.0, 2.0, 4.0] and outs[1]["value"] == 8


def test_a_student_exception_class_never_runs_its_str():
    ns = define('''
class Sneaky(Exception):
    def __str__(self):
        import cnnlib.numpy
        return "RAN"

def f():
    raise Sneaky()
''')
    (o,) = run_cases(ns["f"], [((), {})], timeout=5)
    assert o.kind == "raised" and "Sneaky" in o["detail"] and "RAN" not in o["detail"]
    (o,) = run_cases(lambda: int("x"), [((), {})], timeout=5)
    assert "invalid literal" in o["detail"]  # built-in messages are kept


@pytest.mark.parametrize("code, words", [
    ("def f():\n    return np.int(3)", "AttributeError: module 'numpy' has no attribute 'int'"),
    ("def f():\n    return undefined_name", "NameError: name 'undefined_name' is not defined"),
    ("def f():\n    y = y + 1\n    return y", "UnboundLocalError: cannot access local variable"),
])
def test_the_messages_of_name_and_attribute_errors_are_shown(code, words):
    ns = define(code)
    (o,) = run_cases(ns["f"], [((), {})], timeout=5)
    assert o.kind == "raised" and words in o["detail"], o["detail"]


def test_a_raw_thread_is_denied():
    ns = define('''
import _thread
def f():
    _thread.start_new_thread(lambda: None, ())
    return 1
''')
    (o,) = run_cases(ns["f"], [((), {})], deny=DenyList(), timeout=5)
    assert o.kind == "denied" and "_thread.start_new_thread" in o["detail"]


def test_methods_of_a_denied_library_objects_are_denied(tmp_path, monkeypatch):
    # a stand-in for a torch tensor: a C method bound to an object whose type lives in a
    # denied package
    pkg = tmp_path / "fakelib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("class Tensor(list):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fakelib

    t = fakelib.Tensor([1, 2])
    deny = DenyList(modules=("fakelib",))
    (o,) = run_cases(lambda: t.copy(), [((), {})], deny=deny, timeout=5)
    assert o.kind == "denied" and "Tensor.copy" in o["detail"], o
    (o,) = run_cases(lambda: np.zeros(2).copy(), [((), {})], deny=deny, timeout=5)
    assert o.kind == "ok"


def test_cpu_limit_per_call_stops_work_the_clock_does_not_see():
    def burn():
        while True:
            pass
    (o,) = run_cases(burn, [((), {})], timeout=30, cpu_seconds=1)
    assert o.kind == "crashed" and "SIGXCPU" in o["detail"] or "SIGKILL" in o["detail"], o


def test_hang_crash_exit_and_memory_are_outcomes():
    def hang():
        import time
        while True:
            try:
                time.sleep(0.01)
            except KeyboardInterrupt:
                pass
    outs = run_cases(hang, [((), {}), ((), {})], timeout=1)
    assert [o.kind for o in outs] == ["timeout", "skipped"]
    (o,) = run_cases(lambda: os._exit(3), [((), {})], timeout=5)
    assert o.kind == "exited" and "3" in o["detail"]


@pytest.mark.parametrize("value, kind", [
    (np.zeros(2), "array"), (3, "int"), (np.int64(3), "int"), (2.5, "float"),
    (None, "none"), (True, "badtype"), (np.zeros(2, dtype=object), "badtype"),
    ([1, 2], "badtype"), (np.zeros(2).view(type("Sub", (np.ndarray,), {})), "badtype"),
])
def test_encode_value_checks_types_exactly(value, kind):
    assert encode_value(value)[0]["kind"] == kind


# --------------------------------------------------------------------------- remote format

def _answer(items):
    return json.dumps(items)


def test_remote_round_trip_is_plain_data():
    arr = np.arange(6.0).reshape(2, 3)
    outcomes = remote.decode_outcomes(_answer([
        {"kind": "ok", "npy": remote._npy(arr)},
        {"kind": "ok", "py": 4, "py_kind": "int"},
        {"kind": "ok", "py": "nan", "py_kind": "float"},
        {"kind": "raised", "detail": "raised ValueError: x" * 100},
    ]), 4)
    assert np.array_equal(outcomes[0]["value"], arr) and not outcomes[0]["value"].flags.writeable
    assert outcomes[1]["desc"] == {"kind": "int", "value": 4}
    assert np.isnan(outcomes[2]["value"])
    assert len(outcomes[3]["detail"]) <= remote.MAX_DETAIL


@pytest.mark.parametrize("answer", [
    "[]",  # too few results
    _answer([{"kind": "passed"}]),  # unknown kind
    _answer([{"kind": "ok", "py": True, "py_kind": "int"}]),  # bool is not an int
    _answer([{"kind": "ok", "py": [1], "py_kind": "int"}]),
    _answer([{"kind": "ok", "npy": "not base64!"}]),
    _answer([{"kind": "ok", "npy": remote._npy(np.array(["a"]))}]),  # not numeric
    "x" * (remote.MAX_ANSWER_CHARS + 1),
])
def test_remote_answers_are_decoded_strictly(answer):
    with pytest.raises((ValueError, TypeError)):
        remote.decode_outcomes(answer, 1)


def test_pickled_arrays_are_refused():
    import base64
    import io
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    text = base64.b64encode(buf.getvalue()).decode()
    with pytest.raises(ValueError):
        remote.decode_outcomes(_answer([{"kind": "ok", "npy": text}]), 1)


def test_install_calls_the_named_function_with_its_deny_list():
    ns = define("def pad2d(x, p):\n    return np.pad(x, p)\n"
                "def conv_output_size(n, k, s=1, p=0):\n    return (n + 2 * p - k) // s + 1\n")
    remote.install(ns)
    req = remote.encode_request("pad2d", "pad2d", "a1-convolution",
                                [((np.ones((2, 2)), 1), {})], 5)
    ns[remote.CALL_NAME](req)
    (o,) = remote.decode_outcomes(ns[remote.RESULT_NAME], 1)
    assert o["kind"] == "denied" and "numpy.pad" in o["detail"]
    req = remote.encode_request("conv_output_size", "conv_output_size", "a1-convolution",
                                [((7, 3, 2, 1), {})], 5)
    ns[remote.CALL_NAME](req)
    (o,) = remote.decode_outcomes(ns[remote.RESULT_NAME], 1)
    assert o["kind"] == "ok" and o["value"] == 4
    req = remote.encode_request("conv2d", "conv2d", "a1-convolution", [((1,), {})], 5)
    ns[remote.CALL_NAME](req)
    (o,) = remote.decode_outcomes(ns[remote.RESULT_NAME], 1)
    assert o["kind"] == "missing" and "conv2d is not defined" in o["detail"]


# --------------------------------------------------------------------------- tuples, adapters

@pytest.mark.parametrize("value, kind", [
    ((1.5, np.ones(2)), "tuple"), ((), "tuple"), (((1.0,), 2.0), "badtype"),
    ((1.0, [1]), "badtype"), (tuple(range(17)), "badtype"), ((np.zeros(1, dtype=object),),
                                                             "badtype"),
])
def test_tuples_travel_only_flat_and_plain(value, kind):
    assert encode_value(value)[0]["kind"] == kind


def test_tuple_results_come_back_whole():
    def f(x):
        return float(x.sum()), 2 * x, 3, np.arange(2)

    (o,) = run_cases(f, [((np.ones((2, 3)),), {})], timeout=5)
    assert o.kind == "ok" and o["desc"]["kind"] == "tuple"
    loss, dx, n, idx = o["value"]
    assert loss == 6.0 and np.array_equal(dx, 2 * np.ones((2, 3))) and n == 3
    assert idx.tolist() == [0, 1]


def _adapter(student, watch, n):
    # grading machinery: may use the library; only the student's call is watched
    import cnnlib.checks

    size = cnnlib.checks.as_int(n, "n")
    return watch(student, lambda t: t * 2.0, np.ones(size))


def test_an_adapter_runs_unwatched_and_watches_the_student():
    honest = define("def f(g, x):\n    return g(x).sum(), g(x)\n")["f"]
    cheat = define("def f(g, x):\n    import cnnlib.checks\n"
                   "    return g(x).sum(), x * cnnlib.checks.as_int(1, 'k')\n")["f"]
    deny = DenyList(modules=("cnnlib",))
    (o,) = run_cases(honest, [((3,), {})], deny=deny, timeout=5, adapter=_adapter)
    assert o.kind == "ok" and o["value"][0] == 6.0
    (o,) = run_cases(cheat, [((3,), {})], deny=deny, timeout=5, adapter=_adapter)
    assert o.kind == "denied" and "cnnlib" in o["detail"]


def test_remote_calls_go_through_the_specs_adapter(monkeypatch):
    from cnnlib.grading import specs

    spec = specs.FunctionSpec(name="f", signature="f(g, x)", returns=("float", "array"),
                              parts=("total", "doubled"), inputs=None, reference=None,
                              describe=None, deny=lambda: DenyList(modules=("cnnlib",)),
                              adapter=_adapter)
    monkeypatch.setattr(specs, "find", lambda op, assignment=None: spec)
    ns = define("def f(g, x):\n    return float(g(x).sum()), g(x)\n")
    remote.install(ns)
    ns[remote.CALL_NAME](remote.encode_request("f", "f", "a9-test", [((4,), {})], 5))
    (o,) = remote.decode_outcomes(ns[remote.RESULT_NAME], 1)
    assert o["kind"] == "ok" and o["desc"]["kind"] == "tuple"
    assert o["value"][0] == 8.0 and o["value"][1].tolist() == [2.0] * 4
    assert not o["value"][1].flags.writeable


@pytest.mark.parametrize("items", [
    [{"py": [1], "py_kind": "int"}], "notalist", [{"npy": 5}], [{"py": 1}] * 17,
    [[1.0]],
])
def test_remote_tuples_are_decoded_strictly(items):
    with pytest.raises((ValueError, TypeError)):
        remote.decode_outcomes(_answer([{"kind": "ok", "items": items}]), 1)


# --------------------------------------------------------------------------- the jail

@pytest.fixture
def jailed(tmp_path):
    require_sandbox()
    base = tmp_path / "j"
    for d in ("home", "run"):
        (base / d).mkdir(parents=True)
        if os.geteuid() == 0:
            os.chown(base / d, 61999, 61999)
    os.chmod(tmp_path, 0o755)
    os.chmod(base, 0o755)

    def run(code, **limits):
        cmd = jail.jail_command([sys.executable, "-c", code], scratch=str(base / "home"),
                                runtime_dir=str(base / "run"), uid=61999,
                                limits=jail.Limits(**limits),
                                env={"PATH": "/usr/bin:/bin", "HOME": str(base / "home")})
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return run


def test_jail_sees_only_the_environment_and_its_scratch(jailed, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hidden")
    proc = jailed(f"""
import os, socket
print(os.getuid() != 0)
print(os.path.exists({str(secret)!r}))
try:
    socket.create_connection(("127.0.0.1", 22), timeout=2); print("net")
except OSError:
    print("no net")
for path in ("/usr/evil", {str(tmp_path / 'evil')!r}):
    try:
        open(path, "w"); print("wrote", path)
    except OSError:
        print("read-only")
open("scratch.txt", "w").write("ok"); print("scratch ok")
print(os.getpid() < 10)
""")
    assert proc.stdout.split("\n")[:7] == ["True", "False", "no net", "read-only",
                                           "read-only", "scratch ok", "True"], proc


def test_jail_limits_memory_and_processes(jailed):
    proc = jailed("""
import numpy as np, os
try:
    np.ones(3 * 1024 ** 3 // 8); print("allocated")
except MemoryError:
    print("no memory")
pids = []
try:
    for _ in range(50):
        pid = os.fork()
        if pid == 0:
            import time; time.sleep(5); os._exit(0)
        pids.append(pid)
    print("forked all")
except OSError:
    print("process limit")
""", processes=10)
    assert proc.stdout.split("\n")[:2] == ["no memory", "process limit"], proc


def test_jail_shows_the_weight_cache_read_only(jailed, tmp_path, monkeypatch):
    cache = tmp_path / "weights"
    cache.mkdir(mode=0o755)
    (cache / "small_resnet.pth").write_bytes(b"weights")
    monkeypatch.setenv("CNNLIB_CACHE", str(cache))
    proc = jailed("""
import os
cache = os.environ.get("CNNLIB_CACHE", "")
print(open(os.path.join(cache, "small_resnet.pth"), "rb").read().decode())
try:
    open(os.path.join(cache, "planted.pth"), "w"); print("wrote")
except OSError:
    print("read-only")
""")
    assert proc.stdout.split("\n")[:2] == ["weights", "read-only"], proc
    assert not (cache / "planted.pth").exists()


def test_jail_without_a_weight_cache_sets_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLIB_CACHE", str(tmp_path / "absent"))
    if jail.bwrap_path() is None:
        require_sandbox()
    cmd = jail.jail_command(["python"], scratch=str(tmp_path), runtime_dir=str(tmp_path),
                            env={"HOME": str(tmp_path)})
    assert "CNNLIB_CACHE" not in cmd and str(tmp_path / "absent") not in cmd


# --------------------------------------------------------------------------- warnings

def test_warnings_of_a_call_are_recorded_never_shown(capfd):
    def noisy(x):
        import warnings

        warnings.warn("one", UserWarning, stacklevel=1)
        return np.exp(x)

    (o, quiet) = run_cases(noisy, [((np.array([1000.0]),), {})], timeout=5) + run_cases(
        np.exp, [((np.array([1.0]),), {})], timeout=5)
    assert o.kind == "ok" and o["warnings"] == [
        "UserWarning: one", "RuntimeWarning: overflow encountered in exp"]
    assert quiet.kind == "ok" and "warnings" not in quiet
    assert capfd.readouterr().err == ""


def test_a_warning_class_of_the_students_own_is_not_read():
    ns = define("import warnings\nclass Loud(UserWarning):\n"
                "    def __str__(self):\n        return 'anything the student likes'\n"
                "def f(x):\n    warnings.warn(Loud())\n    return x\n")
    (o,) = run_cases(ns["f"], [((np.ones(2),), {})], timeout=5)
    assert o.kind == "ok" and o["warnings"] == [
        "a warning of a class defined outside Python's builtins"]


def test_warnings_cross_to_the_grader_as_short_strings():
    ns = define("def relu(x):\n    return np.maximum(x, 0) + 0 * np.exp(x)\n")
    remote.install(ns)
    ns[remote.CALL_NAME](remote.encode_request("relu", "relu", "a2-pooling",
                                               [((np.array([1000.0]),), {})], 5))
    (o,) = remote.decode_outcomes(ns[remote.RESULT_NAME], 1)
    assert o["kind"] == "ok" and o["warnings"][0] == "RuntimeWarning: overflow encountered in exp"
    arr = remote._npy(np.zeros(1))
    for said in ("text", [1], ["a"] * 4):
        with pytest.raises(ValueError, match="malformed warnings"):
            remote.decode_outcomes(_answer([{"kind": "ok", "npy": arr, "warnings": said}]), 1)


def test_a_parent_that_ran_torch_on_threads_does_not_hang_its_children():
    """OpenMP's pool does not survive a fork: the kernel (or a test process) ran torch on
    several threads, then a check's child convolves. It must finish, on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x, w = torch.randn(4, 8, 32, 32), torch.randn(8, 8, 3, 3)
        for _ in range(3):
            torch.nn.functional.conv2d(x, w, padding=1)

        def convolve():
            return (torch.nn.functional.conv2d(x, w, padding=1).sum().item(),
                    torch.get_num_threads())

        (o,) = run_cases(convolve, [((), {})], timeout=20, deny=DenyList(modules=()))
        assert o.kind == "ok", o["detail"]
        assert o["value"][1] == 1
    finally:
        torch.set_num_threads(threads)
