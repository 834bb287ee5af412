"""Calls between the trusted grader and the student's kernel, as plain data.

The grader sends the name of a student function, the graded function it stands for
(whose deny list applies) and the arguments; the kernel runs the calls in a forked child
(``sandbox.run_cases``) and answers with one outcome per call. Arrays travel as ``.npy``
bytes without pickle, everything else as JSON numbers and short strings. The grader
decodes the answer strictly (:func:`decode_outcomes`): exact types, numeric dtypes,
bounded sizes and lengths. No test source, seed or configuration is ever sent, only the
arguments of the calls.

Knows no assignment.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np

__all__ = ["install", "encode_request", "decode_outcomes", "MAX_ANSWER_CHARS"]

MAX_ANSWER_CHARS = 64 * 1024 * 1024  # one answer, all results together, as JSON text
MAX_ELEMENTS = 4 * 1024 * 1024  # one returned array
MAX_NDIM = 8
MAX_DETAIL = 500
MAX_PARTS = 16  # elements of a tuple result
KINDS = {"ok", "raised", "denied", "badtype", "timeout", "crashed", "exited", "skipped",
         "missing"}
CALL_NAME = "__cnnlib_grading_call__"
RESULT_NAME = "__cnnlib_grading_result__"


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _from_npy(text):
    arr = np.load(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False)
    if type(arr) is not np.ndarray or arr.dtype.kind not in "biuf":
        raise ValueError("not a numeric array")
    if arr.ndim > MAX_NDIM or arr.size > MAX_ELEMENTS:
        raise ValueError(f"array too large ({arr.shape})")
    return arr


def _encode_arg(value):
    if type(value) is np.ndarray:
        return {"npy": _npy(value)}
    if value is None or type(value) in (int, float, str, bool):
        return {"py": value}
    if isinstance(value, (np.integer, np.floating)):
        return {"py": value.item()}
    raise TypeError(f"cannot send a {type(value).__name__} to the student's kernel")


def _decode_arg(item):
    if "npy" in item:
        return _from_npy(item["npy"]).copy()  # writable, like any array a student gets
    return item["py"]


def encode_request(name, op, assignment, calls, timeout):
    """The request text (base64 of JSON) for ``calls``, a list of ``(args, kwargs)``."""
    request = {"name": name, "op": op, "assignment": assignment, "timeout": float(timeout),
               "calls": [[_encode_arg(a) for a in args] for args, _ in calls]}
    return base64.b64encode(json.dumps(request).encode()).decode("ascii")


# --------------------------------------------------------------------------- kernel side

def install(namespace):
    """Define the call entry point in the kernel's namespace (run before any student cell).

    Whatever a student does to it can only change the values their functions return,
    which is what is judged anyway.
    """
    from . import specs
    from .sandbox import run_cases

    def call(request_text):
        req = json.loads(base64.b64decode(request_text))
        name = req["name"]
        fn = namespace.get(name)
        n = len(req["calls"])
        if not callable(fn):
            what = "not defined" if fn is None else f"a {type(fn).__name__}, not a function"
            outcomes = [{"kind": "missing", "detail": f"{name} is {what} in the notebook"}] * n
        else:
            spec = specs.find(req["op"], req.get("assignment"))
            calls = [(tuple(_decode_arg(a) for a in args), {}) for args in req["calls"]]
            outcomes = [_encode_outcome(o) for o in run_cases(
                fn, calls, deny=spec.deny(), timeout=req["timeout"],
                cpu_seconds=int(req["timeout"]) + 2, adapter=spec.adapter)]
        namespace[RESULT_NAME] = json.dumps(outcomes)

    namespace[CALL_NAME] = call
    namespace[RESULT_NAME] = None


def _encode_outcome(o):
    out = {"kind": o["kind"], "detail": str(o.get("detail", ""))[:MAX_DETAIL]}
    if "type" in o:
        out["type"] = str(o["type"])[:200]
    if o["kind"] == "ok":
        if o.get("warnings"):
            out["warnings"] = [str(t)[:200] for t in o["warnings"][:3]]
        if o["desc"].get("kind") == "tuple":
            out["items"] = [_encode_plain(v, d) for v, d in zip(o["value"], o["desc"]["items"])]
        else:
            out.update(_encode_plain(o["value"], o["desc"]))
    return out


def _encode_plain(value, desc):
    if desc.get("kind") == "array":
        return {"npy": _npy(value)}
    return {"py": value, "py_kind": desc.get("kind")}


# --------------------------------------------------------------------------- grader side

def decode_outcomes(text, n_calls):
    """Outcomes for the judge from the kernel's answer, or ValueError.

    Trusts nothing: the answer's size, its structure, each kind, each type and each array
    is checked; an ``ok`` value is an int, a float, None, a numeric ``ndarray``, or a
    tuple of at most 16 of those, with at most three warnings (short strings) it emitted.
    """
    if not isinstance(text, str) or len(text) > MAX_ANSWER_CHARS:
        raise ValueError("the answer is missing or too large")
    items = json.loads(text)
    if type(items) is not list or len(items) != n_calls:
        raise ValueError("the answer does not hold one result per call")
    outcomes = []
    for item in items:
        if type(item) is not dict or item.get("kind") not in KINDS:
            raise ValueError("malformed result")
        detail = item.get("detail", "")
        detail = detail[:MAX_DETAIL] if type(detail) is str else ""
        kind = item["kind"]
        if kind != "ok":
            o = {"kind": kind, "detail": detail or kind}
            if type(item.get("type")) is str:
                o["type"] = item["type"][:200]
            outcomes.append(o)
            continue
        if "items" in item:
            parts = item["items"]
            if type(parts) is not list or len(parts) > MAX_PARTS:
                raise ValueError("malformed tuple")
            decoded = [_decode_plain(part) for part in parts]
            value = tuple(v for v, _ in decoded)
            desc = {"kind": "tuple", "items": [d for _, d in decoded]}
        else:
            value, desc = _decode_plain(item)
        outcome = {"kind": "ok", "value": value, "desc": desc}
        said = item.get("warnings")
        if said is not None:
            if type(said) is not list or len(said) > 3 or any(type(t) is not str for t in said):
                raise ValueError("malformed warnings")
            outcome["warnings"] = [t[:200] for t in said]
        outcomes.append(outcome)
    return outcomes


def _decode_plain(item):
    """(value, desc) of one plain result: a numeric array, an int, a float or None."""
    if type(item) is not dict:
        raise ValueError("malformed value")
    if "npy" in item:
        if type(item["npy"]) is not str:
            raise ValueError("malformed array")
        value = _from_npy(item["npy"])
        value.setflags(write=False)
        return value, {"kind": "array", "dtype": value.dtype.str, "shape": list(value.shape)}
    value, kind_name = item.get("py"), item.get("py_kind")
    if type(value) is int and kind_name == "int":
        return value, {"kind": "int", "value": value}
    if type(value) in (int, float) and kind_name == "float":
        return float(value), {"kind": "float", "value": float(value)}
    if type(value) is str and kind_name == "float" and value in ("nan", "inf", "-inf"):
        return float(value), {"kind": "float", "value": float(value)}
    if value is None and kind_name == "none":
        return None, {"kind": "none"}
    raise ValueError("malformed value")
