"""Sample students of Assignment 3 (backpropagation): function bodies written independently
of the solution notebook, in the styles students use (loops over output positions,
``np.add.at``, helpers), with the mistakes the diagnostics must recognise. ``fill`` turns the
released notebook into a submission; ``write_examples`` writes ``examples/submissions/``
(``python tests/grading/a3_students.py`` after a new release).
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

ASSIGNMENT = "a3-backprop"
NOTEBOOK = "backprop.ipynb"
RELEASE = ROOT / "assignments" / ASSIGNMENT / NOTEBOOK

# --------------------------------------------------------------------------- correct code
RELU = '''
def relu_backward(dout, x):
    dx = dout.copy()
    dx[x <= 0] = 0
    return dx
'''
LINEAR = '''
def linear_backward(dout, x, w):
    dx = np.dot(dout, w)
    dw = np.dot(dout.T, x)
    db = np.sum(dout, axis=0)
    return dx, dw, db
'''
SCE = '''
def softmax_cross_entropy(scores, y):
    N = scores.shape[0]
    z = scores - np.max(scores, axis=1, keepdims=True)
    exp_z = np.exp(z)
    probs = exp_z / np.sum(exp_z, axis=1, keepdims=True)
    log_probs = z - np.log(np.sum(exp_z, axis=1, keepdims=True))
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dscores = probs.copy()
    dscores[np.arange(N), y] -= 1
    dscores /= N
    return float(loss), dscores
'''
NUMGRAD = '''
def numerical_gradient(f, x, dout, h=1e-5):
    grad = np.zeros(x.shape)
    flat_x = x.reshape(-1)  # a view: writing into it perturbs x
    flat_g = grad.reshape(-1)
    for i in range(flat_x.size):
        saved = flat_x[i]
        flat_x[i] = saved + h
        up = np.copy(f(x))
        flat_x[i] = saved - h
        down = np.copy(f(x))
        flat_x[i] = saved
        flat_g[i] = np.sum(dout * (up - down)) / (2 * h)
    return grad
'''
CONV = '''
def conv2d_backward(dout, x, w, stride=1, padding=0):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    _, _, Ho, Wo = dout.shape
    p = padding
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dxp = np.zeros(xp.shape)
    dw = np.zeros(w.shape)
    for i in range(Ho):
        for j in range(Wo):
            r, c = i * stride, j * stride
            window = xp[:, :, r:r + KH, c:c + KW]                  # (N, C, KH, KW)
            g = dout[:, :, i, j]                                   # (N, F)
            dw += np.tensordot(g, window, axes=([0], [0]))         # (F, C, KH, KW)
            dxp[:, :, r:r + KH, c:c + KW] += np.tensordot(g, w, axes=([1], [0]))
    db = dout.sum(axis=(0, 2, 3))
    dx = dxp[:, :, p:p + H, p:p + W]
    return dx, dw, db
'''
MAXPOOL = '''
def maxpool2d_backward(dout, x, kernel_size, stride=None, padding=0):
    k = kernel_size
    s = stride if stride is not None else k
    p = padding
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    dxp = np.zeros(xp.shape)
    n_idx, c_idx = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = xp[:, :, i * s:i * s + k, j * s:j * s + k].reshape(N, C, k * k)
            best = np.argmax(window, axis=2)
            rows = i * s + best // k
            cols = j * s + best % k
            np.add.at(dxp, (n_idx, c_idx, rows, cols), dout[:, :, i, j])
    return dxp[:, :, p:p + H, p:p + W]
'''
AVGPOOL = '''
def avgpool2d_backward(dout, x, kernel_size, stride=None, padding=0):
    k = kernel_size
    s = k if stride is None else stride
    p = padding
    N, C, H, W = x.shape
    dxp = np.zeros((N, C, H + 2 * p, W + 2 * p))
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dxp[:, :, i * s:i * s + k, j * s:j * s + k] += (
                dout[:, :, i, j][:, :, None, None] / (k * k))
    return dxp[:, :, p:p + H, p:p + W]
'''
TRAIN_STEP = '''
def train_step(params, x, y, lr):
    scores, (z1, a1, p1, f) = forward(params, x)
    loss, dscores = softmax_cross_entropy(scores, y)
    df, grads_w2, grads_b2 = linear_backward(dscores, f, params["w2"])
    dp1 = df.reshape(p1.shape)
    da1 = maxpool2d_backward(dp1, a1, kernel_size=2)
    dz1 = relu_backward(da1, z1)
    dx, grads_w1, grads_b1 = conv2d_backward(dz1, x, params["w1"], stride=1, padding=1)
    params["w1"] -= lr * grads_w1
    params["b1"] -= lr * grads_b1
    params["w2"] -= lr * grads_w2
    params["b2"] -= lr * grads_b2
    return loss
'''
TASK = '''
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
axes[0].plot(history["loss"])
axes[0].set_title("loss per step")
axes[1].plot(history["test_accuracy"], "o-")
axes[1].set_title("test accuracy per epoch")
axes[2].imshow(np.concatenate(list(PARAMS["w1"][:, 0]), axis=1), cmap="gray")
axes[2].set_title("conv1 filters")
plt.show()

rng = np.random.default_rng(3)
xc, wc, bc = rng.standard_normal((2, 2, 7, 7)), rng.standard_normal((3, 2, 3, 3)), np.zeros(3)
gc = rng.standard_normal((2, 3, 4, 4))
fwd = lambda xx, ww, bb: cnp.conv2d_forward(xx, ww, bb, stride=2, padding=1)[0]
mine = conv2d_backward(gc, xc, wc, 2, 1)
nums = (numerical_gradient(lambda t: fwd(t, wc, bc), xc, gc),
        numerical_gradient(lambda t: fwd(xc, t, bc), wc, gc),
        numerical_gradient(lambda t: fwd(xc, wc, t), bc, gc))
for name, a, b in zip(["dx", "dw", "db"], mine, nums):
    print(name, np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))
'''
ANSWER = ("The loss falls quickly in the first two epochs and then slowly; it is noisy because "
          "every step sees a different batch of 32 digits. The test accuracy climbs above 90 %. "
          "Training took a few seconds; conv2d_backward took most of it. The gradient check "
          "runs in float64 because float32 rounding would swamp the differences, and on random "
          "inputs so that no ReLU input sits at 0 and no pooling window has a tie, where the "
          "central difference straddles two branches. An error of 1e-8 means the backward pass "
          "is right, 1e-2 means a bug.")

# --------------------------------------------------------------------------- mistakes
# Each changes one function of the complete student; the network still trains unless the
# mistake changes the gradient that training uses (the missing 1/N does).
MISTAKES = {
    # every element of a max window receives the window's gradient
    "max_every_element": ("maxpool2d_backward", '''
def maxpool2d_backward(dout, x, kernel_size, stride=None, padding=0):
    k = kernel_size
    s = stride if stride is not None else k
    p = padding
    N, C, H, W = x.shape
    dxp = np.zeros((N, C, H + 2 * p, W + 2 * p))
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dxp[:, :, i * s:i * s + k, j * s:j * s + k] += dout[:, :, i, j][:, :, None, None]
    return dxp[:, :, p:p + H, p:p + W]
'''),
    # an input that wins several overlapping windows keeps only the last one's gradient
    "pool_overwrite": ("maxpool2d_backward", '''
def maxpool2d_backward(dout, x, kernel_size, stride=None, padding=0):
    k = kernel_size
    s = stride if stride is not None else k
    p = padding
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    dxp = np.zeros(xp.shape)
    for n in range(N):
        for c in range(C):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    window = xp[n, c, i * s:i * s + k, j * s:j * s + k]
                    a, b = np.unravel_index(np.argmax(window), window.shape)
                    dxp[n, c, i * s + a, j * s + b] = dout[n, c, i, j]
    return dxp[:, :, p:p + H, p:p + W]
'''),
    # dx stamps the kernel flipped: a "full" correlation with the kernel as it is
    "kernel_not_rotated": ("conv2d_backward", CONV.replace(
        "np.tensordot(g, w, axes=([1], [0]))",
        "np.tensordot(g, w[:, :, ::-1, ::-1], axes=([1], [0]))")),
    # db averaged over the batch instead of summed over batch and space
    "db_not_summed": ("conv2d_backward", CONV.replace(
        "db = dout.sum(axis=(0, 2, 3))", "db = dout.sum(axis=(2, 3)).mean(axis=0)")),
    # dscores without the 1/N of the mean
    "missing_1_over_n": ("softmax_cross_entropy", SCE.replace("    dscores /= N\n", "")),
    # the batch's largest score subtracted from every row: a row far below it underflows
    "sce_global_max": ("softmax_cross_entropy", SCE.replace(
        "z = scores - np.max(scores, axis=1, keepdims=True)", "z = scores - np.max(scores)")),
    # a mask of the window's maxima: every tied maximum gets the window's gradient
    "max_every_tie": ("maxpool2d_backward", '''
def maxpool2d_backward(dout, x, kernel_size, stride=None, padding=0):
    k = kernel_size
    s = stride if stride is not None else k
    p = padding
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    dxp = np.zeros(xp.shape)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = xp[:, :, i * s:i * s + k, j * s:j * s + k]
            mask = window == np.max(window, axis=(2, 3), keepdims=True)
            dxp[:, :, i * s:i * s + k, j * s:j * s + k] += mask * dout[:, :, i, j][:, :, None, None]
    return dxp[:, :, p:p + H, p:p + W]
'''),
    # the one-sided difference (f(x + h) - f(x)) / h
    "one_sided": ("numerical_gradient", NUMGRAD.replace(
        "        flat_x[i] = saved - h\n        down = np.copy(f(x))\n        flat_x[i] = saved\n",
        "        flat_x[i] = saved\n        down = np.copy(f(x))\n").replace("/ (2 * h)", "/ h")),
    # the library's backward passes (with its forward passes' caches) instead of the student's
    "train_step_library": ("train_step", '''
def train_step(params, x, y, lr):
    scores, (z1, a1, p1, f) = forward(params, x)
    loss, dscores = softmax_cross_entropy(scores, y)
    _, fc_cache = cnp.linear_forward(f, params["w2"], params["b2"])
    df, dw2, db2 = cnp.linear_backward(dscores, fc_cache)
    _, pool_cache = cnp.maxpool2d_forward(a1, kernel_size=2)
    da1 = cnp.maxpool2d_backward(df.reshape(p1.shape), pool_cache)
    dz1 = cnp.relu_backward(da1, cnp.relu_forward(z1)[1])
    _, conv_cache = cnp.conv2d_forward(x, params["w1"], params["b1"], padding=1)
    _, dw1, db1 = cnp.conv2d_backward(dz1, conv_cache)
    for name, grad in (("w1", dw1), ("b1", db1), ("w2", dw2), ("b2", db2)):
        params[name] -= lr * grad
    return loss
'''),
}

# --------------------------------------------------------------------------- broken code
NUMGRAD_NO_DOUT_ARG = '''
def numerical_gradient(f, x):
    return np.zeros_like(x)
'''
NUMGRAD_NAN = NUMGRAD.replace("    return grad\n", "    grad[...] = np.nan\n    return grad\n")
AVGPOOL_DOUT_SHAPE = AVGPOOL.replace("return dxp[:, :, p:p + H, p:p + W]", "return dout / (k * k)")
AVGPOOL_MISSING = "# avgpool2d_backward: not done yet\n"

# Two functions that training does not use, broken in several ways (missing, a wrong
# signature, a hang, NaN, a crash, a wrong shape): each costs its own points only.
BROKEN = {
    "missing_and_signature": {"avgpool2d_backward": AVGPOOL_MISSING,
                              "numerical_gradient": NUMGRAD_NO_DOUT_ARG},
    "hang_and_nan": {"avgpool2d_backward": HANG.format(name="avgpool2d_backward"),
                     "numerical_gradient": NUMGRAD_NAN},
    "crash_and_shape": {"avgpool2d_backward": AVGPOOL_DOUT_SHAPE,
                        "numerical_gradient": SEGFAULT.format(name="numerical_gradient")},
}

# A student who loops over every image, filter and output position: the slowest honest
# style, used to measure how long the training cell takes with loops.
LOOP_CONV = '''
def conv2d_backward(dout, x, w, stride=1, padding=0):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    p = padding
    xp = np.zeros((N, C, H + 2 * p, W + 2 * p))
    xp[:, :, p:p + H, p:p + W] = x
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    db = np.zeros(F)
    for n in range(N):
        for f in range(F):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    r, c = i * stride, j * stride
                    dxp[n, :, r:r + KH, c:c + KW] += w[f] * dout[n, f, i, j]
                    dw[f] += xp[n, :, r:r + KH, c:c + KW] * dout[n, f, i, j]
                    db[f] += dout[n, f, i, j]
    return dxp[:, :, p:p + H, p:p + W], dw, db
'''
LOOP_MAXPOOL = MISTAKES["pool_overwrite"][1].replace(
    "dxp[n, c, i * s + a, j * s + b] = dout[n, c, i, j]",
    "dxp[n, c, i * s + a, j * s + b] += dout[n, c, i, j]")
LOOPS = {"conv2d_backward": LOOP_CONV, "maxpool2d_backward": LOOP_MAXPOOL}

COMPLETE = {"relu_backward": RELU, "linear_backward": LINEAR, "softmax_cross_entropy": SCE,
            "numerical_gradient": NUMGRAD, "conv2d_backward": CONV,
            "maxpool2d_backward": MAXPOOL, "avgpool2d_backward": AVGPOOL,
            "train_step": TRAIN_STEP}


def fill(functions=None, task=None, answer=None, *, release=RELEASE):
    """A submission: the released notebook with solution cells replaced by student code.

    ``functions`` maps a solution cell's grade_id (``relu_backward``, ..., ``train_step``,
    ``task_training_code``) to the code that replaces its stub.
    """
    functions = dict(functions or {})
    if task:
        functions["task_training_code"] = task
    return _fill(functions, answer=answer, release=release)


def complete():
    return fill(COMPLETE, task=TASK, answer=ANSWER)


def partial():
    return fill({k: COMPLETE[k] for k in ("relu_backward", "linear_backward",
                                          "softmax_cross_entropy", "numerical_gradient")})


def with_mistake(name):
    func, code = MISTAKES[name]
    return fill({**COMPLETE, func: code}, task=TASK, answer=ANSWER)


def loops():
    """The complete student with loop backward passes for convolution and max pooling."""
    return fill({**COMPLETE, **LOOPS}, task=TASK, answer=ANSWER)


def broken(name):
    return fill({**COMPLETE, **BROKEN[name]}, task=TASK)


def samples():
    """{student: notebook} of examples/submissions/ for this assignment."""
    out = {"alice_complete": complete(), "bob_partial": partial()}
    out.update({f"a3_{name}": with_mistake(name) for name in MISTAKES})
    return out


def write(nb, target, student):
    path = Path(target) / student / ASSIGNMENT / NOTEBOOK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1) + "\n")
    return path


def write_examples(target=ROOT / "examples" / "submissions"):
    """Regenerate this assignment's samples in examples/submissions from the release."""
    for student, nb in samples().items():
        write(nb, target, student)


def without_cells(nb, grade_ids):
    nb = copy.deepcopy(nb)
    nb["cells"] = [c for c in nb["cells"]
                   if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in grade_ids]
    return nb


if __name__ == "__main__":
    write_examples()
