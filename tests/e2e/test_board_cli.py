"""The board CLI, run as a user runs it: `testbed board boot/run`, `testbed doctor`."""

from __future__ import annotations

import re
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


def _boot_no_attach(board_image, *extra: str) -> tuple[pexpect.spawn, str, str]:
    """`board boot --snapshot --no-attach` in its own process; the console address it printed, and
    all it printed until the boards were up."""
    boot = pexpect.spawn(
        sys.executable,
        ["-m", "testbed.cli", "board", "boot", "--snapshot", "--no-attach", "--image", str(board_image.path), *extra],
        encoding="utf-8", timeout=90,
    )
    boot.expect(r"board-1: console (\S+) ")
    address = boot.match.group(1)
    shown = boot.before + boot.after
    boot.expect("boards are up")
    return boot, address, shown + boot.before


def _attach_and_type(address: str, command: str, answer: str) -> str:
    """`board console ADDRESS` on a terminal of its own: type ``command``, see it echoed and
    ``answer`` printed, leave with Ctrl-]; what the terminal showed."""
    attach = pexpect.spawn(sys.executable, ["-m", "testbed.cli", "board", "console", address],
                           encoding="utf-8", timeout=30, dimensions=(40, 160))
    try:
        attach.expect("Ctrl-] leaves")
        attach.expect("board:/# ")  # a fresh prompt: the attach sends a newline
        attach.send(command + "\r")
        attach.expect_exact(command)  # the echo: typed text shows
        attach.expect(answer)
        shown = attach.before + attach.after
        attach.send("\x1d")  # Ctrl-]
        attach.expect("left ")
        attach.expect(pexpect.EOF)
    finally:
        attach.close(force=True)
    assert attach.exitstatus == 0, "Ctrl-] must leave cleanly"
    return shown


@pytest.mark.parametrize("kind", ["socket", "pty"])
def test_board_console_attaches_to_what_board_boot_printed(board_image, board_snapshot, kind):
    boot, address, _ = _boot_no_attach(board_image, *(["--pty"] if kind == "pty" else []))
    try:
        assert address.startswith("socket://127.0.0.1:" if kind == "socket" else "/dev/pts/")
        shown = _attach_and_type(address, "echo from-$((6*7))-attach", "from-42-attach")
        assert "@tb''" not in shown and "TB''" not in shown  # none of the testbed's own typing
        # the board is still alive after the attach left, and a second attach works
        _attach_and_type(address, "cat /proc/uptime", r"\d+\.\d+ \d+\.\d+")
        assert boot.isalive()
        boot.sendintr()
        boot.expect("boards powered off")
        boot.expect(pexpect.EOF)
    finally:
        boot.close(force=True)


def test_board_run_provisions_against_a_running_service(board_image, board_snapshot, claimed_device):
    device = claimed_device()
    result = subprocess.run(
        [*TESTBED, "board", "run", "--image", str(board_image.path), "--provision", device.url,
         "--device-id", device.device_id, "--secret", device.secret, "syncd --now"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr + result.stdout  # the board synced with that service again
    assert f"provisioned as {device.device_id[:16]}... and synced" in result.stderr


def test_board_run_claims_a_device_into_a_group_and_provisions_it(board_image, board_snapshot, tenant_admin,
                                                                  device_group, service):
    group = device_group(allow_crash_dumps=True)
    result = subprocess.run(
        [*TESTBED, "board", "run", "--image", str(board_image.path), "--provision", service.url,
         "--device-group", group["Name"], "--token", tenant_admin.token, "syncd --now"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    claimed = tenant_admin.devices_in_group(tenant_admin.tenant_id, group["Id"])
    assert len(claimed) == 1
    assert f"provisioned as {claimed[0]['DeviceId'][:16]}... and synced" in result.stderr


def test_a_failing_pytest_test_shows_the_rendered_console(tmp_path, board_image, board_snapshot):
    """A user's test, outside the repo, that fails: its report section shows typed commands with
    times and exit codes, none of the testbed's markers, and where both logs are."""
    (tmp_path / "test_user.py").write_text(
        "def test_state(board):\n"
        "    board.console.run('cat /nonexistent/state')\n"
        "    assert board.console.run('echo done')[0] == 'not done'\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--board-image", str(board_image.path),
         "test_user.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "console (call)" in out and "raw transcript: " in out
    section = out[out.index("console (call)"):]
    assert re.search(r"\[\d\d:\d\d:\d\d\.\d{3} \+\d+\.\d{3}\] \$ cat /nonexistent/state\n.*\n.*\(exit 1\)", section)
    assert re.search(r"\] \$ echo done\n.*\] done\n", section)
    assert not re.search(r"TB[0-9a-f]{10}", section) and "TB''" not in section


def test_board_boot_provisioned_against_a_running_service_then_attached(board_image, board_snapshot,
                                                                        claimed_device):
    device = claimed_device()
    boot, address, shown = _boot_no_attach(board_image, "--provision", device.url, "--device-id",
                                           device.device_id, "--secret", device.secret)
    try:
        assert f"board-1: provisioned as {device.device_id[:16]}... and synced" in shown
        _attach_and_type(address, "syncd --now", "sync ok: optIn=true")  # the service answers the board
        boot.sendintr()
        boot.expect("boards powered off")
        boot.expect(pexpect.EOF)
    finally:
        boot.close(force=True)
