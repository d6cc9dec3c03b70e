"""The console's reader: one thread reading a board's serial port all the time.

Whatever kind the port is (a QEMU board's PL011 socket ``socket://``, a real board's
``/dev/ttyUSB0``, a pty, ``rfc2217://``), the reader

- writes the console log, rendered for people, and the raw transcript beside it
  (:class:`~testbed.board.console_log.ConsoleLog`);
- turns ``@tb event=...`` lines into :class:`Event` objects (the contract's
  :class:`~testbed.contract.events.EventLine` with host timestamps) in an
  :class:`~testbed.eventlog.EventLog`, even when nobody is waiting for them;
- notices kernel death strings (Oops, BUG:, panic, end trace) at once, as
  :class:`BoardCrashed`, and wakes whoever waits;
- keeps what nobody has read yet for :class:`~testbed.board.console.Console`'s expect.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import serial

from testbed.board.console_log import ConsoleLog
from testbed.board.errors import BoardCrashed
from testbed.contract.events import EVENT_PREFIX, EventLine, is_event_line, parse_event_line
from testbed.deadline import Deadline
from testbed.eventlog import EventLog

_DEATH_MESSAGES = (
    r"Internal error: Oops",
    r"Kernel panic - not syncing",
    r"BUG: ",
    r"---\[ end trace [0-9a-f]+ \]---",
    r"Unable to handle kernel ",
)
#: Kernel messages that mean the board is dying, as the kernel prints them: after
#: its printk timestamp (``[   23.027228] ``), so a command that merely prints
#: "BUG: " (a grep of some log) is not taken for a crash.
DEATH_STRINGS = tuple(re.compile(r"\[\s*\d+\.\d+\] " + m) for m in _DEATH_MESSAGES)
#: The same messages anywhere in a line, for a kernel built without CONFIG_PRINTK_TIME.
DEATH_STRINGS_ANYWHERE = tuple(re.compile(m) for m in _DEATH_MESSAGES)
_ANSI_QUERY = re.compile(rb"\x1b\[6n")
#: A line longer than this with no newline is taken as a line.
_MAX_LINE = 8192
#: pyserial's words for a read that select() said was ready but that got nothing: another
#: process read the bytes first (two readers on one tty), or a device that went away.
_CONTENDED = "multiple access on port"
#: How many such reads in a row, with no data between, make the port count as gone (a device
#: that went away is "ready" and empty at once, again and again; a second reader costs one a chunk).
CONTENDED_GIVE_UP = 1000


@dataclass(frozen=True)
class Event:
    """One ``@tb event=<name> key=value ...`` console line, as the host saw it and when."""

    parsed: EventLine
    monotonic: float
    wall: float
    line: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return self.parsed.name

    @property
    def fields(self) -> dict[str, str]:
        return self.parsed.fields

    def get(self, key: str, default: Any = None) -> Any:
        return self.parsed.fields.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.parsed.fields[key]


def parse_event(line: str, monotonic: float | None = None, wall: float | None = None) -> Event | None:
    """The event in one console line, stamped with the host's clocks (now by default)."""
    parsed = parse_event_line(line)
    if parsed is None:
        return None
    return Event(
        parsed,
        time.monotonic() if monotonic is None else monotonic,
        time.time() if wall is None else wall,
        line.strip(),
    )


def clean_output(text: str) -> str:
    """Console text as a user reads it: no CRs, no cursor queries, no event lines."""
    text = text.replace("\x1b[6n", "").replace("\r", "")
    return "\n".join(line for line in text.split("\n") if EVENT_PREFIX not in line or not is_event_line(line))


def open_port(port: str | serial.SerialBase, baudrate: int = 115200) -> serial.SerialBase:
    """A real serial port by path, or a pyserial URL (socket://, rfc2217://, loop://)."""
    if isinstance(port, str):
        return serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
    return port


