"""Device API: sync, intent, upload; consent, boundary placement, throttling, retention, audit."""

from __future__ import annotations

import gzip
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from service_helpers import blob_regions, control_of, new_signature, snapshot

from testbed.contract import device_api as api
from testbed.service.client import Client, DeviceClient, ServiceError


def test_sync_shape(claimed_device, device_group) -> None:
    group = device_group(allow_crash_dumps=True, boundary="EU")
    dev = claimed_device(group)
    with dev.client() as c:
        s = c.sync(firmwareVersion="0.1.0", deviceTime=1, spooled=0, unknownKey=[1])
    assert s["optIn"] is True and s["regionalDataBoundary"] == "EU"
    assert s["validitySeconds"] == 172800 and s["deviceGroupId"] == group["Id"]
    assert isinstance(s["serverTime"], int) and s["throttledSignatures"] == []
    assert s["maxUploadBytes"] == 262144 and s["maxInflatedBytes"] == 4194304
    assert all(not isinstance(v, dict) for v in s.values())  # flat, as the C side reads it


def test_wrong_secret_and_unknown_device_are_401(service, claimed_device) -> None:
    dev = claimed_device()
    for auth in (
        api.device_authorization(dev.device_id, "wrong"),
        api.device_authorization("0" * 128, dev.secret),
        f"{api.DEVICE_SCHEME} {dev.device_id}",
        f"Bearer {dev.secret}",
        "",
    ):
        r = httpx.post(service.url + api.SYNC_PATH, headers={"Authorization": auth})
        assert r.status_code == 401, auth
        assert r.json()[0]["ErrorCode"] == "Unauthorized"


def test_fresh_group_is_opted_out_everywhere(service, claimed_device, device_group, core_gz) -> None:
    dev = claimed_device(device_group())  # a new group: collection disabled
    sig = new_signature()
    with dev.client() as c:
        assert c.sync()["optIn"] is False
        assert c.intent(sig, len(core_gz)) == {"action": "skip", "reason": "optout"}
        before = snapshot(service)
        r = c.upload_raw(core_gz, sig)
    assert r.status_code == 403 and r.json()[0]["ErrorCode"] == "Forbidden"
    assert snapshot(service) == before


def test_consent_is_enforced_server_side_after_disable(service, tenant_admin: Client, claimed_device, device_group, core_gz) -> None:
    group = device_group(allow_crash_dumps=True)
    dev = claimed_device(group)
    with dev.client() as c:
        assert c.sync()["optIn"] is True  # the device believes it is opted in
        assert c.upload(core_gz, new_signature())["region"] in ("EastUS", "WestUS")
        tenant_admin.update_device_group(tenant_admin.tenant_id, group["Id"], AllowCrashDumpsCollection=False)
        before = snapshot(service)
        r = c.upload_raw(core_gz, new_signature())
        assert r.status_code == 403
        assert snapshot(service) == before
        assert c.sync()["optIn"] is False


def test_eu_group_stores_in_eu_only_also_across_boundary_changes(service, tenant_admin: Client, claimed_device, device_group, core_gz) -> None:
    group = device_group(allow_crash_dumps=True, boundary="EU")
    devs = [claimed_device(group) for _ in range(4)]
    eu_ids = []
    for dev in devs:
        with dev.client() as c:
            out = c.upload(core_gz, new_signature())
        assert out["region"] == "EU"
        assert blob_regions(service, out["id"]) == ["EU"]
        eu_ids.append(out["id"])
    tenant_admin.update_device_group(tenant_admin.tenant_id, group["Id"], RegionalDataBoundary="None")
    us_regions = set()
    for dev in devs:
        with dev.client() as c:
            out = c.upload(core_gz, new_signature())
        assert out["region"] in ("EastUS", "WestUS")
        assert blob_regions(service, out["id"]) == [out["region"]]
        us_regions.add(out["region"])
    tenant_admin.update_device_group(tenant_admin.tenant_id, group["Id"], RegionalDataBoundary="EU")
    with devs[0].client() as c:
        assert c.upload(core_gz, new_signature())["region"] == "EU"
    for dump_id in eu_ids:  # earlier EU dumps never moved
        assert blob_regions(service, dump_id) == ["EU"]


