"""Tests of the built book (_build/html): execution, figures, math, links, speed, secrecy.

Also: every page in headless Chromium (no console error, every formula typeset, every
image loaded; ``book_browser.py``), links to chapters that read "Chapter N: Title",
assignments that exist or are planned, the notebook download of each executed page, and
an API reference that documents every public name of ``cnnlib``.

All tests use the session fixture ``built_book``, which builds the book when it is stale
(a few minutes), so they are marked slow.
"""

from __future__ import annotations

import json
import re
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
    # a2-pooling's own names (chapter 4 writes the textbook sigmoid, whose overflow the
    # assignment asks students to avoid, so "def sigmoid(" is not listed)
    "def maxpool2d(", "def avgpool2d(", "def global_avgpool(", "def global_maxpool(",
    "def gem_pool(", "def relu(", "def leaky_relu(", "def elu(", "def softmax(",
    "def flatten(", "def linear(",
    # a3-backprop's own names (the library's numerical_gradient is the graded one with h
    # keyword-only, so no page prints its body either)
    "def relu_backward", "def linear_backward", "def softmax_cross_entropy",
    "def numerical_gradient", "def train_step",
    # a5-transfer (the library's replace_head and param_groups have other signatures)
    "def freeze_backbone", "def replace_head(model, num_classes)",
    "def param_groups(model, base_lr, head_lr)",
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
    from book_browser import caption_problems

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
                continue
            # An alt text cut by a line break in the source spills into the caption.
            caption = (fig.find("figcaption").find(class_="caption-text")
                       or fig.find("figcaption"))
            first = next((c for c in caption.children if str(c).strip()), None)
            code_first = getattr(first, "name", None) == "code" or (
                getattr(first, "find", None) is not None and first.find("code") is not None)
            problems += [f"{doc}: {problem}" for problem in caption_problems(
                fig.find("img").get("alt", ""), caption.get_text(), code_first=code_first)]
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


def browser_pages(html: Path) -> list[str]:
    """Every page a reader can open: the toc's pages and Sphinx's index and search pages."""
    pages = [f"{doc}.html" for doc in toc_files()]
    pages += [name for name in ("genindex.html", "py-modindex.html", "search.html")
              if (html / name).exists()]
    return pages


def test_every_page_renders_in_a_headless_browser(built_book, chromium):
    # One browser for all pages, served over loopback HTTP as a reader's browser gets them.
    from book_browser import caption_problems, inspect_pages

    pages = browser_pages(built_book)
    reports = inspect_pages(chromium, built_book, pages)
    problems = []
    for report in reports:
        problems += [f"{report.path}: {error}" for error in report.errors]
        if report.math_errors:
            problems.append(f"{report.path}: MathJax reported {report.math_errors} error(s)")
        if report.typeset < report.math:
            problems.append(f"{report.path}: {report.math - report.typeset} of {report.math} "
                            f"formulas not typeset, e.g. {report.untypeset}")
        problems += [f"{report.path}: image {src} did not load" for src in report.broken_images]
        for figure in report.figures:
            problems += [f"{report.path}: {problem}" for problem in caption_problems(
                figure["alt"], figure["caption"], code_first=figure["code_first"])]
    by_path = {r.path: r for r in reports}
    # The checks must have had something to check: formulas where the HTML has them, and
    # the figures each chapter declares.
    for doc in pages_with_math(built_book):
        if by_path[f"{doc}.html"].math == 0:
            problems.append(f"{doc}: the browser found none of the page's formulas")
    for doc in toc_files():
        if is_notebook(doc) and by_path[f"{doc}.html"].images < expected_figures(doc):
            problems.append(f"{doc}: {expected_figures(doc)} figures declared, "
                            f"{by_path[f'{doc}.html'].images} images in the browser")
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


# ----------------------------------------------------------------------------- chapters


def numbered_chapters() -> list[str]:
    """The chapters of the toc's numbered parts, in order: chapter N is the N-th."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [entry["file"] for part in toc.get("parts", []) if part.get("numbered")
            for entry in part.get("chapters", [])]


def chapter_title(html: Path, doc: str) -> str:
    """The chapter's title as its page shows it, without the number Sphinx puts in front."""
    h1 = main_content(page(html, doc)).find("h1")
    for extra in h1.select(".section-number, .headerlink"):
        extra.decompose()
    return " ".join(h1.get_text().split())


