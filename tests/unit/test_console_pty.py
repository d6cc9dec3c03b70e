"""The console over a pty with a real shell behind it, as QEMU's pty console gives one: the
rendered log (typed commands, times, no markers) and the raw transcript beside it."""

from __future__ import annotations

import os
import re
import select
import socket
import sys
import threading
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest
from ptyprocess import PtyProcess

from testbed.board.console import Console
from testbed.board.console_log import MARKER, LineRenderer, raw_path_for, render_text
from testbed.board.console_share import ConsoleShare
from testbed.deadline import Deadline

STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\.\d{3} \+\d+\.\d{3}\] ?")


class PtyShell:
    """``/bin/sh -i`` on a tty of its own, bridged to a second pty whose slave path is the
    console (QEMU's pty chardev holds the master, the console opens ``/dev/pts/N``)."""

    def __init__(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PS1": "board:/# ", "PS2": "> ", "HOME": "/tmp"}
        self.shell = PtyProcess.spawn(["/bin/sh", "-i"], env=env, dimensions=(24, 200))
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # a serial line, as QEMU makes its pty: no echo of the board's output
        self.path = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._bridge, daemon=True)
        self._thread.start()

    def _bridge(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master, self.shell.fd], [], [], 0.1)
            try:
                for fd in ready:
                    data = os.read(fd, 4096)
                    os.write(self.shell.fd if fd == self.master else self.master, data)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.shell.terminate(force=True)
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def pty_shell() -> Iterator[PtyShell]:
    shell = PtyShell()
    yield shell
    shell.close()


def _body(log: Path) -> list[str]:
    """The rendered log's lines without their time stamps (and without the header)."""
    lines = [line for line in log.read_text().splitlines() if not line.startswith("#")]
    assert all(STAMP.match(line) for line in lines), lines
    return [STAMP.sub("", line) for line in lines]


def test_the_log_shows_typed_commands_with_times_and_hides_the_markers(pty_shell, tmp_path):
    log = tmp_path / "board.log"
    console = Console(pty_shell.path, log_path=log, name="pty")
    try:
        console.prepare(timeout=10)
        assert console.run("echo hello") == ("hello", 0)
        output, code = console.run("cat /nonexistent/state")
        assert code == 1 and "No such file" in output
        assert console.run("echo '@tb event=sync-ok optin=1'; echo; echo after")[1] == 0
        assert console.run("printf no-newline")[0] == "no-newline"
        tail = console.tail(50)
    finally:
        console.close()
    body = _body(log)
    text = "\n".join(body)
    assert not MARKER.search(text) and "TB''" not in text and "{" not in text
    assert "\r" not in log.read_text()
    i = body.index("$ echo hello")
    assert body[i + 1] == "hello"
    j = body.index("$ cat /nonexistent/state")
    assert "No such file" in body[j + 1] and body[j + 2] == "(exit 1)"
    k = body.index("@tb event=sync-ok optin=1")
    assert body[k + 1] == "after"  # the blank line after the @tb line is gone
    assert "no-newline" in body and "$ stty -echo" in body
    # nothing but prompts is left of a marker's line
    assert not [line for line in body if re.fullmatch(r"(board:/# ?|> ?)+", line)]
    # the pytest failure section and the report read the same rendering
    assert [STAMP.sub("", line) for line in tail] == body[-len(tail):]
    raw = raw_path_for(log).read_bytes()
    assert MARKER.search(raw.decode()) and b"\r\n" in raw  # the raw transcript keeps everything


def test_times_are_since_the_console_opened_and_grow(pty_shell, tmp_path):
    log = tmp_path / "board.log"
    console = Console(pty_shell.path, log_path=log, name="pty")
    try:
        console.prepare(timeout=10)
        console.run("sleep 0.3; echo late")
    finally:
        console.close()
    lines = [line for line in log.read_text().splitlines() if not line.startswith("#")]
    offsets = [float(re.search(r"\+(\d+\.\d{3})\]", line).group(1)) for line in lines]
    assert offsets == sorted(offsets)
    late = next(i for i, line in enumerate(lines) if line.endswith("] late"))
    typed = next(i for i, line in enumerate(lines) if line.endswith("$ sleep 0.3; echo late"))
    assert offsets[late] - offsets[typed] >= 0.3


def test_render_of_a_real_board_transcript():
    """A piece of a board's raw log, as the reader got it (the firmware ends lines with \\r\\r\\n)."""
    raw = (
        "board:/# > TB4fad9ea98aS\r\n"
        "@tb event=provisioned device=4f07 service=10.0.2.2:36079\r\r\n"
        "\r\n"
        "sync ok: optIn=true\r\n"
        "TB4fad9ea98aE0\r\n"
        "board:/# @tb event=crash app=crashapp pid=110 signal=11\r\r\n"
        "> TB5aee4eca0fS\r\n"
        "half a line TB5aee4eca0fE2\r\n"
        "board:/# > TBe9f62dbfa7S\r\n"
        "\x1b[6nTBe9f62dbfa7E0\r\n"
        "TBbd7934e9dcR\r\n"
        "board:/# "
    ).replace("\r", "")
    assert render_text(raw).split("\n") == [
        "@tb event=provisioned device=4f07 service=10.0.2.2:36079",
        "sync ok: optIn=true",
        "@tb event=crash app=crashapp pid=110 signal=11",
        "half a line",
        "(exit 2)",
        "board:/#",
    ]