def test_none_boundary_placement_is_deterministic_per_device(claimed_device, device_group, core_gz) -> None:
    group = device_group(allow_crash_dumps=True)
    regions = set()
    for _ in range(8):
        dev = claimed_device(group)
        with dev.client() as c:
            first = c.upload(core_gz, new_signature())["region"]
            second = c.upload(core_gz, new_signature())["region"]
        assert first == second
        regions.add(first)
    assert regions <= {"EastUS", "WestUS"}


def test_throttling_stores_exactly_n_under_concurrency(service, claimed_device, device_group, core_gz) -> None:
    group = device_group(allow_crash_dumps=True)
    devs = [claimed_device(group) for _ in range(6)]
    sig = new_signature()

    def upload(i: int) -> int:
        dev = devs[i % len(devs)]
        with DeviceClient(service.url, dev.device_id, dev.secret) as c:
            return c.upload_raw(core_gz, sig).status_code

    with ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(upload, range(40)))
    assert statuses.count(201) == 5
    assert statuses.count(200) == 35
    with devs[0].client() as c:
        assert sig in c.sync()["throttledSignatures"]
        assert c.intent(sig, len(core_gz)) == {"action": "skip", "reason": "throttled"}
        assert c.upload(core_gz, sig) == {"skipped": "throttled"}
        assert c.intent(new_signature(), len(core_gz)) == {"action": "upload"}
    with control_of(service) as control:
        assert len(control.dumps(signature=sig)) == 5


def test_throttling_is_per_tenant(service, control, claimed_device, device_group, core_gz) -> None:
    sig = new_signature()
    dev = claimed_device(device_group(allow_crash_dumps=True))
    with dev.client() as c:
        for _ in range(5):
            assert "id" in c.upload(core_gz, sig)
        assert c.upload(core_gz, sig) == {"skipped": "throttled"}
    other = control.create_tenant("throttle-other-" + sig[:8])
    with Client(service.url, other["Token"]) as admin:
        product = admin.create_product(other["Id"], "P")
        g = admin.create_device_group(other["Id"], product["Id"], "G", AllowCrashDumpsCollection=True)
        claimed = admin.claim_device(other["Id"], g["Id"])
    with DeviceClient(service.url, claimed["DeviceId"], claimed["DeviceSecret"]) as c:
        assert "id" in c.upload(core_gz, sig)


def test_intent_too_large_and_bad_fields(claimed_device, core_gz) -> None:
    dev = claimed_device()
    with dev.client() as c:
        assert c.intent(new_signature(), 10**9) == {"action": "skip", "reason": "too-large"}
        for body in (
            {"signature": "XYZ", "size": 1},
            {"signature": "A" * 32, "size": 1},
            {"signature": new_signature(), "size": -1},
            {"signature": new_signature(), "size": "1"},
            {"signature": new_signature(), "size": 1, "componentClass": "Kernel"},
            {"size": 1},
        ):
            r = c.http.post(api.INTENT_PATH, json=body)
            assert r.status_code == 400, body


