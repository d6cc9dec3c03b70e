"""The control API's evidence endpoints (dumps, blob, storage, config) against a real service."""

from __future__ import annotations

import hashlib

import pytest
from service_helpers import new_signature

from testbed.service.client import Client, ControlClient, ServiceError
from testbed.service.process import ServiceProcess
from testbed.service.settings import SETTINGS

EVIDENCE_FIELDS = {
    "id", "tenantId", "deviceId", "signature", "region", "size", "inflatedSize", "createdAt",
    "crashTime", "componentClass", "componentName", "uploadId", "sha256",
}  # fmt: skip


def test_dumps_blob_and_storage(service, control: ControlClient, support_client: Client, claimed_device, device_group, core_gz: bytes) -> None:
    eu = claimed_device(device_group(allow_crash_dumps=True, boundary="EU"))
    sig = new_signature()
    with eu.client() as c:
        first = c.upload(core_gz, sig, crash_time=1_700_000_000)
        second = c.upload(core_gz, new_signature())
    audit_before = len(support_client.audit())
    storage_before = control.storage()
    listed = control.dumps(deviceId=eu.device_id)
    assert {d["id"] for d in listed} == {first["id"], second["id"]}
    assert listed == sorted(listed, key=lambda x: (x["createdAt"], x["id"]))  # by createdAt, id
    d = next(x for x in listed if x["id"] == first["id"])
    assert set(d) == EVIDENCE_FIELDS
    assert (d["tenantId"], d["signature"], d["region"], d["size"], d["crashTime"]) == (eu.tenant_id, sig, "EU", len(core_gz), 1_700_000_000)
    assert d["sha256"] == hashlib.sha256(core_gz).hexdigest() and d["uploadId"] is None
    assert [x["id"] for x in control.dumps(signature=sig)] == [first["id"]]
    assert control.dumps(deviceId=eu.device_id, region="WestUS") == []
    assert control.blob(first["id"]) == core_gz
    with pytest.raises(ServiceError) as err:
        control.blob("0" * 32)
    assert err.value.status == 404
    assert set(storage_before) == {"EU", "EastUS", "WestUS"}
    assert storage_before["EU"]["dumps"] >= 2 and storage_before["EU"]["bytes"] >= 2 * len(core_gz)
    assert len(support_client.audit()) == audit_before  # the testbed's evidence is not audited access


def test_storage_counts_files_not_rows(service, control: ControlClient, claimed_device, device_group, core_gz: bytes) -> None:
    dev = claimed_device(device_group(allow_crash_dumps=True, boundary="EU"))
    before = control.storage()["EU"]
    with dev.client() as c:
        c.upload(core_gz, new_signature())
    after = control.storage()["EU"]
    assert after["dumps"] == before["dumps"] + 1
    assert after["bytes"] == before["bytes"] + len(core_gz)


def test_config_lists_every_setting_with_its_value(tmp_path) -> None:
    given = {"throttle_limit": 7, "rate_limit": 0, "header_timeout": 2.5, "accept_host_cores": True}
    with ServiceProcess(tmp_path / "svc", **given) as svc, ControlClient(svc.url, svc.control_token) as control:
        config = control.config()
    assert set(config) == {s.name for s in SETTINGS}
    assert (config["throttle_limit"], config["rate_limit_per_minute"], config["header_timeout"], config["accept_host_cores"]) == (7, 0, 2.5, True)
    changed = {"throttle_limit", "rate_limit_per_minute", "header_timeout", "accept_host_cores"}
    assert all(config[s.name] == s.default for s in SETTINGS if s.name not in changed)


def test_service_process_refuses_an_unknown_setting() -> None:
    with pytest.raises(TypeError, match="no_such_setting"):
        ServiceProcess(no_such_setting=1)
