"""Where unstripped programs are found for the crash analysis: the one list."""

from __future__ import annotations

import os
from pathlib import Path

from testbed import settings


def default_symbol_dirs() -> list[Path]:
    """``TESTBED_SYMBOLS``, then every built image's symbols, then the firmware build folders.

    A program's build id picks the right file among them."""
    from testbed.image.build import SYMBOLS_DIR, images_dir
    from testbed.paths import REPO_ROOT, cache_dir

    dirs = [Path(p) for p in (settings.get(settings.SYMBOLS) or "").split(os.pathsep) if p]
    dirs += sorted(images_dir().glob(f"*/{SYMBOLS_DIR}"))
    dirs += [REPO_ROOT / "firmware_stubs" / "build", cache_dir() / "firmware"]
    return dirs
