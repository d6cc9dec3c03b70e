"""docs/settings.md lists every TESTBED_* setting as testbed/settings.py defines them."""

from __future__ import annotations

from pathlib import Path

from testbed import settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_the_settings_page_is_generated_from_the_settings() -> None:
    text = PAGE.read_text()
    assert text == settings.render_docs(text), "stale: run `python -m testbed.settings docs/settings.md`"
    for name in settings.SETTINGS:
        assert f"`{name}`" in text


def test_render_replaces_only_the_table() -> None:
    page = f"intro\n{settings.DOCS_BEGIN}\nSTALE-ROW\n{settings.DOCS_END}\noutro\n"
    out = settings.render_docs(page)
    assert out.startswith("intro\n") and out.endswith("\noutro\n") and "STALE-ROW" not in out
    assert "| `TESTBED_CACHE` |" in out
