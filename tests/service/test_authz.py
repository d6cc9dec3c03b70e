"""Authorization matrix: each role x each route x own / other tenant; and the control API's token."""

from __future__ import annotations

import uuid

import httpx
import pytest

from testbed.service.client import Client, ControlClient

ROLES = ["Administrator", "Contributor", "Reader", "Support", "none", "bogus"]

# route -> (roles allowed in their own tenant, success status)
ROUTES = {
    "list-tenants": ({"Administrator", "Contributor", "Reader"}, 200),
    "get-tenant": ({"Administrator", "Contributor", "Reader"}, 200),
    "list-products": ({"Administrator", "Contributor", "Reader"}, 200),
    "create-product": ({"Administrator", "Contributor"}, 202),
    "get-product": ({"Administrator", "Contributor", "Reader"}, 200),
    "create-group": ({"Administrator", "Contributor"}, 200),
    "create-defaults": ({"Administrator", "Contributor"}, 200),
    "list-groups": ({"Administrator", "Contributor", "Reader"}, 200),
    "list-product-groups": ({"Administrator", "Contributor", "Reader"}, 200),
    "get-group": ({"Administrator", "Contributor", "Reader"}, 200),
    "patch-group": ({"Administrator", "Contributor"}, 200),
    # the gallery: changing consent needs the Administrator role
    "patch-consent": ({"Administrator"}, 200),
    # the role docs: Contributors may claim devices
    "claim": ({"Administrator", "Contributor"}, 201),
    "get-device": ({"Administrator", "Contributor", "Reader"}, 200),
    "move": ({"Administrator", "Contributor"}, 200),
    "support-list": ({"Support"}, 200),
    "support-audit": ({"Support"}, 200),
}


@pytest.fixture(scope="module")
def world(service_process):
    """Two tenants, each with a product, two groups and a device; tokens of every role for tenant A."""
    with ControlClient(service_process.url, service_process.control_token) as control:
        tenants = {}
        for key in ("A", "B"):
            t = control.create_tenant(f"authz-{key}-{uuid.uuid4().hex[:8]}")
            with Client(service_process.url, t["Token"]) as admin:
                p = admin.create_product(t["Id"], "P")
                g1 = admin.create_device_group(t["Id"], p["Id"], "G1")
                g2 = admin.create_device_group(t["Id"], p["Id"], "G2")
                d = admin.claim_device(t["Id"], g1["Id"])
            tenants[key] = {"id": t["Id"], "product": p["Id"], "groups": [g1["Id"], g2["Id"]], "device": d["DeviceId"]}
        tokens = {
            role: control.create_token(role, tenants["A"]["id"], label=f"authz {role}")
            for role in ("Administrator", "Contributor", "Reader")
        }
        tokens["Support"] = control.create_token("Support", label="authz support")
    return tenants, tokens


def request(c: httpx.Client, route: str, t: dict) -> httpx.Response:
    base = f"/v2/tenants/{t['id']}"
    uniq = uuid.uuid4().hex[:10]
    if route == "list-tenants":
        return c.get("/v2/tenants")
    if route == "get-tenant":
        return c.get(base)
    if route == "list-products":
        return c.get(base + "/products")
    if route == "create-product":
        return c.post(base + "/products", json={"Name": f"p-{uniq}"})
    if route == "get-product":
        return c.get(f"{base}/products/{t['product']}")
    if route == "create-group":
        return c.post(f"{base}/devicegroups", json={"Name": f"g {uniq}", "ProductId": t["product"]})
    if route == "create-defaults":
        return c.post(f"{base}/products/{t['product']}/devicegroups")
    if route == "list-groups":
        return c.get(base + "/devicegroups")
    if route == "list-product-groups":
        return c.get(f"{base}/products/{t['product']}/devicegroups")
    if route == "get-group":
        return c.get(f"{base}/devicegroups/{t['groups'][0]}")
    if route == "patch-group":
        return c.patch(f"{base}/devicegroups/{t['groups'][0]}", json={"Description": uniq})
    if route == "patch-consent":
        return c.patch(f"{base}/devicegroups/{t['groups'][1]}", json={"AllowCrashDumpsCollection": False})
    if route == "claim":
        return c.post(base + "/devices", json={"DeviceGroupId": t["groups"][0]})
    if route == "get-device":
        return c.get(f"{base}/devices/{t['device']}")
    if route == "move":
        return c.put(f"{base}/devices/{t['device']}/devicegroup", json={"Id": t["groups"][1]})
    if route == "support-list":
        return c.get("/support/v1/crashdumps", params={"tenantId": t["id"]})
    if route == "support-audit":
        return c.get("/support/v1/audit")
    raise AssertionError(route)


