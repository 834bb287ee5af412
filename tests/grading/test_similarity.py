"""The similarity report: copies are flagged, independent work is not, grades are untouched.

Independent solutions here are written differently on purpose (loops over output pixels,
a shifted-slice sum, an im2col with ``tensordot``), and checked against ``cnnlib`` first,
so "not flagged" is about correct code that merely solves the same problem.
Run ``python tests/grading/test_similarity.py`` to time a generated class of 300.
"""

from __future__ import annotations

import ast
import csv
import inspect
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import a1_students as S
import numpy as np
import pytest

import cnnlib.numpy as L
from cnnlib.grading import similarity as sim

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "solutions/a1-convolution/convolution.ipynb"

# ------------------------------------------------------------- independent implementations
CONV_VECTORISED = '''
def conv2d(x, w, b, stride=1, padding=0):
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = pad2d(x, padding)
    Ho = 1 + (H + 2 * padding - HH) // stride
    Wo = 1 + (W + 2 * padding - WW) // stride
    cols = np.empty((N, C, HH, WW, Ho, Wo))
    for r in range(HH):
        for c in range(WW):
            cols[:, :, r, c] = xp[:, :, r:r + stride * Ho:stride, c:c + stride * Wo:stride]
    out = np.tensordot(w, cols, axes=([1, 2, 3], [1, 2, 3]))  # (F, N, Ho, Wo)
    return out.transpose(1, 0, 2, 3) + b[None, :, None, None]
'''
CONV_BY_CHANNEL = '''
def conv2d(x, w, b, stride=1, padding=0):
    batch, channels, height, width = x.shape
    filters, _, kh, kw = w.shape
    padded = pad2d(x, padding)
    oh = conv_output_size(height, kh, stride, padding)
    ow = conv_output_size(width, kw, stride, padding)
    result = np.zeros((batch, filters, oh, ow))
    for img in range(batch):
        for k in range(filters):
            acc = np.zeros((oh, ow))
            for ch in range(channels):
                acc += correlate2d(padded[img, ch], w[k, ch])[::stride, ::stride][:oh, :ow]
            result[img, k] = acc + b[k]
    return result
'''
CORR_SCALAR = '''
def correlate2d(image, kernel):
    kh, kw = kernel.shape
    rows = image.shape[0] - kh + 1
    cols = image.shape[1] - kw + 1
    result = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            total = 0.0
            for a in range(kh):
                for bb in range(kw):
                    total += image[r + a, c + bb] * kernel[a, bb]
            result[r, c] = total
    return result
'''
PAD_UNPACKED = '''
def pad2d(x, padding):
    if padding == 0:
        return x.copy()
    *lead, h, w = x.shape
    out = np.zeros((*lead, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
    out[..., padding:-padding, padding:-padding] = x
    return out
'''

# ------------------------------------------------------------- disguised copies
CONV_DISGUISED = '''
def conv2d(inp, weights, bias, stride=1, padding=0):
    """My own convolution."""
    # shapes first
    batch, chans, height, width = inp.shape

    nf, _, kh, kw = weights.shape
    padded = pad2d(inp, padding)   # zero border

    oh = conv_output_size(height, kh, stride, padding)
    ow = conv_output_size(width,  kw, stride, padding)
    res = np.zeros((batch, nf, oh, ow))
    for q in range(batch):
        for r in range(nf):
            for s in range(oh):
                for t in range(ow):
                    # one window at a time
                    win = padded[q, :, (s*stride):(s*stride+kh), t*stride:t*stride+kw]
                    res[q, r, s, t] = np.sum(win * weights[r]) + bias[r]
    return res
'''


