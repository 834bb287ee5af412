"""Sample students for the grading tests: function bodies written independently of the
solution notebook, in the styles students really use (loops, slicing, helpers), with the
mistakes the diagnostics must recognise. ``fill`` turns the released notebook into a
submission; ``examples/submissions/`` holds a complete, a partial and a buggy student and
one student per entry of ``MISTAKES``, written by ``write_examples``
(``python tests/grading/a1_students.py`` after a new release).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "assignments" / "a1-convolution" / "convolution.ipynb"

# --------------------------------------------------------------------------- correct code
SIZE = '''
def conv_output_size(n, kernel_size, stride=1, padding=0):
    span = n + 2 * padding - kernel_size
    return span // stride + 1
'''
PAD = '''
def pad2d(x, padding):
    shape = list(x.shape)
    shape[-1] += 2 * padding
    shape[-2] += 2 * padding
    out = np.zeros(shape, dtype=x.dtype)
    out[..., padding:padding + x.shape[-2], padding:padding + x.shape[-1]] = x
    return out
'''
CORR = '''
def correlate2d(image, kernel):
    H, W = image.shape
    KH, KW = kernel.shape
    out = np.zeros((H - KH + 1, W - KW + 1))
    for i in range(H - KH + 1):
        for j in range(W - KW + 1):
            out[i, j] = np.sum(image[i:i + KH, j:j + KW] * kernel)
    return out
'''
CONV = '''
def conv2d(x, w, b, stride=1, padding=0):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    xp = pad2d(x, padding)
    Ho = conv_output_size(H, KH, stride, padding)
    Wo = conv_output_size(W, KW, stride, padding)
    out = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out
'''
TASK = '''
sobel = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
gx = conv2d(x_photo, sobel[None, None], np.zeros(1), padding=1)[0, 0]
gy = conv2d(x_photo, sobel.T[None, None], np.zeros(1), padding=1)[0, 0]
g = np.exp(-((np.arange(5) - 2.0) ** 2) / 2)
blur = conv2d(x_photo, (np.outer(g, g) / np.outer(g, g).sum())[None, None], np.zeros(1),
              padding=2)[0, 0]
sharp = conv2d(x_photo, np.array([[0.0, -1, 0], [-1, 5, -1], [0, -1, 0]])[None, None],
               np.zeros(1), padding=1)[0, 0]
fig, axes = plt.subplots(1, 5, figsize=(15, 3))
for ax, img, title in zip(axes, [photo, gx, gy, blur, sharp],
                          ["photo", "gx", "gy", "blur", "sharp"]):
    ax.imshow(img, cmap="gray")
    ax.set_title(title)
plt.show()
'''
ANSWER = ("gx responds to vertical edges (the tripod, the coat's outline), gy to horizontal "
          "ones (the horizon); the blur averages away fine texture such as the grass; "
          "sharpening adds the difference from the neighbours back, so edges get more "
          "contrast. The Gaussian sums to 1 so the brightness of flat regions is unchanged.")

# --------------------------------------------------------------------------- mistakes
SIZE_PLUS_ONE = '''
def conv_output_size(n, kernel_size, stride=1, padding=0):
    return (n + 2 * padding - kernel_size + 1) // stride + 1
'''
PAD_MINUS_P = '''
def pad2d(x, padding):
    p = padding
    out = np.zeros(x.shape[:-2] + (x.shape[-2] + 2 * p, x.shape[-1] + 2 * p), dtype=x.dtype)
    out[..., p:-p, p:-p] = x
    return out
'''
CORR_FLIPPED = '''
def correlate2d(image, kernel):
    k = kernel[::-1, ::-1]
    H, W = image.shape
    KH, KW = k.shape
    out = np.zeros((H - KH + 1, W - KW + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (image[i:i + KH, j:j + KW] * k).sum()
    return out
'''
CONV_NO_BIAS = CONV.replace("np.sum(window * w[f]) + b[f]", "np.sum(window * w[f])")
CONV_BIAS_PER_CHANNEL = '''
def conv2d(x, w, b, stride=1, padding=0):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    xp = pad2d(x, padding)
    Ho = (H + 2 * padding - KH) // stride + 1
    Wo = (W + 2 * padding - KW) // stride + 1
    out = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for f in range(F):
            for c in range(C):
                for i in range(Ho):
                    for j in range(Wo):
                        patch = xp[n, c, i * stride:i * stride + KH, j * stride:j * stride + KW]
                        out[n, f, i, j] += np.sum(patch * w[f, c]) + b[f]
    return out
'''
CONV_LAST_CHANNEL = CONV_BIAS_PER_CHANNEL.replace(
    "out[n, f, i, j] += np.sum(patch * w[f, c]) + b[f]",
    "out[n, f, i, j] = np.sum(patch * w[f, c]) + b[f]")
CONV_STRIDE_IGNORED = CONV.replace("Ho = conv_output_size(H, KH, stride, padding)",
                                   "Ho = conv_output_size(H, KH, 1, padding)").replace(
    "Wo = conv_output_size(W, KW, stride, padding)", "Wo = conv_output_size(W, KW, 1, padding)"
).replace("i * stride:i * stride + KH, j * stride:j * stride + KW", "i:i + KH, j:j + KW")
CONV_NHWC = CONV.replace("return out", "return out.transpose(0, 2, 3, 1)")
CONV_INT = CONV.replace("out = np.zeros((N, F, Ho, Wo))",
                        "out = np.zeros((N, F, Ho, Wo), dtype=int)")
CONV_FLIPPED = CONV.replace("np.sum(window * w[f])", "np.sum(window * w[f][:, ::-1, ::-1])")
CONV_PAD_WRONG_AXES = '''
def conv2d(x, w, b, stride=1, padding=0):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    p = padding
    xp = np.zeros((N + 2 * p, C + 2 * p, H, W))
    xp[p:p + N, p:p + C] = x
    Ho = (H + 2 * p - KH) // stride + 1
    Wo = (W + 2 * p - KW) // stride + 1
    out = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    win = xp[p + n, p:p + C, i * stride:i * stride + KH, j * stride:j * stride + KW]
                    if win.shape == w[f].shape:
                        out[n, f, i, j] = np.sum(win * w[f]) + b[f]
    return out[:, :, :(H - KH) // stride + 1, :(W - KW) // stride + 1]
'''
# A filter taken to be square: k = KW sets the window's height too.
CONV_SQUARE_ONLY = '''
def conv2d(x, w, b, stride=1, padding=0):
    N, C, H, W = x.shape
    F = w.shape[0]
    k = w.shape[-1]
    xp = pad2d(x, padding)
    Ho = (H + 2 * padding - k) // stride + 1
    Wo = (W + 2 * padding - k) // stride + 1
    out = np.zeros((N, F, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, None, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = (patch * w[None]).sum(axis=(2, 3, 4)) + b
    return out
'''
# An input taken to be square: the output's width comes from H.
CONV_SQUARE_INPUT = CONV.replace("Wo = conv_output_size(W, KW, stride, padding)",
                                 "Wo = conv_output_size(H, KW, stride, padding)")
CORR_SQUARE_ONLY = '''
def correlate2d(image, kernel):
    k = kernel.shape[0]
    rows, cols = image.shape[0] - k + 1, image.shape[1] - k + 1
    out = np.zeros((rows, cols))
    for i in range(rows):
        for j in range(cols):
            out[i, j] = (image[i:i + k, j:j + k] * kernel).sum()
    return out
'''
PAD_ALL_AXES = '''
def pad2d(x, padding):
    p = padding
    out = np.zeros(tuple(d + 2 * p for d in x.shape), dtype=x.dtype)
    out[tuple(slice(p, p + d) for d in x.shape)] = x
    return out
'''

# --------------------------------------------------------------------------- hostile code
HANG = '''
def {name}(*args, **kwargs):
    import time
    while True:
        try:
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass
'''
SEGFAULT = '''
def {name}(*args, **kwargs):
    import ctypes
    ctypes.string_at(0)
'''
EXIT = '''
def {name}(*args, **kwargs):
    import os
    os._exit(0)
'''
DELEGATE_TORCH = '''
def correlate2d(image, kernel):
    import importlib
    F = importlib.import_module("torch.nn." + "functional")
    t = importlib.import_module("to" + "rch")
    return F.conv2d(t.from_numpy(image)[None, None], t.from_numpy(kernel)[None, None])[0, 0].numpy()
'''
DELEGATE_CNNLIB = '''
from cnnlib import numpy as _lib_alias

def conv2d(x, w, b, stride=1, padding=0):
    return _lib_alias.conv2d_forward(x, w, b, stride=stride, padding=padding)[0]
'''
DELEGATE_SCIPY = '''
def correlate2d(image, kernel):
    mod = __import__("scipy.sig" + "nal", fromlist=["x"])
    return getattr(mod, "correlate" + "2d")(image, kernel, mode="valid")
'''
DELEGATE_NP_PAD = '''
def pad2d(x, padding):
    f = getattr(np, "p" + "ad")
    width = [(0, 0)] * (x.ndim - 2) + [(padding, padding)] * 2
    return f(x, width)
'''
TAMPER = '''
import numpy.testing
import cnnlib.numpy

class Anything(np.ndarray):
    def __eq__(self, other):
        return True

numpy.testing.assert_allclose = lambda *a, **k: None
np.allclose = lambda *a, **k: True
np.isclose = lambda *a, **k: True
cnnlib.numpy.conv2d_forward = lambda x, w, b=None, **k: (np.zeros(1), None)
cnnlib.numpy.pad2d = lambda x, p, **k: x
cnnlib.numpy.conv_output_size = lambda *a, **k: 0

def conv_output_size(n, kernel_size, stride=1, padding=0):
    return 0

def pad2d(x, padding):
    return x

def correlate2d(image, kernel):
    return np.zeros(1).view(Anything)

def conv2d(x, w, b, stride=1, padding=0):
    return np.zeros(1)
'''
NOISY_CORRECT = '''
import sys
import warnings

def conv_output_size(n, kernel_size, stride=1, padding=0):
    warnings.warn("computing a size")
    print("debug: size", file=sys.stderr)
    return (n + 2 * padding - kernel_size) // stride + 1
'''


def fill(functions=None, task=None, answer=None, *, extra_cells=(), release=RELEASE):
    """A submission: the released notebook with solution cells replaced by student code.

    ``functions`` maps a solution cell's grade_id (``conv_output_size``, ``pad2d``,
    ``correlate2d``, ``conv2d``, ``task_edges_code``) to the code that replaces its stub;
    ``extra_cells`` are code cells the student added at the end.
    """
    nb = json.loads(Path(release).read_text())
    for source in extra_cells:
        nb["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {},
                            "outputs": [], "source": source})
    functions = dict(functions or {})
    if task:
        functions["task_edges_code"] = task
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in functions:
            cell["source"] = functions[grade_id].strip("\n")
        elif cell["cell_type"] == "markdown" and answer and "Your explanation here" in "".join(
                cell["source"]):
            cell["source"] = answer
    return nb


def complete():
    return fill({"conv_output_size": SIZE, "pad2d": PAD, "correlate2d": CORR, "conv2d": CONV},
                task=TASK, answer=ANSWER)


def partial():
    return fill({"conv_output_size": SIZE, "pad2d": PAD, "correlate2d": CORR})


def buggy():
    return fill({"conv_output_size": SIZE_PLUS_ONE, "pad2d": PAD_MINUS_P,
                 "correlate2d": CORR_FLIPPED, "conv2d": CONV_NO_BIAS}, task=TASK)


# One sample student per mistake a visible or hidden check must name:
# {student: (graded function, its code, words its feedback must contain)}
MISTAKES = {
    "a1_conv_flipped": ("conv2d", CONV_FLIPPED, "true convolution (kernel flipped)"),
    "a1_conv_square_only": ("conv2d", CONV_SQUARE_ONLY, "non-square kernels"),
}
CORRECT = {"conv_output_size": SIZE, "pad2d": PAD, "correlate2d": CORR, "conv2d": CONV}


def with_mistake(student):
    function, code, _ = MISTAKES[student]
    return fill(dict(CORRECT, **{function: code}), task=TASK, answer=ANSWER)


def samples():
    """{student: notebook} of every committed sample of this assignment."""
    out = {"alice_complete": complete(), "bob_partial": partial(), "carol_buggy": buggy()}
    out.update({student: with_mistake(student) for student in MISTAKES})
    return out


def dumps(nb):
    return json.dumps(nb, indent=1) + "\n"


def write(nb, course_or_dir, student, assignment="a1-convolution", name="convolution.ipynb"):
    path = Path(course_or_dir) / student / assignment / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1) + "\n")
    return path


def write_examples(target=ROOT / "examples" / "submissions"):
    """Regenerate examples/submissions/*/a1-convolution/ from the current release."""
    for student, nb in samples().items():
        write(nb, target, student)


def without_cells(nb, grade_ids):
    nb = copy.deepcopy(nb)
    nb["cells"] = [c for c in nb["cells"]
                   if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in grade_ids]
    return nb


def edit_cells(nb, grade_ids, source):
    nb = copy.deepcopy(nb)
    for c in nb["cells"]:
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") in grade_ids:
            c["source"] = source
    return nb


if __name__ == "__main__":
    write_examples()


def move_cell(nb, grade_id, after):
    """Move the cell ``grade_id`` to just after the cell ``after``."""
    nb = copy.deepcopy(nb)
    ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb["cells"]]
    cell = nb["cells"].pop(ids.index(grade_id))
    ids.remove(grade_id)
    nb["cells"].insert(ids.index(after) + 1, cell)
    return nb
