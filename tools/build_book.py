"""Build the executed book into ``_build/html``; used by ``make book`` and the tests.

The build fails on any notebook execution error or Sphinx warning. MathJax is copied
from the installed ``jupyter_server_mathjax`` package into ``_mathjax/mathjax`` so the
built pages render math without a network connection.

Usage: ``python tools/build_book.py [--if-stale] [--force]``
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
STAMP = HTML / ".build-ok"
SOURCES = ("book", "cnnlib", "_static/custom.css", "_toc.yml", "_config.yml", "intro.md",
           "references.bib", "tools/book_ext.py")


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and f.suffix not in {".pyc"}:
                newest = max(newest, f.stat().st_mtime)
    return newest


def is_stale() -> bool:
    """True when the book was never built or a source changed since the last good build."""
    return not STAMP.exists() or STAMP.stat().st_mtime < _newest_source_mtime()


def install_mathjax() -> None:
    import jupyter_server_mathjax

    src = Path(jupyter_server_mathjax.__file__).parent / "static"
    # Not under _static: jupyter-book would add every .js file there to every page.
    dst = ROOT / "_mathjax" / "mathjax"
    if not (dst / "MathJax.js").exists():
        shutil.copytree(src, dst, dirs_exist_ok=True)


# How a chapter loads the course's pre-trained small ResNet.
_USES_PRETRAINED = re.compile(r"""load_pretrained\(\s*["']small_resnet["']"""
                              r"|small_resnet\([^)]*weights=[\"']DEFAULT"
                              r"|ensure_pretrained\(\s*\)")
# How a chapter asks for a named pre-trained network: ensure_pretrained("small_resnet_shapes").
_NAMED_PRETRAINED = re.compile(r"""ensure_pretrained\(\s*["'](\w+)["']""")


def pretrained_used() -> list[str]:
    """The course's pre-trained networks that some chapter loads (the build trains them once)."""
    names: set[str] = set()
    for page in (ROOT / "book").rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        if _USES_PRETRAINED.search(text):
            names.add("small_resnet")
        names.update(_NAMED_PRETRAINED.findall(text))
    return sorted(names)


def chapters_use_pretrained() -> bool:
    """Whether a chapter loads one of the course's pre-trained networks."""
    return bool(pretrained_used())


def build(force: bool = False) -> float:
    """Build the book; return the seconds it took. Raises CalledProcessError on failure."""
    install_mathjax()
    # The course's pre-trained networks live in the user's cache, never in git; train
    # each one a chapter loads once, so that the chapters work offline. The digits network
    # is trained in any case: a5-transfer's grading loads it from the same cache.
    from cnnlib.torch.pretrain import ensure_pretrained

    for name in sorted({"small_resnet", *pretrained_used()}):
        ensure_pretrained(name)
    start = time.perf_counter()
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT),
           "--warningiserror", "--keep-going"]
    # Sphinx rewrites only pages whose source changed; a change to the book's own
    # extension affects every page, so it rebuilds them all.
    extension = ROOT / "tools" / "book_ext.py"
    if force or (STAMP.exists() and extension.stat().st_mtime > STAMP.stat().st_mtime):
        cmd.append("--all")
    STAMP.unlink(missing_ok=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    STAMP.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--if-stale", action="store_true", help="build only when a source changed")
    parser.add_argument("--force", action="store_true", help="rebuild every page")
    args = parser.parse_args(argv)
    if args.if_stale and not is_stale():
        print(f"book is up to date: {HTML / 'index.html'}")
        return 0
    try:
        seconds = build(force=args.force)
    except subprocess.CalledProcessError as err:
        print(f"book build failed (exit {err.returncode})", file=sys.stderr)
        return 1
    print(f"book built in {seconds:.0f} s: open {HTML / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
