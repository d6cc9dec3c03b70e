"""docs/quickstart.md's example test, run as a new user runs it: copied out of the page into a
folder outside the repository and run by pytest there, with the installed plugin only (no
conftest, no pyproject of the repository). So the page cannot go stale."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.pytest_outputs import folder_name

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "docs" / "quickstart.md"
MARKER = "<!-- quickstart-example: test_my_device.py"


def quickstart_example() -> str:
    """The Python block right after the page's example marker."""
    text = QUICKSTART.read_text()
    assert MARKER in text, f"{QUICKSTART} lost its example marker {MARKER!r}"
    after = text[text.index(MARKER):]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match is not None, "no python block after the example marker"
    return match.group(1)


def test_the_quickstart_example_passes_outside_the_repo(tmp_path_factory, board_image, board_snapshot):
    folder = tmp_path_factory.mktemp("my-device-tests")
    assert REPO not in folder.parents
    (folder / "test_my_device.py").write_text(quickstart_example())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TESTBED_REPORT_DIR"))}
    env["TESTBED_BOARD_IMAGE"] = str(board_image.path)  # the image this run already built
    # the command of the page ("pytest --testbed-out out"), with this interpreter's pytest
    proc = subprocess.run([sys.executable, "-m", "pytest", "--testbed-out", "out"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert re.search(r"\b2 passed\b", text), text
    assert f"rootdir: {folder}" in text, text  # nothing of the repository's configuration

    tests = re.findall(r"^def (test_\w+)\(", quickstart_example(), re.M)
    assert len(tests) == 2
    for name in tests:
        out = folder / "out" / folder_name(f"test_my_device.py::{name}")
        logs = list(out.glob(f"{name}-*.log"))
        assert len(logs) == 1, f"{out}: {sorted(p.name for p in out.iterdir()) if out.exists() else 'missing'}"
        console = logs[0].read_text(errors="replace")
        assert "event=crash " in console and "event=app-restart " in console, console[-2000:]
        # the end-of-run summary names the folder, as the page shows
        assert f"test_my_device.py::{name}: {out} (board {name} console log)" in text, text