def library_copy():
    """conv2d_forward_naive as a student would paste it: argument check replaced by their
    own set-up lines (the library's helper is private), loop body unchanged."""
    tree = ast.parse(inspect.getsource(L.conv2d_forward_naive))
    fn = tree.body[0]
    first = fn.body[1]
    assert "_check_conv2d" in ast.unparse(first), "the library changed: update this copy"
    fn.body = ast.parse(
        "stride, pads, dilation = (stride, stride), (padding,) * 4, (1, 1)\n"
        "h_out = (x.shape[2] + 2 * padding - w.shape[2]) // stride[0] + 1\n"
        "w_out = (x.shape[3] + 2 * padding - w.shape[3]) // stride[1] + 1\n"
    ).body + fn.body[2:-1] + ast.parse("return out").body
    fn.name = "conv2d"
    fn.args = ast.parse("def f(x, w, b, stride=1, padding=0): pass").body[0].args
    fn.returns = None
    return ast.unparse(tree)


def _run(code, name, *args):
    """Call a function defined by ``code`` with the student helpers available."""
    env = {"np": np, "pad2d": lambda x, p: L.pad2d(x, p),
           "conv_output_size": lambda n, k, s=1, p=0: L.conv_output_size(n, k, stride=s,
                                                                          padding=p),
           "correlate2d": lambda i, k: L.conv2d_forward(i[None, None], k[None, None])[0][0, 0]}
    exec(code, env)
    return env[name](*args)


def test_the_independent_solutions_are_correct():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(2, 3, 7, 6)), rng.normal(size=(4, 3, 3, 2)), rng.normal(size=4)
    want = L.conv2d_forward(x, w, b, stride=2, padding=1)[0]
    for code in (S.CONV, CONV_VECTORISED, CONV_BY_CHANNEL, CONV_DISGUISED, library_copy()):
        np.testing.assert_allclose(_run(code, "conv2d", x, w, b, 2, 1), want, atol=1e-12)
    img, k = rng.normal(size=(6, 5)), rng.normal(size=(3, 2))
    for code in (S.CORR, CORR_SCALAR):
        np.testing.assert_allclose(_run(code, "correlate2d", img, k),
                                   L.conv2d_forward(img[None, None], k[None, None])[0][0, 0])
    for code in (S.PAD, PAD_UNPACKED):
        for p in (0, 2):
            np.testing.assert_array_equal(_run(code, "pad2d", x, p), L.pad2d(x, p))


# ------------------------------------------------------------- normalisation


def test_normalize_ignores_names_comments_docstrings_and_layout():
    a = sim.normalize(S.CONV)
    b = sim.normalize(CONV_DISGUISED)
    assert a == b
    assert "np" in a and "sum" in a and "shape" in a and "pad2d" in a  # API names kept


def test_normalize_keeps_what_the_code_does():
    base = sim.normalize("def f(x):\n    return np.sum(x.shape) + 1\n")
    for changed in ("def f(x):\n    return np.mean(x.shape) + 1\n",  # called API
                    "def f(x):\n    return np.sum(x.strides) + 1\n",  # attribute
                    "def f(x):\n    return np.sum(x.shape) - 1\n",  # operator
                    "def f(x):\n    return np.sum(x.shape) + 2\n"):  # literal
        assert sim.normalize(changed) != base, changed
    # literals are abstracted only on request
    assert sim.normalize("def f(x):\n    return x + 2\n", literals=True) == sim.normalize(
        "def f(y):\n    return y + 7\n", literals=True)


def test_library_code_loses_checks_signature_and_cache_only_on_request():
    code = ("def f(x, k, *, scale=1):\n    x, k = _check_args(x, k)\n    if k < 1:\n"
            "        raise ValueError('k')\n    y = x * k\n    return y, FCache(x, k)\n")
    assert sim.normalize(code, library=True) == ["_v", "=", "_v", "*", "_v", ";",
                                                 "return", "_v", ";"]
    plain = sim.normalize(code)
    assert "raise" in plain and "_check_args" in plain and "FCache" in plain
    # a check whose `if` does more than raise is code, not checking
    kept = "def f(x):\n    if x < 0:\n        x = -x\n        raise ValueError\n    return x\n"
    assert "-" in sim.normalize(kept, library=True)


