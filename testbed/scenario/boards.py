"""The runner's side of a board: its firmware driver, its capabilities, its event log, the QEMU factory.

Two adapters bridge boards that predate the board seams (a QemuBoard without
``.firmware`` / ``.capabilities``, a console whose events are a list); each is one
small function here, to be dropped once every board has the attribute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from testbed.board.firmware import FirmwareDriver
from testbed.board.protocols import Board, BoardFactory, Capability
from testbed.eventlog import EventLog
from testbed.scenario.model import Scenario, ScenarioError

#: What a QEMU board can do when it does not say (before boards declare their capabilities).
QEMU_CAPABILITIES: frozenset[Capability] = frozenset(Capability) - {Capability.HOST_CPU}


def firmware_of(board: Board) -> FirmwareDriver:
    """The board's firmware driver (adapter: one over its console where the board has none yet)."""
    driver = getattr(board, "firmware", None)
    return driver if driver is not None else FirmwareDriver(board.console, board.name)


def capabilities_of(board: Any) -> frozenset[Capability]:
    """What a made board declares (adapter: a board that declares nothing is a QEMU board of old)."""
    caps = getattr(board, "capabilities", None)
    return frozenset(caps) if caps is not None else QEMU_CAPABILITIES


def declared_capabilities(factory: Any, board: str) -> frozenset[Capability] | None:
    """What a board factory says its board ``board`` will be able to do, before making it.

    A factory says so with a method ``capabilities_for(name)`` or ``capabilities(name)``, or a
    ``capabilities`` set (every board alike); None when it does not say (the check then happens
    on the made boards, before the first step).
    """
    for attr in ("capabilities_for", "capabilities"):
        declared = getattr(factory, attr, None)
        if callable(declared):
            return frozenset(declared(board))
        if declared is not None:
            return frozenset(declared)
    return None


def prepare_factory(factory: Any, scenario: Scenario) -> None:
    """Let a factory that maps scenario boards onto boards of its own (an inventory) plan the
    mapping before anything is checked or booted: its optional ``plan_scenario(scenario)``."""
    plan = getattr(factory, "plan_scenario", None)
    if callable(plan):
        plan(scenario)


def describe_board(factory: Any, board: str) -> str:
    """How a factory names the board behind scenario board ``board`` (its optional ``describe``)."""
    describe = getattr(factory, "describe", None)
    return str(describe(board)) if callable(describe) else board


def check_capabilities(scenario: Scenario, caps_of: Callable[[str], frozenset[Capability] | None],
                       boards: Iterable[str] | None = None,
                       describe: Callable[[str], str] = str) -> None:  # fmt: skip
    """Raise ScenarioError naming the board, the step (file:line) and the capability that a step
    needs and a board lacks. Boards whose capabilities are unknown (None) are not checked."""
    wanted = set(scenario.boards if boards is None else boards)
    for step in scenario.steps:
        for board_name in step.op.targets():
            if board_name not in wanted:
                continue
            caps = caps_of(board_name)
            if caps is None:
                continue
            missing = sorted(c.value for c in step.op.needs - caps)
            if missing:
                what = step.action.replace("_", " ")
                raise ScenarioError(scenario.path, step.line, f"steps[{step.index}].{step.action}",
                                    f"refused before any board booted: board {describe(board_name)} cannot {what} "
                                    f"(step {step.index + 1}): it lacks the {', '.join(repr(m) for m in missing)} "
                                    f"capability (it declares: {', '.join(sorted(c.value for c in caps))})",
                                    {"steps": len(scenario.steps)})  # fmt: skip


def event_log_of(board: Board) -> EventLog[Any]:
    """The board's @tb events as an :class:`EventLog` (the one wait mechanism).

    The board's own log when it has one (``board.events`` or ``board.event_log`` or its
    console's ``event_log``); otherwise (adapter) a log fed by the console's listener,
    seeded with what the console has seen so far.
    """
    console = getattr(board, "console", None)
    for source in (board.events, getattr(board, "event_log", None), getattr(console, "event_log", None)):
        if isinstance(source, EventLog):
            return source
    log: EventLog[Any] = EventLog()
    seen: set[int] = set()
    lock = threading.Lock()

    def add(event: Any) -> None:
        with lock:
            if id(event) not in seen:
                seen.add(id(event))
                log.append(event)

    with lock:  # a listener call waits until the past events are in, so the order holds
        board.console.add_listener(add)
        for event in list(board.events):
            seen.add(id(event))
            log.append(event)
    return log


def qemu_board_factory(log_dir: Path | None = None) -> BoardFactory:
    """Boards restored from the cached snapshot of the current image (made once if missing);
    their console logs go to ``log_dir`` (default the cache's logs folder)."""
    from testbed.board.identity import Identity
    from testbed.board.profile import CAPABILITIES
    from testbed.board.qemu import QemuBoard
    from testbed.board.snapshot import ensure_snapshot
    from testbed.image.build import ensure_image

    image = ensure_image()
    snapshot = ensure_snapshot(image)

    def make(name: str, device_id: str, secret: str, port: int) -> Board:
        board = QemuBoard(image, name=name, ssh=False, log_dir=log_dir)
        try:
            board.restore(snapshot)
            firmware_of(board).provision(Identity.for_port(device_id, secret, port))  # type: ignore[arg-type]
        except BaseException:
            board.close()
            raise
        return board  # type: ignore[return-value]

    make.capabilities = CAPABILITIES  # type: ignore[attr-defined]
    return make


def host_cpu_of(board: Any) -> Any:
    """The board's host-CPU monitor (``board.host_cpu``) when it declares the host-cpu capability, else None."""
    if Capability.HOST_CPU not in capabilities_of(board):
        return None
    return getattr(board, "host_cpu", None)
