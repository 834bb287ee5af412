"""Tests of the built book (_build/html): execution, figures, math, links, speed, secrecy.

All tests use the session fixture ``built_book``, which builds the book when it is stale
(a few minutes), so they are marked slow.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import jupytext
import pytest
import yaml
from bs4 import BeautifulSoup

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "_build" / ".jupyter_cache"

MAX_SECONDS_PER_CHAPTER = 60

# Graded assignment functions: a page may explain them, never print their code.
GRADED_DEFINITIONS = [
    # a1-convolution
    "def conv_output_size", "def pad2d", "def correlate2d", "def conv2d(",
    # a2-pooling and a3-backprop
    "def maxpool2d_forward", "def maxpool2d_backward", "def avgpool2d_forward",
    "def avgpool2d_backward", "def conv2d_backward", "def pool2d_forward",
    "def pool2d_backward",
    # the library's multi-channel loop is the a1 solution in all but name
    "def conv2d_forward_naive", "def maxpool2d_forward_naive",
]


def toc_files() -> list[str]:
    """Every document listed in _toc.yml (root first), without extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def source_of(doc: str) -> Path:
    for suffix in (".md", ".ipynb"):
        path = ROOT / f"{doc}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"no source for {doc!r} listed in _toc.yml")


def is_notebook(doc: str) -> bool:
    """True for executed pages: .ipynb, or MyST Markdown with a kernelspec header."""
    path = source_of(doc)
    if path.suffix == ".ipynb":
        return True
    text = path.read_text()
    return text.startswith("---") and "kernelspec:" in text.split("\n---", 1)[0]


@pytest.fixture(scope="module")
def notebook_docs() -> list[str]:
    return [doc for doc in toc_files() if is_notebook(doc)]


def page(html: Path, doc: str) -> BeautifulSoup:
    return BeautifulSoup((html / f"{doc}.html").read_text(encoding="utf-8"), "html.parser")


def main_content(soup: BeautifulSoup):
    return soup.find("article") or soup.find("main") or soup


# ----------------------------------------------------------------------------- execution


def latest_cache_records():
    """The newest jupyter-cache record per source file, and the project records."""
    from jupyter_cache import get_cache

    cache = get_cache(str(CACHE))
    newest = {}
    for record in cache.list_cache_records():
        uri = str(Path(record.uri).resolve())
        if uri not in newest or record.created > newest[uri].created:
            newest[uri] = record
    projects = {str(Path(r.uri).resolve()): r for r in cache.list_project_records()}
    return cache, newest, projects


def test_every_toc_page_was_built(built_book):
    missing = [doc for doc in toc_files() if not (built_book / f"{doc}.html").exists()]
    assert not missing, f"pages listed in _toc.yml but not built: {missing}"


def test_every_chapter_executed_without_errors(built_book, notebook_docs):
    assert notebook_docs, "no executable chapters found in _toc.yml"
    cache, newest, projects = latest_cache_records()
    problems = []
    for doc in notebook_docs:
        uri = str(source_of(doc).resolve())
        project = projects.get(uri)
        if project is not None and project.traceback:
            problems.append(f"{doc}: execution failed:\n{project.traceback[-2000:]}")
            continue
        if uri not in newest:
            problems.append(f"{doc}: no executed notebook in the cache")
            continue
        nb = cache.get_cache_bundle(newest[uri].pk).nb
        for i, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []):
                if out.output_type == "error":
                    problems.append(f"{doc}, cell {i}: {out.ename}: {out.evalue}")
                elif out.output_type == "stream" and out.name == "stderr":
                    problems.append(f"{doc}, cell {i} wrote to stderr: {out.text[:300]!r}")
        soup = page(built_book, doc)
        if soup.select(".output.traceback, .output.error"):
            problems.append(f"{doc}: the page shows a traceback")
        code_cells = [c for c in jupytext.read(source_of(doc)).cells if c.cell_type == "code"]
        if code_cells and not soup.select(".cell_output"):
            problems.append(f"{doc}: {len(code_cells)} code cells but no outputs on the page")
    assert not problems, "\n".join(problems)


