"""The command-line options of the real-board path: `service run --listen/--allow-remote-boards`
refuses a network address unless asked, `scenario run --boards-file` refuses a bad inventory
(file:line) before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from testbed.cli import main
from testbed.paths import REPO_ROOT


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--listen", "192.168.7.1"], "only with --allow-remote-boards"),
        (["--allow-remote-boards"], "needs --listen ADDRESS"),
        (["--listen", "board.lab"], "must be an IP address"),
        (["--listen", "127.0.0.2", "--host", "127.0.0.3"], "not both"),
    ],
)
def test_service_listens_beyond_loopback_only_when_asked(tmp_path: Path, args: list[str], words: str) -> None:
    result = CliRunner().invoke(main, ["service", "run", "--data-dir", str(tmp_path / "d"), *args])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert not (tmp_path / "d").exists()  # refused before anything was made


def test_scenario_run_refuses_a_bad_inventory_with_file_and_line(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("boards:\n  bench-1:\n    console: /dev/ttyUSB0\n    sevice: 10.0.2.2\n")
    (s04,) = (REPO_ROOT / "scenarios").glob("s04-*.yaml")
    result = CliRunner().invoke(main, ["scenario", "run", "--boards-file", str(inventory), str(s04)])
    assert result.exit_code == 1, result.output
    assert f"{inventory}:4: unknown key 'sevice'" in result.output and "did you mean 'service'" in result.output
