"""Where the testbed keeps its files: the source tree and the per-user cache."""

from __future__ import annotations

from pathlib import Path

from testbed import settings

#: The source checkout (holds images/, firmware_stubs/, scenarios/).
REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The cache for downloaded packages, built images and snapshots.

    ``TESTBED_CACHE`` overrides the default ``~/.cache/testbed``.
    """
    value = settings.get(settings.CACHE)
    assert value is not None  # the setting has a default
    path = Path(value).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