def execution_seconds(doc, newest) -> float:
    """From the jupyter-cache record of the build; measured with nbclient if absent."""
    record = newest.get(str(source_of(doc).resolve()))
    if record is not None and (record.data or {}).get("execution_seconds") is not None:
        return float(record.data["execution_seconds"])
    from nbclient import NotebookClient

    nb = jupytext.read(source_of(doc))
    start = time.perf_counter()
    NotebookClient(nb, timeout=4 * MAX_SECONDS_PER_CHAPTER, kernel_name="python3",
                   resources={"metadata": {"path": str(source_of(doc).parent)}}).execute()
    return time.perf_counter() - start


def test_each_chapter_executes_in_under_a_minute(built_book, notebook_docs):
    _, newest, _ = latest_cache_records()
    times = {doc: execution_seconds(doc, newest) for doc in notebook_docs}
    report = ", ".join(f"{Path(doc).name} {t:.1f} s" for doc, t in times.items())
    print(f"execution times: {report}")
    slow = {doc: t for doc, t in times.items() if t >= MAX_SECONDS_PER_CHAPTER}
    assert not slow, f"chapters over {MAX_SECONDS_PER_CHAPTER} s: {slow} (all: {report})"


# ----------------------------------------------------------------------------- figures


def expected_figures(doc: str) -> int:
    """Code cells that declare a figure (mystnb.figure metadata) or glue:figure directives."""
    path = source_of(doc)
    nb = jupytext.read(path)
    declared = sum(1 for c in nb.cells
                   if c.cell_type == "code" and "figure" in c.metadata.get("mystnb", {}))
    glued = len(re.findall(r"^[`:]{3,}\{glue:figure\}", path.read_text(), flags=re.M))
    return declared + glued


def test_pages_contain_their_figures_with_alt_text_and_captions(built_book, notebook_docs):
    problems = []
    for doc in notebook_docs:
        soup = main_content(page(built_book, doc))
        figures = [f for f in soup.find_all("figure") if f.find("img")]
        want = expected_figures(doc)
        if len(figures) < want:
            problems.append(f"{doc}: {want} figures declared, {len(figures)} on the page")
        for fig in figures:
            if not fig.find("figcaption") or not fig.find("figcaption").get_text(strip=True):
                problems.append(f"{doc}: a figure without a caption")
        for img in soup.find_all("img"):
            src = img.get("src", "")
            if not img.get("alt", "").strip():
                problems.append(f"{doc}: image {src} has no alt text")
            if not src.startswith("data:"):
                target = (built_book / doc).parent / unquote(urlparse(src).path)
                if not target.exists():
                    problems.append(f"{doc}: image {src} is missing from the build")
    assert not problems, "\n".join(problems)


def test_chapters_one_to_three_show_their_figures(built_book):
    # A floor that cannot be met by an empty placeholder page.
    for doc, minimum in (("book/part1/01-why-cnns", 4), ("book/part1/02-convolution", 5),
                         ("book/part1/03-padding-stride", 6)):
        soup = main_content(page(built_book, doc))
        figures = [f for f in soup.find_all("figure") if f.find("img")]
        assert len(figures) >= minimum, f"{doc}: only {len(figures)} figures"


# ----------------------------------------------------------------------------- math


def pages_with_math(html: Path) -> list[str]:
    docs = []
    for doc in toc_files():
        soup = main_content(page(html, doc))
        if soup.select(".math"):
            docs.append(doc)
    return docs


def test_math_renders_in_a_headless_browser(built_book, chromium):
    docs = pages_with_math(built_book)
    assert docs, "no page of the book contains math"
    # One representative page per part of the check: the chapter with most math first.
    docs.sort(key=lambda d: -len(main_content(page(built_book, d)).select(".math")))
    problems = []
    with tempfile.TemporaryDirectory() as profile:
        for doc in docs[:2]:
            n_math = len(main_content(page(built_book, doc)).select(".math"))
            url = (built_book / f"{doc}.html").resolve().as_uri()
            result = subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={profile}",
                 "--virtual-time-budget=20000", "--dump-dom", url],
                capture_output=True, text=True, timeout=180,
                env={**os.environ, "HOME": profile})
            dom = BeautifulSoup(result.stdout, "html.parser")
            # MathJax 2 puts one frame (class MathJax, MathJax_CHTML or MathJax_SVG,
            # depending on the output processor) per typeset formula; MathJax 3 an
            # mjx-container.
            rendered = dom.select(".MathJax, .MathJax_CHTML, .MathJax_SVG, mjx-container")
            if "Math Processing Error" in result.stdout or dom.select(".MathJax_Error"):
                problems.append(f"{doc}: MathJax reported an error")
            # Every math span of the page is typeset, not just some.
            if len(rendered) < n_math:
                problems.append(f"{doc}: {n_math} math elements but {len(rendered)} typeset "
                                f"by MathJax (stderr: {result.stderr[-500:]!r})")
    assert not problems, "\n".join(problems)


