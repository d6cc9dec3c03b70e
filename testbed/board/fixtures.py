"""pytest fixtures for boards (filled in by the board work)."""

from __future__ import annotations

import pytest


def add_board_options(parser: pytest.Parser) -> None:
    """Register the board options (image path, boot timeout)."""
