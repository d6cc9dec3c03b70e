"""The board CLI, run as a user runs it: `testbed board boot/run`, `testbed doctor`."""

from __future__ import annotations

import subprocess
import sys

import pexpect
import pytest

pytestmark = pytest.mark.e2e

TESTBED = [sys.executable, "-m", "testbed.cli"]


def test_board_run_prints_output_and_exits_with_the_code(board_image, board_snapshot):
    result = subprocess.run(
        [*TESTBED, "board", "run", "--image", str(board_image.path), "echo from-the-board; exit 5"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.stdout.strip() == "from-the-board"
    assert result.returncode == 5, result.stderr


def test_board_boot_attaches_an_interactive_console(board_image, board_snapshot):
    child = pexpect.spawn(
        sys.executable, ["-m", "testbed.cli", "board", "boot", "--snapshot", "--image", str(board_image.path)],
        encoding="utf-8", timeout=60, dimensions=(40, 120),
    )
    try:
        child.expect("Ctrl-] leaves")
        child.expect("board:")  # the prompt, with echo turned back on
        child.send("echo $((6*7))\r")
        child.expect("42")
        child.send("\x1d")  # Ctrl-]
        child.expect("boards powered off")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_doctor_reports_every_requirement():
    result = subprocess.run([*TESTBED, "doctor"], capture_output=True, text=True, timeout=60)
    assert "QEMU (qemu-system-arm)" in result.stdout
    assert "armhf cross compiler" in result.stdout
    assert result.returncode == 0, result.stdout


def test_board_boot_count_without_attach_until_ctrl_c(board_image, board_snapshot):
    child = pexpect.spawn(
        sys.executable,
        ["-m", "testbed.cli", "board", "boot", "--snapshot", "--count", "2", "--no-attach",
         "--image", str(board_image.path)],
        encoding="utf-8", timeout=90,
    )
    try:
        child.expect("boards are up")
        shown = child.before
        assert "board-1: console socket://127.0.0.1:" in shown and "board-2: console socket://127.0.0.1:" in shown
        assert shown.count("ssh -p ") == 2
        child.sendintr()  # Ctrl-C
        child.expect("boards powered off")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_board_console_attaches_to_a_serial_url(tmp_path):
    """`testbed board console` on pyserial's loop:// (what is sent comes back), as on a real port."""
    log = tmp_path / "serial.log"
    child = pexpect.spawn(sys.executable, ["-m", "testbed.cli", "board", "console", "loop://", "--log", str(log)],
                          encoding="utf-8", timeout=30)
    try:
        child.expect("Ctrl-] leaves")
        child.send("@tb event=sync-ok a=1\n")
        child.expect("sync-ok a=1")
        child.send("\x1d")
        child.expect(r"1 @tb event\(s\) seen")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert "@tb event=sync-ok a=1" in log.read_text()


def test_board_console_refuses_a_port_it_cannot_open():
    result = subprocess.run([*TESTBED, "board", "console", "/dev/ttyNOPE9"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0 and "cannot open /dev/ttyNOPE9" in result.stderr
