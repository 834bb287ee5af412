"""Sample students of Assignment 2 (a2-pooling): function bodies written independently of
the solution notebook, in the styles students use (loops over output positions, slicing,
broadcasting), and one student per known mistake. ``fill`` turns the released notebook into
a submission; ``write_examples`` writes ``examples/submissions/*/a2-pooling/``
(``python tests/grading/a2_students.py`` after a new release), and the tests check that the
committed samples equal what this module generates.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from a1_students import HANG, SEGFAULT  # noqa: E402 - the broken functions every generator uses
from a1_students import fill as _fill  # noqa: E402

ASSIGNMENT = "a2-pooling"
NOTEBOOK = "pooling.ipynb"
RELEASE = ROOT / "assignments" / ASSIGNMENT / NOTEBOOK
EXAMPLES = ROOT / "examples" / "submissions"

# --------------------------------------------------------------------------- correct code
MAXPOOL = '''
def maxpool2d(x, kernel_size, stride=None, padding=0):
    k = kernel_size
    if stride is None:
        stride = k
    N, C, H, W = x.shape
    Ho = (H + 2 * padding - k) // stride + 1
    Wo = (W + 2 * padding - k) // stride + 1
    xp = np.full((N, C, H + 2 * padding, W + 2 * padding), -np.inf)
    xp[:, :, padding:padding + H, padding:padding + W] = x
    out = np.zeros((N, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            window = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out
'''
AVGPOOL = '''
def avgpool2d(x, kernel_size, stride=None, padding=0):
    k = kernel_size
    s = kernel_size if stride is None else stride
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + 2 * padding, W + 2 * padding))
    xp[:, :, padding:padding + H, padding:padding + W] = x
    Ho = (H + 2 * padding - k) // s + 1
    Wo = (W + 2 * padding - k) // s + 1
    out = np.zeros((N, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = xp[:, :, i * s:i * s + k, j * s:j * s + k].sum(axis=(2, 3)) / (k * k)
    return out
'''
GLOBAL_AVG = '''
def global_avgpool(x):
    N, C, H, W = x.shape
    return x.reshape(N, C, H * W).sum(axis=2) / (H * W)
'''
GLOBAL_MAX = '''
def global_maxpool(x):
    N, C = x.shape[:2]
    return x.reshape(N, C, -1).max(axis=-1)
'''
GEM = '''
def gem_pool(x, p=3.0, eps=1e-6):
    x = np.clip(x, eps, None)
    return (x ** p).mean(axis=(2, 3)) ** (1 / p)
'''
RELU = '''
def relu(x):
    return x * (x > 0)
'''
LEAKY = '''
def leaky_relu(x, negative_slope=0.01):
    out = x.copy()
    out[x < 0] *= negative_slope
    return out
'''
ELU = '''
def elu(x, alpha=1.0):
    neg = alpha * (np.exp(np.minimum(x, 0.0)) - 1)
    return np.where(x > 0, x, neg)
'''
SIGMOID = '''
def sigmoid(x):
    out = np.empty(x.shape)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1 + ex)
    return out
'''
SOFTMAX = '''
def softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)
'''
FLATTEN = '''
def flatten(x):
    n = x.shape[0]
    d = 1
    for size in x.shape[1:]:
        d *= size
    return np.reshape(x, (n, d))
'''
LINEAR = '''
def linear(x, w, b):
    return np.dot(x, w.T) + b[None, :]
'''
TASK = '''
crop = 96
orig = photo[10:10 + crop, 10:10 + crop]
base_maps = features(orig)
moved = features(photo[10:10 + crop, 9:9 + crop])  # the crop moved right by one pixel
print("equivariant:", np.allclose(moved[..., 1:], base_maps[..., :-1]))
conv_change, pool_change = [], []
for d in range(9):
    fd = features(photo[10:10 + crop, 10 - d:10 - d + crop])
    conv_change.append(np.linalg.norm(fd - base_maps) / np.linalg.norm(base_maps))
    pool_change.append(np.linalg.norm(maxpool2d(fd, 4) - maxpool2d(base_maps, 4))
                       / np.linalg.norm(maxpool2d(base_maps, 4)))
plt.plot(conv_change, label="conv")
plt.plot(pool_change, label="conv + max pool")
plt.legend()
plt.show()
'''
ANSWER = ("Shifting the image shifts the convolution's maps by the same amount (equivariance), "
          "but thin edges then land on other pixels, so in place the maps change by almost "
          "100 % after one pixel. Max pooling keeps the strongest response of each 4 x 4 "
          "window, and a one-pixel move usually stays inside the window, so the pooled maps "
          "change much less; the change grows as more responses cross window borders, and at "
          "a shift of 4 the pooled map is the original moved by one cell. Networks therefore "
          "pool a little in each layer and become tolerant of larger shifts deeper down.")

CORRECT = {"maxpool2d": MAXPOOL, "avgpool2d": AVGPOOL, "global_avgpool": GLOBAL_AVG,
           "global_maxpool": GLOBAL_MAX, "gem_pool": GEM, "relu": RELU, "leaky_relu": LEAKY,
           "elu": ELU, "sigmoid": SIGMOID, "softmax": SOFTMAX, "flatten": FLATTEN,
           "linear": LINEAR}

# --------------------------------------------------------------------------- mistakes
# {student: (graded function, its code, words its feedback must contain)}
MISTAKES = {
    "a2_maxpool_stride_ignored": ("maxpool2d", MAXPOOL.replace(
        "xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]",
        "xp[:, :, i:i + k, j:j + k]"), "the window moves one pixel at a time"),
    "a2_maxpool_no_overlap": ("maxpool2d", MAXPOOL.replace(
        "xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]",
        "xp[:, :, i * k:i * k + k, j * k:j * k + k]"),
        "the step between windows is the stride"),
    "a2_maxpool_zero_padding": ("maxpool2d", MAXPOOL.replace(
        "np.full((N, C, H + 2 * padding, W + 2 * padding), -np.inf)",
        "np.zeros((N, C, H + 2 * padding, W + 2 * padding))"), "max pooling pads with -inf"),
    "a2_avgpool_padding_not_counted": ("avgpool2d", '''
def avgpool2d(x, kernel_size, stride=None, padding=0):
    k = kernel_size
    s = kernel_size if stride is None else stride
    N, C, H, W = x.shape
    Ho = (H + 2 * padding - k) // s + 1
    Wo = (W + 2 * padding - k) // s + 1
    out = np.zeros((N, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            r0, c0 = max(i * s - padding, 0), max(j * s - padding, 0)
            r1, c1 = min(i * s - padding + k, H), min(j * s - padding + k, W)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out
''', "padded zeros are left out of the mean"),
    "a2_global_maxpool_zero_start": ("global_maxpool", '''
def global_maxpool(x):
    N, C, H, W = x.shape
    best = np.zeros((N, C))
    for i in range(H):
        for j in range(W):
            best = np.maximum(best, x[:, :, i, j])
    return best
''', "the running maximum starts at 0"),
    "a2_gem_no_clamp": ("gem_pool", '''
def gem_pool(x, p=3.0, eps=1e-6):
    return np.mean(x ** p, axis=(2, 3)) ** (1.0 / p)
''', "entries below eps must be raised to eps first"),
    "a2_sigmoid_overflow": ("sigmoid", '''
def sigmoid(x):
    e = np.exp(x)
    return e / (1 + e)
''', "np.exp overflows to inf"),
    "a2_softmax_overflow": ("softmax", '''
def softmax(x, axis=-1):
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)
''', "np.exp overflows to inf"),
    "a2_softmax_axis": ("softmax", SOFTMAX.replace("axis=axis", "axis=-1"),
                        "softmax over the wrong axis"),
    "a2_softmax_global_max": ("softmax", SOFTMAX.replace("x.max(axis=axis, keepdims=True)",
                                                         "x.max()"),
                              "the whole array's (x.max()), not each slice's"),
    "a2_maxpool_no_padding": ("maxpool2d", '''
def maxpool2d(x, kernel_size, stride=None, padding=0):
    k = kernel_size
    s = k if stride is None else stride
    N, C, H, W = x.shape
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    out = np.empty((N, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = x[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3))
    return out
''', "the padding is ignored"),
    "a2_linear_transposed": ("linear", '''
def linear(x, w, b):
    return x @ w + b
''', "(out_features, in_features)"),
}

# --------------------------------------------------------------------------- broken code
# Each breaks one function in its own way; together in one notebook, every other function
# must keep its points.
BROKEN = {
    "relu": "# relu was deleted",  # a missing function
    "softmax": "def softmax(x):\n    return np.exp(x) / np.exp(x).sum(-1, keepdims=True)",
    "global_avgpool": "def global_avgpool(x):\n    return x.mean(axis=(2, 3), keepdims=True)",
    "flatten": "def flatten(x):\n    return x.reshape(x.shape[0], -1).astype(int)",
    "elu": "def elu(x, alpha=1.0):\n    return np.full(x.shape, np.nan)",
    "leaky_relu": HANG.format(name="leaky_relu"),
    "sigmoid": SEGFAULT.format(name="sigmoid"),
}


def fill(functions=None, task=None, answer=None, *, release=RELEASE):
    """A submission: the released notebook with solution cells replaced by student code.

    ``functions`` maps a solution cell's grade_id (a graded function's name, or
    ``task_shift_code``) to the code that replaces its stub.
    """
    functions = dict(functions or {})
    if task:
        functions["task_shift_code"] = task
    return _fill(functions, answer=answer, release=release)


def complete():
    return fill(CORRECT, task=TASK, answer=ANSWER)


def partial():
    """Pooling and activations done; softmax, GeM and the head not started."""
    return fill({name: code for name, code in CORRECT.items()
                 if name not in ("gem_pool", "softmax", "flatten", "linear")})


def with_mistake(student):
    function, code, _ = MISTAKES[student]
    return fill(dict(CORRECT, **{function: code}), task=TASK, answer=ANSWER)


def broken():
    return fill(dict(CORRECT, **BROKEN))


def samples():
    """{student: notebook} of every committed sample of this assignment."""
    out = {"alice_complete": complete(), "bob_partial": partial()}
    out.update({student: with_mistake(student) for student in MISTAKES})
    return out


def dumps(nb):
    return json.dumps(nb, indent=1) + "\n"


def write_examples(target=EXAMPLES):
    """Regenerate examples/submissions/*/a2-pooling/ from the current release."""
    for student, nb in samples().items():
        path = Path(target) / student / ASSIGNMENT / NOTEBOOK
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(nb))


def without_cells(nb, grade_ids):
    nb = copy.deepcopy(nb)
    nb["cells"] = [c for c in nb["cells"]
                   if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in grade_ids]
    return nb


if __name__ == "__main__":
    write_examples()
