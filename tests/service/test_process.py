"""The service as a process: restart and crash keep every acknowledged dump; faults; CLI host check."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time

import httpx
import pytest
from service_helpers import new_signature

from testbed.contract import device_api as api
from testbed.service.client import Client, ControlClient, DeviceClient
from testbed.service.process import ServiceProcess, ServiceStartError


def _setup(svc: ServiceProcess, n_devices: int, boundary: str = "None") -> list[dict]:
    with ControlClient(svc.url, svc.control_token) as control:
        t = control.create_tenant("durability")
    with Client(svc.url, t["Token"]) as admin:
        p = admin.create_product(t["Id"], "P")
        g = admin.create_device_group(t["Id"], p["Id"], "G", AllowCrashDumpsCollection=True, RegionalDataBoundary=boundary)
        return [admin.claim_device(t["Id"], g["Id"]) for _ in range(n_devices)]


def _stored(svc: ServiceProcess) -> tuple[set[str], set[str]]:
    """(dump ids with rows, dump ids whose blob is whole), through the control API's evidence:
    every listed dump's bytes match its hash, and the stores physically hold a whole record
    of each."""
    with ControlClient(svc.url, svc.control_token) as control:
        dumps = control.dumps()
        rows = {d["id"] for d in dumps}
        whole = {d["id"] for d in dumps if hashlib.sha256(control.blob(d["id"])).hexdigest() == d["sha256"]}
        storage = control.storage()
    assert sum(s["dumps"] for s in storage.values()) == len(rows)
    return rows, whole


def _other_files(svc: ServiceProcess) -> int:
    """Files in the region directories that are not segments."""
    with ControlClient(svc.url, svc.control_token) as control:
        return sum(s["otherFiles"] for s in control.storage().values())


KILLS = 5


def test_sigkill_during_uploads_keeps_every_acknowledged_dump(tmp_path, core_gz) -> None:
    """SIGKILL in the middle of concurrent uploads, ``KILLS`` times over the same data dir."""
    svc = ServiceProcess(tmp_path / "svc", rate_limit=0)
    with svc:
        devices = _setup(svc, 8)
        acked: list[str] = []
        lock = threading.Lock()
        for kill in range(KILLS):
            stop = threading.Event()

            def uploader(d: dict, stop: threading.Event = stop) -> None:
                with DeviceClient(svc.url, d["DeviceId"], d["DeviceSecret"], timeout=10) as c:
                    while not stop.is_set():
                        try:
                            r = c.upload_raw(core_gz, new_signature())
                        except httpx.HTTPError:
                            return  # the service died mid-request: not acknowledged
                        if r.status_code == 201:
                            with lock:
                                acked.append(r.json()["id"])

            threads = [threading.Thread(target=uploader, args=(d,)) for d in devices]
            for t in threads:
                t.start()
            want = 60 * (kill + 1)
            deadline = time.monotonic() + 30
            while len(acked) < want and time.monotonic() < deadline:
                time.sleep(0.01)
            svc.kill()  # SIGKILL: no shutdown, a crash
            stop.set()
            for t in threads:
                t.join(15)
            assert len(acked) >= want, f"kill {kill + 1}: only {len(acked)} uploads acknowledged"
            svc.start()
            rows, files = _stored(svc)
            assert set(acked) <= rows, f"kill {kill + 1}: {len(set(acked) - rows)} acknowledged dumps lost"
            assert rows == files  # no row without its whole blob
            assert _other_files(svc) == 0  # nothing but segments in the region directories
        with ControlClient(svc.url, svc.control_token) as control:
            support = control.create_token("Support")
        with Client(svc.url, support) as s:
            listed = {d["id"] for d in s.support_dumps()}
            assert set(acked) <= listed
            assert s.support_read(acked[0], "durability check") == core_gz


def test_restart_keeps_everything(tmp_path, core_gz) -> None:
    svc = ServiceProcess(tmp_path / "svc")
    with svc:
        devices = _setup(svc, 2, boundary="EU")
        ids = []
        for d in devices:
            with DeviceClient(svc.url, d["DeviceId"], d["DeviceSecret"]) as c:
                ids.append(c.upload(core_gz, new_signature())["id"])
        with ControlClient(svc.url, svc.control_token) as control:
            control.advance_clock(3600)
            t_before = control.clock()["serverTime"]
        svc.stop()
        svc.start()
        with ControlClient(svc.url, svc.control_token) as control:  # a new control token each start
            recovered = control.stats()["recoveredAtStart"]
            assert recovered == dict.fromkeys(recovered, 0)  # a clean stop leaves nothing to repair
            assert sum(s["dumps"] for s in control.storage().values()) == len(ids)
            assert control.clock()["serverTime"] >= t_before  # the warped clock persists
        d = devices[0]
        with DeviceClient(svc.url, d["DeviceId"], d["DeviceSecret"]) as c:  # secrets survive
            assert c.sync()["optIn"] is True
        rows, files = _stored(svc)
        assert set(ids) <= rows and set(ids) <= files
        with ControlClient(svc.url, svc.control_token) as control:
            storage = control.storage()
        assert storage["EU"]["dumps"] == len(ids) and storage["EastUS"]["dumps"] == storage["WestUS"]["dumps"] == 0


def test_orphans_are_removed_at_start(tmp_path, core_gz) -> None:
    svc = ServiceProcess(tmp_path / "svc")
    with svc:
        svc.stop()
        (svc.data_dir / "blobs" / "EU" / ".tmp-deadbeef").write_bytes(b"half")
        (svc.data_dir / "blobs" / "WestUS" / "0123.gz").write_bytes(core_gz)
        svc.start()
        with ControlClient(svc.url, svc.control_token) as control:
            storage = control.storage()
        assert all(s["dumps"] == s["otherFiles"] == 0 for s in storage.values()), storage


# ------------------------------------------------------------------------------ faults


def test_fault_status_then_normal(service, control, claimed_device) -> None:
    dev = claimed_device()
    control.set_fault("status", status=503, count=2)
    with dev.client() as c:
        for _ in range(2):
            r = c.http.post(api.SYNC_PATH)
            assert r.status_code == 503 and r.json()[0]["ErrorCode"] == "InjectedFault"
        assert c.sync()["optIn"] is True
    assert control.fault() is None


def test_fault_delay(control, claimed_device) -> None:
    dev = claimed_device()
    control.set_fault("delay", delay_ms=400, count=1)
    with dev.client() as c:
        t0 = time.monotonic()
        c.sync()
        assert time.monotonic() - t0 >= 0.4
    # the public API is never delayed
    assert control.fault() is None


def test_fault_hang_never_answers_and_stores_nothing(service, control, claimed_device, core_gz) -> None:
    dev = claimed_device()
    control.set_fault("hang")
    before = _stored(service)
    with DeviceClient(service.url, dev.device_id, dev.secret, timeout=1.0) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.upload_raw(core_gz, new_signature())
    control.clear_faults()
    assert _stored(service) == before
    with dev.client() as c:
        assert c.upload(core_gz, new_signature())["region"]


def test_fault_drip_sends_a_byte_at_a_time(control, claimed_device) -> None:
    dev = claimed_device()
    control.set_fault("drip", delay_ms=50, count=1)
    with dev.client() as c:
        t0 = time.monotonic()
        with c.http.stream("POST", api.INTENT_PATH, json={"signature": new_signature(), "size": 10}) as r:
            chunks = list(r.iter_raw())
        elapsed = time.monotonic() - t0
    body = b"".join(chunks)
    assert body == b'{"action":"upload"}'
    assert elapsed >= 0.05 * (len(body) - 1)


@pytest.mark.parametrize("body", [{"mode": "explode"}, {"mode": "status", "status": 200}, {"mode": "delay", "delayMs": -1}, {"mode": "hang", "count": 0}])
def test_bad_fault_is_400(control, body) -> None:
    r = control.http.post("/testbed/v1/faults", json=body)
    assert r.status_code == 400


@pytest.mark.parametrize("body", [{}, {"advance": "1"}, {"advance": 1, "set": 2}, {"set": -5}, {"advance": 1e30}, {"warp": 1}])
def test_bad_clock_is_400(control, body) -> None:
    assert control.http.post("/testbed/v1/clock", json=body).status_code == 400


# ------------------------------------------------------------------------------ CLI


def test_cli_refuses_non_loopback_host(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "testbed.service", "run", "--data-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode != 0 and "loopback" in r.stderr


def test_start_failure_is_reported(tmp_path) -> None:
    with pytest.raises(ServiceStartError) as err:
        ServiceProcess(tmp_path / "svc", extra_args=["--throttle-limit", "0"]).start()
    assert "throttle-limit" in str(err.value)


def test_second_service_on_same_data_dir_is_refused(service) -> None:
    with pytest.raises(ServiceStartError) as err:
        ServiceProcess(service.data_dir, startup_timeout=10).start()
    assert "already running" in str(err.value)
    assert httpx.get(service.url + "/healthz").status_code == 200


def test_service_stops_when_its_parent_dies(tmp_path) -> None:
    """A test runner killed with SIGKILL must not leave a service behind."""
    code = (
        "import sys, time\n"
        "from testbed.service.process import ServiceProcess\n"
        "s = ServiceProcess(sys.argv[1]).start()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "svc")], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 15
    import os

    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        pytest.fail("the service outlived its parent by 15 s")
    assert "parent process" in (tmp_path / "svc" / "service.log").read_text()


def test_settle_waits_for_blob_files(service, control, claimed_device, core_gz) -> None:
    dev = claimed_device()
    with dev.client() as c:
        ids = [c.upload(core_gz, new_signature())["id"] for _ in range(3)]
    control.settle()
    listed = {d["id"]: d for d in control.dumps(deviceId=dev.device_id)}
    for dump_id in ids:
        assert listed[dump_id]["sha256"] == hashlib.sha256(control.blob(dump_id)).hexdigest()
