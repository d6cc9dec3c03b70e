"""The testbed package passes mypy (the settings in pyproject.toml's [tool.mypy]), so CI enforces its type hints."""

from __future__ import annotations

import subprocess
import sys

from testbed.paths import REPO_ROOT


def test_mypy_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "testbed"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
