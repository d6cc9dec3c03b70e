"""A synchronous face on qemu.qmp's asyncio client, with every event kept.

The client runs in its own event-loop thread; events are appended to an
:class:`~testbed.eventlog.EventLog` (``event_log``; ``events`` is a list copy)
as they arrive (name, data, host monotonic and wall time), so a test can ask
afterwards what QEMU reported (RESET, STOP, RESUME, SHUTDOWN...) or wait for one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from qemu.qmp import ConnectError, QMPClient, QMPError

from testbed.board.errors import BoardError
from testbed.deadline import Deadline
from testbed.eventlog import EventLog, EventLogTimeout

# Every QMP failure surfaces as an exception from Qmp.cmd(); the library's own
# error logging (e.g. "Connection reset by peer" when QEMU quits) only adds noise.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)


class QmpCommandError(BoardError):
    """A QMP command failed: QEMU refused it or went away while it ran."""


@dataclass(frozen=True)
class QmpEvent:
    name: str
    data: dict[str, Any]
    monotonic: float
    wall: float
    qemu_timestamp: dict[str, int] = field(default_factory=dict)


def _json_object(value: object) -> dict[str, Any]:
    """A copy of a QMP message member that is a JSON object or absent (the library types members as object)."""
    return dict(cast(Mapping[str, Any], value or {}))


class Qmp:
    def __init__(self, socket_path: Path, name: str = "board"):
        self.socket_path = socket_path
        self.name = name
        self.event_log: EventLog[QmpEvent] = EventLog()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"qmp-{name}", daemon=True)
        self._thread.start()
        self._client = QMPClient(name)
        self._listener: concurrent.futures.Future[None] | None = None

    def _call(self, coro, timeout: float, what: str = "QMP"):
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise BoardError(f"{self.name}: {what} did not answer in {timeout} s") from None
        except (ConnectError, OSError):
            raise  # connect() retries these
        except QMPError as exc:  # QEMU went away mid-command, or refused it
            raise QmpCommandError(f"{self.name}: {what} failed: {exc}") from exc

    @property
    def events(self) -> list[QmpEvent]:
        """QEMU's events so far, as a list (a copy)."""
        return self.event_log.snapshot()

    def connect(self, timeout: float = 10, alive: Callable[[], bool] = lambda: True) -> None:
        """Connect to QEMU's QMP socket, retrying until ``timeout``.

        The socket file appears when QEMU binds it, a moment before it listens,
        so a refused connection is retried (with a fresh client each time).
        """
        deadline = Deadline(timeout)
        last: Exception | None = None
        while True:
            if not alive():
                raise BoardError(f"{self.name}: QEMU exited before QMP answered")
            if self.socket_path.exists():
                try:
                    self._call(self._client.connect(str(self.socket_path)), max(1.0, deadline.remaining or 0.0))
                    break
                except (ConnectError, OSError) as exc:
                    last = exc
                    self._client = QMPClient(self.name)
            if not deadline.sleep(0.01):
                raise BoardError(
                    f"{self.name}: QMP socket {self.socket_path} did not answer in {timeout} s"
                    + (f": {last}" if last else "")
                )
        self._listener = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)

    async def _listen(self) -> None:
        try:
            async for msg in self._client.events:
                event = QmpEvent(
                    str(msg["event"]),
                    _json_object(msg.get("data", {})),
                    time.monotonic(),
                    time.time(),
                    _json_object(msg.get("timestamp", {})),
                )
                self.event_log.append(event)
        except asyncio.CancelledError:
            pass

    def cmd(self, command: str, timeout: float = 30, **arguments: Any) -> Any:
        """Run a QMP command; QMP failures (QEMU gone, command refused) raise QmpCommandError."""
        return self._call(self._client.execute(command, arguments or None), timeout, what=f"QMP {command}")

    def wait_event(self, name: str, timeout: float = 30, since: float | None = None,
                   where: Callable[[QmpEvent], bool] | None = None) -> QmpEvent:  # fmt: skip
        """The first QMP event called ``name`` (seen at or after monotonic ``since``) that matches ``where``."""

        def match(event: QmpEvent) -> bool:
            return event.name == name and (since is None or event.monotonic >= since) and (
                where is None or where(event)
            )

        try:
            (event,) = self.event_log.wait_for(match, timeout, what=f"QMP event {name}")
        except EventLogTimeout:
            raise BoardError(f"{self.name}: no QMP event {name} within {timeout} s") from None
        return event

    def close(self) -> None:
        async def _shutdown() -> None:
            try:
                await self._client.disconnect()
            except Exception:
                pass

        async def _stop_listener() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
                    try:
                        await task
                    except BaseException:
                        pass

        if self._loop.is_running():
            for coro in (_shutdown(), _stop_listener()):
                try:
                    asyncio.run_coroutine_threadsafe(coro, self._loop).result(3)
                except Exception:
                    pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=3)
            if not self._loop.is_running():
                self._loop.close()
        self.event_log.close()
