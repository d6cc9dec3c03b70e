"""The board console: pexpect over a pyserial port, with commands that return exit codes.

One class for every board: a QEMU board's PL011 socket (``socket://``), a
real board's ``/dev/ttyUSB0`` or a pty (``/dev/pts/N``), or ``rfc2217://``.
Its :class:`~testbed.board.console_reader.ConsoleReader` reads the port all
the time (log file, ``@tb`` events with host timestamps in an EventLog, kernel
death strings raised as :class:`BoardCrashed` from whatever console call is in
progress, or the next one).

``run(cmd)`` wraps the command between markers and returns its output and
exit code, like labgrid's shell driver, but in one round trip.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import serial
from pexpect.spawnbase import SpawnBase

from testbed.board.console_log import new_tag, typed_marker
from testbed.board.console_reader import (
    DEATH_STRINGS,
    DEATH_STRINGS_ANYWHERE,
    ConsoleReader,
    Event,
    clean_output,
    open_port,
    parse_event,
)
from testbed.board.errors import BoardCrashed, BoardError, ConsoleClosed, ConsoleTimeout
from testbed.board.protocols import EventWhere
from testbed.deadline import Deadline
from testbed.eventlog import EventLog, EventLogTimeout

__all__ = [
    "DEATH_STRINGS",
    "DEATH_STRINGS_ANYWHERE",
    "Console",
    "Event",
    "EventWhere",
    "clean_output",
    "event_matcher",
    "parse_event",
]

def event_matcher(name: str, since: float | None = None, where: EventWhere = None) -> Callable[[Event], bool]:
    """A predicate for events called ``name``, seen at or after monotonic ``since``, matching ``where``."""
    if where is None or callable(where):
        check = where
    else:
        wanted = dict(where)

        def check(event: Event) -> bool:
            return all(event.fields.get(k) == v for k, v in wanted.items())

    def match(event: Event) -> bool:
        return (
            event.name == name
            and (since is None or event.monotonic >= since)
            and (check is None or check(event))
        )

    return match


#: How far back from the end of the console buffer the end-of-command marker is looked for.
MARKER_WINDOW = 64 * 1024

#: A shell prompt at the end of the output: "board:/# " on our image, "$ " or "# " on most shells.
PROMPT = re.compile(r"[#$] $")

#: How long interrupt() waits for the shell's prompt after a Ctrl-C.
INTERRUPT_SETTLE_S = 1.0

class Console(SpawnBase):
    """A pexpect spawn reading from a pyserial port through a :class:`ConsoleReader`."""

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
        self.port = open_port(port, baudrate)
        self.log_path = Path(log_path) if log_path else None
        self.reader = ConsoleReader(
            self.port, name=name, log_path=self.log_path, history_lines=history_lines, death_strings=death_strings
        )
        self._write_lock = threading.Lock()
        self._echo_lock = threading.Lock()
        self._echo_holders = 0

    # -- what the reader keeps --------------------------------------------------------

    @property
    def event_log(self) -> EventLog[Event]:
        """Every @tb event seen, in order (wait on it, mark it, subscribe to it)."""
        return self.reader.events

    @property
    def events(self) -> list[Event]:
        """The events seen so far, as a list (a copy)."""
        return self.reader.events.snapshot()

    @property
    def lines(self) -> deque[str]:
        """The last console lines (``history_lines`` of them)."""
        return self.reader.lines

    @property
    def crash(self) -> BoardCrashed | None:
        """The kernel crash seen on the console (None until one is, or after clear_crash())."""
        return self.reader.crash

    @property
    def death_strings(self) -> tuple[re.Pattern, ...]:
        return self.reader.death_strings

    # -- pexpect plumbing --------------------------------------------------------------

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> str:
        if timeout == -1:
            timeout = self.timeout
        data = self.reader.take(size, timeout)
        if data is None:
            raise pexpect.TIMEOUT(f"console {self.name}: no data in {timeout} s")
        if not data:
            self.flag_eof = True
            raise pexpect.EOF(f"console {self.name}: the port closed")
        text = self._decoder.decode(data, final=False)
        self._log(text, "read")
        return text

    def send(self, s: str | bytes) -> int:
        if self.reader.crash is not None:
            raise self.reader.crash
        if self.reader.eof:
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
        self.reader.discard()
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
        tag = new_tag()
        # The markers are typed with quotes inside, so the echo of the typed line
        # never matches what the shell prints.
        opening, closing = ("(", ")") if subshell else ("{", "}")
        line = f"echo {typed_marker(tag, 'S')};{opening} {cmd}\n{closing}; echo {typed_marker(tag, 'E$?')}"
        self.discard()
        self.reader.log.command(cmd)  # the log shows the command, not its wrapping
        self.sendline(line)
        # Only the end marker is searched for, in a window at the end of the buffer,
        # so long outputs cost linear time; the output is cut from `before`. The window
        # is wide: what follows the marker in the same read (a burst of @tb event lines
        # when the command made an app crash) must not push it out of sight.
        end = re.compile(rf"TB{tag}E(\d+)\r*\n")
        try:
            self.expect(end, timeout=timeout, searchwindowsize=MARKER_WINDOW)
        except pexpect.TIMEOUT:
            partial = clean_output(self.before or "")
            self.interrupt()
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
        """Wait until a shell answers on the console.

        Each probe is one line (``echo`` of a fresh marker), so a probe cut short cannot leave
        the shell inside an open ``{``; after a probe that got no answer, interrupt() puts the
        shell back at its prompt before the next one.
        """
        deadline = Deadline(timeout)
        first = True
        while True:
            if deadline.expired:
                raise ConsoleTimeout(f"{self.name}: no shell answered on the console in {timeout} s")
            if not first:
                self.interrupt(settle=deadline.remaining_or(INTERRUPT_SETTLE_S))
                if deadline.expired:
                    continue
            first = False
            tag = new_tag()
            self.discard()
            self.sendline(f"echo {typed_marker(tag, 'R')}")
            try:
                self.expect(re.compile(rf"TB{tag}R\r*\n"), timeout=deadline.remaining_or(2.0))
                return
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                raise ConsoleClosed(f"{self.name}: the console closed while waiting for a shell") from None

    def interrupt(self, settle: float = INTERRUPT_SETTLE_S) -> bool:
        """Send Ctrl-C, then wait up to ``settle`` s for the shell's prompt; True if it came.

        Linux's tty flushes its pending input when it turns a Ctrl-C into SIGINT, including bytes
        that arrived in the same burst after it: a command typed right behind a Ctrl-C can lose
        its first line (and its second then reads as a syntax error). Waiting for the prompt
        means the interrupt has been handled before anything else is typed.
        """
        self.discard()
        self.reader.log.command("^C")
        self.sendcontrol("c")
        try:
            self.expect(PROMPT, timeout=max(settle, 0.0))
            return True
        except (pexpect.TIMEOUT, pexpect.EOF):
            return False

    def prepare(self, timeout: float = 10) -> None:
        """Wait for the shell, then turn the tty's echo off.

        Without echo the shell does not repeat typed commands (so a typed
        ``@tb event=`` is never mistaken for an event, and long lines are not
        wrapped) and busybox ash stops sending cursor queries.
        """
        self.wait_ready(timeout=timeout)
        self.run_check("stty -echo", timeout=timeout)

    @property
    def echo_sessions(self) -> int:
        """How many echo_session()s are open (terminals attached)."""
        return self._echo_holders

    @contextlib.contextmanager
    def echo_session(self) -> Iterator[None]:
        """The tty's echo on while a person types at the console (prepare() turned it off).

        Sessions may overlap (several attached terminals): the first turns echo on, the last
        to end turns it off again, so the testbed's own commands run without echo after.
        """
        with self._echo_lock:
            if self._echo_holders == 0:
                self.run("stty echo", timeout=10)
            self._echo_holders += 1
        try:
            yield
        finally:
            with self._echo_lock:
                self._echo_holders -= 1
                if self._echo_holders == 0 and self.isalive() and self.reader.crash is None:
                    with contextlib.suppress(BoardError):
                        self.run("stty -echo", timeout=10)

    # -- events --------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` from the reader thread for every new event (its errors are ignored)."""

        def guarded(event: Event) -> None:
            try:
                callback(event)
            except Exception:
                pass

        self.reader.events.subscribe(guarded)

    def add_raw_listener(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback(bytes)`` from the reader thread for everything read (e.g. an interactive view)."""
        self.reader.add_raw_listener(callback)

    def remove_raw_listener(self, callback: Callable[[bytes], None]) -> None:
        self.reader.remove_raw_listener(callback)

    def wait_for_event(self, name: str, timeout: float = 30, since: float | None = None,
                       where: EventWhere = None) -> Event:  # fmt: skip
        """The first event called ``name`` (seen at or after monotonic time ``since``) that matches ``where``.

        Raises ConsoleTimeout when none comes in time, BoardCrashed when the kernel
        dies meanwhile, ConsoleClosed when the port closes.
        """

        def abort() -> BaseException | None:
            if self.reader.crash is not None:
                return self.reader.crash
            if self.reader.eof:
                return ConsoleClosed(f"{self.name}: the console closed while waiting for event {name}")
            return None

        try:
            (event,) = self.reader.events.wait_for(
                event_matcher(name, since, where), timeout, what=f"'{name}' event", abort=abort
            )
        except EventLogTimeout:
            raise ConsoleTimeout(f"{self.name}: no '{name}' event within {timeout} s") from None
        return event

    def clear_crash(self) -> None:
        """Forget a recorded kernel crash (after the board was reset)."""
        self.reader.crash = None

    def tail(self, n: int = 50) -> list[str]:
        """The last ``n`` lines of the rendered log (times, typed commands; no markers)."""
        return list(self.reader.log.tail)[-n:]

    @property
    def raw_log_path(self) -> Path | None:
        """The raw transcript beside the rendered log (every byte read)."""
        return self.reader.log.raw_path

    def interact(self, escape: bytes = b"\x1d", manage_echo: bool = True) -> str:
        """Hand the console to the user's terminal until they type the escape byte (Ctrl-]).

        With ``manage_echo`` the board's echo is turned back on for the session
        (and off again after), for a console that prepare() set up. Returns why it ended
        (``console_interact.LEFT``, ``PORT_CLOSED`` or ``INPUT_CLOSED``).
        """
        from testbed.board.console_interact import interact

        return interact(self, escape=escape, manage_echo=manage_echo)

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        self.reader.close()
        self.closed = True

    def isalive(self) -> bool:
        return not self.reader.eof and not self.reader.closing

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
