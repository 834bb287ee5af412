"""Figure directives in the book's sources, checked without building the book.

A directive's ``:key: value`` options end at the first line that does not start with a
colon, so an ``:alt:`` text continued on an indented line is cut there: the rest of it
becomes the first paragraph of the directive's body, which a figure shows as its caption.
Sphinx gives no warning. Long alt texts stay on one line (or go in a ``---`` YAML block).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALT_OPTION = re.compile(r"^\s*:alt:", re.M)


def multiline_alt_options(text: str) -> list[int]:
    """Line numbers (from 1) of ``:alt:`` options followed directly by a non-option line."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines[:-1]):
        following = lines[i + 1].strip()
        if ALT_OPTION.match(line) and following and not following.startswith(":"):
            found.append(i + 1)
    return found


def book_sources() -> list[Path]:
    return sorted((ROOT / "book").rglob("*.md")) + sorted(ROOT.glob("*.md"))


def test_the_check_finds_an_alt_text_continued_on_the_next_line():
    broken = ("```{glue:figure} fig_x\n:name: fig-x\n:alt: A chart of the loss. Left,\n"
              "  the plain network.\n\nThe caption.\n```\n")
    fixed = ("```{glue:figure} fig_x\n:alt: A chart of the loss.\n:name: fig-x\n\n"
             "The caption.\n```\n")
    assert multiline_alt_options(broken) == [3]
    assert multiline_alt_options(fixed) == []


def test_no_directive_in_the_book_continues_its_alt_option_on_another_line():
    sources = book_sources()
    assert any(ALT_OPTION.search(p.read_text(encoding="utf-8")) is not None
               for p in sources), "no :alt: option found: the check has nothing to check"
    problems = [f"{p.relative_to(ROOT)}:{n}" for p in sources
                for n in multiline_alt_options(p.read_text(encoding="utf-8"))]
    assert not problems, ("an :alt: option continued on the next line spills into the "
                          "caption; keep it on one line: " + ", ".join(problems))


def test_the_caption_check_of_the_built_pages_finds_a_spilled_alt_text():
    # What the built page showed for an :alt: continued on a second line: the alt cut at
    # the line break, the caption opening with the alt's next words.
    from book_browser import caption_problems

    alt = "Two line charts of training loss against epoch on a logarithmic axis. Left, plain"
    caption = ("networks: the 32-layer curve stays well above the 8-layer one. Training loss "
               "per epoch of plain (left) and residual (right) networks.")
    assert len(caption_problems(alt, caption)) == 2
    whole = alt + " networks: the 32-layer curve stays well above the 8-layer one."
    assert caption_problems(whole, whole + " Training loss per epoch.")
    assert caption_problems(whole, "Training loss per epoch of plain and residual networks.") == []
    assert caption_problems(whole, "cnnlib's blocks.", code_first=True) == []
