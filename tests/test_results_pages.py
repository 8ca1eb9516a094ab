"""Every results page says which code made it: a command and a commit in its first lines (issue 37, item 6). The
generators write that line themselves (argse.core.provenance), and older pages carry it as a label."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from argse.core.provenance import commit

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs" / "results").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_each_results_page_names_its_command_and_commit(page):
    head = "\n".join(page.read_text().splitlines()[:5])
    assert re.search(r"commit [0-9a-f]{7}", head), f"{page.name}: no commit in its first lines"
    assert "python -m " in head or "the command below" in head, f"{page.name}: no command in its first lines"


def test_there_are_results_pages():
    assert len(PAGES) >= 5


def test_the_commit_line_of_a_checkout():
    line = commit()
    assert re.fullmatch(r"commit [0-9a-f]{7}(, with local changes to argse, experts or configs)?", line) or (
        "not a git checkout" in line
    ), line
