"""The firmware on a real board (QEMU, restored from the snapshot) against the real service.

Each test claims its own device in its own tenant, provisions the board through a
wire tap (a byte-level proxy that records every request the board makes), crashes
the sample app from the console and checks events, the service's stores and the tap.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

import pytest
from elftools.elf.elffile import ELFFile

from testbed.board.identity import Identity
from testbed.board.qemu import QemuBoard
from testbed.contract.device_api import CRASHDUMPS_PREFIX, INTENT_PATH, UPLOAD_PATH
from testbed.crash.elfcore import read_core
from testbed.crash.signature import core_signature
from testbed.deadline import Deadline
from testbed.scenario.tap import WireTap

pytestmark = pytest.mark.e2e

RESTART_LIMIT_S = 5.5  # the seed's 5 s, plus margin for the console and QEMU


@pytest.fixture
def tap(service) -> Iterator[WireTap]:
    t = WireTap("127.0.0.1", service.port).start()
    yield t
    t.stop()


def provision(board, tap: WireTap, device) -> None:
    board.provision(Identity.for_port(device.device_id, device.secret, tap.port))


def crash(board, args: str, name: str = "crashapp") -> float:
    """Send a crash command to the running app; returns the host time just before."""
    t0 = time.monotonic()
    out, code = board.console.run(f"{name} {args}", timeout=15)
    assert code == 0, out
    return t0


def dump_paths(tap: WireTap, device_id: str) -> list[str]:
    return [r.path for r in tap.requests if r.device_id == device_id and r.path.startswith(CRASHDUMPS_PREFIX)]


def spool_count(board) -> int:
    out, _ = board.console.run("ls /var/lib/testbed/spool 2>/dev/null | wc -l")
    return int(out.strip().splitlines()[-1])


def wait_spooled(board, files: int = 2, timeout: float = 10) -> None:
    """The reporter writes the spool just after it told the app manager (the restart comes first)."""
    deadline = Deadline(timeout)
    while spool_count(board) != files:
        assert not deadline.expired, "the failed dump was not spooled"


def test_opted_out_crash_sends_nothing(board, tap, claimed_device, device_group, support_client):
    device = claimed_device(device_group(allow_crash_dumps=False))
    provision(board, tap, device)
    sync = board.wait_for_event("sync-ok", timeout=10)
    assert sync["optin"] == "0"
    out, _ = board.console.run("cat /proc/sys/kernel/core_pattern")
    assert not out.strip().startswith("|")  # no pipe handler: the kernel generates nothing
    t0 = crash(board, "--mode segv --heap-kib 200")
    skipped = board.wait_for_event("dump-skipped", since=t0, timeout=10)
    assert skipped["reason"] == "optout"
    restart = board.wait_for_event("app-restart", since=t0, timeout=10)
    assert restart["upload"] == "none"
    assert dump_paths(tap, device.device_id) == []
    assert spool_count(board) == 0
    assert support_client.support_dumps(deviceId=device.device_id) == []


@pytest.mark.parametrize("boundary,regions", [("EU", {"EU"}), ("None", {"EastUS", "WestUS"})])
def test_opted_in_crash_is_stored_in_its_region_and_the_app_restarts(
    board, board_image, tap, claimed_device, device_group, support_client, boundary, regions
):
    device = claimed_device(device_group(allow_crash_dumps=True, boundary=boundary))
    provision(board, tap, device)
    t0 = crash(board, "--mode segv --heap-kib 200")
    crash_ev = board.wait_for_event("crash", since=t0, timeout=10)
    ok = board.wait_for_event("upload-ok", since=t0, timeout=10)
    restart = board.wait_for_event("app-restart", since=t0, timeout=10)
    assert crash_ev["signal"] == "11" and crash_ev["class"] == "App" and crash_ev["app"] == "crashapp"
    assert ok["region"] in regions
    assert restart["upload"] == "done" and restart["reason"] == "crash"
    assert restart.monotonic - t0 < RESTART_LIMIT_S
    assert dump_paths(tap, device.device_id) == [INTENT_PATH, UPLOAD_PATH]

    dumps = support_client.support_dumps(reason="pytest firmware e2e", deviceId=device.device_id)
    assert [d["id"] for d in dumps] == [ok["id"]]
    assert dumps[0]["region"] == ok["region"] and dumps[0]["componentClass"] == "App"
    core = gzip.decompress(support_client.support_read(ok["id"], reason="pytest firmware e2e"))
    info = read_core(core)
    assert info.arch == "arm" and info.signal == 11
    assert hex(info.pc) == crash_ev["pc"]
    assert core_signature(info) == crash_ev["sig"] == ok["sig"]
    # the PC is the faulting store inside crash_segv of the binary in the image
    with (board_image.symbols_dir / "crashapp").open("rb") as fh:
        sym = ELFFile(fh).get_section_by_name(".symtab").get_symbol_by_name("crash_segv")[0]
    assert sym["st_value"] & ~1 <= info.pc < (sym["st_value"] & ~1) + sym["st_size"]


def test_link_down_restarts_promptly_and_spools(board, tap, claimed_device, device_group):
    device = claimed_device(device_group(allow_crash_dumps=True, boundary="EU"))
    provision(board, tap, device)
    board.link_down()
    t0 = crash(board, "--mode abort --heap-kib 64")
    fail = board.wait_for_event("upload-fail", since=t0, timeout=10)
    restart = board.wait_for_event("app-restart", since=t0, timeout=10)
    assert fail["reason"] in ("connect", "timeout")
    assert int(restart["after_ms"]) <= 5400
    assert restart.monotonic - t0 <= RESTART_LIMIT_S + 1.0  # includes the console round trip
    wait_spooled(board)  # the dump and its metadata, for the next sync
    board.link_up()
    t1 = time.monotonic()
    out, code = board.console.run("syncd --now", timeout=20)
    assert code == 0, out
    again = board.wait_for_event("upload-ok", since=t1, timeout=10)
    assert again["spooled"] == "1"
    assert spool_count(board) == 0


def test_hung_service_restart_at_the_deadline(board, tap, claimed_device, device_group, control):
    device = claimed_device(device_group(allow_crash_dumps=True, boundary="EU"))
    provision(board, tap, device)
    control.set_fault("hang")
    try:
        t0 = crash(board, "--mode segv --heap-kib 32")
        fail = board.wait_for_event("upload-fail", since=t0, timeout=15)
        restart = board.wait_for_event("app-restart", since=t0, timeout=15)
    finally:
        control.clear_faults()
    crash_ev = board.wait_for_event("crash", since=t0, timeout=1)
    assert fail["reason"] == "timeout"
    # after_ms is measured on the board from the reporter's start (the crash); the host sees the
    # crash event line only after the core was read, so that span is a lower bound
    assert 4500 <= int(restart["after_ms"]) <= 5400  # 5 s deadline; QEMU on a loaded host adds tens of ms
    assert restart.monotonic - crash_ev.monotonic <= RESTART_LIMIT_S
    # the timed-out dump is kept (written just after the restart) and sent after the next sync with
    # the upload id of its first attempt
    wait_spooled(board)
    t1 = time.monotonic()
    out, code = board.console.run("syncd --now", timeout=20)
    assert code == 0, out
    again = board.wait_for_event("upload-ok", since=t1, timeout=10)
    assert again["spooled"] == "1" and again["upload_id"] == fail["upload_id"]
    assert spool_count(board) == 0


def first_event(board, names: tuple[str, ...], since: float, timeout: float = 10):
    """The first of several event kinds after ``since`` (expect with a timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        for event in board.events:
            if event.name in names and event.monotonic >= since:
                return event
        if time.monotonic() > deadline:
            pytest.fail(f"none of {names} within {timeout} s; last lines: {board.console.tail(15)}")
        time.sleep(0.02)


OUTCOMES = ("upload-ok", "upload-fail", "dump-skipped")


def test_throttled_signature_is_skipped_before_the_body(board, tap, claimed_device, device_group):
    device = claimed_device(device_group(allow_crash_dumps=True, boundary="EU"))
    provision(board, tap, device)
    uploaded = 0
    for _ in range(12):  # the service stores its throttle limit (5 by default) per signature
        t0 = crash(board, "--mode fpe --id thr")
        ev = first_event(board, OUTCOMES, t0)
        board.wait_for_event("app-restart", since=t0, timeout=10)
        if ev.name == "upload-ok":
            uploaded += 1
            continue
        assert ev.name == "dump-skipped" and ev["reason"] == "throttled", ev
        break
    else:
        pytest.fail("the signature was never throttled")
    assert uploaded >= 1
    bodies = dump_paths(tap, device.device_id).count(UPLOAD_PATH)
    assert bodies == uploaded  # the throttled crash sent no body
    # once the device has synced, the signature is known: not even an intent is sent
    board.console.run_check("syncd --now", timeout=20)
    before = len(dump_paths(tap, device.device_id))
    t0 = crash(board, "--mode fpe --id thr")
    ev = first_event(board, OUTCOMES, t0)
    assert ev.name == "dump-skipped" and ev["reason"] == "throttled"
    board.wait_for_event("app-restart", since=t0, timeout=10)
    assert len(dump_paths(tap, device.device_id)) == before


def test_os_component_is_reported_as_os_and_restarted(board, tap, claimed_device, device_group, support_client):
    device = claimed_device(device_group(allow_crash_dumps=True, boundary="EU"))
    provision(board, tap, device)
    t0 = crash(board, "--mode abort", name="crashsvc")
    crash_ev = board.wait_for_event("crash", since=t0, timeout=10)
    assert crash_ev["class"] == "OS" and crash_ev["app"] == "crashsvc" and crash_ev["signal"] == "6"
    board.wait_for_event("upload-ok", since=t0, timeout=10)
    board.wait_for_event("os-restart", since=t0, timeout=10)
    # the supervisor restarted it: it takes crash commands again
    t1 = crash(board, "--mode segv", name="crashsvc")
    again = board.wait_for_event("crash", since=t1, timeout=10)
    assert again["class"] == "OS" and again["signal"] == "11"
    dumps = support_client.support_dumps(reason="pytest firmware e2e", deviceId=device.device_id)
    assert {d["componentClass"] for d in dumps} == {"OS"}


def test_stale_sync_on_the_board_clock(board, tap, claimed_device, device_group):
    device = claimed_device(device_group(allow_crash_dumps=True, boundary="EU"))
    provision(board, tap, device)
    board.set_clock(time.time() + 49 * 3600)  # 48 h validity passed on the board's clock
    t0 = crash(board, "--mode segv")
    skipped = board.wait_for_event("dump-skipped", since=t0, timeout=10)
    assert skipped["reason"] == "stale-sync"
    board.wait_for_event("app-restart", since=t0, timeout=10)
    assert dump_paths(tap, device.device_id) == []
    board.console.run_check("syncd --now", timeout=20)
    t1 = crash(board, "--mode segv")
    board.wait_for_event("upload-ok", since=t1, timeout=10)


def test_disabling_empties_the_spool_and_sends_nothing(board, tap, claimed_device, device_group, tenant_admin):
    group = device_group(allow_crash_dumps=True, boundary="EU")
    device = claimed_device(group)
    provision(board, tap, device)
    board.link_down()
    t0 = crash(board, "--mode segv --heap-kib 16")
    board.wait_for_event("upload-fail", since=t0, timeout=10)
    board.wait_for_event("app-restart", since=t0, timeout=10)
    wait_spooled(board)
    tenant_admin.update_device_group(device.tenant_id, group["Id"], AllowCrashDumpsCollection=False)
    board.link_up()
    out = board.console.run_check("syncd --now", timeout=20)
    assert "optIn=false" in out
    assert spool_count(board) == 0  # consent revoked: the waiting dump is dropped, not sent
    assert dump_paths(tap, device.device_id) == []
    out, _ = board.console.run("cat /proc/sys/kernel/core_pattern")
    assert not out.strip().startswith("|")


def test_app_data_limit_is_256_kib(board):
    t0 = time.monotonic()
    out = board.console.run_check("crashapp --mode segv --heap-kib 256")
    assert "sent to the running app" in out
    restart = board.wait_for_event("app-restart", since=t0, timeout=10)
    assert restart["reason"] == "exit"  # the heap did not fit: the app exited, it did not crash
    assert "data limit is 256 KiB" in "\n".join(board.console.tail(20))


def test_cold_boot_provisioned_from_the_kernel_command_line(board_image, service, tap, claimed_device,
                                                           device_group, tenant_admin):
    """tb.device_id/secret/service on the command line: synced before boot-ready, then every
    tb.sync_interval seconds; disabling the group reaches the board by the periodic sync alone."""
    group = device_group(allow_crash_dumps=True, boundary="EU")
    device = claimed_device(group)
    identity = Identity.for_port(device.device_id, device.secret, tap.port)
    b = QemuBoard(board_image, name="fw-cmdline", identity=identity, extra_append="tb.sync_interval=2")
    try:
        b.boot()
        events = [e.name for e in b.events]
        assert events.index("sync-ok") < events.index("boot-ready")
        out, _ = b.console.run("cat /proc/sys/kernel/core_pattern")
        assert out.strip().startswith("|/usr/sbin/crash-reporter")
        tenant_admin.update_device_group(device.tenant_id, group["Id"], AllowCrashDumpsCollection=False)
        t0 = time.monotonic()
        off = b.wait_for_event("sync-ok", since=t0, timeout=10, where=lambda e: e["optin"] == "0")
        assert off.monotonic - t0 < 2 + 3  # the interval plus slack
        t1 = crash(b, "--mode segv")
        assert b.wait_for_event("dump-skipped", since=t1, timeout=10)["reason"] == "optout"
        assert dump_paths(tap, device.device_id) == []
    finally:
        b.close()


def test_no_dump_before_the_first_sync(board, tap, claimed_device, device_group):
    """Unprovisioned (as snapshotted): no core is generated, nothing sent. Provisioned with
    --no-sync, the running syncd syncs at once and from then on dumps are uploaded."""
    out, _ = board.console.run("cat /proc/sys/kernel/core_pattern")
    assert not out.strip().startswith("|")
    t0 = crash(board, "--mode segv")
    assert board.wait_for_event("dump-skipped", since=t0, timeout=10)["reason"] == "optout"
    board.wait_for_event("app-restart", since=t0, timeout=10)
    device = claimed_device(device_group(allow_crash_dumps=True, boundary="EU"))
    board.set_clock()
    ident = Identity.for_port(device.device_id, device.secret, tap.port)
    board.console.run_check(ident.provision_command() + " --no-sync", timeout=20)
    board.wait_for_event("sync-ok", since=t0, timeout=15)
    t1 = crash(board, "--mode segv")
    assert board.wait_for_event("upload-ok", since=t1, timeout=10)["region"] == "EU"


def test_same_crash_same_signature_on_two_boards(board_pool):
    """Each board's kernel writes a core of the same crash into tmpfs (a file core_pattern set for
    this test, with syncd stopped so it does not put its own back) and the board's own parser
    (tb-tool, the reporter's code) computes the signature: equal on both boards, other with --id."""
    boards = board_pool(2)
    sigs = []
    for b in boards:
        b.console.run_check("kill $(cat /run/testbed/syncd.pid)")
        b.console.run_check("echo '/tmp/core.%e' > /proc/sys/kernel/core_pattern")
        b.console.run_check("cd /tmp && (ulimit -c unlimited; crashapp --direct --mode segv --heap-kib 8; true)",
                            timeout=20)
        out = b.console.run_check("tb-tool core /tmp/core.crashapp")
        fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith("map="))
        assert fields["signal"] == "11" and fields["machine"] == "40"
        sigs.append(fields["signature"])
        b.console.run_check("(ulimit -c unlimited; cd /tmp && crashapp --direct --mode segv --id two; true)", timeout=20)
        other = b.console.run_check("tb-tool core /tmp/core.crashapp-two")
        assert f"signature={fields['signature']}" not in other
    assert sigs[0] == sigs[1]
