"""The project's Python passes ruff (the rules in pyproject.toml), so CI enforces them."""

from __future__ import annotations

import subprocess
import sys

from testbed.paths import REPO_ROOT


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "testbed", "tests", "scenarios", "firmware_stubs"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
