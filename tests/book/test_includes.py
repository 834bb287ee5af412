"""Library code the chapters show: an include that picks lines of a function by number
(``:pyobject:`` with ``:lines:``) must still pick whole statements and no docstring after
the function changes; otherwise Sphinx would show the wrong lines without a warning."""

from __future__ import annotations

import ast
import re
import textwrap
import types
from pathlib import Path

import pytest
from sphinx.directives.code import LiteralIncludeReader

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = re.compile(r"```\{literalinclude\} (\S+)\n((?::\w+:.*\n)*)```")


def line_picking_includes():
    found = []
    for page in sorted((ROOT / "book").rglob("*.md")):
        for m in INCLUDE.finditer(page.read_text(encoding="utf-8")):
            options = dict(re.findall(r":(\w+): ?(.*)", m.group(2)))
            if "lines" in options:
                found.append(pytest.param(page, m.group(1), options,
                                          id=f"{page.stem}:{options.get('pyobject')}"))
    return found


@pytest.mark.parametrize("page, target, options", line_picking_includes())
def test_an_include_by_line_numbers_shows_whole_statements(page, target, options):
    options = {**options, **({"dedent": int(options["dedent"])} if "dedent" in options else {})}
    config = types.SimpleNamespace(source_encoding="utf-8")
    text, _ = LiteralIncludeReader(str((page.parent / target).resolve()), options,
                                   config).read()
    assert text.strip(), "the include shows nothing"
    assert '"""' not in text, "the include shows part of a docstring"
    ast.parse(textwrap.dedent(text))  # a statement cut in two is a SyntaxError


def test_the_chapters_pick_lines_somewhere():
    # the test above must have something to check
    assert len(line_picking_includes()) >= 3
