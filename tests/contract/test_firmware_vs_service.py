"""The host-built firmware against the real service, through the real device API.

syncd, tb-provision and crash-reporter (a real ARM core on stdin) run on this machine
with their state in a scratch directory; the service is a real ServiceProcess on
127.0.0.1 with control enabled; tenants, groups and devices are made through the public
API. Each skip reason and each error status the firmware must handle is reached through
the service itself (its limits, its clock, its control faults), and what was stored is
read back through the service. A path, header or field changed on one side only fails here.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_helpers import board_core, check_event, dump_ids, stored
from fw_helpers import FwEnv

from testbed.contract import device_api
from testbed.contract.events import DumpSkipReason, EventName, SyncFailReason, UploadFailReason
from testbed.crash.signature import signature_of_core

DEADLINE_S = device_api.UPLOAD_DEADLINE_MS / 1000
PROCESS_MARGIN_S = 1.0  # process start-up and exit on a loaded 2-core machine, not the deadline


@pytest.fixture(scope="module")
def core() -> bytes:
    return board_core()


@pytest.fixture(autouse=True)
def _vocabulary(tmp_path: Path) -> Iterator[None]:
    """After each test: every event any of its devices printed is in the contract."""
    yield
    consoles = list(tmp_path.rglob("console.log"))
    for console in consoles:
        for ev in FwEnv(console.parent, console.parent).events():
            check_event(ev)


def test_sync_opt_in_and_boundary(device, device_group):
    d = device(device_group(allow_crash_dumps=True, boundary="EU"))
    proc = d.provision()
    assert proc.returncode == 0, proc.stderr
    ev = d.fw.wait_event(EventName.SYNC_OK)
    assert ev["optin"] == "1" and ev["boundary"] == "EU"
    assert ev["validity"] == str(device_api.VALIDITY_SECONDS)
    state = d.fw.state.joinpath("sync.state").read_text()
    assert "opt_in=1" in state and "boundary=EU" in state
    assert d.fw.core_pattern.read_text().startswith("|")


def test_sync_opt_out(device, device_group):
    d = device(device_group(allow_crash_dumps=False))
    assert d.provision().returncode == 0
    ev = d.fw.wait_event(EventName.SYNC_OK)
    assert ev["optin"] == "0" and ev["boundary"] == "None"
    assert d.fw.core_pattern.read_text().startswith("/nonexistent")


def test_upload_is_stored(device, support_client, core):
    d = device()
    assert d.provision().returncode == 0
    (d.fw.run_dir / "apps").mkdir(parents=True)
    (d.fw.run_dir / "apps" / "4242").write_text("myapp\n")
    _, proc = d.crash(core)
    assert proc.returncode == 0, proc.stderr
    ev = d.outcome()
    assert ev["event"] == EventName.UPLOAD_OK, ev
    dumps = stored(support_client, d.claimed.device_id)
    assert dump_ids(dumps) == [ev["id"]]
    blob = support_client.support_read(ev["id"], reason="contract test")
    assert gzip.decompress(blob) == core
    assert d.fw.spool_files() == []


def test_opted_out_device_sends_nothing(device, device_group, support_client, core):
    d = device(device_group(allow_crash_dumps=False))
    assert d.provision().returncode == 0
    d.crash(core)
    assert d.outcome()["reason"] == DumpSkipReason.OPTOUT
    assert stored(support_client, d.claimed.device_id) == []


def test_opt_out_after_sync_is_refused_by_the_service(device, device_group, tenant_admin, support_client, core):
    """The device still holds a valid opt-in; the service says skip (optout) at the intent."""
    group = device_group(allow_crash_dumps=True)
    d = device(group)
    assert d.provision().returncode == 0
    tenant_admin.update_device_group(tenant_admin.tenant_id, group["Id"], AllowCrashDumpsCollection=False)
    d.crash(core)
    assert d.outcome()["reason"] == DumpSkipReason.OPTOUT
    assert stored(support_client, d.claimed.device_id) == []
    # the next sync learns it: dumps off, nothing kept
    assert d.sync().returncode == 0
    assert d.fw.core_pattern.read_text().startswith("/nonexistent")


def test_403_at_the_intent_is_an_optout_skip(device, control, core):
    d = device()
    assert d.provision().returncode == 0
    control.set_fault("status", status=403, count=1)
    d.crash(core)
    ev = d.outcome()
    assert ev["event"] == EventName.DUMP_SKIPPED and ev["reason"] == DumpSkipReason.OPTOUT
    assert d.fw.spool_files() == []


def test_stale_sync_on_the_board_clock(device, control, support_client, core):
    d = device()
    assert d.provision().returncode == 0
    later = device_api.VALIDITY_SECONDS + 60
    control.advance_clock(later)  # the service's day moves on with the board's
    _, proc = d.crash(core, TB_CLOCK_OFFSET=str(later))
    assert proc.returncode == 0
    assert d.outcome()["reason"] == DumpSkipReason.STALE_SYNC
    assert stored(support_client, d.claimed.device_id) == []
    status = d.fw.run("syncd", "--status", TB_CLOCK_OFFSET=str(later)).stdout.decode()
    assert status.splitlines()[-1] == f"consent={DumpSkipReason.STALE_SYNC}"


def test_throttled_by_the_service(device, claimed_device, support_client, core):
    """Another device of the tenant fills the signature's N; the firmware is told at the intent,
    then at the next sync, and skips before any request."""
    sig = signature_of_core(core)
    other = claimed_device().client()
    with other:
        for _ in range(device_api.THROTTLE_LIMIT):
            assert "id" in other.upload(gzip.compress(core), sig)
    d = device()
    assert d.provision().returncode == 0
    d.crash(core)
    assert d.outcome()["reason"] == DumpSkipReason.THROTTLED
    assert sig in d.fw.state.joinpath("sync.state").read_text()
    assert d.sync().returncode == 0
    n = d.event_count()
    d.crash(core, pid=4243)
    assert d.outcome(after=n)["reason"] == DumpSkipReason.THROTTLED
    assert stored(support_client, d.claimed.device_id) == []


def test_too_large_for_the_service_limit(small_upload_service, tmp_path, fw_bin, core):
    d = small_upload_service.device(tmp_path / "fw", fw_bin)
    assert d.provision().returncode == 0
    d.crash(core)
    ev = d.outcome()
    assert ev["reason"] == DumpSkipReason.TOO_LARGE and int(ev["bytes"]) > 1000
    assert stored(small_upload_service.support, d.claimed.device_id) == []


def test_413_from_the_body_is_a_too_large_skip(strict_service, tmp_path, fw_bin, core):
    d = strict_service.device(tmp_path / "fw", fw_bin)
    assert d.provision().returncode == 0
    d.crash(core)
    ev = d.outcome()
    assert ev["event"] == EventName.DUMP_SKIPPED and ev["reason"] == DumpSkipReason.TOO_LARGE
    assert d.fw.spool_files() == []
    assert stored(strict_service.support, d.claimed.device_id) == []


def test_429_is_a_ratelimit_skip(strict_service, tmp_path, fw_bin, core):
    d = strict_service.device(tmp_path / "fw", fw_bin)
    assert d.provision().returncode == 0
    d.crash(core)  # intent + body: the device's two crash requests (refused 413)
    n = d.event_count()
    d.crash(core, pid=4243)
    ev = d.outcome(after=n)
    assert ev["event"] == EventName.DUMP_SKIPPED and ev["reason"] == DumpSkipReason.RATELIMIT
    assert d.fw.spool_files() == []


def test_401_bad_secret_fails_the_sync(device):
    d = device()
    proc = d.provision(secret="not-the-secret")
    assert proc.returncode == 1
    ev = d.fw.wait_event(EventName.SYNC_FAIL)
    assert ev["reason"] == "http-401"
    assert d.fw.core_pattern.read_text().startswith("/nonexistent")


def test_401_at_the_intent_is_an_upload_fail_not_spooled(device, core):
    d = device()
    assert d.provision().returncode == 0
    ident = d.fw.state / "identity"
    ident.write_text(ident.read_text().replace(d.claimed.secret, "not-the-secret"))
    _, proc = d.crash(core)
    assert proc.returncode == 1
    ev = d.outcome()
    assert ev["event"] == EventName.UPLOAD_FAIL and ev["reason"] == "http-401" and ev["stage"] == "intent"
    assert d.fw.spool_files() == []


def test_5xx_is_spooled_and_sent_after_the_next_sync(device, control, support_client, core):
    d = device()
    assert d.provision().returncode == 0
    control.set_fault("status", status=503, count=1)
    d.crash(core)
    assert d.outcome()["reason"] == "http-503"
    assert len(d.fw.spool_files()) == 2
    n = d.event_count()
    assert d.sync().returncode == 0
    ev = d.fw.wait_event(EventName.UPLOAD_OK, after=n)
    assert ev["spooled"] == "1"
    assert dump_ids(stored(support_client, d.claimed.device_id)) == [ev["id"]]
    assert d.fw.spool_files() == []


def test_deadline_against_a_hanging_service(device, control, core):
    d = device()
    assert d.provision().returncode == 0
    control.set_fault("hang")
    elapsed, _ = d.crash(core)
    ev = d.outcome()
    assert ev["event"] == EventName.UPLOAD_FAIL and ev["reason"] == UploadFailReason.TIMEOUT
    assert device_api.UPLOAD_DEADLINE_MS - 50 <= int(ev["ms"]) <= device_api.UPLOAD_DEADLINE_MS + 100
    assert DEADLINE_S - 0.2 <= elapsed <= DEADLINE_S + PROCESS_MARGIN_S
    assert len(d.fw.spool_files()) == 2


def test_sync_against_a_hanging_service_gives_up_at_the_deadline(device, control):
    d = device()
    assert d.provision().returncode == 0
    control.set_fault("hang")
    t0 = time.monotonic()
    proc = d.sync()
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1
    n = [e for e in d.fw.events() if e["event"] == EventName.SYNC_FAIL]
    assert n and n[-1]["reason"] == SyncFailReason.TIMEOUT
    assert elapsed <= DEADLINE_S + PROCESS_MARGIN_S


def test_a_lost_answer_is_resent_with_its_upload_id_and_stored_once(device, control, support_client, core):
    """The service's drop fault stores the upload and closes without an answer; the firmware keeps
    the dump and, after the next sync, sends it again with the same X-Upload-Id: one copy stored."""
    d = device()
    assert d.provision().returncode == 0
    r = control.http.post("/testbed/v1/faults", json={"mode": "drop", "count": 1})
    if r.status_code == 400:
        pytest.skip(f"this service has no drop fault yet: {r.text}")
    assert r.status_code == 200, r.text
    _, proc = d.crash(core)
    assert proc.returncode == 1
    fail = d.outcome()
    assert fail["event"] == EventName.UPLOAD_FAIL and fail["stage"] == "body"
    assert device_api.is_upload_id(fail["upload_id"])
    assert len(d.fw.spool_files()) == 2
    first = stored(support_client, d.claimed.device_id)
    assert len(first) == 1  # stored: only the answer was lost
    n = d.event_count()
    assert d.sync().returncode == 0
    ok = d.fw.wait_event(EventName.UPLOAD_OK, after=n)
    assert ok["spooled"] == "1" and ok["upload_id"] == fail["upload_id"]
    assert dump_ids(stored(support_client, d.claimed.device_id)) == dump_ids(first) == [ok["id"]]
    assert d.fw.spool_files() == []


def _one_row_for(control, device_id: str, upload_id: str) -> dict:
    rows = control.dumps(deviceId=device_id)
    assert [r["uploadId"] for r in rows] == [upload_id], rows
    return rows[0]


def test_a_timeout_at_the_intent_is_spooled_and_stored_once_after_the_sync(device, control, core):
    """The service hangs on the intent: timeout, nothing stored; the dump waits in the spool with its
    upload id and the next sync's retry stores it, once, under that id."""
    d = device()
    assert d.provision().returncode == 0
    control.set_fault("hang", count=1)
    _, proc = d.crash(core)
    assert proc.returncode == 1
    fail = d.outcome()
    assert fail["reason"] == UploadFailReason.TIMEOUT and fail["stage"] == "intent"
    assert control.dumps(deviceId=d.claimed.device_id) == []
    control.clear_faults()
    n = d.event_count()
    assert d.sync().returncode == 0
    ok = d.fw.wait_event(EventName.UPLOAD_OK, after=n)
    assert ok["spooled"] == "1" and ok["upload_id"] == fail["upload_id"]
    assert _one_row_for(control, d.claimed.device_id, fail["upload_id"])["id"] == ok["id"]
    assert d.fw.spool_files() == []


