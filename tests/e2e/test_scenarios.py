"""Every shipped scenario (scenarios/*.yaml) on real boards against the real service."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.paths import REPO_ROOT
from testbed.scenario.api import result_ok

pytestmark = pytest.mark.e2e

SCENARIOS = sorted((REPO_ROOT / "scenarios").glob("*.yaml"))


def test_every_design_behaviour_has_a_scenario():
    names = {p.name for p in SCENARIOS}
    for n in range(1, 13):
        assert any(name.startswith(f"s{n:02d}-") for name in names), f"no scenario for S{n}"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: Path(p).stem)
def test_scenario(path, scenario_runner):
    result = result_ok(scenario_runner(path))
    assert result.expectations and all(e.passed for e in result.expectations)
    # every board's events were kept for the report
    assert all(b.events for b in result.boards)