def test_fingerprints_and_containment():
    tokens = list("abcdefgh")
    prints = sim.fingerprints(tokens, k=3)
    assert len(prints) == 6 and tuple("abc") in prints
    assert sim.fingerprints(list("ab"), k=3) == {("a", "b")}
    small = sim.fingerprints(list("cdefg"), k=3)
    assert sim.containment(small, prints) == 1.0
    assert sim.containment(sim.fingerprints(list("xyzw"), k=3), prints) == 0.0
    assert sim.containment(frozenset(), prints) == 0.0


# ------------------------------------------------------------- the class


def _class():
    solution = json.loads(SOLUTION.read_text())
    released = json.loads(S.RELEASE.read_text())
    return {
        "alice": S.fill({"conv_output_size": S.SIZE, "pad2d": S.PAD, "correlate2d": S.CORR,
                         "conv2d": S.CONV}),
        "exact": S.fill({"conv_output_size": S.SIZE, "conv2d": S.CONV}),
        "disguised": S.fill({"conv2d": CONV_DISGUISED}),
        "vectoriser": S.fill({"conv_output_size": S.SIZE, "pad2d": PAD_UNPACKED,
                              "correlate2d": CORR_SCALAR, "conv2d": CONV_VECTORISED}),
        "by_channel": S.fill({"conv2d": CONV_BY_CHANNEL}),
        "librarian": S.fill({"conv2d": library_copy()}),
        "instructor": solution,  # the solution notebook handed in as a submission
        "released1": released,
        "released2": released,
    }


@pytest.fixture(scope="module")
def matches():
    released = json.loads(S.RELEASE.read_text())
    units = sim.graded_units(released)
    stubs = sim.stub_prints(released, units)
    subs = [sim.submission(name, nb, units, stubs) for name, nb in _class().items()]
    return subs, sim.compare(subs, library=sim.library_units(), threshold=0.9)


def _pairs(found):
    return {(m.unit, *sorted((m.student, m.other))) for m in found}


def test_units_come_from_the_released_solution_cells(matches):
    released = json.loads(S.RELEASE.read_text())
    assert sim.graded_units(released) == {
        "conv_output_size": "function", "pad2d": "function", "correlate2d": "function",
        "conv2d": "function", "task_edges_code": "cell"}
    subs, _ = matches
    by_name = {s.name: s for s in subs}
    # the unchanged stub is subtracted: nothing left to compare
    assert by_name["released1"].prints == {} and by_name["released2"].prints == {}
    assert set(by_name["alice"].prints) == {"conv_output_size", "pad2d", "correlate2d",
                                            "conv2d"}


def test_copies_are_flagged(matches):
    _, found = matches
    pairs = _pairs(found)
    assert ("conv2d", "alice", "exact") in pairs
    assert ("conv2d", "alice", "disguised") in pairs
    assert ("conv2d", "disguised", "exact") in pairs
    lib = [m for m in found if m.student == "librarian" and m.kind == "library"]
    assert [m.other for m in lib] == ["cnnlib.numpy.conv.conv2d_forward_naive"], found
    exact = next(m for m in found if {m.student, m.other} == {"alice", "exact"})
    assert exact.similarity == 1.0 and exact.shared == exact.size


def test_independent_work_and_the_release_are_not_flagged(matches):
    _, found = matches
    flagged = {m.student for m in found} | {m.other for m in found}
    for honest in ("vectoriser", "by_channel", "instructor", "released1", "released2"):
        assert honest not in flagged, [m for m in found if honest in (m.student, m.other)]
    # every pair is a copy named above; sorted most similar first
    assert _pairs(found) == {("conv2d", "alice", "exact"), ("conv2d", "alice", "disguised"),
                             ("conv2d", "disguised", "exact"),
                             ("conv2d", "cnnlib.numpy.conv.conv2d_forward_naive",
                              "librarian")}
    assert [m.similarity for m in found] == sorted((m.similarity for m in found), reverse=True)