def test_a_typed_command_renders_as_a_shell_line():
    assert LineRenderer.command("cat /root/state") == ["$ cat /root/state"]
    assert LineRenderer.command("tb-provision --device-id ab --secret 'x y' --service 10.0.2.2:1") == [
        "$ tb-provision --device-id ab --secret *** --service 10.0.2.2:1"]
    assert LineRenderer.command("for i in 1 2\ndo echo $i\ndone") == ["$ for i in 1 2", "> do echo $i", "> done"]


# -- lending the console to other terminals (testbed.board.console_share) ------------------


@pytest.fixture
def prepared(pty_shell, tmp_path) -> Iterator[Console]:
    console = Console(pty_shell.path, log_path=tmp_path / "board.log", name="pty")
    console.prepare(timeout=10)
    yield console
    console.close()


def _read_until(read: Callable[[], bytes], wanted: bytes, timeout: float = 10) -> bytes:
    seen = b""
    deadline = Deadline(timeout)
    while wanted not in seen:
        if deadline.expired:
            raise AssertionError(f"{wanted!r} did not come within {timeout} s; got {seen!r}")
        seen += read()
    return seen


def _echo_is_off(console: Console) -> bool:
    output, code = console.run("stty -a")
    assert code == 0
    return " -echo " in f" {output} ".replace("\n", " ")


def test_a_socket_share_gives_a_terminal_the_shell_with_echo_and_the_testbed_keeps_its_console(prepared):
    with ConsoleShare(prepared, "socket") as share:
        assert share.address.startswith("socket://127.0.0.1:")
        port = int(share.address.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as a, \
                socket.create_connection(("127.0.0.1", port), timeout=5) as b:  # fmt: skip
            a.settimeout(0.2)
            b.settimeout(0.2)
            _wait_sessions(prepared, 2)  # both attached
            a.sendall(b"echo $((6*7))\n")
            seen_a = _read_until(lambda: _recv(a), b"42\r\n")
            assert b"echo $((6*7))" in seen_a  # typed text echoed by the board's tty
            _read_until(lambda: _recv(b), b"42\r\n")  # every terminal sees the board's output
        # both left: echo is off again, and the testbed's own commands still work
        _wait_sessions(prepared, 0)
        assert prepared.run("echo after") == ("after", 0)
        assert _echo_is_off(prepared)
    assert any(line.endswith("] 42") for line in prepared.tail(50))  # the testbed's log has the session


def test_a_pty_share_is_a_serial_line_one_terminal_opens(prepared):
    with ConsoleShare(prepared, "pty") as share:
        assert share.address.startswith("/dev/pts/")
        fd = os.open(share.address, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)

            def read() -> bytes:
                ready, _, _ = select.select([fd], [], [], 0.2)
                return os.read(fd, 4096) if ready else b""

            os.write(fd, b"echo hello-$((1+1))\n")
            seen = _read_until(read, b"hello-2\r\n")
            assert b"echo hello-$((1+1))" in seen
        finally:
            os.close(fd)
        _wait_sessions(prepared, 0)
        assert prepared.run("echo after") == ("after", 0) and _echo_is_off(prepared)
        # and again: a second terminal after the first left
        fd = os.open(share.address, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)
            os.write(fd, b"echo again\n")
            _read_until(lambda: os.read(fd, 4096) if select.select([fd], [], [], 0.2)[0] else b"", b"again\r\n")
        finally:
            os.close(fd)


def test_board_console_attaches_to_a_share_with_echo_and_ctrl_bracket_leaves(prepared, tmp_path):
    with ConsoleShare(prepared, "socket") as share:
        attach = f"{sys.executable} -m testbed.cli board console {share.address}; stty -a"
        child = pexpect.spawn("/bin/sh", ["-c", attach], encoding="utf-8", timeout=20)
        try:
            child.expect("Ctrl-] leaves")
            child.expect("board:/# ")
            child.send("echo $((6*7))\r")
            child.expect(re.escape("echo $((6*7))"))  # the echo
            child.expect("42")
            child.send("\x1d")
            child.expect("left socket://")
            child.expect(pexpect.EOF)
            settings = child.before.split()  # the terminal as `board console` left it: restored
            assert "icanon" in settings and "echo" in settings and "-icanon" not in settings
        finally:
            child.close(force=True)
        assert child.exitstatus == 0
        assert prepared.run("echo still-here") == ("still-here", 0)


def _wait_sessions(console: Console, count: int, timeout: float = 10) -> None:
    deadline = Deadline(timeout)
    while console.echo_sessions != count:
        assert not deadline.expired, f"{console.echo_sessions} terminal session(s), not {count}"
        threading.Event().wait(0.02)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(4096)
    except TimeoutError:
        return b""


def test_board_console_says_when_the_share_goes_away(prepared):
    share = ConsoleShare(prepared, "socket")
    child = pexpect.spawn(sys.executable, ["-m", "testbed.cli", "board", "console", share.address],
                          encoding="utf-8", timeout=20)
    try:
        child.expect("Ctrl-] leaves")
        _wait_sessions(prepared, 1)
        share.close()  # `board boot` ended
        child.expect("closed \\(the board powered off, or its `board boot` ended\\)")
        child.expect("detached from socket://")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        share.close()
