"""pytest fixtures for boards (registered through testbed.pytest_plugin).

- ``board_image`` (session): the built image (``--board-image DIR`` to use a given one).
- ``board_snapshot`` (session): the cached snapshot of a booted, unprovisioned board.
- ``board``: a fresh board per test, restored from the snapshot (~0.5 s).
- ``board_pool``: a factory, ``board_pool(n)`` -> n fresh boards, restored in parallel.

When a test that used a board fails, the board's console log (tail, and the
path of the whole file) is attached to the failure report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest
from pluggy import Result

from testbed import settings
from testbed.board.protocols import Board
from testbed.board.qemu import QemuBoard
from testbed.board.snapshot import Snapshot, ensure_snapshot
from testbed.image.build import Image, ensure_image

_BOARDS_KEY = pytest.StashKey[list]()


def add_board_options(parser: pytest.Parser) -> None:
    """Register the board options (image path, boot timeout)."""
    group = parser.getgroup("testbed boards")
    group.addoption(
        "--board-image",
        default=settings.get(settings.BOARD_IMAGE),
        metavar="DIR",
        help="a built image directory (with image.json) instead of building the current sources' image "
        f"(env {settings.BOARD_IMAGE})",
    )
    group.addoption(
        "--board-boot-timeout",
        type=float,
        default=settings.get_float(settings.BOARD_BOOT_TIMEOUT),
        metavar="SECONDS",
        help=f"how long a board may take to reach boot-ready (default 90; env {settings.BOARD_BOOT_TIMEOUT})",
    )


def _track(request: pytest.FixtureRequest, board: Board | QemuBoard) -> None:
    boards = request.node.stash.setdefault(_BOARDS_KEY, [])
    boards.append(board)


def _started(board: QemuBoard) -> Board:
    """A started QemuBoard (its console made) is a Board; the types cannot tell it is started."""
    assert board.console is not None
    return cast(Board, board)


def _board_name(request: pytest.FixtureRequest, index: int | None = None) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    return f"{name}-{index}" if index is not None else name


@pytest.fixture(scope="session")
def board_image(pytestconfig: pytest.Config) -> Image:
    path = pytestconfig.getoption("--board-image")
    if path:
        return Image.from_dir(Path(path))
    return ensure_image()


@pytest.fixture(scope="session")
def board_boot_timeout(pytestconfig: pytest.Config) -> float:
    return float(pytestconfig.getoption("--board-boot-timeout"))


@pytest.fixture(scope="session")
def board_snapshot(board_image: Image, board_boot_timeout: float) -> Snapshot:
    return ensure_snapshot(board_image, boot_timeout=board_boot_timeout)


@pytest.fixture
def board(request: pytest.FixtureRequest, board_image: Image, board_snapshot: Snapshot,
          board_boot_timeout: float) -> Iterator[Board]:
    """A fresh board restored from the snapshot, closed after the test."""
    b = QemuBoard(board_image, name=_board_name(request), boot_timeout=board_boot_timeout)
    _track(request, b)
    try:
        b.restore(board_snapshot)
        yield _started(b)
    finally:
        b.close()


@pytest.fixture
def board_pool(request: pytest.FixtureRequest, board_image: Image, board_snapshot: Snapshot,
               board_boot_timeout: float) -> Iterator[Callable[[int], list[Board]]]:
    """``board_pool(n)``: n fresh boards restored from the snapshot in parallel; all closed after the test."""
    made: list[QemuBoard] = []

    def make(n: int) -> list[Board]:
        if n < 1:
            raise ValueError("board_pool(n) needs n >= 1")
        boards: list[QemuBoard] = [
            QemuBoard(board_image, name=_board_name(request, len(made) + i), boot_timeout=board_boot_timeout)
            for i in range(n)
        ]
        made.extend(boards)
        for b in boards:
            _track(request, b)
        with ThreadPoolExecutor(max_workers=min(n, os.cpu_count() or 2)) as pool:
            list(pool.map(lambda b: b.restore(board_snapshot), boards))
        return [_started(b) for b in boards]

    try:
        yield make
    finally:
        for b in made:
            b.close()


@pytest.hookimpl(hookwrapper=True, specname="pytest_runtest_makereport")
def pytest_runtest_makereport_boards(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for b in item.stash.get(_BOARDS_KEY, []):
        console = b.console
        lines = console.tail(60) if console is not None and hasattr(console, "tail") else []
        body = "\n".join(lines) if lines else "(no console output)"
        log_path = getattr(b, "log_path", None) or getattr(console, "log_path", None)
        raw = getattr(console, "raw_log_path", None)
        where = f"whole log: {log_path}" + (f" (raw transcript: {raw})" if raw else "")
        report.sections.append((f"board {b.name} console ({report.when})", f"{where}\n{body}"))
