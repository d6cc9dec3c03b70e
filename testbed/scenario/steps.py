"""What a step's action may use of the run it is part of (the runner provides it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from testbed.board.firmware import FirmwareDriver
from testbed.board.protocols import Board
from testbed.scenario.evidence import StoredDump
from testbed.scenario.model import Expectation, Scenario


class StepFailed(RuntimeError):
    """A step could not be carried out (a board did not answer, an event never came)."""


class StepContext(Protocol):
    # Read-only members (the runner serves them as properties; actions may fill the dicts).
    @property
    def scenario(self) -> Scenario: ...

    @property
    def control(self) -> Any: ...  # testbed.service.client.ControlClient

    @property
    def admin(self) -> Any: ...  # the tenant's Administrator (public API client)

    @property
    def support(self) -> Any: ...  # a Support principal (support API client)

    @property
    def tenant_id(self) -> str: ...

    @property
    def group_ids(self) -> dict[str, str]: ...  # group key -> id

    @property
    def devices(self) -> dict[str, tuple[str, str]]: ...  # board -> (device id, secret)

    @property
    def board_group(self) -> dict[str, str]: ...  # board -> group key

    def board(self, name: str) -> Board: ...

    def firmware(self, name: str) -> FirmwareDriver: ...

    def fan_out(self, boards: list[str], fn: Callable[[str], Any]) -> list[Any]: ...

    def event_mark(self, board: str) -> int:
        """The position in the board's event log of the next event."""
        ...

    def wait_events(self, board: str, event: str, where: dict[str, str] | None, count: int, timeout: float) -> None:
        """Until the board printed ``count`` matching events since the current run of actions began."""
        ...

    def wait_any(self, board: str, names: tuple[str, ...], since: int, timeout: float) -> Any:
        """The first event called one of ``names`` at or after position ``since``."""
        ...

    def settle(self, boards: list[str], timeout: float) -> None:
        """Until every crash the boards printed has its outcome and its restart (bounded; no error)."""
        ...

    def reprovision(self, board: str) -> None: ...

    def open_interval(self, kind: str, board: str | None, label: str = "") -> None: ...

    def close_interval(self, kind: str, board: str | None) -> None: ...

    def clock_jump(self, seconds: float, dates: dict[str, float]) -> None:
        """Record a warp for the report: what the clocks read just after it (``"service"``, boards)."""
        ...

    def stored_dumps(self) -> list[StoredDump]: ...

    def sphere(self, args: list[str], command: str = "sphere") -> None: ...

    def check(self, expectations: list[Expectation]) -> None: ...