class ConsoleReader:
    """Reads a port in its own thread: log file, lines, events, crash, unread bytes."""

    def __init__(
        self,
        port: serial.SerialBase,
        *,
        name: str = "board",
        log_path: Path | None = None,
        history_lines: int = 400,
        death_strings: tuple[re.Pattern, ...] = DEATH_STRINGS,
    ) -> None:
        self.port = port
        self.name = name
        self.log_path = log_path
        self.death_strings = death_strings
        self.log = ConsoleLog(log_path, name=name, history_lines=history_lines)
        self.cond = threading.Condition()
        self._pending = bytearray()
        self._pending_cap = 8 << 20
        self._partial = b""
        self.lines: deque[str] = deque(maxlen=history_lines)
        self.events: EventLog[Event] = EventLog()
        self.crash: BoardCrashed | None = None
        self._raw_listeners: list[Callable[[bytes], None]] = []
        self.eof = False
        self.closing = False
        #: Reads lost to another process reading the same tty (its output is split between both).
        self.contended_reads = 0
        self._thread = threading.Thread(target=self._read_loop, name=f"console-{name}", daemon=True)
        self._thread.start()

    # -- the thread ----------------------------------------------------------------------

    def _port_fd(self) -> int | None:
        try:
            return self.port.fileno()
        except Exception:  # rfc2217://, loop:// have no file descriptor
            return None

    def _read_loop(self) -> None:
        sock = getattr(self.port, "_socket", None)
        if sock is not None:  # socket://: no Nagle delay on our (small) writes either
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fd = self._port_fd()
        if fd is not None:
            # select() on the fd, then take whatever is there: no wait for a full buffer.
            self.port.timeout = 0
        contended_in_a_row = 0
        while not self.closing:
            try:
                if fd is not None:
                    ready, _, _ = select.select([fd], [], [], 0.2)
                    if not ready:
                        continue
                    data = self.port.read(65536)
                else:
                    data = self.port.read(max(1, self.port.in_waiting))
                contended_in_a_row = 0
            except serial.SerialException as exc:
                # Another reader took the bytes: not a closed port (an attach must not leave by
                # itself), unless nothing at all comes for a while (a device that went away).
                if _CONTENDED in str(exc):
                    self.contended_reads += 1
                    contended_in_a_row += 1
                    if contended_in_a_row < CONTENDED_GIVE_UP:
                        continue
                data = None
            except Exception:  # the port went away (QEMU quit, cable pulled)
                data = None
            if data is None or (data == b"" and not getattr(self.port, "is_open", True)):
                break
            if not data:
                continue
            self.feed(data)
        with self.cond:
            self.eof = True
            self.cond.notify_all()
        self.events.close()

    def feed(self, data: bytes) -> None:
        """Take what the port gave (the reader thread calls this)."""
        for tap in list(self._raw_listeners):
            try:
                tap(data)
            except Exception:
                pass
        data = _ANSI_QUERY.sub(b"", data)
        now_mono, now_wall = time.monotonic(), time.time()
        self.log.raw(data)
        chunk = self._partial + data
        *complete, self._partial = chunk.split(b"\n")
        if len(self._partial) > _MAX_LINE:  # a line with no end: treat it as a line
            complete.append(self._partial)
            self._partial = b""
        new_events: list[Event] = []
        crashed = False
        for raw in complete:
            line = raw.decode("utf-8", "replace").replace("\r", "")
            self.lines.append(line)
            self.log.line(line, now_mono)
            if EVENT_PREFIX in line:
                event = parse_event(line, now_mono, now_wall)
                if event:
                    new_events.append(event)
            if self.crash is None and any(p.search(line) for p in self.death_strings):
                self.crash = BoardCrashed(line.strip(), list(self.log.tail), str(self.log_path) if self.log_path else None)
                crashed = True
        # Events first: whoever sees this data through expect() (the end of a run()) then
        # also finds the events printed before it in the log.
        self.events.extend(new_events)
        if crashed:
            self.events.wake()
        with self.cond:
            self._pending += data
            if len(self._pending) > self._pending_cap:
                del self._pending[: len(self._pending) - self._pending_cap]
            self.cond.notify_all()

    # -- for the console ---------------------------------------------------------------

    def take(self, size: int, timeout: float | None) -> bytes | None:
        """Up to ``size`` unread bytes, waiting up to ``timeout`` for some.

        b"" once the port has closed, None when nothing came in time; raises the
        board's crash when the kernel died.
        """
        deadline: Deadline | None = None
        with self.cond:
            while True:
                if self.crash is not None:
                    raise self.crash
                if self._pending:
                    data = bytes(self._pending[:size])
                    del self._pending[:size]
                    return data
                if self.eof:
                    return b""
                if deadline is None:
                    deadline = Deadline(timeout)
                elif deadline.expired:
                    return None
                self.cond.wait(deadline.remaining_or(0.5))

    def discard(self) -> None:
        """Forget output nobody has read yet (events and lines are kept)."""
        with self.cond:
            self._pending.clear()

    def add_raw_listener(self, callback: Callable[[bytes], None]) -> None:
        self._raw_listeners.append(callback)

    def remove_raw_listener(self, callback: Callable[[bytes], None]) -> None:
        with contextlib.suppress(ValueError):
            self._raw_listeners.remove(callback)

    def close(self) -> None:
        self.closing = True
        try:
            self.port.close()
        except Exception:
            pass
        self._thread.join(timeout=2)
        self.log.close(self._partial)
        self._partial = b""
        self.events.close()
