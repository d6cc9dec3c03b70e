"""pytest fixtures for scenarios: run a scenario (YAML or built in Python) and keep its report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.pytest_outputs import output_dir, record_output
from testbed.scenario.results import ScenarioResult
from testbed.scenario.schema import Scenario, load_scenario


@pytest.fixture
def scenario_runner(request: pytest.FixtureRequest) -> Callable[..., ScenarioResult]:
    """Factory: ``scenario_runner(scenario_or_path, **options) -> ScenarioResult`` runs a field
    scenario (a YAML file, or a ``Scenario`` built in Python) on its own fleet of emulated boards
    against its own service. The HTML report (``<name>.html``), JUnit XML (``<name>.junit.xml``) and the run's files
    (service data and log, boards' console logs under ``<name>/``) go to the test's output
    folder (``testbed_out``); their paths are printed with the test's report and attached as the
    user properties ``scenario_report`` and ``scenario_verdict``. Options: ``quiet=True``
    (default), ``parallel=N``, ``board_factory=`` (e.g. ``inventory_boards``). Check the result
    with ``testbed.scenario.api.result_ok(result)``: it raises with every failed expectation, and
    an INCONCLUSIVE run (the host starved a board) is reported as skipped with the reason,
    never as a pass.
    """
    from testbed.scenario.api import run_scenario
    from testbed.scenario.boards import qemu_board_factory

    def run(scenario: Scenario | str | Path, **kwargs) -> ScenarioResult:
        out_dir = output_dir(request)
        sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        report = out_dir / f"{sc.name}.html"
        junit = out_dir / f"{sc.name}.junit.xml"
        kwargs.setdefault("quiet", True)
        if kwargs.get("board_factory") is None:
            kwargs["board_factory"] = qemu_board_factory(log_dir=out_dir / sc.name / "boards")
        record_output(request, f"scenario {sc.name} report", report)
        record_output(request, f"scenario {sc.name} JUnit", junit)
        record_output(request, f"scenario {sc.name} run files (service, board logs)", out_dir / sc.name)
        result = run_scenario(sc, workdir=out_dir, report=report, junit=junit, **kwargs)
        request.node.user_properties.append(("scenario_report", str(report)))
        request.node.user_properties.append(("scenario_verdict", str(result.verdict)))
        return result

    return run