def test_links_to_a_chapter_show_its_number_and_title(built_book):
    chapters = numbered_chapters()
    assert chapters, "no numbered part in _toc.yml"
    wanted = {(built_book / f"{doc}.html").resolve():
              f"Chapter {n}: {chapter_title(built_book, doc)}"
              for n, doc in enumerate(chapters, start=1)}
    checked, problems = 0, []
    for doc in toc_files():
        for a in main_content(page(built_book, doc)).select("a.reference.internal"):
            role = a.find("span", class_=["std-ref", "std-numref", "doc"])
            href = urlparse(a.get("href", ""))
            if role is None or not href.path:
                continue
            target = ((built_book / doc).parent / unquote(href.path)).resolve()
            if target not in wanted:
                continue
            if href.fragment:  # a section inside the chapter is not a link to the chapter
                section = BeautifulSoup(target.read_text(encoding="utf-8"), "html.parser")
                anchor = section.find(id=href.fragment)
                # The chapter's own target: its h1, the section holding it, or the empty
                # span a label puts right before it.
                heads = anchor is not None and (
                    anchor.name == "h1" or anchor.find("h1", recursive=False) is not None
                    or getattr(anchor.find_next_sibling(), "name", None) == "h1")
                if not heads:
                    continue
            checked += 1
            text = " ".join(a.get_text().split())
            if text != wanted[target]:
                problems.append(f"{doc}: a link to {target.name} reads {text!r}, "
                                f"not {wanted[target]!r} (use {{numref}})")
    assert checked, "no page links to a chapter"
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- assignments

ASSIGNMENT = re.compile(r"\ba[1-9]-[a-z]+(?:-[a-z]+)*\b")
GUIDE_ROW = re.compile(r"^\|\s*`(a[1-9]-[a-z-]+)`\s*\|.*\|\s*(planned|\d+)\s*\|\s*$", re.M)


def guide_assignments() -> dict[str, str]:
    """{name: points or "planned"} from the table of the students' guide."""
    return dict(GUIDE_ROW.findall((ROOT / "book" / "guides" / "students.md").read_text()))


def released_points() -> dict[str, float]:
    """{name: total points} of each released assignment, from its notebooks' nbgrader cells."""
    out = {}
    for folder in sorted((ROOT / "assignments").iterdir()):
        if folder.is_dir():
            out[folder.name] = sum(
                cell["metadata"].get("nbgrader", {}).get("points", 0) or 0
                for nb in folder.glob("*.ipynb")
                for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"])
    return out


def test_the_students_guide_lists_every_assignment_with_its_points():
    listed, released = guide_assignments(), released_points()
    assert released, "no released assignment in assignments/"
    problems = []
    for name, points in released.items():
        if name not in listed:
            problems.append(f"{name} is released but not listed in the students' guide")
        elif listed[name] == "planned" or float(listed[name]) != points:
            problems.append(f"{name}: the guide says {listed[name]}, the notebook is worth "
                            f"{points:g} points")
    problems += [f"{name} is listed with points but not released"
                 for name, status in listed.items()
                 if status != "planned" and name not in released]
    assert not problems, "\n".join(problems)


def test_every_assignment_the_book_names_is_released_or_planned(built_book):
    listed, released = guide_assignments(), released_points()
    known = set(released) | {name for name, status in listed.items() if status == "planned"}
    named, unknown = set(), []
    for doc in toc_files():
        found = set(ASSIGNMENT.findall(main_content(page(built_book, doc)).get_text()))
        named |= found
        unknown += [f"{doc}: {name}" for name in sorted(found - known)]
    assert named, "the book names no assignment"
    assert not unknown, ("assignments named in the book that are neither in assignments/ "
                         "nor planned in the students' guide:\n" + "\n".join(unknown))


# ----------------------------------------------------------------------------- downloads


def test_every_executed_page_offers_its_notebook(built_book, notebook_docs):
    problems = []
    for doc in notebook_docs:
        links = [a["href"] for a in page(built_book, doc).select("a[href$='.ipynb']")]
        if not links:
            problems.append(f"{doc}: no .ipynb in the download menu")
            continue
        path = (built_book / doc).parent / unquote(urlparse(links[0]).path)
        if not path.is_file():
            problems.append(f"{doc}: the download {links[0]} is missing from the build")
            continue
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if not any(c.get("outputs") for c in code):
            problems.append(f"{doc}: the downloadable notebook was not executed")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- API


API_MODULES = ["cnnlib.numpy", "cnnlib.torch", "cnnlib.torch.models", "cnnlib.torch.train",
               "cnnlib.torch.transfer", "cnnlib.torch.augment", "cnnlib.data", "cnnlib.viz",
               "cnnlib.grading", "cnnlib.checks", "cnnlib.torch.cli",
               "cnnlib.torch.quantize"]


def test_the_api_reference_documents_every_public_name(built_book):
    import importlib
    import inspect

    documented = set()
    for path in (built_book / "book" / "api").glob("*.html"):
        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        documented |= {dt["id"] for dt in soup.select("dt[id]")}
    assert "book/api/index" in toc_files(), "the API reference is not in _toc.yml"
    missing = []
    for name in API_MODULES:
        module = importlib.import_module(name)
        public = getattr(module, "__all__", None) or [n for n in dir(module)
                                                      if not n.startswith("_")]
        for attr in public:
            obj = getattr(module, attr)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("cnnlib"):
                continue
            if {f"{name}.{attr}", f"{obj.__module__}.{attr}"}.isdisjoint(documented):
                missing.append(f"{name}.{attr}")
    assert not missing, "public names missing from the API reference: " + ", ".join(missing)
