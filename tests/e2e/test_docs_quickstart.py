"""docs/quickstart.md's example test and docs/howto.md's recipes, run as a new user runs them:
copied out of the pages into a folder outside the repository and run by pytest there, with the
installed plugin only (no conftest, no pyproject of the repository). So the pages cannot go stale."""

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
HOWTO = REPO / "docs" / "howto.md"
MARKER = "<!-- quickstart-example: test_my_device.py"
HOWTO_MARKER = "<!-- howto-example -->"


def quickstart_example() -> str:
    """The Python block right after the page's example marker."""
    text = QUICKSTART.read_text()
    assert MARKER in text, f"{QUICKSTART} lost its example marker {MARKER!r}"
    after = text[text.index(MARKER):]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match is not None, "no python block after the example marker"
    return match.group(1)


def howto_recipes() -> list[str]:
    """Every Python block right after a recipe marker of docs/howto.md."""
    parts = HOWTO.read_text().split(HOWTO_MARKER)[1:]
    blocks = []
    for part in parts:
        match = re.match(r"\s*```python\n(.*?)```", part, re.S)
        assert match is not None, "a recipe marker of docs/howto.md is not followed by a python block"
        blocks.append(match.group(1))
    return blocks


def run_pytest_in(folder: Path, config: pytest.Config, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "TESTBED_REPORT_DIR", "TESTBED_BOARD_IMAGE"))}  # fmt: skip
    if config.getoption("--board-image"):  # this run was given an image: the same one, else as a user would
        env["TESTBED_BOARD_IMAGE"] = str(config.getoption("--board-image"))
    return subprocess.run([sys.executable, "-m", "pytest", *args],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip


def test_the_quickstart_example_passes_outside_the_repo(tmp_path_factory, pytestconfig, board_snapshot):
    folder = tmp_path_factory.mktemp("my-device-tests")
    assert REPO not in folder.parents
    (folder / "test_my_device.py").write_text(quickstart_example())
    # the command of the page ("pytest --testbed-out out"), with this interpreter's pytest
    proc = run_pytest_in(folder, pytestconfig, "--testbed-out", "out")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert re.search(r"\b2 passed\b", text), text
    assert f"rootdir: {folder}" in text, text  # nothing of the repository's configuration

    tests = re.findall(r"^def (test_\w+)\(", quickstart_example(), re.M)
    assert len(tests) == 2
    for name in tests:
        out = folder / "out" / folder_name(f"test_my_device.py::{name}")
        # the readable log and, beside it, the raw transcript (<name>.raw.log)
        logs = [p for p in out.glob(f"{name}-*.log") if not p.name.endswith(".raw.log")]
        assert len(list(out.glob(f"{name}-*.raw.log"))) == 1
        assert len(logs) == 1, f"{out}: {sorted(p.name for p in out.iterdir()) if out.exists() else 'missing'}"
        console = logs[0].read_text(errors="replace")
        assert "event=crash " in console and "event=app-restart " in console, console[-2000:]
        # the end-of-run summary names the folder, as the page shows
        assert f"test_my_device.py::{name}: {out} (board {name} console log)" in text, text


def test_the_howto_recipes_pass_outside_the_repo(tmp_path_factory, pytestconfig, board_snapshot):
    recipes = howto_recipes()
    assert len(recipes) >= 5
    folder = tmp_path_factory.mktemp("howto")
    for i, code in enumerate(recipes, 1):
        (folder / f"test_recipe_{i}.py").write_text(code)
    expected = sum(len(re.findall(r"^def test_", code, re.M)) for code in recipes)
    proc = run_pytest_in(folder, pytestconfig, "--strict-markers", "-p", "no:cacheprovider")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert re.search(rf"\b{expected} passed\b", text), text
