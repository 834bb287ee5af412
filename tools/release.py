"""Regenerate assignments/ from solutions/ with nbgrader (`make release`).

``nbgrader generate_assignment`` runs in a scratch copy of the course directory (so the
repository's gradebook is never touched), then the released notebooks replace
``assignments/<name>/``. Before anything is written the release is scanned: it must hold
notebooks only, and no line of a solution region or a hidden-test region.

``--check`` regenerates into the scratch directory and compares with the committed
release instead of writing (the tests use it); it exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grade_samples import ROOT, hidden_snippets, make_course  # noqa: E402


def scan_release(course, name):
    """Problems with a generated release: non-notebook files, solution or hidden code."""
    out = []
    release = Path(course) / "assignments" / name
    for path in sorted(release.rglob("*")):
        if path.is_file() and path.suffix != ".ipynb":
            out.append(f"{path.relative_to(course)}: not a notebook")
    snippets = hidden_snippets(course, name, solutions=True)
    for nb in sorted(release.glob("*.ipynb")):
        text = nb.read_text(encoding="utf-8")
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS",
                       "END HIDDEN TESTS"):
            if marker in text:
                out.append(f"{nb.relative_to(course)}: contains the marker {marker}")
        source = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
        out += [f"{nb.relative_to(course)}: contains '{s}'" for s in snippets if s in source]
    return out


def differences(course, name):
    """Files that differ between the fresh release and the committed one."""
    fresh = Path(course) / "assignments" / name
    committed = ROOT / "assignments" / name
    names = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    names |= {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()}
    return sorted(str(n) for n in names
                  if not (fresh / n).is_file() or not (committed / n).is_file()
                  or (fresh / n).read_bytes() != (committed / n).read_bytes())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="assignments (default: all in solutions/)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed release instead of writing it")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    status = 0
    with tempfile.TemporaryDirectory(prefix="cnn-release-") as tmp:
        course = make_course(Path(tmp) / "course", names)
        for name in names:
            bad = scan_release(course, name)
            if bad:
                print(f"{name}: the release would leak:", *bad, sep="\n  ")
                status = 1
                continue
            if args.check:
                diff = differences(course, name)
                if diff:
                    print(f"{name}: assignments/ is out of date ({', '.join(diff)}); "
                          "run `make release`")
                    status = 1
                else:
                    print(f"{name}: assignments/ matches a fresh release")
                continue
            target = ROOT / "assignments" / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(Path(course) / "assignments" / name, target)
            print(f"{name}: released to {target.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
