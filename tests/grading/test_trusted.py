"""Trusted grading under attack: the adversarial corpus of ``adversaries.py``, graded by the
plain ``nbgrader autograde`` in one class with honest students before and after.

Each attack earns 0 for the functions it touches and gains nothing elsewhere; honest
students keep full marks; no hidden-check text reaches any feedback, autograded notebook
or export; the course directory and the library are unchanged apart from the run's own
writes; no process a submission started outlives grading.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import adversaries as A
import pytest
from course_tools import load_tool
from system_tools import require_sandbox

from cnnlib.grading import jail, trusted

pytestmark = pytest.mark.slow
grade_samples = load_tool("grade_samples")
FUNCS = {"conv_output_size": 4, "pad2d": 5, "correlate2d": 5, "conv2d": 7}
HONEST = ("aa_honest_first", "alice_complete", "solution", "mover", "rewriter",
          "atk_reader", "atk_vandal", "crasher", "zz_honest_last")


def by_function(row):
    return {f: sum(v for k, v in row.items() if k.startswith(f"test_{f}_")
                   and not k.endswith(":to-grade")) for f in FUNCS}


def notebook(graded, folder, student):
    path = graded["course"] / folder / student / "a1-convolution" / "convolution.ipynb"
    return json.loads(path.read_text())


def all_text(nb, sources=True):
    """Sources (optionally) and outputs of a notebook, as one string."""
    parts = []
    for cell in nb["cells"]:
        if sources:
            parts.append("".join(cell["source"]) if isinstance(cell["source"], list)
                         else cell["source"])
        for out in cell.get("outputs", []):
            parts.append(json.dumps(out))
            text = out.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
            parts.append(str(out.get("evalue", "")))
    return "\n".join(parts)


def hidden_markers(graded):
    snippets = grade_samples.hidden_snippets(graded["course"], "a1-convolution")
    seeds = set()
    for s in snippets:
        seeds.update(re.findall(r"seed=\d+", s))
    assert snippets and seeds
    return snippets, seeds


@pytest.fixture(autouse=True)
def _sandbox_only():
    """The adversarial class is graded only in the sandbox: without it, these skip."""
    require_sandbox("the adversarial class, graded only in the sandbox")


def test_bubblewrap_is_used():
    # Without bubblewrap the course cannot grade untrusted work; under CI=true the fixture
    # above fails instead of skipping.
    assert jail.bwrap_works()


@pytest.mark.parametrize("student", HONEST)
def test_honest_students_keep_full_marks(graded, student):
    assert by_function(graded["scores"][student]) == FUNCS, student


@pytest.mark.parametrize("student", [s for s, e in A.EXPECTED.items() if e is not None])
def test_each_attack_earns_nothing_for_what_it_touches(graded, student):
    assert by_function(graded["scores"][student]) == A.EXPECTED[student]


def test_deny_list_evasions_are_named(graded):
    nb = notebook(graded, "autograded", "atk_evader")
    text = all_text(nb, sources=False)
    assert "STR-RAN-UNWATCHED" not in text  # a student exception's __str__ never runs
    assert "raised Sneaky" in text
    assert "_thread.start_new_thread" in text  # a raw thread is caught
    assert "Unable to allocate" in text or "MemoryError" in text  # 3 GB is refused


def test_no_hidden_text_anywhere_a_student_or_export_can_see(graded):
    snippets, seeds = hidden_markers(graded)
    course = graded["course"]
    files = list(course.glob("autograded/*/a1-convolution/*.ipynb"))
    files += list(course.glob("feedback/*/a1-convolution/*.html"))
    files += [course / "grades.csv"]
    assert len(files) > 10
    for path in files:
        text = (all_text(json.loads(path.read_text())) if path.suffix == ".ipynb"
                else path.read_text(errors="replace"))
        text = text.replace("&quot;", '"').replace("&#39;", "'")
        text = re.sub(r"<[^>]+>", "", text)
        for s in snippets:
            assert s not in text, (path, s)
        for seed in seeds:
            assert seed not in text, (path, seed)


def test_the_reader_found_nothing_hidden(graded):
    snippets, seeds = hidden_markers(graded)
    nb = notebook(graded, "autograded", "atk_reader")
    text = all_text(nb)
    match = re.search(r"LOOT:([A-Za-z0-9+/=]+)", text)
    assert match, "the reader's cell did not run"
    loot = json.loads(base64.b64decode(match.group(1)))
    dumped = json.dumps(loot)
    for s in snippets:
        assert s not in dumped and json.dumps(s)[1:-1] not in dumped, s
    for seed in seeds:
        assert seed not in dumped, seed
    course = str(graded["course"])
    assert not any(k.startswith(course) and not v.startswith("denied") for k, v in loot.items()
                   if isinstance(v, str)), [k for k in loot if k.startswith(course)]


def test_the_vandal_changed_nothing_outside_its_sandbox(graded):
    changed = graded["changed"]
    assert changed == {"course": [], "library": [], "site-packages": [],
                       "ipython startup": []}, changed
    text = all_text(notebook(graded, "autograded", "atk_vandal"))
    results = re.search(r"\{'gradebook'.*?\}", text)
    assert results, "the vandal's cell did not run"
    results = eval(results.group(0))  # noqa: S307 - a dict printed by the test's own cell
    for what in ("gradebook", "config", "library", "startup"):
        assert results[what] != "done", (what, results)


def test_no_process_outlives_grading(graded):
    assert graded["processes_after"] == []


def test_every_notebook_has_a_status_and_bad_ones_are_flagged(graded):
    course = graded["course"]
    for student in HONEST + tuple(A.EXPECTED):
        status = trusted.read_status(course, "a1-convolution", student, "convolution")
        assert status and status["graded"] is True, (student, status)
    # the corrupt notebook never reached the grader: no status means not graded
    assert trusted.read_status(course, "a1-convolution", "corrupt", "convolution") is None


def test_output_is_bounded(graded):
    nb = notebook(graded, "autograded", "hostile")
    assert len(json.dumps(nb)) < 3_000_000
    feedback = graded["course"] / "feedback/hostile/a1-convolution/convolution.html"
    assert feedback.stat().st_size < 5_000_000


def test_regrading_is_idempotent(graded, tmp_path):
    """Grading the same notebook twice gives the same outputs and the same status."""
    course = Path(graded["course"])
    before = by_function(graded["scores"]["zz_honest_last"])
    grade_samples.run_nbgrader(course, "autograde", "a1-convolution", "--force",
                               "--student=zz_honest_last")
    after = by_function(grade_samples.scores(course, "a1-convolution")["zz_honest_last"])
    assert before == after == FUNCS
    status = trusted.read_status(course, "a1-convolution", "zz_honest_last", "convolution")
    assert status["graded"] is True


def test_a_kernel_crash_costs_only_that_cell(graded):
    # the kernel is restarted and the cells before are replayed: the functions still count
    nb = notebook(graded, "autograded", "crasher")
    (cell,) = [c for c in nb["cells"] if "ctypes.string_at(0)" in "".join(c["source"])]
    assert cell["outputs"][0]["ename"] == "KernelLost"
    status = trusted.read_status(graded["course"], "a1-convolution", "crasher", "convolution")
    assert status["graded"] is True and any("died" in n for n in status["notes"]), status


def test_a_forged_test_cell_never_runs_in_the_grader(graded):
    course = graded["course"]
    assert not (course / "PWNED").exists()
    assert "atk_forged_test" in graded["problems"]
    assert trusted.read_status(course, "a1-convolution", "atk_forged_test",
                               "convolution") is None
