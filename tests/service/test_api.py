"""Public API shapes: tenants, products, device groups (paging, PATCH), claim and move."""

from __future__ import annotations

import httpx
import pytest

from testbed.contract import device_api as api
from testbed.service.client import Client, ServiceError

GROUP_KEYS = {
    "Id",
    "Name",
    "Description",
    "ProductId",
    "TenantId",
    "OsFeedType",
    "UpdatePolicy",
    "AllowCrashDumpsCollection",
    "RegionalDataBoundary",
    "CurrentDeployment",
}


def test_tenant_listing_shows_own_tenant_only(tenant_admin: Client, control) -> None:
    other = control.create_tenant("other-" + (tenant_admin.tenant_id or "")[:8])
    tenants = tenant_admin.tenants()
    assert [t["Id"] for t in tenants] == [tenant_admin.tenant_id]
    assert tenants[0]["Roles"] == ["Administrator"]
    assert other["Id"] not in {t["Id"] for t in tenants}


def test_new_group_defaults_and_shape(tenant_admin: Client, device_group) -> None:
    tid = tenant_admin.tenant_id
    product = tenant_admin.create_product(tid, "P1", "first")
    assert set(product) == {"Id", "TenantId", "Name", "Description"}
    group = tenant_admin.create_device_group(tid, product["Id"], "Field")
    assert set(group) == GROUP_KEYS
    assert group["AllowCrashDumpsCollection"] is False
    assert group["RegionalDataBoundary"] == "None"
    assert group["ProductId"] == product["Id"] and group["TenantId"] == tid
    assert tenant_admin.device_group(tid, group["Id"]) == group


def test_patch_changes_only_given_fields(tenant_admin: Client, device_group) -> None:
    tid = tenant_admin.tenant_id
    group = device_group(Description="before")
    patched = tenant_admin.update_device_group(
        tid, group["Id"], AllowCrashDumpsCollection=True, RegionalDataBoundary="EU"
    )
    assert patched == {**group, "AllowCrashDumpsCollection": True, "RegionalDataBoundary": "EU"}
    again = tenant_admin.update_device_group(tid, group["Id"], Name="renamed", OsFeedType=1, UpdatePolicy=1)
    assert again["Name"] == "renamed" and again["OsFeedType"] == 1 and again["UpdatePolicy"] == 1
    assert again["AllowCrashDumpsCollection"] is True and again["Description"] == "before"


@pytest.mark.parametrize(
    "body",
    [
        {"AllowCrashDumpsCollection": "true"},
        {"AllowCrashDumpsCollection": 1},
        {"RegionalDataBoundary": "US"},
        {"RegionalDataBoundary": None},
        {"OsFeedType": 2},
        {"OsFeedType": True},
        {"UpdatePolicy": "0"},
        {"Name": ""},
        {"Name": "x" * 51},
        {"AllowCrashDumpCollection": True},
        [],
    ],
)
def test_patch_rejects_bad_bodies(tenant_admin: Client, device_group, body) -> None:
    group = device_group()
    r = tenant_admin.http.patch(f"/v2/tenants/{tenant_admin.tenant_id}/devicegroups/{group['Id']}", json=body)
    assert r.status_code == 400
    errors = r.json()
    assert isinstance(errors, list) and {"ErrorCode", "Title", "Detail"} <= set(errors[0])
    assert tenant_admin.device_group(tenant_admin.tenant_id, group["Id"]) == group


