"""The README is a front page that links to docs/; every page it or docs/ links to exists, with its anchor."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The pages the README must link to (issue: the front door).
REQUIRED = ["app.md", "cli.md", "accuracy.md", "distributed.md", "data.md", "architecture.md"]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"
    first_screen = "\n".join(lines[:30])
    assert "make app" in first_screen and "make test" in first_screen
    for page in REQUIRED:
        assert (ROOT / "docs" / page).exists() and f"(docs/{page}" in text, f"README does not link docs/{page}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_issue_numbers_or_maintenance_markers(page):
    text = page.read_text()
    assert not re.search(r"\(#\d+\)|#\d+\b(?![\d.])", re.sub(r"\]\([^)]*\)", "", text)), \
        f"{page.name} names an issue number"
    assert not re.search(r"<!--\s*(BEGIN|END)\b", text), f"{page.name} holds a maintenance marker"
    assert "November" not in text, f"{page.name}: name a model by what it is, not by a month"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name} links to {link}, which does not exist"
        if anchor and target.suffix == ".md":
            headings = {slug(h) for h in re.findall(r"^#+ (.*)$", target.read_text(), re.M)}
            assert anchor in headings, f"{page.name} links to {link}: no such heading in {target.name}"
