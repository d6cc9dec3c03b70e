"""The user docs hold together: every link and docs/ path in docs/ and the README exists, the
index lists every page, and no page points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md")) + [REPO / "README.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_and_docs_paths_exist(page: Path) -> None:
    text = page.read_text()
    missing = []
    for m in re.finditer(r"\]\(([^)#\s]+)(#[^)]*)?\)", text):
        target = m.group(1)
        if not target.startswith(("http://", "https://")) and not (page.parent / target).exists():
            missing.append(target)
    for m in re.finditer(r"(?<![\w/.])docs/([\w/.-]+\.md)", text):
        if not (DOCS / m.group(1)).exists():
            missing.append(f"docs/{m.group(1)}")
    assert not missing, f"{page.relative_to(REPO)} points to files that do not exist: {missing}"


def test_the_index_lists_every_page() -> None:
    index = (DOCS / "index.md").read_text()
    unlisted = [str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")
                if p.name != "index.md" and f"]({p.relative_to(DOCS)})" not in index]  # fmt: skip
    assert not unlisted, f"docs/index.md does not link {unlisted}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_points_outside_the_repository(page: Path) -> None:
    text = page.read_text()
    assert "DESIGN.md" not in text and "../shared" not in text, f"{page}: a design file outside the repo"
    assert not re.search(r"\b[Ii]ssues? #?\d+", text), f"{page}: an issue number"