def test_patch_not_json_is_400(tenant_admin: Client, device_group) -> None:
    group = device_group()
    r = tenant_admin.http.patch(
        f"/v2/tenants/{tenant_admin.tenant_id}/devicegroups/{group['Id']}",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()[0]["ErrorCode"] == "BadRequest"


def test_duplicate_names_conflict(tenant_admin: Client, device_group) -> None:
    tid = tenant_admin.tenant_id
    a = device_group(name="A")
    b = device_group(name="B")
    with pytest.raises(ServiceError) as err:
        tenant_admin.create_device_group(tid, a["ProductId"], "A")
    assert err.value.status == 409
    with pytest.raises(ServiceError) as err:
        tenant_admin.update_device_group(tid, b["Id"], Name="A")
    assert err.value.status == 409
    with pytest.raises(ServiceError) as err:
        tenant_admin.create_product(tid, "DW100")
    assert err.value.status == 409


def test_paging_follows_continuation_header(tenant_admin: Client, device_group) -> None:
    tid = tenant_admin.tenant_id
    made = [device_group(name=f"g{i:02d}")["Id"] for i in range(7)]
    first = tenant_admin.device_groups_page(tid, max_page_size=3)
    assert set(first) == {"ContinuationToken", "Items"}
    assert len(first["Items"]) == 3 and first["ContinuationToken"]
    r = tenant_admin.http.get(
        f"/v2/tenants/{tid}/devicegroups",
        params={"maxPageSize": 3},
        headers={"Sphere-Continuation": first["ContinuationToken"]},
    )
    second = r.json()
    assert [g["Id"] for g in second["Items"]] == made[3:6]
    assert tenant_admin.device_groups_page(tid, max_page_size=7)["ContinuationToken"] is None
    assert [g["Id"] for g in tenant_admin.device_groups(tid, max_page_size=2)] == made


@pytest.mark.parametrize("size", ["0", "-1", "abc", "100000"])
def test_bad_page_size_is_400(tenant_admin: Client, size: str) -> None:
    r = tenant_admin.http.get(f"/v2/tenants/{tenant_admin.tenant_id}/devicegroups", params={"maxPageSize": size})
    assert r.status_code == 400


def test_continuation_of_another_tenant_is_refused(tenant_admin: Client, control, device_group, service) -> None:
    for i in range(3):
        device_group(name=f"p{i}")
    token = tenant_admin.device_groups_page(tenant_admin.tenant_id, max_page_size=1)["ContinuationToken"]
    other = control.create_tenant("paging-other-" + token[:6])
    with Client(service.url, other["Token"]) as c:
        r = c.http.get(f"/v2/tenants/{other['Id']}/devicegroups", headers={"Sphere-Continuation": token})
        assert r.status_code == 400
        r = c.http.get(f"/v2/tenants/{other['Id']}/devicegroups", headers={"Sphere-Continuation": "%%%"})
        assert r.status_code == 400


def test_claim_and_move(tenant_admin: Client, device_group) -> None:
    tid = tenant_admin.tenant_id
    g1, g2 = device_group(), device_group()
    device_id = "ab" * 64
    claimed = tenant_admin.claim_device(tid, g1["Id"], device_id)
    assert claimed["DeviceId"] == device_id and claimed["DeviceGroupId"] == g1["Id"]
    assert len(claimed["DeviceSecret"]) == 43
    moved = tenant_admin.move_device(tid, device_id, g2["Id"])
    assert moved["DeviceGroupId"] == g2["Id"]
    assert "DeviceSecret" not in tenant_admin.device(tid, device_id)
    with pytest.raises(ServiceError) as err:
        tenant_admin.claim_device(tid, g1["Id"], device_id)
    assert err.value.status == 409
    for bad in ("AB" * 64, "ab" * 63, "zz" * 64):
        with pytest.raises(ServiceError) as err:
            tenant_admin.claim_device(tid, g1["Id"], bad)
        assert err.value.status == 400


def test_errors_are_json_arrays(service) -> None:
    with httpx.Client(base_url=service.url) as c:
        for r in (
            c.get("/v2/tenants"),
            c.get("/v2/tenants", headers={"Authorization": "Bearer nope"}),
            c.get("/no/such/route"),
            c.delete("/v2/tenants"),
            c.post(api.SYNC_PATH),
        ):
            assert 400 <= r.status_code < 500
            body = r.json()
            assert isinstance(body, list) and set(body[0]) == {"ErrorCode", "Title", "Detail"}


def test_methods_come_from_the_endpoint_classes(service, tenant_admin: Client, device_group) -> None:
    """HEAD is answered by GET; a method the class lacks is 405 with Allow, as the error body."""
    group = device_group()
    path = f"/v2/tenants/{tenant_admin.tenant_id}/devicegroups/{group['Id']}"
    head = tenant_admin.http.head(path)
    assert head.status_code == 200 and head.content == b""
    r = tenant_admin.http.delete(path)
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "PATCH"}
    assert r.json()[0]["ErrorCode"] == "MethodNotAllowed"
    with httpx.Client(base_url=service.url) as c:
        r = c.get(api.UPLOAD_PATH)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