def test_retention_deletes_blob_and_row_after_29_days(service, control, support_client, claimed_device, core_gz) -> None:
    dev = claimed_device()
    with dev.client() as c:
        old = c.upload(core_gz, new_signature())
    (region,) = blob_regions(service, old["id"])
    control.advance_clock(28 * 86400)
    assert control.blob(old["id"]) == core_gz
    with dev.client() as c:
        young = c.upload(core_gz, new_signature())
    out = control.advance_clock(1 * 86400 + 5)
    assert out["expired"] >= 1
    with pytest.raises(ServiceError) as gone:
        control.blob(old["id"])
    assert gone.value.status == 404
    assert old["id"] not in {d["id"] for d in control.dumps(region=region)}
    assert control.storage()[region]["dumps"] == len(control.dumps(region=region))  # its file went too
    ids = {d["id"] for d in support_client.support_dumps(deviceId=dev.device_id)}
    assert old["id"] not in ids and young["id"] in ids
    with pytest.raises(ServiceError) as err:
        support_client.support_read(old["id"], "retention check")
    assert err.value.status == 404


def test_stale_time_is_the_services_clock(control, claimed_device) -> None:
    dev = claimed_device()
    with dev.client() as c:
        t0 = c.sync()["serverTime"]
        control.advance_clock(48 * 3600)
        t1 = c.sync()["serverTime"]
    assert 48 * 3600 <= t1 - t0 <= 48 * 3600 + 30


def test_support_reads_are_audited_first(service, support_client: Client, tenant_admin: Client, claimed_device, core_gz) -> None:
    dev = claimed_device()
    with dev.client() as c:
        dump = c.upload(core_gz, new_signature())
    listed = support_client.support_dumps(deviceId=dev.device_id)
    assert [d["id"] for d in listed] == [dump["id"]]
    assert listed[0]["region"] == dump["region"] and listed[0]["size"] == len(core_gz)
    before = support_client.audit()
    last = before[-1]["id"] if before else 0
    data = support_client.support_read(dump["id"], "ticket 42: investigate segv")
    assert data == core_gz and gzip.decompress(data)[:4] == b"\x7fELF"
    rows = support_client.audit(after=last)
    reads = [r for r in rows if r["action"] == "read"]
    assert reads and reads[-1]["dumpId"] == dump["id"]
    assert reads[-1]["reason"] == "ticket 42: investigate segv"
    assert reads[-1]["actor"].startswith("Support")
    # no reason: refused, nothing sent
    r = support_client.http.get(f"/support/v1/crashdumps/{dump['id']}")
    assert r.status_code == 400 and r.json()[0]["ErrorCode"] == "ReasonRequired"
    # tenant tokens cannot read dumps at all
    r = tenant_admin.http.get(f"/support/v1/crashdumps/{dump['id']}", headers={"X-Support-Reason": "x"})
    assert r.status_code == 403
    assert tenant_admin.http.get("/support/v1/crashdumps").status_code == 403
    assert tenant_admin.http.get("/support/v1/audit").status_code == 403


def test_rate_limit_answers_429_with_retry_after(tmp_path, core_gz) -> None:
    from testbed.service.process import ServiceProcess

    with ServiceProcess(tmp_path / "svc", rate_limit=6, rate_burst=3) as svc:
        from testbed.service.client import ControlClient

        with ControlClient(svc.url, svc.control_token) as control:
            t = control.create_tenant("rl")
        with Client(svc.url, t["Token"]) as admin:
            p = admin.create_product(t["Id"], "P")
            g = admin.create_device_group(t["Id"], p["Id"], "G", AllowCrashDumpsCollection=True)
            claimed = admin.claim_device(t["Id"], g["Id"])
            other = admin.claim_device(t["Id"], g["Id"])
        with DeviceClient(svc.url, claimed["DeviceId"], claimed["DeviceSecret"]) as c:
            statuses = [c.upload_raw(core_gz, new_signature()).status_code for _ in range(3)]
            assert statuses == [201, 201, 201]
            r = c.upload_raw(core_gz, new_signature())
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
            assert c.http.post(api.INTENT_PATH, json={"signature": new_signature(), "size": 1}).status_code == 429
            assert c.sync()["optIn"] is True  # sync is not rate limited
        with DeviceClient(svc.url, other["DeviceId"], other["DeviceSecret"]) as c:  # per device
            assert c.upload_raw(core_gz, new_signature()).status_code == 201
