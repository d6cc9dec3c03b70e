"""The board console: pexpect over a pyserial port.

One class for every board: a QEMU board's PL011 socket (``socket://``), a
real board's ``/dev/ttyUSB0`` or a pty (``/dev/pts/N``), or ``rfc2217://``.
A reader thread reads the port all the time, so that

- everything is written to the console log file;
- ``@tb event=...`` lines become :class:`Event` objects with host timestamps
  even when nobody is waiting for them;
- kernel death strings (Oops, BUG:, panic, end trace) are noticed at once and
  raised as :class:`BoardCrashed` from whatever console call is in progress
  (or the next one).

``run(cmd)`` wraps the command between markers and returns its output and
exit code, like labgrid's shell driver, but in one round trip.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect
import serial
from pexpect.spawnbase import SpawnBase

from testbed.board.errors import BoardCrashed, BoardError, ConsoleClosed, ConsoleTimeout

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
EVENT_RE = re.compile(r"@tb event=(?P<name>[A-Za-z0-9_.-]+)(?P<rest>(?: [^\s=]+=\S*)*)")
_ANSI_QUERY = re.compile(rb"\x1b\[6n")


@dataclass(frozen=True)
class Event:
    """One ``@tb event=<name> key=value ...`` console line."""

    name: str
    fields: dict[str, str]
    monotonic: float
    wall: float
    line: str = field(compare=False)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.fields[key]


def parse_event(line: str, monotonic: float | None = None, wall: float | None = None) -> Event | None:
    m = EVENT_RE.search(line)
    if not m:
        return None
    fields: dict[str, str] = {}
    for part in m.group("rest").split():
        key, _, value = part.partition("=")
        fields[key] = value
    return Event(
        m.group("name"),
        fields,
        time.monotonic() if monotonic is None else monotonic,
        time.time() if wall is None else wall,
        line.strip(),
    )


def clean_output(text: str) -> str:
    """Console text as a user reads it: no CRs, no cursor queries, no event lines."""
    text = text.replace("\x1b[6n", "").replace("\r", "")
    return "\n".join(line for line in text.split("\n") if not EVENT_RE.search(line))


class Console(SpawnBase):
    """A pexpect spawn reading from a pyserial port, with a reader thread."""

    def __init__(
        self,
        port: str | serial.SerialBase,
        *,
        log_path: Path | str | None = None,
        timeout: float = 30,
        baudrate: int = 115200,
        name: str = "board",
        history_lines: int = 400,
        death_strings: tuple[re.Pattern, ...] = DEATH_STRINGS,
    ):
        super().__init__(
            timeout=timeout, maxread=65536, searchwindowsize=None, encoding="utf-8", codec_errors="replace"
        )
        self.delaybeforesend = None
        self.name = name
        self.death_strings = death_strings
        if isinstance(port, str):
            # A real serial port by path, or a pyserial URL (socket://, rfc2217://, loop://).
            self.port = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
        else:
            self.port = port
        self.log_path = Path(log_path) if log_path else None
        self._log_file = self.log_path.open("ab") if self.log_path else None
        self._cond = threading.Condition()
        self._pending = bytearray()
        self._pending_cap = 8 << 20
        self._partial = b""
        self.lines: deque[str] = deque(maxlen=history_lines)
        self.events: list[Event] = []
        self.crash: BoardCrashed | None = None
        self._listeners: list[Callable[[Event], None]] = []
        self._raw_listeners: list[Callable[[bytes], None]] = []
        self._eof = False
        self._closing = False
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._reader, name=f"console-{name}", daemon=True)
        self._thread.start()

    # -- reader thread ---------------------------------------------------------------

    def _port_fd(self) -> int | None:
        try:
            return self.port.fileno()
        except Exception:  # rfc2217://, loop:// have no file descriptor
            return None

    def _reader(self) -> None:
        sock = getattr(self.port, "_socket", None)
        if sock is not None:  # socket://: no Nagle delay on our (small) writes either
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fd = self._port_fd()
        if fd is not None:
            # select() on the fd, then take whatever is there: no wait for a full buffer.
            self.port.timeout = 0
        while not self._closing:
            try:
                if fd is not None:
                    ready, _, _ = select.select([fd], [], [], 0.2)
                    if not ready:
                        continue
                    data = self.port.read(65536)
                else:
                    data = self.port.read(max(1, self.port.in_waiting))
            except Exception:  # the port went away (QEMU quit, cable pulled)
                data = None
            if data is None or (data == b"" and not getattr(self.port, "is_open", True)):
                break
            if not data:
                continue
            self._feed(data)
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _feed(self, data: bytes) -> None:
        for tap in list(self._raw_listeners):
            try:
                tap(data)
            except Exception:
                pass
        data = _ANSI_QUERY.sub(b"", data)
        now_mono, now_wall = time.monotonic(), time.time()
        if self._log_file:
            self._log_file.write(data)
            self._log_file.flush()
        chunk = self._partial + data
        *complete, self._partial = chunk.split(b"\n")
        if len(self._partial) > 8192:  # a line with no end: treat it as a line
            complete.append(self._partial)
            self._partial = b""
        new_events = []
        for raw in complete:
            line = raw.decode("utf-8", "replace").replace("\r", "")
            self.lines.append(line)
            if "@tb event=" in line:
                event = parse_event(line, now_mono, now_wall)
                if event:
                    new_events.append(event)
            if self.crash is None and any(p.search(line) for p in self.death_strings):
                self.crash = BoardCrashed(line.strip(), list(self.lines), str(self.log_path) if self.log_path else None)
        with self._cond:
            self._pending += data
            if len(self._pending) > self._pending_cap:
                del self._pending[: len(self._pending) - self._pending_cap]
            self.events.extend(new_events)
            self._cond.notify_all()
        for event in new_events:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    pass

    # -- pexpect plumbing --------------------------------------------------------------

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> str:
        if timeout == -1:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self.crash is not None:
                    raise self.crash
                if self._pending:
                    data = bytes(self._pending[:size])
                    del self._pending[:size]
                    break
                if self._eof:
                    self.flag_eof = True
                    raise pexpect.EOF(f"console {self.name}: the port closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise pexpect.TIMEOUT(f"console {self.name}: no data in {timeout} s")
                self._cond.wait(remaining if remaining is not None else 0.5)
        text = self._decoder.decode(data, final=False)
        self._log(text, "read")
        return text

    def send(self, s: str | bytes) -> int:
        if self.crash is not None:
            raise self.crash
        if self._eof:
            raise ConsoleClosed(f"console {self.name}: the port is closed")
        b = s.encode("utf-8") if isinstance(s, str) else s
        with self._write_lock:
            self.port.write(b)
            self.port.flush()
        self._log(s if isinstance(s, str) else s.decode("utf-8", "replace"), "send")
        return len(b)

    def sendline(self, s: str = "") -> int:
        return self.send(s + "\n")

    def sendcontrol(self, char: str) -> int:
        return self.send(bytes([ord(char.lower()) & 0x1F]))

    def discard(self) -> None:
        """Forget console output nobody has read yet (events are kept)."""
        with self._cond:
            self._pending.clear()
        self._buffer = self.buffer_type()
        self.before = self.string_type()

    # -- commands -----------------------------------------------------------------------

    def run(self, cmd: str, timeout: float = 30, subshell: bool = False) -> tuple[str, int]:
        """Run a shell command; its output (without CRs or @tb lines) and exit code.

        The command runs in the console's shell itself (so ``cd`` and variables
        persist between calls, and no fork is paid): an ``exit`` in it ends that
        shell. With ``subshell=True`` it runs in ``( ... )`` instead, where
        ``exit N`` just gives exit code N.

        Raises ConsoleTimeout (after sending Ctrl-C) when it does not finish in
        time, BoardCrashed when the kernel dies meanwhile.
        """
        tag = uuid.uuid4().hex[:10]
        # The markers are typed with quotes inside, so the echo of the typed line
        # never matches what the shell prints.
        opening, closing = ("(", ")") if subshell else ("{", "}")
        line = f"echo TB''{tag}S;{opening} {cmd}\n{closing}; echo TB''{tag}E$?"
        self.discard()
        self.sendline(line)
        # Only the end marker is searched for, in a small window at the end of the
        # buffer, so long outputs cost linear time; the output is cut from `before`.
        end = re.compile(rf"TB{tag}E(\d+)\r*\n")
        try:
            self.expect(end, timeout=timeout, searchwindowsize=256)
        except pexpect.TIMEOUT:
            partial = clean_output(self.before or "")
            self.sendcontrol("c")
            raise ConsoleTimeout(
                f"{self.name}: {cmd!r} did not finish in {timeout} s; output so far:\n{partial[-2000:]}"
            ) from None
        except pexpect.EOF:
            raise ConsoleClosed(f"{self.name}: the console closed while running {cmd!r}") from None
        before = self.before or ""
        start = re.search(rf"TB{tag}S\r*\n", before)
        output = clean_output(before[start.end():] if start else before)
        return output.rstrip("\n"), int(self.match.group(1))

    def run_check(self, cmd: str, timeout: float = 30) -> str:
        """Like run(), but a non-zero exit code raises."""
        output, code = self.run(cmd, timeout=timeout)
        if code != 0:
            raise BoardError(f"{self.name}: {cmd!r} exited {code}:\n{output}")
        return output

    def wait_ready(self, timeout: float = 10) -> None:
        """Wait until a shell answers on the console."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConsoleTimeout(f"{self.name}: no shell answered on the console in {timeout} s")
            try:
                self.run("true", timeout=min(2.0, remaining))
                return
            except ConsoleTimeout:
                continue

    def prepare(self, timeout: float = 10) -> None:
        """Wait for the shell, then turn the tty's echo off.

        Without echo the shell does not repeat typed commands (so a typed
        ``@tb event=`` is never mistaken for an event, and long lines are not
        wrapped) and busybox ash stops sending cursor queries.
        """
        self.wait_ready(timeout=timeout)
        self.run_check("stty -echo", timeout=timeout)

    # -- events --------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` from the reader thread for every new event."""
        self._listeners.append(callback)

    def add_raw_listener(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback(bytes)`` from the reader thread for everything read (e.g. an interactive view)."""
        self._raw_listeners.append(callback)

    def remove_raw_listener(self, callback: Callable[[bytes], None]) -> None:
        with contextlib.suppress(ValueError):
            self._raw_listeners.remove(callback)

    def interact(self, escape: bytes = b"\x1d", manage_echo: bool = True) -> None:
        """Hand the console to the user's terminal until they type the escape byte (Ctrl-]).

        With ``manage_echo`` the board's echo is turned back on for the session
        (and off again after), for a console that prepare() set up.
        """
        import os
        import select
        import sys
        import termios
        import tty

        stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
        if manage_echo:
            self.run("stty echo", timeout=10)
        self.discard()

        def show(data: bytes) -> None:
            os.write(stdout, data)

        self.add_raw_listener(show)
        interactive = os.isatty(stdin)
        saved = termios.tcgetattr(stdin) if interactive else None
        try:
            if interactive:
                tty.setraw(stdin)
            self.send(b"\n")
            while not self._eof:
                ready, _, _ = select.select([stdin], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(stdin, 1024)
                if not data:
                    break
                if escape in data:
                    data = data.split(escape, 1)[0]
                    if data:
                        self.send(data)
                    break
                self.send(data)
        finally:
            if saved is not None:
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            self.remove_raw_listener(show)
        if manage_echo and not self._eof:
            with contextlib.suppress(Exception):
                self.run("stty -echo", timeout=10)

    def wait_for_event(
        self,
        name: str,
        timeout: float = 30,
        since: float | None = None,
        where: Callable[[Event], bool] | None = None,
    ) -> Event:
        """The first event called ``name`` (at or after monotonic time ``since``) that matches ``where``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if event.name == name and (since is None or event.monotonic >= since) and (
                        where is None or where(event)
                    ):
                        return event
                if self.crash is not None:
                    raise self.crash
                if self._eof:
                    raise ConsoleClosed(f"{self.name}: the console closed while waiting for event {name}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConsoleTimeout(f"{self.name}: no '{name}' event within {timeout} s")
                self._cond.wait(min(remaining, 0.5))

    def clear_crash(self) -> None:
        """Forget a recorded kernel crash (after the board was reset)."""
        self.crash = None

    def tail(self, n: int = 50) -> list[str]:
        return list(self.lines)[-n:]

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        self._closing = True
        try:
            self.port.close()
        except Exception:
            pass
        self._thread.join(timeout=2)
        if self._log_file:
            if self._partial:
                self._log_file.write(self._partial)
            self._log_file.close()
            self._log_file = None
        self.closed = True

    def isalive(self) -> bool:
        return not self._eof and not self._closing

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