def test_one_line_functions_are_too_short_to_tell(matches):
    # alice and exact wrote the same conv_output_size, as most of a class will
    subs, found = matches
    by_name = {s.name: s for s in subs}
    assert by_name["alice"].prints["conv_output_size"] == by_name["exact"].prints[
        "conv_output_size"]
    assert len(by_name["alice"].prints["conv_output_size"]) < sim.MIN_SIZE
    assert not [m for m in found if m.unit == "conv_output_size"]
    lower = sim.compare(subs, threshold=0.9, min_size=1)
    assert ("conv_output_size", "alice", "exact") in _pairs(lower)


def test_unparsable_cells_are_reported_not_fatal():
    released = json.loads(S.RELEASE.read_text())
    units = sim.graded_units(released)
    nb = S.fill({"conv2d": "def conv2d(x, w, b, stride=1, padding=0):\n    return (\n",
                 "pad2d": S.PAD + "\n%timeit pad2d(np.ones((3, 3)), 1)\n"})
    sub = sim.submission("typo", nb, units, sim.stub_prints(released, units))
    assert sub.problems == ["conv2d: SyntaxError line 2"]
    assert "pad2d" in sub.prints and "conv2d" not in sub.prints
    # a magic inside a function keeps its indentation
    assert sim.normalize("def f(x):\n    %time y = x\n    return x\n") == sim.normalize(
        "def f(x):\n    pass\n    return x\n")


def test_bad_threshold_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        sim.compare([], threshold=90)


# ------------------------------------------------------------- the command line


