"""appmgr on the host: restart after the reporter's "done", at the 5 s deadline, at once without a
reporter, after a clean exit; the data limit; crash commands through the control FIFO."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from fw_helpers import FwEnv, sanitizing

# AddressSanitizer's shadow memory counts against RLIMIT_DATA: appmgr's limit cannot hold there
pytestmark = pytest.mark.skipif(sanitizing(), reason="app data limits and ASan do not mix")


@pytest.fixture
def appmgr(fw: FwEnv) -> Iterator[FwEnv]:
    apps = fw.root / "apps"
    # a dynamically linked host build needs more than the board's 256 KiB for libc alone; the
    # board's default is checked by tests/e2e/test_firmware.py::test_app_data_limit_is_256_kib
    apps.write_text(f"# test apps\ncrashapp data_kib=1024 {fw.bin / 'crashapp'} --mode idle\n")
    proc = subprocess.Popen(
        [str(fw.bin / "appmgr"), "--apps", str(apps)], env=fw.env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        fw.wait_event("app-start", app="crashapp")
        wait_fifo(fw)
        yield fw
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # the app it ran goes too
        for ev in fw.events():
            if ev.get("pid", "").isdigit() and ev.get("event") in ("app-start", "app-restart"):
                subprocess.run(["kill", "-9", ev["pid"]], capture_output=True)


def wait_fifo(fw: FwEnv, timeout: float = 5.0) -> None:
    fifo = fw.run_dir / "ctl" / "crashapp"
    deadline = time.monotonic() + timeout
    while not fifo.is_fifo():
        assert time.monotonic() < deadline, "the app never opened its control FIFO"
        time.sleep(0.01)


def current_pid(fw: FwEnv) -> int:
    evs = [e for e in fw.events() if e.get("event") in ("app-start", "app-restart")]
    return int(evs[-1]["pid"])


def notify(fw: FwEnv, msg: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(msg.encode(), str(fw.run_dir / "appmgr.sock"))


def mono_ms() -> int:
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)


def crash(fw: FwEnv, *args: str) -> None:
    proc = fw.run("crashapp", *args)
    assert proc.returncode == 0, proc.stderr


def test_registered_app_and_restart_after_done(appmgr):
    fw = appmgr
    pid = current_pid(fw)
    assert (fw.run_dir / "apps" / str(pid)).read_text().strip() == "crashapp"
    n = len(fw.events())
    notify(fw, f"crash {pid} {mono_ms()}")
    crash(fw, "--mode", "segv")
    time.sleep(0.3)  # the reporter's upload takes a while; the app must wait for it
    assert not [e for e in fw.events()[n:] if e.get("event") == "app-restart"]
    notify(fw, f"done {pid}")
    ev = fw.wait_event("app-restart", after=n)
    assert ev["upload"] == "done" and ev["reason"] == "crash"
    assert 250 <= int(ev["after_ms"]) < 2000
    assert int(ev["pid"]) != pid


def test_restart_at_the_deadline_without_done(appmgr):
    fw = appmgr
    pid = current_pid(fw)
    n = len(fw.events())
    notify(fw, f"crash {pid} {mono_ms()}")
    crash(fw, "--mode", "abort")
    ev = fw.wait_event("app-restart", after=n, timeout=8)
    assert ev["upload"] == "deadline"
    assert 5000 <= int(ev["after_ms"]) <= 5300


def test_done_after_the_deadline_is_a_restart_at_the_deadline(appmgr):
    # the reporter gives up at its own deadline, which starts at the same crash time as the app
    # manager's: its "done" can arrive a few ms before the manager's timer fires; the app still
    # waited the whole deadline, and the event must say so
    fw = appmgr
    pid = current_pid(fw)
    n = len(fw.events())
    notify(fw, f"crash {pid} {mono_ms() - 5001}")
    notify(fw, f"done {pid}")
    crash(fw, "--mode", "segv")
    ev = fw.wait_event("app-restart", after=n)
    assert ev["upload"] == "deadline" and ev["reason"] == "crash"
    assert int(ev["after_ms"]) >= 5000


def test_crash_without_reporter_restarts_at_once(appmgr):
    fw = appmgr
    n = len(fw.events())
    crash(fw, "--mode", "fpe")
    skipped = fw.wait_event("dump-skipped", after=n)
    assert skipped["reason"] == "optout"  # not provisioned: no consent, no reporter
    ev = fw.wait_event("app-restart", after=n)
    assert ev["upload"] == "none" and int(ev["after_ms"]) < 500
    wait_fifo(fw)


def test_clean_exit_restarts(appmgr):
    fw = appmgr
    time.sleep(1.0)  # an app that lived under 1 s is restarted after a 1 s back-off instead
    n = len(fw.events())
    crash(fw, "--mode", "exit")
    ev = fw.wait_event("app-restart", after=n)
    assert ev["reason"] == "exit" and int(ev["after_ms"]) < 500


def test_data_limit_from_the_apps_file(appmgr):
    fw = appmgr
    time.sleep(1.0)  # past the 1 s start-up back-off
    n = len(fw.events())
    crash(fw, "--mode", "segv", "--heap-kib", "4000")  # over the app's 1024 KiB data limit
    ev = fw.wait_event("app-restart", after=n)
    assert ev["reason"] == "exit"  # malloc failed: the app said so and exited, it did not crash
    wait_fifo(fw)
    time.sleep(1.1)
    n = len(fw.events())
    crash(fw, "--mode", "segv", "--heap-kib", "128")
    ev = fw.wait_event("app-restart", after=n)
    assert ev["reason"] == "crash"


def test_crashapp_from_console_without_app_is_a_clear_error(fw):
    proc = fw.run("crashapp", "--mode", "segv")
    assert proc.returncode == 2
    assert b"no running app 'crashapp'" in proc.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--mode", "boom"], b"--mode 'boom'"),
        (["--heap-kib", "-1"], b"--heap-kib"),
        (["--heap-kib", "5000"], b"--heap-kib"),
        (["--id", "toolongid"], b"--id"),
        (["--after-ms"], b"needs a value"),
        (["--bogus", "1"], b"unknown option"),
    ],
)
def test_crashapp_rejects_bad_options(fw, args, message):
    proc = fw.run("crashapp", *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_after_ms_delays_the_crash(appmgr):
    fw = appmgr
    n = len(fw.events())
    t0 = time.monotonic()
    crash(fw, "--mode", "abort", "--after-ms", "400")
    fw.wait_event("app-restart", after=n)
    assert time.monotonic() - t0 >= 0.4


def crash_with_done_at_once(fw: FwEnv) -> dict[str, str]:
    """Crash the app as the reporter would announce it, say its upload is done at once, and
    return the restart that follows."""
    pid = current_pid(fw)
    n = len(fw.events())
    notify(fw, f"crash {pid} {mono_ms()}")
    crash(fw, "--mode", "segv")
    notify(fw, f"done {pid}")
    return fw.wait_event("app-restart", after=n, timeout=8)


def test_test_only_switch_holds_the_restart_past_the_upload(appmgr):
    """The verdict tests' broken device: with the switch file, the restart waits for its delay
    even after the reporter said done; without it, behaviour is as before."""
    from testbed.contract.commands import TEST_RESTART_DELAY_FILE

    fw = appmgr
    (fw.run_dir / TEST_RESTART_DELAY_FILE).write_text("1500\n")
    ev = crash_with_done_at_once(fw)
    assert ev["upload"] == "deadline" and 1500 <= int(ev["after_ms"]) < 3000
    (fw.run_dir / TEST_RESTART_DELAY_FILE).unlink()
    ev = crash_with_done_at_once(fw)
    assert ev["upload"] == "done" and int(ev["after_ms"]) < 1500
