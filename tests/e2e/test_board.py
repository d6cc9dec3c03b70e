"""Real QEMU boards: boot, commands, events, faults, snapshots, panics, the serial path."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import uuid

import pexpect
import pytest
import serial

from testbed.board.errors import BoardBootTimeout, BoardCrashed, ConsoleTimeout
from testbed.board.identity import Identity
from testbed.board.qemu import QemuBoard

pytestmark = pytest.mark.e2e


class Listener:
    """A TCP listener on the host's 127.0.0.1 that records what each connection sent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while chunk := conn.recv(1024):
                        data += chunk
                except OSError:
                    pass
                self.received.append(data)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(timeout=2)


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def test_cold_boot_runs_commands_with_exit_codes(board_image, board_boot_timeout, tmp_path):
    identity = Identity(Identity.random_device_id(), "s3cret-Token_x", "10.0.2.2:8443")
    with QemuBoard(board_image, name="coldboot", identity=identity, boot_timeout=board_boot_timeout,
                   log_dir=tmp_path) as b:
        b.boot()
        ready = [e for e in b.events if e.name == "boot-ready"]
        assert len(ready) == 1 and ready[0].wall == pytest.approx(time.time(), abs=120)
        out, code = b.console.run("uname -m; cat /proc/cmdline")
        assert code == 0
        assert out.splitlines()[0] == "armv7l"
        assert f"tb.device_id={identity.device_id}" in out and "tb.service=10.0.2.2:8443" in out
        assert b.console.run("exit_with() { return $1; }; exit_with 7") == ("", 7)
        assert b.console.run("ls /does-not-exist")[1] != 0
        out, code = b.console.run("lsmod")
        assert "virtio_net" in out
        assert b.log_path.exists() and "boot-ready" in b.log_path.read_text(errors="replace")


def test_restore_gives_a_clean_board_with_the_host_clock(board_pool):
    first, second = board_pool(2)
    first.console.run_check("echo dirty > /root/marker")
    assert first.console.run("cat /root/marker") == ("dirty", 0)
    assert second.console.run("cat /root/marker")[1] != 0  # each board starts from the same clean state
    guest_now = int(second.console.run_check("date +%s"))
    assert abs(guest_now - time.time()) < 5
    assert second.ready_seconds is not None
    assert first.console_port != second.console_port and first.ssh_port != second.ssh_port
    # Same snapshot, but not the same random numbers (host keys, ports, firmware ids):
    # the restore forces a CRNG reseed with a host seed (tb-reseed).
    draw = "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'"
    assert first.console.run_check(draw) != second.console.run_check(draw)


def test_link_down_cuts_the_guest_off_from_the_host(board, listener):
    probe = f"echo ping-{{n}} | timeout 3 nc 10.0.2.2 {listener.port}"
    assert board.console.run(probe.format(n=1), timeout=10)[1] == 0
    _wait_for(lambda: b"ping-1\n" in listener.received)

    board.link_down()
    _, code = board.console.run(probe.format(n=2), timeout=10)
    assert code != 0
    assert b"ping-2\n" not in listener.received

    board.link_up()
    # The guest may need a moment to notice the carrier again: retry for a few seconds.
    deadline = time.monotonic() + 15
    n = 3
    while b"ping-%d\n" % n not in listener.received:
        board.console.run(probe.format(n=n), timeout=10)
        if b"ping-%d\n" % n in listener.received or time.monotonic() > deadline:
            break
        n += 1
    assert any(data.startswith(b"ping-") and data != b"ping-1\n" for data in listener.received)


