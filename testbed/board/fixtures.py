"""pytest fixtures for boards (registered through testbed.pytest_plugin; docs/pytest.md).

- ``board_image`` (session): the built image (``--board-image DIR`` to use a given one).
- ``board_snapshot`` (session): the cached snapshot of a booted, unprovisioned board.
- ``board``: a fresh board per test, restored from the snapshot (~0.5 s).
- ``board_pool``: a factory, ``board_pool(n)`` -> n fresh boards, restored in parallel.

Each board's console log is written to the test's output folder (``testbed_out``) and
its path printed with the test's report; when a test that used a board fails, the
board's console tail is attached to the failure report too.
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
from testbed.pytest_outputs import output_dir, record_output

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


def _track(request: pytest.FixtureRequest, board: QemuBoard) -> None:
    boards = request.node.stash.setdefault(_BOARDS_KEY, [])
    boards.append(board)
    record_output(request, f"board {board.name} console log", board.log_path)


def _started(board: QemuBoard) -> Board:
    """A started QemuBoard (its console made) is a Board; the types cannot tell it is started."""
    assert board.console is not None
    return cast(Board, board)


def _board_name(request: pytest.FixtureRequest, index: int | None = None) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    return f"{name}-{index}" if index is not None else name


@pytest.fixture(scope="session")
def board_image(pytestconfig: pytest.Config) -> Image:
    """The board image (kernel, initramfs, firmware; ``.symbols_dir`` holds the unstripped
    programs): ``--board-image DIR`` (env ``TESTBED_BOARD_IMAGE``), else the current sources'
    image, built on first use (about a minute) and cached in ``~/.cache/testbed``."""
    path = pytestconfig.getoption("--board-image")
    if path:
        return Image.from_dir(Path(path))
    return ensure_image()


@pytest.fixture(scope="session")
def board_boot_timeout(pytestconfig: pytest.Config) -> float:
    """Seconds a board may take to boot: ``--board-boot-timeout`` (default 90)."""
    return float(pytestconfig.getoption("--board-boot-timeout"))


@pytest.fixture(scope="session")
def board_snapshot(board_image: Image, board_boot_timeout: float) -> Snapshot:
    """A snapshot of a booted, unprovisioned board of ``board_image`` (made by one cold boot the
    first time, then cached): what ``board`` and ``board_pool`` restore from."""
    return ensure_snapshot(board_image, boot_timeout=board_boot_timeout)


@pytest.fixture
def board(request: pytest.FixtureRequest, board_image: Image, board_snapshot: Snapshot,
          board_boot_timeout: float) -> Iterator[Board]:
    """A fresh emulated board (``QemuBoard``: MT3620-like, the firmware installed, not yet
    provisioned), restored from the snapshot in about 0.5 s and closed after the test.
    Give it a device with ``board.provision(device.identity())`` (see ``claimed_device``);
    then ``board.firmware.crash("crashapp", "segv")``, ``board.wait_for_event(name, since=,
    timeout=)`` (``since``: a ``time.monotonic()`` taken before the action; event fields are
    strings), ``board.console.run(cmd) -> (output, exit code)``, ``board.link_down()`` /
    ``link_up()``. Its console log is written to the test's output folder (``testbed_out``)."""
    b = QemuBoard(board_image, name=_board_name(request), boot_timeout=board_boot_timeout,
                  log_dir=output_dir(request))
    _track(request, b)
    try:
        b.restore(board_snapshot)
        yield _started(b)
    finally:
        b.close()


@pytest.fixture
def board_pool(request: pytest.FixtureRequest, board_image: Image, board_snapshot: Snapshot,
               board_boot_timeout: float) -> Iterator[Callable[[int], list[Board]]]:
    """Factory: ``board_pool(n)`` -> n fresh boards (as ``board``) restored from the snapshot in
    parallel; all closed after the test, their console logs in the test's output folder."""
    made: list[QemuBoard] = []

    def make(n: int) -> list[Board]:
        if n < 1:
            raise ValueError("board_pool(n) needs n >= 1")
        boards: list[QemuBoard] = [
            QemuBoard(board_image, name=_board_name(request, len(made) + i), boot_timeout=board_boot_timeout,
                      log_dir=output_dir(request))
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
