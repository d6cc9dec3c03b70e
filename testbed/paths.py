"""Where the testbed keeps its files: the source tree and the per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

#: The source checkout (holds images/, firmware_stubs/, scenarios/).
REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The cache for downloaded packages, built images and snapshots.

    ``TESTBED_CACHE`` overrides the default ``~/.cache/testbed``.
    """
    base = os.environ.get("TESTBED_CACHE")
    path = Path(base) if base else Path.home() / ".cache" / "testbed"
    path.mkdir(parents=True, exist_ok=True)
    return path
