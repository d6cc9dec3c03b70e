"""RealBoard: a board on a bench (or a stand-in of one), reached by its serial console.

Everything goes through the board's own shell on its console: link faults take its
interface down and back up (in one typed line that needs no network to come back),
clock warps use ``date`` (the firmware driver), a fresh state per scenario clears the
firmware's state directory and restarts its daemons. Reset and power are host commands
from the inventory, or ``reboot`` typed on its shell; what the inventory does not give,
the board does not declare (testbed.board.inventory.capabilities_of), and it never
declares PAUSE, SNAPSHOT or HOST_CPU.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pexpect
import serial

from testbed.board.console import Console, Event
from testbed.board.errors import BoardBootTimeout, BoardError, ConsoleTimeout
from testbed.board.firmware import FirmwareDriver
from testbed.board.identity import Identity
from testbed.board.inventory import BoardEntry, HostCommand, capabilities_of
from testbed.board.protocols import Capability, UnsupportedCapability

#: Where a link fault keeps the interface's routes while it is down (on the board).
ROUTES_FILE = "/tmp/.tb-link-routes"


def link_down_command(interface: str) -> str:
    """Save the interface's routes (they go with the link), then take it down."""
    i = shlex.quote(interface)
    return f"ip route show dev {i} > {ROUTES_FILE} && ip link set {i} down"


def link_up_command(interface: str) -> str:
    """Bring the interface up and put its saved routes back (the kernel adds the connected ones itself)."""
    i = shlex.quote(interface)
    return (f"ip link set {i} up && if [ -f {ROUTES_FILE} ]; then "
            f"while read -r r; do [ -n \"$r\" ] && ip route add $r dev {i} 2>/dev/null; done < {ROUTES_FILE}; "
            f"rm -f {ROUTES_FILE}; fi; true")  # fmt: skip


def run_host_command(board: str, what: str, cmd: HostCommand) -> None:
    """Run a reset or power command on the host (a relay, a PDU): non-zero exit raises."""
    try:
        proc = subprocess.run(cmd.command, shell=True, capture_output=True, text=True, timeout=cmd.timeout)
    except subprocess.TimeoutExpired:
        raise BoardError(f"{board}: the {what} command `{cmd.command}` did not finish in {cmd.timeout:g} s") from None
    if proc.returncode != 0:
        raise BoardError(f"{board}: the {what} command `{cmd.command}` exited {proc.returncode}: "
                         f"{(proc.stderr or proc.stdout).strip()[-300:]}")  # fmt: skip


