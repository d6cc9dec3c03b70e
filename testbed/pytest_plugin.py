"""pytest plugin (entry point ``testbed``): fixtures for services, boards and scenarios.

Each area keeps its fixtures beside its code; this module gathers them so that a
user's project gets them all by installing testbed (docs/pytest.md lists them;
``pytest --fixtures`` explains each one). It also registers the markers ``e2e`` and
``load``, the options ``--board-image``, ``--board-boot-timeout``, ``--boards-file`` and
``--testbed-out``, and prints where each test's outputs (board console logs, scenario
reports) were written (testbed.pytest_outputs).
"""

from __future__ import annotations

import pytest

from testbed.board.fixtures import *  # noqa: F401,F403
from testbed.board.fixtures import add_board_options
from testbed.board.real_fixtures import *  # noqa: F401,F403
from testbed.board.real_fixtures import add_inventory_option
from testbed.pytest_outputs import (  # noqa: F401 (fixture and hooks, registered by being here)
    add_output_option,
    pytest_runtest_makereport_outputs,
    pytest_terminal_summary,
    testbed_out,
)
from testbed.scenario.api import ScenarioInconclusive
from testbed.scenario.fixtures import *  # noqa: F401,F403
from testbed.service.fixtures import *  # noqa: F401,F403

#: The markers the plugin registers (name -> description), known wherever testbed is installed.
MARKERS = {
    "e2e": "boots real QEMU boards (slow; needs the board image)",
    "load": "runs Locust against the service (bounded in time and count)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_board_options(parser)
    add_inventory_option(parser)
    add_output_option(parser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A scenario that is INCONCLUSIVE (``ScenarioInconclusive``: the host starved a board) is
    reported as skipped with its reason: never counted as a pass, not as a failure."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and call.excinfo.errisinstance(ScenarioInconclusive):
        reason = str(call.excinfo.value).replace("\n", " ")
        report.outcome = "skipped"
        report.longrepr = (str(item.path), (item.location[1] or 0) + 1, f"INCONCLUSIVE: {reason}")


def pytest_configure(config: pytest.Config) -> None:
    """The markers the testbed's tests use, known wherever the plugin is installed."""
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