def test_a_timeout_after_the_service_stored_the_body_is_stored_once(device, control, core):
    """The answers drip (the service handles each request, then sends its answer a byte per 100 ms):
    the intent's short answer arrives, the upload is stored, but its answer does not come within the
    5 s deadline. The retry after the sync carries the same upload id: the service answers it with
    the first answer and holds one copy."""
    d = device()
    assert d.provision().returncode == 0
    control.set_fault("drip", delay_ms=100, count=2)  # the intent's answer, then the upload's
    _, proc = d.crash(core)
    assert proc.returncode == 1
    fail = d.outcome()
    assert fail["reason"] == UploadFailReason.TIMEOUT and fail["stage"] == "body"
    first = _one_row_for(control, d.claimed.device_id, fail["upload_id"])  # stored: only the answer was late
    assert len(d.fw.spool_files()) == 2
    control.clear_faults()
    n = d.event_count()
    assert d.sync().returncode == 0
    ok = d.fw.wait_event(EventName.UPLOAD_OK, after=n)
    assert ok["spooled"] == "1" and ok["upload_id"] == fail["upload_id"]
    assert ok["id"] == first["id"]  # the first answer, not a second copy
    assert _one_row_for(control, d.claimed.device_id, fail["upload_id"]) == first
    assert d.fw.spool_files() == []
