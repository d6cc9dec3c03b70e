"""pytest option and fixture for real boards from an inventory file (testbed.pytest_plugin).

- ``--boards-file FILE`` (env ``TESTBED_BOARDS_FILE``): the inventory (docs/board.md).
- ``inventory_boards`` (session): the BoardFactory over its boards, for
  ``scenario_runner(path, board_factory=inventory_boards)``; a test that asks for it is
  skipped when no inventory is given.
"""

from __future__ import annotations

import pytest

from testbed import settings
from testbed.board.inventory import InventoryError
from testbed.board.inventory_boards import InventoryBoards, inventory_factory


def add_inventory_option(parser: pytest.Parser) -> None:
    parser.getgroup("testbed boards").addoption(
        "--boards-file",
        default=settings.get(settings.BOARDS_FILE),
        metavar="FILE",
        help=f"an inventory file of real boards (env {settings.BOARDS_FILE}); see docs/board.md",
    )


@pytest.fixture(scope="session")
def inventory_boards(pytestconfig: pytest.Config) -> InventoryBoards:
    """The real boards of the inventory given with ``--boards-file FILE`` (env
    ``TESTBED_BOARDS_FILE``; docs/board.md) as a board factory, for
    ``scenario_runner(path, board_factory=inventory_boards)``; a test that asks for it is
    skipped when no inventory is given."""
    path = pytestconfig.getoption("--boards-file")
    if not path:
        pytest.skip(f"no inventory of real boards (--boards-file FILE or {settings.BOARDS_FILE})")
    try:
        return inventory_factory(path)
    except InventoryError as exc:
        raise pytest.UsageError(str(exc)) from None
