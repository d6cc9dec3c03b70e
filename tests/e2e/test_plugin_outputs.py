"""The plugin's scenario_runner writes everything of a run into the test's own output folder."""

from __future__ import annotations

import pytest

from testbed.pytest_outputs import OUTPUTS_KEY
from testbed.scenario.api import ScenarioBuilder, result_ok

pytestmark = pytest.mark.e2e


def test_a_scenarios_report_junit_and_board_logs_are_in_the_tests_folder(scenario_runner, testbed_out, request):
    sc = (
        ScenarioBuilder("py-outputs", "one board crashes once")
        .group("DW100/Field", allow_crash_dumps=True)
        .fleet("b", boards=1, group="DW100/Field")
        .crash("b-1", app="crashapp", mode="segv")
        .wait("b-1", "upload-ok", timeout="15s")
        .expect("dump_stored", boards="b-1", count=1)
        .build()
    )
    result_ok(scenario_runner(sc))
    assert (testbed_out / "py-outputs.html").stat().st_size > 0
    assert "<testsuite" in (testbed_out / "py-outputs.junit.xml").read_text()
    logs = (testbed_out / "py-outputs" / "boards").glob("b-1-*.log")
    (log,) = [p for p in logs if not p.name.endswith(".raw.log")]
    assert "event=upload-ok " in log.read_text(errors="replace")
    recorded = dict(request.node.stash[OUTPUTS_KEY])
    assert recorded["scenario py-outputs report"] == testbed_out / "py-outputs.html"
