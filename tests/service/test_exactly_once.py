"""Exactly-once uploads (X-Upload-Id) and the ``drop`` fault, against a real service."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from service_helpers import new_signature

from testbed.service.client import ControlClient, DeviceClient
from testbed.service.process import ServiceProcess


def new_upload_id() -> str:
    return secrets.token_hex(16)


def test_a_repeat_gets_the_first_answer_and_is_stored_once(control, claimed_device, core_gz: bytes) -> None:
    dev = claimed_device()
    upload_id, sig = new_upload_id(), new_signature()
    with dev.client() as c:
        first = c.upload_raw(core_gz, sig, upload_id=upload_id)
        again = c.upload_raw(core_gz, sig, upload_id=upload_id)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    stored = control.dumps(deviceId=dev.device_id)
    assert [(d["id"], d["uploadId"]) for d in stored] == [(first.json()["id"], upload_id)]


def test_concurrent_repeats_are_stored_once(control, claimed_device, core_gz: bytes) -> None:
    dev = claimed_device()
    upload_id, sig = new_upload_id(), new_signature()

    def upload(_: int) -> httpx.Response:
        with DeviceClient(dev.url, dev.device_id, dev.secret) as c:
            return c.upload_raw(core_gz, sig, upload_id=upload_id)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(upload, range(24)))
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["id"] for r in answers}) == 1
    assert len(control.dumps(deviceId=dev.device_id)) == 1


def test_the_same_upload_id_of_two_devices_is_two_dumps(control, claimed_device, device_group, core_gz: bytes) -> None:
    group = device_group(allow_crash_dumps=True)
    a, b = claimed_device(group), claimed_device(group)
    upload_id = new_upload_id()
    ids = []
    for dev in (a, b):
        with dev.client() as c:
            ids.append(c.upload(core_gz, new_signature(), upload_id=upload_id)["id"])
    assert ids[0] != ids[1]


def test_uploads_without_an_id_are_stored_as_before(control, claimed_device, core_gz: bytes) -> None:
    dev = claimed_device()
    sig = new_signature()
    with dev.client() as c:
        one, two = c.upload(core_gz, sig), c.upload(core_gz, sig)
    assert one["id"] != two["id"]
    assert [d["uploadId"] for d in control.dumps(deviceId=dev.device_id)] == [None, None]


def test_throttling_stays_exact_and_a_repeat_of_the_nth_is_not_throttled(service, control, claimed_device, device_group, core_gz: bytes) -> None:
    group = device_group(allow_crash_dumps=True)
    devs = [claimed_device(group) for _ in range(4)]
    sig = new_signature()
    upload_ids = [new_upload_id() for _ in range(30)]

    def upload(i: int) -> httpx.Response:
        dev = devs[i % len(devs)]
        with DeviceClient(dev.url, dev.device_id, dev.secret) as c:
            return c.upload_raw(core_gz, sig, upload_id=upload_ids[i])

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(upload, range(len(upload_ids))))
    stored = [i for i, r in enumerate(answers) if r.status_code == 201]
    assert len(stored) == 5 and [r.status_code for r in answers].count(200) == 25
    assert len(control.dumps(signature=sig)) == 5
    # the signature is throttled now; a repeat of a stored id still gets its first answer
    i = stored[-1]
    again = upload(i)
    assert again.status_code == 201 and again.json() == answers[i].json()
    refused = next(j for j in range(len(upload_ids)) if j not in stored)
    assert upload(refused).json() == {"skipped": "throttled"}
    assert len(control.dumps(signature=sig)) == 5


def test_a_repeat_after_a_restart_gets_the_first_answer(tmp_path, core_gz: bytes) -> None:
    with ServiceProcess(tmp_path / "svc", rate_limit=0) as svc:
        with ControlClient(svc.url, svc.control_token) as control:
            t = control.create_tenant("restart")
        from testbed.service.client import Client

        with Client(svc.url, t["Token"]) as admin:
            p = admin.create_product(t["Id"], "P")
            g = admin.create_device_group(t["Id"], p["Id"], "G", AllowCrashDumpsCollection=True)
            d = admin.claim_device(t["Id"], g["Id"])
        upload_id = new_upload_id()
        with DeviceClient(svc.url, d["DeviceId"], d["DeviceSecret"]) as c:
            first = c.upload(core_gz, new_signature(), upload_id=upload_id)
        svc.restart()
        with DeviceClient(svc.url, d["DeviceId"], d["DeviceSecret"]) as c:
            again = c.upload(core_gz, new_signature(), upload_id=upload_id)
        assert again == first
        with ControlClient(svc.url, svc.control_token) as control:
            assert len(control.dumps()) == 1
            assert control.stats()["repeats"] == 1


# ------------------------------------------------------------------ the drop fault


def test_drop_stores_then_sends_nothing_and_a_retry_gets_the_stored_answer(service, control, claimed_device, core_gz: bytes) -> None:
    dev = claimed_device()
    upload_id, sig = new_upload_id(), new_signature()
    control.set_fault("drop", count=1)
    with dev.client() as c:
        assert c.sync()["optIn"] is True  # other device requests pass and do not count
        assert control.fault() is not None
        with pytest.raises(httpx.RemoteProtocolError):
            c.upload_raw(core_gz, sig, upload_id=upload_id)
    assert control.fault() is None  # used up by the one upload
    stored = control.dumps(deviceId=dev.device_id)
    assert [d["uploadId"] for d in stored] == [upload_id]  # the answer was lost after the store
    with dev.client() as c:
        retry = c.upload_raw(core_gz, sig, upload_id=upload_id)
    assert retry.status_code == 201 and retry.json()["id"] == stored[0]["id"]
    assert len(control.dumps(deviceId=dev.device_id)) == 1


def test_drop_is_no_error_in_the_log(service, control, claimed_device, core_gz: bytes) -> None:
    before = service.log_path.read_text(errors="replace")
    control.set_fault("drop", count=2)
    with claimed_device().client() as c:
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                c.upload_raw(core_gz, new_signature(), upload_id=new_upload_id())
    new = service.log_path.read_text(errors="replace")[len(before):]
    assert "Traceback" not in new and "without starting response" not in new