def expected(role: str, route: str, own: bool) -> int:
    allowed, ok = ROUTES[route]
    if role in ("none", "bogus"):
        return 401
    tenant_scoped = route not in ("list-tenants", "support-list", "support-audit")
    if route.startswith("support-"):
        return ok if role == "Support" else 403
    if role == "Support":
        return 403
    if tenant_scoped and not own:
        return 404  # another tenant's objects do not exist for this token
    return ok if role in allowed else 403


CASES = [(role, route, own) for role in ROLES for route in ROUTES for own in (True, False)]


@pytest.mark.parametrize(("role", "route", "own"), CASES, ids=[f"{r}-{rt}-{'own' if o else 'other'}" for r, rt, o in CASES])
def test_authz_matrix(service_process, world, role: str, route: str, own: bool) -> None:
    tenants, tokens = world
    headers = {}
    if role == "bogus":
        headers["Authorization"] = "Bearer tbt_not-a-real-token"
    elif role != "none":
        headers["Authorization"] = f"Bearer {tokens[role]}"
    with httpx.Client(base_url=service_process.url, headers=headers) as c:
        r = request(c, route, tenants["A" if own else "B"])
    assert r.status_code == expected(role, route, own), r.text
    if r.status_code >= 400:
        assert r.json()[0]["ErrorCode"]


def test_list_tenants_of_other_roles_only_show_own(service_process, world) -> None:
    tenants, tokens = world
    with Client(service_process.url, tokens["Reader"]) as c:
        assert [t["Id"] for t in c.tenants()] == [tenants["A"]["id"]]
        assert c.tenants()[0]["Roles"] == ["Reader"]


def test_tenant_device_group_listing_is_isolated(service_process, world) -> None:
    tenants, tokens = world
    with Client(service_process.url, tokens["Administrator"]) as c:
        ids = {g["Id"] for g in c.device_groups(tenants["A"]["id"])}
    assert set(tenants["A"]["groups"]) <= ids
    assert not ids & set(tenants["B"]["groups"])


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic abc"])
def test_control_api_needs_its_token(service_process, world, auth) -> None:
    _, tokens = world
    headers = {"Authorization": auth} if auth else {}
    for token in (None, tokens["Administrator"], tokens["Support"]):
        h = {"Authorization": f"Bearer {token}"} if token else headers
        r = httpx.post(service_process.url + "/testbed/v1/clock", json={"advance": 1}, headers=h)
        assert r.status_code == 401
        r = httpx.post(service_process.url + "/testbed/v1/tenants", json={"name": "x"}, headers=h)
        assert r.status_code == 401


def test_control_api_absent_without_enable_control(tmp_path) -> None:
    from testbed.service.process import ServiceProcess

    with ServiceProcess(tmp_path / "svc", enable_control=False) as svc:
        assert svc.control_token is None
        for path in ("/testbed/v1/clock", "/testbed/v1/tenants", "/testbed/v1/faults"):
            r = httpx.post(svc.url + path, json={}, headers={"Authorization": "Bearer x"})
            assert r.status_code == 404
        assert not (svc.data_dir / "control.token").exists()