class RealBoard:
    """A board from an inventory entry; ``open()`` attaches to its console's shell."""

    def __init__(self, entry: BoardEntry, *, log_path: Path | None = None, console_url: str | None = None,
                 boot_timeout: float = 120, place: Any = None) -> None:  # fmt: skip
        self.entry = entry
        self.name = entry.name
        self.capabilities: frozenset[Capability] = capabilities_of(entry)
        self.console_url = console_url or entry.console
        if not self.console_url:
            raise BoardError(f"{self.name}: no console (a labgrid board gets it from its place)")
        self.log_path = log_path
        self.place = place  # a testbed.board.labgrid_place.LabgridPlace, released on close
        #: Called after a reset once a shell answers (the factory: firmware installed and running).
        self.on_ready: Callable[[RealBoard], None] | None = None
        #: Called once when the board is closed (the factory: the inventory board is free again).
        self.on_close: Callable[[RealBoard], None] | None = None
        self.boot_timeout = boot_timeout
        self.identity: Identity | None = None
        self._console: Console | None = None
        self._firmware: FirmwareDriver | None = None
        self._ssh: Any = None
        self._closed = False

    # -- attaching ---------------------------------------------------------------------
    def open(self, timeout: float = 30) -> RealBoard:
        """Open the console and wait for a shell there (echo off, as the console expects)."""
        try:
            self._console = Console(self.console_url, log_path=self.log_path, name=self.name,
                                    baudrate=self.entry.baudrate)  # fmt: skip
        except (serial.SerialException, OSError, ValueError) as exc:
            self.close()
            raise BoardError(f"{self.name}: cannot open the console {self.console_url}: {exc}") from None
        self._firmware = FirmwareDriver(self._console, self.name)
        try:
            self._console.prepare(timeout=timeout)
        except ConsoleTimeout:
            tail = "\n".join(self._console.tail(20))
            self.close()  # (releases a labgrid place too)
            raise BoardError(f"{self.name}: no shell answered on the console {self.console_url} in {timeout:g} s"
                             + (f"; last lines:\n{tail}" if tail else " (it printed nothing)")) from None  # fmt: skip
        return self

    @property
    def console(self) -> Console:
        if self._console is None:
            raise BoardError(f"{self.name} is not open")
        return self._console

    @property
    def firmware(self) -> FirmwareDriver:
        if self._firmware is None:
            raise BoardError(f"{self.name} is not open")
        return self._firmware

    def ssh(self) -> Any:
        """An SSH connection to the board (from the inventory's ssh entry), opened once."""
        spec = self.entry.ssh
        if spec is None:
            raise BoardError(f"{self.name}: the inventory gives no ssh for it")
        if self._ssh is None:
            from testbed.board.ssh import SshConnection

            # no password and no key: the empty password (dropbear -B on a bench board)
            password = spec.password if spec.password is not None or spec.key_file else ""
            self._ssh = SshConnection(spec.address, port=spec.port, username=spec.user, password=password,
                                      key_filename=str(spec.key_file) if spec.key_file else None,
                                      known_hosts=str(spec.known_hosts) if spec.known_hosts else None)  # fmt: skip
        return self._ssh

    # -- events ------------------------------------------------------------------------
    @property
    def events(self) -> list[Event]:
        return self._console.events if self._console else []

    def wait_for_event(self, name: str, timeout: float = 30, since: float | None = None,
                       where: Mapping[str, str] | None = None) -> Event:  # fmt: skip
        match = None if where is None else (lambda e: all(e.fields.get(k) == v for k, v in where.items()))
        return self.console.wait_for_event(name, timeout=timeout, since=since, where=match)

    # -- firmware ----------------------------------------------------------------------
    def provision(self, identity: Identity, timeout: float = 20) -> tuple[str, int]:
        self.identity = identity
        return self.firmware.provision(identity, timeout=timeout)

    def fresh_start(self, timeout: float = 90) -> None:
        """A new device: firmware stopped, its state directory cleared, started again (firmware-ready)."""
        self.firmware.restart(self.console, fresh=True, timeout=timeout)

    # -- faults from its own shell -------------------------------------------------------
    def _shell(self, cmd: str, timeout: float = 15) -> str:
        output, code = self.console.run(cmd, timeout=timeout)
        if code != 0:
            raise BoardError(f"{self.name}: `{cmd}` exited {code}: {output.strip()[-300:]}")
        return output

    def link_down(self) -> None:
        self._shell(link_down_command(self.entry.interface))

    def link_up(self) -> None:
        self._shell(link_up_command(self.entry.interface))

    def pause(self) -> None:
        raise UnsupportedCapability(self.name, Capability.PAUSE, "pause")

    def resume(self) -> None:
        raise UnsupportedCapability(self.name, Capability.PAUSE, "resume")

    def reset(self, wait: bool = True, timeout: float | None = None) -> None:
        """Reset by the inventory's method; with ``wait``, until its boot_ready line and a shell."""
        timeout = self.boot_timeout if timeout is None else timeout
        method = self.entry.reset
        console = self.console
        console.discard()
        if method == "shell":
            console.sendline("reboot")
        elif isinstance(method, HostCommand):
            run_host_command(self.name, "reset", method)
        elif self.entry.power_off is not None and self.entry.power_on is not None:
            run_host_command(self.name, "power off", self.entry.power_off)
            run_host_command(self.name, "power on", self.entry.power_on)
        elif self._place_power():
            self.place.power_cycle()
        else:
            raise UnsupportedCapability(self.name, Capability.RESET, "reset")
        console.clear_crash()
        if wait:
            self.wait_boot_ready(timeout)

    def wait_boot_ready(self, timeout: float) -> None:
        try:
            # the whole line: typing before its end would mix the shell's echo into it
            self.console.expect(re.compile(rf"(?:{self.entry.boot_ready})[^\n]*\n"), timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF):
            tail = "\n".join(self.console.tail(20))
            raise BoardBootTimeout(f"{self.name}: no {self.entry.boot_ready!r} on the console within {timeout:g} s "
                                   f"after the reset; last lines:\n{tail}") from None  # fmt: skip
        self.console.prepare(timeout=30)
        if self._ssh is not None:  # the old connection died with the board
            with contextlib.suppress(Exception):
                self._ssh.close()
            self._ssh = None
        if self.on_ready is not None:
            self.on_ready(self)

    def _place_power(self) -> bool:
        return self.place is not None and self.entry.labgrid is not None and self.entry.labgrid.power

    def power_off(self) -> None:
        if self.entry.power_off is not None:
            run_host_command(self.name, "power off", self.entry.power_off)
        elif self._place_power():
            self.place.power_off()
        else:
            raise UnsupportedCapability(self.name, Capability.POWER, "power off")

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ssh is not None:
            with contextlib.suppress(Exception):
                self._ssh.close()
        if self._console is not None:
            with contextlib.suppress(Exception):
                self._console.close()
        if self.place is not None:
            with contextlib.suppress(Exception):
                self.place.close()
        if self.on_close is not None:
            self.on_close(self)

    def __enter__(self) -> RealBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RealBoard {self.name} console={self.console_url}>"