def test_cli_writes_the_csv_on_a_scratch_course(tmp_path):
    course = tmp_path / "course"
    for folder, src in (("assignments", S.RELEASE), ("solutions", SOLUTION)):
        dst = course / folder / "a1-convolution" / "convolution.ipynb"
        dst.parent.mkdir(parents=True)
        dst.write_bytes(src.read_bytes())
    students = _class()
    del students["instructor"]
    for name, nb in students.items():
        S.write(nb, course / "submitted", name)
    S.write(S.fill({"conv2d": S.CONV}), course / "submitted", "copier")
    corrupt = course / "submitted/corrupt/a1-convolution/convolution.ipynb"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text("{ not a notebook")
    (course / "submitted/empty/a1-convolution").mkdir(parents=True)
    proc = subprocess.run([sys.executable, str(ROOT / "tools/similarity_report.py"),
                           "a1-convolution", "--threshold", "0.9"], cwd=course,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    with open(course / "similarity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["function"], r["student"], r["other"]) for r in rows} >= {
        ("conv2d", "alice", "copier"), ("conv2d", "alice", "disguised"),
        ("conv2d", "librarian", "cnnlib.numpy.conv.conv2d_forward_naive")}
    assert all(float(r["similarity"]) >= 0.9 and r["assignment"] == "a1-convolution"
               for r in rows)
    named = {r["student"] for r in rows} | {r["other"] for r in rows}
    assert not {"vectoriser", "by_channel", "released1", "released2"} & named
    out = proc.stdout
    assert "alice" in out and "copier" in out
    assert "9 students" in out  # corrupt and empty are listed below, not compared
    assert "not compared: corrupt:" in out and "not a readable notebook" in out
    assert "not compared: empty: a1-convolution/convolution.ipynb is missing" in out
    assert "no grade was changed" in out
    # nothing but the report was written
    assert sorted(p.name for p in course.iterdir()) == [
        "assignments", "similarity.csv", "solutions", "submitted"]
    # --top prints the most similar pairs only; the CSV still holds every pair
    proc = subprocess.run([sys.executable, str(ROOT / "tools/similarity_report.py"),
                           "a1-convolution", "--top", "1", "--csv", "top.csv"], cwd=course,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(course / "top.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows) > 1
    table_rows = [ln for ln in proc.stdout.splitlines() if re.match(r"\s+[01]\.\d\d\s", ln)]
    assert len(table_rows) == 1 and float(table_rows[0].split()[0]) == max(
        float(r["similarity"]) for r in rows)
    assert f"... and {len(rows) - 1} more pairs in top.csv" in proc.stdout


# ------------------------------------------------------------- speed (not asserted)


def generated_class(n, seed=0):
    """``n`` plausible submissions: the independent solutions above with random names,
    comments and blank lines, so most pairs share some code and none is empty."""
    rng = random.Random(seed)
    bodies = {"conv2d": [S.CONV, CONV_VECTORISED, CONV_BY_CHANNEL, CONV_DISGUISED],
              "correlate2d": [S.CORR, CORR_SCALAR], "pad2d": [S.PAD, PAD_UNPACKED],
              "conv_output_size": [S.SIZE]}

    def disguise(code):
        names = {"out": f"out{rng.randrange(99)}", "xp": f"xp{rng.randrange(99)}"}
        lines = []
        for line in code.splitlines():
            for old, new in names.items():
                line = line.replace(old, new)
            lines.append(line + (f"  # note {rng.random():.3f}" if rng.random() < 0.2 else ""))
        return "\n".join(lines)

    return {f"s{i:03d}": S.fill({u: disguise(rng.choice(c)) for u, c in bodies.items()},
                                task=S.TASK) for i in range(n)}


def measure(n=300):
    released = json.loads(S.RELEASE.read_text())
    units = sim.graded_units(released)
    stubs = sim.stub_prints(released, units)
    notebooks = generated_class(n)
    start = time.perf_counter()
    subs = [sim.submission(name, nb, units, stubs) for name, nb in notebooks.items()]
    parsed = time.perf_counter() - start
    start = time.perf_counter()
    found = sim.compare(subs, library=sim.library_units(), threshold=0.9)
    compared = time.perf_counter() - start
    return parsed, compared, len(found)


if __name__ == "__main__":
    for n in (75, 150, 300):
        parsed, compared, pairs = measure(n)
        print(f"{n} students: extract+normalise {parsed:.2f} s, compare {compared:.2f} s "
              f"({pairs} pairs at 0.9)")


def test_library_code_copied_under_another_name_is_flagged():
    """A helper in any cell, renamed, that is cnnlib's or NumPy's code."""
    import textwrap

    import numpy.lib._arraypad_impl as arraypad

    copy = library_copy().replace("def conv2d(", "def slide_filters(")
    pad = textwrap.dedent(inspect.getsource(arraypad._pad_simple)).replace(
        "def _pad_simple(", "def grow(")
    renamer = S.fill({"conv2d": "def conv2d(x, w, b, stride=1, padding=0):\n"
                                "    return slide_filters(x, w, b, stride, padding)\n",
                      "pad2d": "def pad2d(x, padding):\n"
                               "    width = [(0, 0)] * (x.ndim - 2) + [(padding,) * 2] * 2\n"
                               "    return grow(x, width)[0]\n"},
                     extra_cells=[copy, pad])
    released = json.loads(S.RELEASE.read_text())
    units = sim.graded_units(released)
    stubs = sim.stub_prints(released, units)
    subs = [sim.submission(name, nb, units, stubs)
            for name, nb in {"renamer": renamer, "alice": S.complete()}.items()]
    found = sim.compare(subs, library=sim.library_units(), threshold=0.9)
    flagged = {(m.unit, m.other) for m in found if m.kind == "library"}
    assert ("other:slide_filters", "cnnlib.numpy.conv.conv2d_forward_naive") in flagged, found
    assert ("other:grow", "numpy.lib._arraypad_impl._pad_simple") in flagged, found
    assert not [m for m in found if "alice" in (m.student, m.other)]
