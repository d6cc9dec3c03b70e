"""A device that really breaks its 5 s promise is a FAIL, not INCONCLUSIVE: the third verdict
only covers a board the host starved.

The broken device is the firmware's test-only switch (the app manager restarts a crashed app
8 s after the crash whatever its upload does), set on a real QEMU board through the firmware
driver; the service, the board and the runner are the real ones.
"""

from __future__ import annotations

import pytest

from testbed.scenario.api import ScenarioBuilder, run_scenario
from testbed.scenario.boards import qemu_board_factory
from testbed.scenario.results import Verdict

pytestmark = pytest.mark.e2e

BROKEN_RESTART_MS = 8000


def broken_device_factory():
    base = qemu_board_factory()

    def make(name: str, device_id: str, secret: str, port: int):
        board = base(name, device_id, secret, port)
        board.firmware.set_test_restart_delay(BROKEN_RESTART_MS)
        return board

    make.capabilities = base.capabilities  # type: ignore[attr-defined]
    return make


def test_a_late_restart_of_a_broken_device_fails(tmp_path):
    sc = (
        ScenarioBuilder("broken-device", "the app manager holds the restart 8 s: the device breaks its promise")
        .group("DW100/Field", allow_crash_dumps=True)
        .fleet("b", boards=1, group="DW100/Field")
        .sync("all")
        .crash("b-1", app="crashapp", mode="segv")
        .wait("b-1", "app-restart", timeout="20s")
        .expect("app_restarted", app="crashapp", within="5s")
        .build()
    )
    result = run_scenario(sc, workdir=tmp_path / "work", report=tmp_path / "report.html", quiet=True,
                          board_factory=broken_device_factory())  # fmt: skip
    (restart,) = [e for e in result.expectations if e.kind == "app_restarted"]
    if restart.verdict == Verdict.INCONCLUSIVE:
        pytest.skip(f"the host was not idle enough to show it: {restart.detail}")
    assert restart.verdict == Verdict.FAIL, restart.detail
    assert result.verdict == Verdict.FAIL
