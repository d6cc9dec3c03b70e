"""A board lent by a lab's labgrid place (the optional extra: ``pip install testbed[labgrid]``).

Where a lab runs labgrid's coordinator, the coordinator spreads boards over the lab's
machines; the testbed adds no scheduler. For one inventory board with ``labgrid:
{place: NAME}`` this module, through labgrid's client library,

- acquires the place (refused when someone else holds it);
- finds the place's NetworkSerialPort and gives its address as the console URL
  (``socket://`` for a raw port, ``rfc2217://`` otherwise), which the testbed's own
  console opens (labgrid's shell driver is not used: it costs a round trip per line);
- when the inventory says ``power: true``, drives the place's power resource through
  labgrid's power driver (NetworkPowerPort, PDUDaemonPort);
- releases the place at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from typing import Any

from testbed.board.errors import BoardError
from testbed.board.inventory import LabgridSpec

#: labgrid power resources the testbed drives, and the driver for each.
POWER_DRIVERS = {"NetworkPowerPort": "NetworkPowerDriver", "PDUDaemonPort": "PDUDaemonDriver"}
DEFAULT_COORDINATOR = "127.0.0.1:20408"


def labgrid_missing() -> str | None:
    """Why labgrid cannot be used here (None when it can)."""
    try:
        import labgrid.remote.client  # noqa: F401
    except ImportError as exc:
        return f"labgrid is not installed ({exc}): pip install 'testbed[labgrid]'"
    return None


class LabgridPlace:
    """One acquired place: its console URL and, when it has one, its power switch."""

    def __init__(self, spec: LabgridSpec, board: str = "board") -> None:
        why = labgrid_missing()
        if why:
            raise BoardError(f"{board}: {why}")
        self.spec = spec
        self.board = board
        self.session: Any = None
        self.acquired = False
        self._power: Any = None

    def _run(self, coro: Any) -> Any:
        return self.session.loop.run_until_complete(coro)

    def acquire(self) -> LabgridPlace:
        from labgrid.remote.client import Error as LabgridError
        from labgrid.remote.client import start_session

        address = self.spec.coordinator or DEFAULT_COORDINATOR
        args = argparse.Namespace(place=self.spec.place, allow_unmatched=False, kick=False)
        try:
            self.session = start_session(address, extra={"args": args})
        except Exception as exc:  # noqa: BLE001 (grpc, OSError...: all mean the same to the user)
            raise BoardError(f"{self.board}: cannot reach the labgrid coordinator at {address}: {exc}") from None
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # labgrid prints "acquired place ..."
                self._run(self.session._acquire_place(self.spec.place))
        except LabgridError as exc:
            self.close()
            raise BoardError(f"{self.board}: cannot acquire labgrid place {self.spec.place!r}: {exc}") from None
        self.acquired = True
        return self

    def _resources(self) -> dict[tuple[str, str], Any]:
        place = self.session.get_place(self.spec.place)
        return self.session.get_target_resources(place)

    def console_url(self) -> str:
        """The place's NetworkSerialPort as a URL the testbed's console opens."""
        ports = [r for (_, cls), r in self._resources().items() if cls == "NetworkSerialPort"]
        if not ports:
            raise BoardError(f"{self.board}: labgrid place {self.spec.place!r} has no NetworkSerialPort")
        a = ports[0].args
        scheme = "socket" if a.get("protocol") == "raw" else "rfc2217"
        return f"{scheme}://{a['host']}:{a['port']}"

    def power(self) -> Any:
        """labgrid's power driver for the place's power resource (PowerProtocol: on, off, cycle)."""
        if self._power is None:
            from labgrid import Target
            from labgrid.factory import target_factory

            found = [(name, cls, r) for (name, cls), r in self._resources().items() if cls in POWER_DRIVERS]
            if not found:
                raise BoardError(f"{self.board}: labgrid place {self.spec.place!r} has no power resource "
                                 f"({', '.join(POWER_DRIVERS)})")  # fmt: skip
            name, cls, resource = found[0]
            target = Target(f"{self.spec.place}-power")
            target_factory.make_resource(target, cls, name, dict(resource.args))
            driver = target_factory.make_driver(target, POWER_DRIVERS[cls], None, {})
            target.activate(driver)
            self._power = driver
        return self._power

    def power_off(self) -> None:
        self.power().off()

    def power_cycle(self) -> None:
        self.power().cycle()

    def close(self) -> None:
        """Release the place (when this acquired it) and end the session."""
        if self.session is None:
            return
        if self.acquired:
            with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
                self._run(self.session._release_place(self.spec.place))
            self.acquired = False
        with contextlib.suppress(Exception):
            self._run(self.session.stop())
        with contextlib.suppress(Exception):
            self._run(self.session.close())
        self.session = None
