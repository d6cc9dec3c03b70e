"""The console on its own: a real host shell behind a loopback socket, and pyserial's loop://."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pexpect
import pytest

from testbed.board.console import Console, clean_output, parse_event
from testbed.board.errors import BoardCrashed, ConsoleTimeout


class ShellServer:
    """A TCP server on 127.0.0.1 that bridges one connection to /bin/sh, ending lines with \\r\\r\\n as the board does."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.proc: subprocess.Popen | None = None

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        self.proc = subprocess.Popen(["/bin/sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, bufsize=0)

        def pump_out() -> None:
            while data := self.proc.stdout.read1(4096) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(1):
                conn.sendall(data.replace(b"\n", b"\r\r\n") + b"\x1b[6n")

        threading.Thread(target=pump_out, daemon=True).start()
        try:
            while data := conn.recv(4096):
                self.proc.stdin.write(data)
        except OSError:
            pass
        finally:
            self.proc.kill()

    def close(self) -> None:
        self.sock.close()
        if self.proc:
            self.proc.kill()


@pytest.fixture
def shell_console(tmp_path):
    server = ShellServer()
    console = Console(f"socket://127.0.0.1:{server.port}", log_path=tmp_path / "console.log", name="unit")
    yield console
    console.close()
    server.close()


def test_run_returns_output_and_exit_code(shell_console):
    assert shell_console.run("echo one; echo two") == ("one\ntwo", 0)
    assert shell_console.run("false") == ("", 1)
    assert shell_console.run("(exit 42)") == ("", 42)
    assert shell_console.run("exit 3", subshell=True) == ("", 3)
    shell_console.run("X=kept")
    assert shell_console.run("echo $X") == ("kept", 0)  # same shell between calls


def test_run_times_out_with_the_output_so_far(shell_console):
    with pytest.raises(ConsoleTimeout, match="sleep 5") as info:
        shell_console.run("echo started; sleep 5", timeout=0.5)
    assert "started" in str(info.value)


def test_events_are_collected_while_nobody_waits(shell_console, tmp_path):
    shell_console.sendline("echo '@tb event=crash app=crashapp pid=12 signal=11 sig=00ff'")
    event = shell_console.wait_for_event("crash", timeout=5)
    assert event.fields == {"app": "crashapp", "pid": "12", "signal": "11", "sig": "00ff"}
    assert event["signal"] == "11" and event.wall == pytest.approx(time.time(), abs=5)
    with pytest.raises(ConsoleTimeout, match="sync-ok"):
        shell_console.wait_for_event("sync-ok", timeout=0.2)
    shell_console.close()
    log = (tmp_path / "console.log").read_text()
    assert "@tb event=crash" in log and "\x1b[6n" not in log


def test_death_string_raises_from_the_next_console_call():
    console = Console("loop://", name="loop")
    try:
        console.send(b"[   12.3] Kernel panic - not syncing: sysrq triggered crash\r\r\n")
        with pytest.raises(BoardCrashed) as info:
            console.expect("never printed", timeout=5)
        assert "Kernel panic" in info.value.line
        assert any("sysrq" in line for line in info.value.last_lines)
        with pytest.raises(BoardCrashed):
            console.send("anything\n")
        console.clear_crash()
        console.send("after reset\n")
        console.expect("after reset", timeout=5)
    finally:
        console.close()


def test_only_kernel_messages_are_death_strings():
    from testbed.board.console import DEATH_STRINGS_ANYWHERE

    console = Console("loop://", name="loop")
    try:
        console.send(b"grep found: BUG: in some log\r\r\nKernel panic - not syncing (quoted)\r\r\nok\r\r\n")
        console.expect("ok", timeout=5)  # no crash: these are not kernel messages
        assert console.crash is None
        console.send(b"[    3.141592] BUG: unable to handle page fault\r\r\n")
        with pytest.raises(BoardCrashed, match="BUG: unable"):
            console.expect("never", timeout=5)
    finally:
        console.close()
    bare = Console("loop://", name="bare", death_strings=DEATH_STRINGS_ANYWHERE)
    try:
        bare.send(b"Internal error: Oops: 5 [#1] ARM\n")
        with pytest.raises(BoardCrashed):
            bare.expect("never", timeout=5)
    finally:
        bare.close()


def test_eof_when_the_port_goes_away():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    console = Console(f"socket://127.0.0.1:{server.getsockname()[1]}", name="eof")
    conn, _ = server.accept()
    conn.close()
    server.close()
    with pytest.raises(pexpect.EOF):
        console.expect("x", timeout=5)
    console.close()


def test_event_and_output_parsing():
    e = parse_event("noise @tb event=upload-fail reason=timeout\r")
    assert e is not None and e.name == "upload-fail" and e.fields == {"reason": "timeout"}
    assert parse_event("plain line") is None
    assert clean_output("a\r\r\nb\x1b[6n\r\r\n@tb event=x\r\r\nc") == "a\nb\nc"


def test_events_wrap_the_contracts_event_line_in_an_event_log():
    from testbed.contract.events import EventLine, parse_event_line
    from testbed.eventlog import EventLog

    console = Console("loop://", name="loop")
    try:
        assert isinstance(console.event_log, EventLog)
        seen: list[str] = []
        console.add_listener(lambda e: 1 / 0)  # a broken listener does not stop the reader
        console.add_listener(lambda e: seen.append(e.name))
        mark = time.monotonic()
        console.send(b"@tb event=dump-skipped reason=optout\r\n@tb event=dump-skipped reason=throttled sig=ab\r\n")
        by_field = console.wait_for_event("dump-skipped", timeout=5, where={"reason": "throttled"})
        by_predicate = console.wait_for_event("dump-skipped", timeout=5, since=mark, where=lambda e: "sig" not in e.fields)
        assert by_field["sig"] == "ab" and by_predicate["reason"] == "optout"
        assert isinstance(by_field.parsed, EventLine)
        assert by_field.parsed == parse_event_line(by_field.line)
        assert [e.get("reason") for e in console.events] == ["optout", "throttled"]
        assert seen == ["dump-skipped", "dump-skipped"]
        with pytest.raises(ConsoleTimeout, match="no 'dump-skipped' event"):
            console.wait_for_event("dump-skipped", timeout=0.2, where={"reason": "too-large"})
    finally:
        console.close()


def test_a_wait_for_an_event_ends_when_the_kernel_dies_or_the_port_closes():
    from testbed.board.errors import ConsoleClosed

    console = Console("loop://", name="loop")
    try:
        threading.Timer(0.1, lambda: console.send(b"[    1.000000] Kernel panic - not syncing: x\r\n")).start()
        t0 = time.monotonic()
        with pytest.raises(BoardCrashed):
            console.wait_for_event("boot-ready", timeout=20)
        assert time.monotonic() - t0 < 10  # woken by the crash, not by the timeout
    finally:
        console.close()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    console = Console(f"socket://127.0.0.1:{server.getsockname()[1]}", name="eof")
    conn, _ = server.accept()
    threading.Timer(0.1, conn.close).start()
    try:
        with pytest.raises(ConsoleClosed, match="closed while waiting for event boot-ready"):
            console.wait_for_event("boot-ready", timeout=20)
    finally:
        console.close()
        server.close()


def test_events_printed_by_a_command_are_in_the_log_when_run_returns(shell_console):
    for i in range(20):
        mark = len(shell_console.events)
        shell_console.run(f"echo '@tb event=app-start n={i}'")
        assert [e["n"] for e in shell_console.events[mark:]] == [str(i)]


class _ContendedPort:
    """A port whose reads first come back empty as pyserial reports it when another process
    reads the same tty (``fails`` times), then give a line; ``fails=None``: always (a device gone)."""

    def __init__(self, fails: int | None) -> None:
        import serial

        self.fails = fails
        self.is_open = True
        self.timeout = 0.05
        self.in_waiting = 0
        self._error = serial.SerialException(
            "device reports readiness to read but returned no data (device disconnected or multiple access on port?)")
        self._given = False

    def fileno(self) -> int:
        raise OSError("no fd")

    def read(self, size: int = 1) -> bytes:
        if self.fails is None or self.fails > 0:
            if self.fails is not None:
                self.fails -= 1
            raise self._error
        if not self._given:
            self._given = True
            return b"after the other reader\r\n"
        threading.Event().wait(0.01)
        return b""

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.is_open = False


def test_a_second_reader_on_the_tty_does_not_close_the_console():
    console = Console(_ContendedPort(fails=50), name="contended")  # type: ignore[arg-type]
    try:
        console.expect("after the other reader", timeout=5)
        assert console.isalive() and console.reader.contended_reads == 50
    finally:
        console.close()
    gone = Console(_ContendedPort(fails=None), name="gone")  # type: ignore[arg-type]
    try:
        with pytest.raises(pexpect.EOF):  # a device that went away still ends the console
            gone.expect("never", timeout=10)
    finally:
        gone.close()
