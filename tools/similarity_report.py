"""Similarity report of an assignment's submissions, for the instructor (changes no grade).

Reads every ``submitted/<student>/<assignment>/*.ipynb`` of the course directory (the
current directory, or ``--course``), compares each graded function of every pair of
students, and each student's with the source of ``cnnlib.numpy`` and with the instructor's
notebook in ``solutions/<assignment>/``; the released starter code in
``assignments/<assignment>/`` is shared by everyone and subtracted first. Prints the pairs
at or above the threshold, most similar first, and writes them to ``similarity.csv`` next
to ``grades.csv``. How code is normalised and scored: ``cnnlib/grading/similarity.py``.

Usage::

    python tools/similarity_report.py a1-convolution [--submitted-dir submitted]
        [--threshold 0.9] [--course .] [--min-size 20] [--literals] [--csv similarity.csv]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cnnlib.grading import similarity as sim  # noqa: E402  (after the path fix above)


def _notebooks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if p.is_file())


def report(course, assignment, *, submitted_dir="submitted", release_dir="assignments",
           source_dir="solutions", threshold=0.9, min_size=sim.MIN_SIZE, literals=False,
           library=True):
    """Compare a class's submissions; return a dict with the matches and what was skipped.

    Each notebook file name is compared on its own (``convolution.ipynb`` with
    ``convolution.ipynb``), as units are named by the release's solution cells.
    """
    course = Path(course)
    start = time.perf_counter()
    releases = _notebooks(course / release_dir / assignment)
    if not releases:
        raise FileNotFoundError(f"no released notebook in {course / release_dir / assignment}")
    skipped, matches, students = [], [], set()
    lib = sim.library_units() if library else None
    for release in releases:
        rel_nb = sim.load_notebook(release)
        units = sim.graded_units(rel_nb)
        stubs = sim.stub_prints(rel_nb, units, literals=literals)
        subs = []
        for student_dir in sorted(p for p in (course / submitted_dir).glob("*") if p.is_dir()):
            path = student_dir / assignment / release.name
            if not path.is_file():
                skipped.append(f"{student_dir.name}: {assignment}/{release.name} is missing")
                continue
            try:
                nb = sim.load_notebook(path)
            except ValueError as exc:
                skipped.append(f"{student_dir.name}: {exc}")
                continue
            sub = sim.submission(student_dir.name, nb, units, stubs, literals=literals)
            skipped += [f"{student_dir.name}: {release.name} cell {p}" for p in sub.problems]
            subs.append(sub)
            students.add(student_dir.name)
        sols = []
        source = course / source_dir / assignment / release.name
        if source.is_file():
            sols.append(sim.submission(f"[solution] {release.name}", sim.load_notebook(source),
                                       units, stubs, literals=literals))
        matches += sim.compare(subs, library=lib, solutions=sols, threshold=threshold,
                               min_size=min_size, literals=literals)
    matches.sort(key=lambda m: (-m.similarity, m.unit, m.student, m.other))
    return {"matches": matches, "skipped": skipped, "students": sorted(students),
            "seconds": time.perf_counter() - start}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment")
    parser.add_argument("--course", default=".", help="course directory (default: .)")
    parser.add_argument("--submitted-dir", default="submitted")
    parser.add_argument("--release-dir", default="assignments")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="report pairs at or above this similarity, 0 to 1 (default 0.9)")
    parser.add_argument("--min-size", type=int, default=sim.MIN_SIZE,
                        help="skip functions with fewer token windows than this")
    parser.add_argument("--literals", action="store_true",
                        help="also treat every number and string as the same token")
    parser.add_argument("--top", type=int, default=None,
                        help="print only the N most similar pairs (the CSV holds them all)")
    parser.add_argument("--csv", default=None, help="output file (default: similarity.csv "
                        "in the course directory, next to grades.csv)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1, got {args.threshold}")
    course = Path(args.course)
    try:
        result = report(course, args.assignment, submitted_dir=args.submitted_dir,
                        release_dir=args.release_dir, threshold=args.threshold,
                        min_size=args.min_size, literals=args.literals)
    except (FileNotFoundError, ValueError) as exc:  # no release, or an unreadable one
        parser.error(str(exc))
    csv_path = sim.write_csv(Path(args.csv) if args.csv else course / "similarity.csv",
                             args.assignment, result["matches"])
    print(f"similarity report for {args.assignment}: {len(result['students'])} students, "
          f"threshold {args.threshold:g}, {result['seconds']:.1f} s")
    shown = result["matches"][:args.top] if args.top is not None else result["matches"]
    print(sim.format_table(shown))
    if len(shown) < len(result["matches"]):
        print(f"... and {len(result['matches']) - len(shown)} more pairs in {csv_path.name}")
    for message in result["skipped"]:
        print(f"not compared: {message}")
    print(f"{len(result['matches'])} pairs written to {csv_path}; a pair is a reason to read "
          "both notebooks, not a verdict, and no grade was changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
