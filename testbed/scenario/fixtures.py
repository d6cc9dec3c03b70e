"""pytest fixtures for scenarios: run a scenario (YAML or built in Python) and keep its report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from testbed import settings
from testbed.scenario.results import ScenarioResult
from testbed.scenario.schema import Scenario, load_scenario


@pytest.fixture
def scenario_runner(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., ScenarioResult]:
    """``scenario_runner(scenario_or_path) -> ScenarioResult`` on real boards and a real service.

    The HTML report and JUnit XML go to the test's tmp dir, or to ``$TESTBED_REPORT_DIR``
    when set (CI keeps them as artifacts); the report's path is attached to the test as
    the user property ``scenario_report`` (and the verdict as ``scenario_verdict``). Check the
    result with ``result_ok(result)``: an INCONCLUSIVE run (the host starved a board) is then
    reported as skipped with the reason, never as a pass.
    """
    from testbed.scenario.api import run_scenario

    report_dir = settings.get(settings.REPORT_DIR)
    out_dir = Path(report_dir) if report_dir else tmp_path

    def run(scenario: Scenario | str | Path, **kwargs) -> ScenarioResult:
        sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        report = out_dir / f"{sc.name}.html"
        kwargs.setdefault("quiet", True)
        result = run_scenario(sc, workdir=tmp_path / "work", report=report, junit=out_dir / f"{sc.name}.junit.xml",
                              **kwargs)  # fmt: skip
        request.node.user_properties.append(("scenario_report", str(report)))
        request.node.user_properties.append(("scenario_verdict", str(result.verdict)))
        return result

    return run
