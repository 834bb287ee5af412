"""Build the student-facing bundle and prove it holds no solution or hidden test (`make publish`).

The bundle, in ``_build/publish/`` by default, is everything students and readers get:

- ``book/``: the built book (``_build/html``, built first when a source changed);
- ``assignments/<name>/*.ipynb``: the released notebooks from ``assignments/``;
- ``wheels/cnnlib-<version>-py3-none-any.whl``: the course library, built offline.

Then every file of the bundle, and every file inside the wheel, is scanned. The bundle is
refused (exit 1, each problem named) when anything holds an nbgrader solution or
hidden-tests marker, a line of a hidden-test region of a notebook in ``solutions/``, a
line of a solution region in a released notebook (two consecutive lines elsewhere: see
:class:`Secrets`), or a ``solutions`` folder.

Usage: ``python tools/publish.py [--dest DIR] [--check-only]``
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_book  # noqa: E402
from grade_samples import HIDDEN, SOLUTION  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "_build" / "publish"
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
# What the wheel is built from: the package and the files its metadata names.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "cnnlib")


def build_wheel(dest: Path) -> Path:
    """Build the ``cnnlib`` wheel into ``dest`` without the network; return its path.

    The build runs in a scratch copy of the package, so no ``build/`` or ``egg-info``
    folder appears in the repository and nothing outside ``cnnlib`` can slip in. It uses
    the environment's setuptools (no build isolation, no index), so it works offline.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in WHEEL_SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.pyc", "*.egg-info"))
            else:
                shutil.copy2(path, src / name)
        out = Path(tmp) / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                        "--no-build-isolation", "--no-index", "--wheel-dir", str(out),
                        str(src)], check=True)
        (wheel,) = out.glob("cnnlib-*.whl")
        target = dest / wheel.name
        shutil.copy2(wheel, target)
    return target


def build_bundle(dest: Path = DEST, *, html_dir: Path | None = None,
                 wheel: Path | None = None) -> Path:
    """Assemble the bundle in ``dest`` (emptied first) from a built book and the release."""
    html_dir = html_dir or build_book.HTML
    if not (html_dir / "index.html").exists():
        raise FileNotFoundError(f"no built book in {html_dir}: run `make book` first")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(html_dir, dest / "book", ignore=shutil.ignore_patterns(".*"))
    for nb in sorted((ROOT / "assignments").glob("*/*.ipynb")):
        target = dest / "assignments" / nb.parent.name / nb.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb, target)
    if wheel is None:
        build_wheel(dest / "wheels")
    else:
        (dest / "wheels").mkdir()
        shutil.copy2(wheel, dest / "wheels" / wheel.name)
    return dest


# ----------------------------------------------------------------------------- the proof


MIN_LINE = 13  # shorter lines (``return out``, ``else:``) say nothing about a solution


@dataclass
class Secrets:
    """What must not be published, from the notebooks of ``solutions/``.

    ``hidden``: every non-trivial line of a hidden-test region (seeds, configurations).
    ``solution``: every non-trivial line of a solution region. ``solution_pairs``: every
    two consecutive such lines. A released notebook may hold no line of a solution; the
    book and the library, which legitimately share one-liners such as ``h, w =
    x.shape[-2:]`` or ``ax.axis("off")`` with a solution, may hold no two consecutive ones.
    """

    hidden: set[str] = field(default_factory=set)
    solution: set[str] = field(default_factory=set)
    solution_pairs: set[tuple[str, str]] = field(default_factory=set)


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if len(ln.strip()) >= MIN_LINE]


def collect_secrets(root: Path = ROOT) -> Secrets:
    """The secrets of every notebook in ``solutions/``. A solution line that some notebook
    also gives the students outside its solution and hidden regions (a plotting line such
    as ``ax.axis("off")``) is public already, and is not looked for on its own."""
    secrets = Secrets()
    public = set()
    for nb in sorted((root / "solutions").glob("*/*.ipynb")):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            src = "".join(cell["source"])
            for region in HIDDEN.findall(src):
                secrets.hidden.update(_lines(region))
            for region in SOLUTION.findall(src):
                lines = _lines(region)
                secrets.solution.update(lines)
                secrets.solution_pairs.update(zip(lines, lines[1:]))
            public.update(_lines(SOLUTION.sub("", HIDDEN.sub("", src))))
    secrets.solution -= public
    return secrets


def readable_text(name: str, data: bytes) -> str | None:
    """What a reader sees in a file: notebook sources and outputs, page text; None if binary."""
    if b"\0" in data[:8192]:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if name.endswith(".ipynb"):
        try:
            nb = json.loads(text)
        except json.JSONDecodeError:
            return text
        parts = []
        for cell in nb.get("cells", []):
            parts.append("".join(cell.get("source", [])))
            for out in cell.get("outputs", []):
                parts.append("".join(out.get("text", [])))
                for value in (out.get("data") or {}).values():
                    parts.append("".join(value) if isinstance(value, list) else str(value))
        return text + "\n" + "\n".join(parts)
    if name.endswith((".html", ".htm", ".xml", ".svg")):
        # Highlighted code is cut into spans; a line is found again once tags are gone.
        return text + "\n" + html.unescape(re.sub(r"<[^>]+>", "", text))
    return text


def scan_file(name: str, data: bytes, secrets: Secrets, *, released: bool = False) -> list[str]:
    """Problems in one file; ``released``: a student notebook, where no solution line may be."""
    problems = []
    if "solutions" in Path(name.replace("!", "/")).parts:
        problems.append(f"{name}: a solutions folder")
    text = readable_text(name, data)
    if text is None:
        return problems
    problems += [f"{name}: the marker {m!r}" for m in MARKERS if m in text]
    problems += [f"{name}: a line of a hidden test: {s!r}" for s in sorted(secrets.hidden)
                 if s in text]
    if released:
        problems += [f"{name}: a line of a solution: {s!r}" for s in sorted(secrets.solution)
                     if s in text]
    else:
        lines = _lines(text)
        found = secrets.solution_pairs & set(zip(lines, lines[1:]))
        problems += [f"{name}: two lines of a solution: {a!r} / {b!r}"
                     for a, b in sorted(found)]
    return problems


def scan_bundle(dest: Path = DEST, secrets: Secrets | None = None) -> list[str]:
    """Every problem found in the bundle: its files, and the files inside each wheel."""
    secrets = collect_secrets() if secrets is None else secrets
    problems = []
    for path in sorted(dest.rglob("*")):
        rel = path.relative_to(dest).as_posix()
        if path.is_dir():
            if path.name == "solutions":
                problems.append(f"{rel}: a solutions folder")
            continue
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                for member in wheel.namelist():
                    problems += scan_file(f"{rel}!{member}", wheel.read(member), secrets)
            continue
        released = rel.startswith("assignments/") and path.suffix == ".ipynb"
        problems += scan_file(rel, path.read_bytes(), secrets, released=released)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEST, help="bundle folder")
    parser.add_argument("--check-only", action="store_true",
                        help="scan an existing bundle without rebuilding it")
    args = parser.parse_args(argv)
    if not args.check_only:
        if build_book.is_stale():
            try:
                build_book.build()
            except subprocess.CalledProcessError as err:
                print(f"book build failed (exit {err.returncode})", file=sys.stderr)
                return 1
        build_bundle(args.dest)
    problems = scan_bundle(args.dest)
    if problems:
        print(f"the bundle in {args.dest} is NOT publishable:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    files = sum(1 for p in args.dest.rglob("*") if p.is_file())
    print(f"bundle ready in {args.dest}: {files} files, no solution or hidden-test code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
