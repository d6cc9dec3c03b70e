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