def _wait_for(predicate, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_events_are_parsed_with_host_timestamps(board):
    before = time.monotonic()
    board.console.run_check("echo '@tb event=upload-ok id=abc region=EU bytes=11123 ms=42' > /dev/console")
    event = board.wait_for_event("upload-ok", timeout=5, since=before)
    assert event.fields == {"id": "abc", "region": "EU", "bytes": "11123", "ms": "42"}
    assert before <= event.monotonic <= time.monotonic()
    # Event lines never leak into command output.
    out, _ = board.console.run("echo '@tb event=sync-ok'; echo visible")
    assert out == "visible"


def test_kernel_panic_is_recognised_at_once(board):
    with pytest.raises(BoardCrashed) as info:
        board.console.run("echo c > /proc/sysrq-trigger", timeout=20)
    assert "Kernel panic" in info.value.line or "Oops" in info.value.line or "BUG" in info.value.line
    assert any("sysrq" in line.lower() for line in info.value.last_lines)
    # Every later console call fails the same way until the board is reset.
    with pytest.raises(BoardCrashed):
        board.console.run("true")


def test_pause_resume_and_reset_are_seen_over_qmp(board):
    board.pause()
    assert board.qmp.cmd("query-status")["status"] == "paused"
    # a line typed while the board is paused gets no answer, and is not lost: it runs on resume
    tag = uuid.uuid4().hex[:10]
    board.console.discard()
    board.console.sendline(f"echo TB''{tag}P")
    answer = re.compile(rf"TB{tag}P\r*\n")
    with pytest.raises(pexpect.TIMEOUT):
        board.console.expect(answer, timeout=1)
    board.resume()
    board.console.expect(answer, timeout=10)
    names = [e.name for e in board.qmp_events]
    assert "STOP" in names and "RESUME" in names
    board.console.run_check("echo before-reset > /root/state")
    board.reset()  # waits for boot-ready again
    assert "RESET" in [e.name for e in board.qmp_events]
    board.console.wait_ready(timeout=10)
    assert board.console.run("cat /root/state")[1] != 0


def test_a_command_that_times_out_leaves_the_shell_usable(board):
    # the timeout sends Ctrl-C; the tty flushes input behind it, so the next command must wait
    # for the prompt (Console.interrupt) or lose its first line
    with pytest.raises(ConsoleTimeout):
        board.console.run("sleep 30", timeout=1)
    for i in range(5):
        assert board.console.run(f"echo after-{i}", timeout=10) == (f"after-{i}", 0)


def test_power_off_ends_the_board(board):
    pid = board.process.pid
    board.power_off()
    assert not board.alive
    assert board.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not board.dir.exists()  # the temp dir is gone too


def test_serial_console_through_a_real_pty(board_image, board_snapshot):
    """The console as a user opens /dev/ttyUSB0: a tty device by path, through pyserial."""
    with QemuBoard(board_image, name="pty", console="pty") as b:
        b.restore(board_snapshot)
        assert b.console_path and b.console_path.startswith("/dev/pts/")
        assert os.path.exists(b.console_path)
        assert isinstance(b.console.port, serial.Serial)
        assert b.console.run("echo over-a-tty; tty >/dev/null") == ("over-a-tty", 0)
        assert b.console.run("(exit 42)") == ("", 42)


def test_a_board_that_never_boots_fails_with_its_console_log(board_image, tmp_path):
    b = QemuBoard(board_image, name="never-ready", boot_timeout=1, log_dir=tmp_path)
    with pytest.raises(BoardBootTimeout) as info:
        b.boot()
    message = str(info.value)
    assert "boot-ready" in message and str(b.log_path) in message
    assert b.log_path.exists()
    assert not b.alive  # the QEMU process is gone


def test_a_port_taken_meanwhile_is_retried(board_image, board_snapshot, monkeypatch):
    """Another process grabbing a port between our check and QEMU's bind: QEMU refuses, the board retries."""
    import testbed.board.qemu_process as qemu_module

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    handed: list[int] = []
    real_free_port = qemu_module.free_port

    def racy_free_port() -> int:
        port = taken.getsockname()[1] if len(handed) == 1 else real_free_port()  # 2nd port = SSH forward
        handed.append(port)
        return port

    monkeypatch.setattr(qemu_module, "free_port", racy_free_port)
    try:
        with QemuBoard(board_image, name="port-race") as b:
            b.restore(board_snapshot)
            assert b.ssh_port != taken.getsockname()[1]
            assert len(handed) == 4  # two attempts, two ports each
            assert b.console.run("echo ok") == ("ok", 0)
    finally:
        taken.close()


def test_a_corrupt_snapshot_fails_clearly(board_image, board_snapshot, tmp_path):
    import json

    from testbed.board.errors import BoardError
    from testbed.board.snapshot import Snapshot

    bad = tmp_path / "bad-snapshot"
    bad.mkdir()
    (bad / "state.bin").write_bytes(board_snapshot.state_file.read_bytes()[:4096])  # truncated
    (bad / "snapshot.json").write_text(json.dumps(board_snapshot.meta))
    b = QemuBoard(board_image, name="bad-snapshot", log_dir=tmp_path)
    with pytest.raises(BoardError) as info:
        b.restore(Snapshot.from_dir(bad))
    assert "snapshot" in str(info.value) and "QEMU said" in str(info.value)
    assert not b.alive
