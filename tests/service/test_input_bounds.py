"""Issue 10 items 2, 3 and 7: JSON depth and size bounds, full-match identifiers, names
without any control character."""

from __future__ import annotations

import pytest
from service_helpers import new_signature

from testbed.contract import device_api as api
from testbed.contract.errors import error_codes
from testbed.service.client import Client, ServiceError
from testbed.service.validation import too_deep

DEEP = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"


def test_depth_scan_skips_strings_and_escapes() -> None:
    assert too_deep(b"[" * 33 + b"]" * 33, 32)
    assert not too_deep(b"[" * 32 + b"]" * 32, 32)
    assert not too_deep(b'{"a": "' + b"[" * 100 + b'"}', 2)
    assert not too_deep(b'{"a": "\\"' + b"[" * 100 + b'"}', 2)
    assert too_deep(b'["\\\\", ' + b"[" * 10 + b"]" * 11, 5)


@pytest.mark.parametrize("route", ["sync", "intent", "products", "patch-group", "clock", "claim", "tenants"])
def test_deep_json_is_400_on_every_json_route(service, control, tenant_admin: Client, device_group, claimed_device, route: str) -> None:
    group = device_group()
    dev = claimed_device(group)
    tid = tenant_admin.tenant_id
    headers = {"Content-Type": "application/json"}
    if route in ("sync", "intent"):
        with dev.client() as d:
            r = d.http.post(api.SYNC_PATH if route == "sync" else api.INTENT_PATH, content=DEEP, headers=headers)
    elif route == "products":
        r = tenant_admin.http.post(f"/v2/tenants/{tid}/products", content=DEEP, headers=headers)
    elif route == "patch-group":
        r = tenant_admin.http.patch(f"/v2/tenants/{tid}/devicegroups/{group['Id']}", content=DEEP, headers=headers)
    elif route == "claim":
        r = tenant_admin.http.post(f"/v2/tenants/{tid}/devices", content=DEEP, headers=headers)
    elif route == "tenants":
        r = control.http.post("/testbed/v1/tenants", content=DEEP, headers=headers)
    else:
        r = control.http.post("/testbed/v1/clock", content=DEEP, headers=headers)
    assert r.status_code == 400, r.text
    assert error_codes(r.json()) == ["TooDeep"]


def test_depth_limit_is_configurable_and_reported(control) -> None:
    assert control.config()["max_json_depth"] == 32
    shallow = b'{"a": ' + b"[" * 30 + b"]" * 30 + b"}"
    r = control.http.post("/testbed/v1/clock", content=shallow, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_codes(r.json()) == ["BadRequest"]  # parsed: unknown field


def test_claim_refuses_a_device_id_with_a_trailing_newline(tenant_admin: Client, device_group) -> None:
    group = device_group()
    device_id = "ab" * 64
    with pytest.raises(ServiceError) as err:
        tenant_admin.claim_device(tenant_admin.tenant_id, group["Id"], device_id + "\n")
    assert err.value.status == 400
    with pytest.raises(ServiceError) as err:
        tenant_admin.device(tenant_admin.tenant_id, device_id)
    assert err.value.status == 404  # nothing claimed


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\x00"])
def test_intent_refuses_a_signature_with_trailing_bytes(claimed_device, suffix: str) -> None:
    with claimed_device().client() as c:
        r = c.http.post(api.INTENT_PATH, json={"signature": new_signature() + suffix, "size": 10})
    assert r.status_code == 400 and error_codes(r.json()) == ["BadSignature"]


@pytest.mark.parametrize("upload_id", ["A" * 32, "a" * 31, "a" * 33, "g" * 32, "a" * 31 + "-"])
def test_upload_refuses_a_malformed_upload_id(service, claimed_device, core_gz: bytes, upload_id: str) -> None:
    with claimed_device().client() as c:
        r = c.upload_raw(core_gz, new_signature(), upload_id=upload_id)
    assert r.status_code == 400 and error_codes(r.json()) == ["BadUploadId"]


@pytest.mark.parametrize("char", ["\x00", "\x1f", "\x7f", "\x85", "\x9f"])
def test_names_refuse_every_control_character_and_say_which(tenant_admin: Client, device_group, control, char: str) -> None:
    tid = tenant_admin.tenant_id
    code = f"U+{ord(char):04X}"
    r = tenant_admin.http.post(f"/v2/tenants/{tid}/products", json={"Name": f"ab{char}c"})
    assert r.status_code == 400 and code in r.json()[0]["Detail"] and "position 2" in r.json()[0]["Detail"]
    group = device_group()
    r = tenant_admin.http.patch(f"/v2/tenants/{tid}/devicegroups/{group['Id']}", json={"Description": f"x{char}"})
    assert r.status_code == 400 and code in r.json()[0]["Detail"]
    r = control.http.post("/testbed/v1/tenants", json={"name": f"t{char}"})
    assert r.status_code == 400 and code in r.json()[0]["Detail"]


def test_names_keep_ordinary_unicode(tenant_admin: Client) -> None:
    product = tenant_admin.create_product(tenant_admin.tenant_id, "Überwachung – 監視", "tab-free ✓")
    assert product["Name"] == "Überwachung – 監視"
