"""Sphinx extension of the course book: notebooks to download, readable module docstrings.

Each executed page offers its notebook.

sphinx-book-theme's download menu lists ``.md`` and ``.pdf`` for a MyST-Markdown notebook,
and lists ``.ipynb`` only when the page context names one (it does so itself only when
launch buttons are switched on). This extension copies every executed notebook that
myst-nb wrote to ``_build/jupyter_execute`` into the HTML output's ``_sources`` folder and
names it in the page context, so the menu offers the executed ``.ipynb`` of every chapter,
with or without launch buttons, from the built files alone (it works offline).

The library's docstrings are written for ``help()``: a module docstring may have headed
sections ("Conventions", "API") of its own. On a page that documents several modules
those headings would become sections of the page, with clashing targets. Headings that
napoleon left alone are turned into rubrics, which look the same and create no target.

Two workarounds keep the browser console of every page clean: sphinx-thebe and
sphinx-togglebutton each add their inline configuration script twice under jupyter-book
(a second ``const THEBE_JS_URL`` is a SyntaxError), so repeated scripts are dropped; and
the theme's colour mode defaults to an empty string, which pydata-sphinx-theme reports as
an error, so it defaults to "auto" (what the theme falls back to anyway).
"""

from __future__ import annotations

import re
from pathlib import Path

EXECUTED = "jupyter_execute"  # myst-nb's output folder, beside the HTML output


def _with_cached_outputs(app, notebook: Path) -> str:
    """The notebook's text, with the outputs of its execution when jupyter-cache has them.

    In ``cache`` execution mode myst-nb writes the notebook to ``jupyter_execute`` without
    the outputs it rendered from the cache, so they are merged back in here.
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    cache_path = getattr(getattr(app.env, "mystnb_config", None), "execution_cache_path", "")
    if cache_path and Path(cache_path).is_dir():
        from jupyter_cache import get_cache

        try:
            _, nb = get_cache(cache_path).merge_match_into_notebook(nb)
        except KeyError:  # not in the cache: the notebook as myst-nb wrote it
            pass
    return nbformat.writes(nb)


def offer_executed_notebook(app, pagename, templatename, context, doctree):
    executed = Path(app.outdir).parent / EXECUTED / f"{pagename}.ipynb"
    if app.builder.format != "html" or not executed.is_file():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_with_cached_outputs(app, executed), encoding="utf-8")
    context["ipynb_source"] = f"{pagename}.ipynb"


def drop_repeated_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # The same inline script comes once with filename None and once with "".
        key = (str(getattr(script, "filename", script) or ""),
               repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # In place: handlers that run later (sphinx.ext.mathjax) add to this same list.
    context["script_files"][:] = unique


def default_colour_mode(app, pagename, templatename, context, doctree):
    # pydata-sphinx-theme's layout reads ``default_mode`` from the page context.
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def _is_heading(title: str, underline: str) -> bool:
    return (bool(title.strip()) and not title[0].isspace() and len(underline) >= 3
            and re.fullmatch(r"(-+|=+|~+)", underline) is not None)


def headings_to_rubrics(app, what, name, obj, options, lines):
    """Replace each unindented ``Title`` over a line of dashes by ``.. rubric:: Title``."""
    i = 0
    while i + 1 < len(lines):
        if _is_heading(lines[i], lines[i + 1].rstrip()):
            lines[i:i + 2] = [f".. rubric:: {lines[i].strip()}", ""]
        i += 1


def setup(app):
    # After napoleon (priority 500), which turns its own sections into fields and rubrics.
    app.connect("autodoc-process-docstring", headings_to_rubrics, priority=600)
    app.connect("html-page-context", drop_repeated_scripts, priority=450)
    app.connect("html-page-context", default_colour_mode, priority=450)
    # Before the theme builds its header buttons (priority 501).
    app.connect("html-page-context", offer_executed_notebook, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
