"""The `testbed` command wires every area's commands, and each one imports and has help."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from testbed.cli import LazyGroup, bench, main


def _lazy_paths(group: LazyGroup) -> list[tuple[str, str]]:
    return [(name, target) for name, target in sorted(group.lazy.items())]


@pytest.mark.parametrize(("name", "target"), _lazy_paths(main) + _lazy_paths(bench))
def test_every_command_imports_and_shows_help(name: str, target: str) -> None:
    group = bench if target.split(":")[1].startswith("bench_") else main
    args = (["bench"] if group is bench else []) + [name, "--help"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, f"testbed {' '.join(args)} failed:\n{result.output}\n{result.exception!r}"
    assert "Usage:" in result.output


def test_top_level_help_lists_no_unavailable_area() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "unavailable" not in result.output, result.output


def test_board_provision_is_checked_before_any_board_starts() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    device = "ab" * 64
    result = CliRunner().invoke(main, ["board", "run", "--provision", f"http://127.0.0.1:{closed}",
                                       "--device-id", device, "--secret", "s3cret", "true"])
    assert result.exit_code == 1
    assert f"no service answers at http://127.0.0.1:{closed}" in result.output
    assert f"testbed service run --port {closed}" in result.output
    far = CliRunner().invoke(main, ["board", "boot", "--provision", "http://10.1.2.3:8443", "--device-group", "G"])
    assert far.exit_code == 2 and "loopback" in far.output
    both = CliRunner().invoke(main, ["board", "run", "--provision", "http://127.0.0.1:8443", "true"])
    assert both.exit_code == 2 and "--device-id and --secret" in both.output
    alone = CliRunner().invoke(main, ["board", "run", "--device-id", device, "true"])
    assert alone.exit_code == 2 and "go with --provision URL" in alone.output
