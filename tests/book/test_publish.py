"""The student-facing bundle of ``make publish`` holds no solution and no hidden test.

``test_the_published_bundle_holds_no_solution_or_hidden_test`` assembles the real bundle
(the book the other book tests build, the released notebooks, a freshly built wheel) and
runs the proof on it. The other tests plant each kind of leak in a small bundle and check
that the proof names it, so the proof cannot pass by finding nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import publish  # noqa: E402


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return publish.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def secrets() -> publish.Secrets:
    found = publish.collect_secrets()
    assert found.hidden and found.solution and found.solution_pairs, \
        "no solution or hidden-test lines found in solutions/: the proof would be empty"
    return found


def small_bundle(root: Path, wheel: Path) -> Path:
    """A bundle with one page, the released notebooks and the wheel: clean by construction."""
    html = root / "html"
    html.mkdir()
    (html / "index.html").write_text("<html><body><p>A page.</p></body></html>")
    return publish.build_bundle(root / "bundle", html_dir=html, wheel=wheel)


def test_the_wheel_holds_the_library_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "cnnlib/numpy/conv.py" in names and "cnnlib/grading/harness.py" in names
    tops = {n.split("/")[0] for n in names}
    assert tops <= {"cnnlib", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}


def test_the_wheel_installs_offline(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", "--target", str(target), str(wheel)], check=True)
    assert (target / "cnnlib" / "numpy" / "conv.py").is_file()


def test_a_clean_bundle_passes(tmp_path, wheel, secrets):
    bundle = small_bundle(tmp_path, wheel)
    assert sorted(p.name for p in (bundle / "assignments").iterdir()) == sorted(
        p.name for p in (ROOT / "assignments").iterdir() if p.is_dir())
    assert publish.scan_bundle(bundle, secrets) == []


def test_the_proof_finds_a_hidden_test_line_in_a_page(tmp_path, wheel, secrets):
    bundle = small_bundle(tmp_path, wheel)
    line = sorted(secrets.hidden)[0]
    # As a highlighted code cell shows it: split into spans, quotes escaped.
    escaped = "".join(f"<span>{c}</span>" for c in
                      line.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;"))
    (bundle / "book" / "leak.html").write_text(f"<pre>{escaped}</pre>")
    problems = publish.scan_bundle(bundle, secrets)
    assert any(p.startswith("book/leak.html: a line of a hidden test") for p in problems)


def test_the_proof_finds_a_solution_line_in_a_released_notebook(tmp_path, wheel, secrets):
    bundle = small_bundle(tmp_path, wheel)
    nb_path = next((bundle / "assignments").glob("*/*.ipynb"))
    nb = json.loads(nb_path.read_text())
    nb["cells"][-1]["source"] = ["    " + sorted(secrets.solution)[0] + "\n"]
    nb_path.write_text(json.dumps(nb))
    problems = publish.scan_bundle(bundle, secrets)
    assert any("a line of a solution" in p for p in problems), problems


def test_the_proof_finds_solution_code_and_markers_in_the_wheel(tmp_path, wheel, secrets):
    a, b = sorted(secrets.solution_pairs)[0]
    leaky = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(leaky, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("cnnlib/leak.py", f"def f(x):\n    {a}\n    {b}\n")
        dst.writestr("cnnlib/marker.py", "### BEGIN SOLUTION\n")
        dst.writestr("solutions/a1-convolution/convolution.ipynb", "{}")
    bundle = small_bundle(tmp_path, leaky)
    problems = "\n".join(publish.scan_bundle(bundle, secrets))
    assert f"{leaky.name}!cnnlib/leak.py: two lines of a solution" in problems
    assert f"{leaky.name}!cnnlib/marker.py: the marker 'BEGIN SOLUTION'" in problems
    assert f"{leaky.name}!solutions/a1-convolution/convolution.ipynb: a solutions folder" \
        in problems


def test_the_proof_finds_a_solutions_folder_in_the_bundle(tmp_path, wheel, secrets):
    bundle = small_bundle(tmp_path, wheel)
    (bundle / "book" / "solutions").mkdir()
    assert "book/solutions: a solutions folder" in publish.scan_bundle(bundle, secrets)


@pytest.mark.slow
def test_the_published_bundle_holds_no_solution_or_hidden_test(built_book, wheel, secrets,
                                                               tmp_path):
    bundle = publish.build_bundle(tmp_path / "publish", html_dir=built_book, wheel=wheel)
    assert (bundle / "book" / "index.html").is_file()
    assert list((bundle / "assignments").glob("*/*.ipynb"))
    problems = publish.scan_bundle(bundle, secrets)
    assert not problems, "the student bundle leaks:\n" + "\n".join(problems[:40])