def test_mathjax_is_served_locally(built_book):
    soup = page(built_book, toc_files()[1])
    sources = [s.get("src", "") for s in soup.find_all("script")]
    mathjax = [s for s in sources if "MathJax" in s or "mathjax" in s]
    assert mathjax, "no MathJax script on the page"
    for src in mathjax:
        assert not urlparse(src).scheme, f"MathJax loaded from the network: {src}"


def test_pages_load_nothing_from_the_network(built_book):
    # The book is read offline: scripts, styles, fonts and images all come from the build.
    remote = []
    for doc in toc_files():
        soup = page(built_book, doc)
        for tag, attr in (("script", "src"), ("link", "href"), ("img", "src")):
            for el in soup.find_all(tag):
                url = el.get(attr, "")
                if tag == "link" and not {"stylesheet", "preload"} & set(el.get("rel", [])):
                    continue
                if urlparse(url).scheme in {"http", "https"} or url.startswith("//"):
                    remote.append(f"{doc}: <{tag} {attr}={url}>")
    assert not remote, "\n".join(remote)


# ----------------------------------------------------------------------------- links


def test_cross_references_resolve(built_book):
    problems = []
    for doc in toc_files():
        soup = main_content(page(built_book, doc))
        text = soup.get_text()
        for marker in ("{ref}", "{numref}", "{doc}", "{glue:", "{eq}"):
            if marker in text:
                problems.append(f"{doc}: unprocessed role {marker} in the text")
        for a in soup.select("a.reference.internal"):
            href = a.get("href", "")
            parsed = urlparse(href)
            target = (built_book / doc).parent / unquote(parsed.path) if parsed.path else \
                built_book / f"{doc}.html"
            if not target.exists():
                problems.append(f"{doc}: link {href} points to a missing page")
                continue
            if parsed.fragment:
                ids = BeautifulSoup(target.read_text(encoding="utf-8"), "html.parser")
                if ids.find(id=parsed.fragment) is None:
                    problems.append(f"{doc}: link {href} points to a missing anchor")
    assert not problems, "\n".join(problems)


def test_chapters_link_to_each_other(built_book):
    soup = main_content(page(built_book, "book/part1/02-convolution"))
    targets = {urlparse(a["href"]).path for a in soup.select("a.reference.internal")}
    assert "01-why-cnns.html" in targets and "03-padding-stride.html" in targets


# ----------------------------------------------------------------------------- secrecy


def test_no_page_contains_graded_assignment_code(built_book):
    hits = []
    for path in built_book.rglob("*"):
        if not path.is_file() or "_static" in path.parts:
            continue
        if path.suffix not in {".html", ".ipynb", ".md", ".txt", ".js", ".py"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += [f"{path.relative_to(built_book)}: {d!r}" for d in GRADED_DEFINITIONS
                 if d in text]
    assert not hits, "graded assignment code published in the book:\n" + "\n".join(hits)


def test_book_sources_do_not_include_graded_library_code():
    # literalinclude would copy library code into a page; the loop versions of graded
    # functions must not be included.
    pattern = re.compile(r":pyobject:\s*(\w+)")
    graded = {d.removeprefix("def ").rstrip("(") for d in GRADED_DEFINITIONS}
    offenders = []
    for path in (ROOT / "book").rglob("*.md"):
        offenders += [f"{path.name}: {name}" for name in pattern.findall(path.read_text())
                      if name in graded]
    assert not offenders, offenders
