"""What a board under test can do, as small protocols, and the capabilities it declares.

A QEMU board, a real board from an inventory file and a board lent by a lab's labgrid
place all implement :class:`Board`; the scenario runner and the pytest fixtures are typed
against these protocols only. What a board cannot do is a :class:`Capability` it does not
declare: a scenario step that needs it is refused before any board boots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from testbed.board.firmware import FirmwareDriver

#: What an awaited event must have besides its name: field values, or a predicate on the event.
EventWhere = Mapping[str, str] | Callable[[Any], bool] | None


class Capability(StrEnum):
    COMMANDS = "commands"  # a shell: commands with exit codes
    EVENTS = "events"  # the firmware's @tb events, host-timestamped
    LINK = "link"  # network link down / up
    PAUSE = "pause"  # freeze and thaw the whole board
    RESET = "reset"  # hardware reset (or a reboot from its own shell)
    POWER = "power"  # power off
    CLOCK = "clock"  # set / warp the board's wall clock
    SNAPSHOT = "snapshot"  # restore a saved state (a clean board in under a second)
    HOST_CPU = "host-cpu"  # the board's CPU time and run delay on the host (an emulated board)


class UnsupportedCapability(RuntimeError):
    """A board was asked for something it declared it cannot do."""

    def __init__(self, board: str, capability: Capability, what: str = "") -> None:
        super().__init__(f"board {board} cannot {what or capability.value} (it lacks the {capability.value!r} capability)")
        self.board = board
        self.capability = capability


@runtime_checkable
class CommandRunner(Protocol):
    """A shell on the board: a command's output and exit code."""

    def run(self, cmd: str, timeout: float = 30) -> tuple[str, int]: ...

    def run_check(self, cmd: str, timeout: float = 30) -> str: ...


@runtime_checkable
class EventSource(Protocol):
    """The firmware's @tb events as the host saw them (see testbed.contract.events).

    Each event has ``name``, ``fields``, ``monotonic`` and ``wall`` (host clocks) and
    ``get(key)``; ``since`` is a host monotonic time (``time.monotonic()`` before the step).
    """

    @property
    def events(self) -> list[Any]: ...

    def wait_for_event(
        self, name: str, timeout: float = 30, since: float | None = None, where: EventWhere = None
    ) -> Any: ...


@runtime_checkable
class BoardConsole(CommandRunner, EventSource, Protocol):
    """A board's console (testbed.board.console.Console): commands, events, the kernel's crash."""

    log_path: Path | None

    @property
    def crash(self) -> BaseException | None: ...  # a BoardCrashed once the kernel died

    def tail(self, n: int = 50) -> list[str]: ...

    def add_listener(self, callback: Callable[[Any], None]) -> None: ...


class LinkControl(Protocol):
    def link_down(self) -> None: ...

    def link_up(self) -> None: ...


class PauseControl(Protocol):
    def pause(self) -> None: ...

    def resume(self) -> None: ...


class PowerControl(Protocol):
    def reset(self, wait: bool = True, timeout: float | None = None) -> None: ...

    def power_off(self) -> None: ...


@runtime_checkable
class Board(Protocol):
    """A board under test, whatever its kind."""

    name: str
    capabilities: frozenset[Capability]

    @property
    def console(self) -> BoardConsole: ...  # (a board handed out is started)

    @property
    def events(self) -> list[Any]: ...

    @property
    def firmware(self) -> FirmwareDriver: ...

    def wait_for_event(
        self, name: str, timeout: float = 30, since: float | None = None, where: EventWhere = None
    ) -> Any: ...

    def link_down(self) -> None: ...

    def link_up(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def reset(self, wait: bool = True, timeout: float | None = None) -> None: ...

    def power_off(self) -> None: ...

    def close(self) -> None: ...


def require(board: Board, capability: Capability, what: str = "") -> None:
    """Raise :class:`UnsupportedCapability` unless the board declares ``capability``."""
    if capability not in board.capabilities:
        raise UnsupportedCapability(board.name, capability, what)


#: (board name, device id, secret, service port on the host) -> a ready, provisioned board
BoardFactory = Callable[[str, str, str, int], Board]
