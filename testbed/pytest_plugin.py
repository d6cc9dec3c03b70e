"""pytest plugin (entry point ``testbed``): fixtures for services, boards and scenarios.

Each area keeps its fixtures beside its code; this module gathers them so
that a user's project gets them all by installing testbed.
"""

from __future__ import annotations

import pytest

from testbed.board.fixtures import *  # noqa: F401,F403
from testbed.board.fixtures import add_board_options
from testbed.board.real_fixtures import *  # noqa: F401,F403
from testbed.board.real_fixtures import add_inventory_option
from testbed.scenario.fixtures import *  # noqa: F401,F403
from testbed.service.fixtures import *  # noqa: F401,F403


def pytest_addoption(parser: pytest.Parser) -> None:
    add_board_options(parser)
    add_inventory_option(parser)
