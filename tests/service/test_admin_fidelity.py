"""The admin surface an Azure Sphere user knows, against the real service: az's option names and
short forms, --output and --query, a client written from the Public API reference alone, and the
bulk command riding out 429 and 500 answers."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import yaml
from click.testing import CliRunner

from testbed.cli import main
from testbed.deadline import Deadline
from testbed.service.client import Client, ControlClient


def run(service, token: str, args: list[str], ok: bool = True, input: str | None = None):
    env = {"TESTBED_SERVICE_URL": service.url, "TESTBED_TOKEN": token, "TESTBED_TENANT": ""}
    result = CliRunner().invoke(main, args, env=env, input=input, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_seed_commands_and_az_short_forms(service, tenant_admin: Client) -> None:
    token, tid = tenant_admin.token, tenant_admin.tenant_id or ""
    product = tenant_admin.create_product(tid, "DW100")
    tenant_admin.create_device_group(tid, product["Id"], "Marketing")
    # the seed's two commands, verbatim
    on = json.loads(run(service, token, ["sphere", "device-group", "update", "--product", "DW100", "--device-group", "Marketing",
                                         "--allow-crash-dumps-collection", "Enabled", "--regional-data-boundary", "EU"]).stdout)  # fmt: skip
    assert on["properties"]["allowCrashDumpsCollection"] == "Enabled" and on["properties"]["regionalDataBoundary"] == "EU"
    assert on["type"] == "Microsoft.AzureSphere/catalogs/products/deviceGroups" and on["name"] == "Marketing"
    off = json.loads(run(service, token, ["sphere", "device-group", "update", "--product", "DW100", "--device-group", "Marketing",
                                          "--allow-crash-dumps-collection", "Disabled"]).stdout)  # fmt: skip
    assert off["properties"]["allowCrashDumpsCollection"] == "Disabled"
    # az's short forms, any case for enum values; -g is the resource group, not the device group
    out = run(service, token, ["sphere", "device-group", "update", "-g", "MyRG", "-p", "DW100", "-dg", "Marketing",
                               "-cd", "enabled", "-r", "eu", "-o", "table"]).stdout.splitlines()  # fmt: skip
    assert out[0].split()[:4] == ["Name", "ResourceGroup", "AllowCrashDumpsCollection", "RegionalDataBoundary"]
    assert out[2].split()[:4] == ["Marketing", "MyRG", "Enabled", "EU"]
    q = run(service, token, ["sphere", "device-group", "show", "-g", "MyRG", "-p", "DW100", "--device-group", "Marketing",
                             "--query", "properties.allowCrashDumpsCollection"]).stdout  # fmt: skip
    assert json.loads(q) == "Enabled"
    shown = json.loads(run(service, token, ["sphere", "device-group", "show", "-g", "MyRG", "-p", "DW100", "--device-group", "Marketing"]).stdout)
    assert "/resourceGroups/MyRG/" in shown["id"] and shown["id"].endswith("/products/DW100/deviceGroups/Marketing")
    # -c is the catalog (the tenant), checked: another catalog is refused
    tenant_name = tenant_admin.tenants()[0]["Name"]
    run(service, token, ["sphere", "device-group", "show", "-c", tenant_name, "-dg", "DW100/Marketing"])
    bad = run(service, token, ["sphere", "device-group", "show", "-c", "NoSuchCatalog", "-dg", "Marketing"], ok=False)
    assert bad.exit_code == 1 and "no catalog 'NoSuchCatalog'" in bad.output
    bad = run(service, token, ["sphere", "device-group", "show", "-g", "bad/rg", "-dg", "Marketing"], ok=False)
    assert bad.exit_code == 2 and "resource group" in bad.output
    # yaml and tsv, a list filtered by name, and the Public API's own shape on request
    listed = yaml.safe_load(run(service, token, ["sphere", "device-group", "list", "-dg", "marketing", "-o", "yaml"]).stdout)
    assert [g["name"] for g in listed] == ["Marketing"]
    assert run(service, token, ["sphere", "device-group", "list", "-p", "DW100", "-o", "tsv", "--query", "[].name"]).stdout.strip() == "Marketing"
    api = json.loads(run(service, token, ["sphere", "device-group", "show", "-dg", "Marketing", "--api-shape"]).stdout)
    assert api["AllowCrashDumpsCollection"] is True and api["CurrentDeployment"] is None
    typo = run(service, token, ["sphere", "device-group", "show", "-dg", "Marketting"], ok=False)
    assert "did you mean 'Marketing'" in typo.output


def test_a_client_written_from_the_reference(service, control: ControlClient) -> None:
    """Plain HTTP as the Public API reference documents it; paths in the reference's casing,
    GUIDs in upper case, OSFeedType in PATCH, paging with Sphere-Continuation."""
    t = control.create_tenant(f"ref-{uuid.uuid4().hex[:8]}")
    tid = t["Id"].upper()
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {t['Token']}"}) as c:
        assert c.get(f"/v2/tenants/{tid}").json()["Id"] == t["Id"]
        op = c.post(f"/v2/tenants/{tid}/products", json={"Name": "DW100", "Description": "dishwasher",
                                                          "CreateDefaultGroups": True})  # fmt: skip
        assert op.status_code == 202 and op.json()["OperationType"] == 4 and op.json()["State"] == 2
        product = c.get(op.json()["ResourceLocation"]).json()
        assert c.get(op.json()["DetailsLocation"]).json()["OperationId"] == op.json()["OperationId"]
        defaults = c.get(f"/v2/tenants/{tid}/products/{product['Id'].upper()}/deviceGroups").json()["Items"]
        assert sorted(g["Name"] for g in defaults) == sorted(
            ["Development", "Field Test", "Production", "Field Test OS Evaluation", "Production OS Evaluation"])
        again = c.post(f"/v2/tenants/{tid}/products/{product['Id']}/deviceGroups")  # create-defaults: nothing new
        assert again.status_code == 200 and {g["Id"] for g in again.json()["Items"]} == {g["Id"] for g in defaults}
        created = [c.post(f"/v2/tenants/{tid}/deviceGroups", json={"Name": f"Region {i}", "ProductId": product["Id"],
                                                                   "Description": "x", "OsFeedType": 0, "UpdatePolicy": 0})
                   for i in range(7)]  # fmt: skip
        assert {r.status_code for r in created} == {200}
        assert created[0].json()["CurrentDeployment"] is None
        dup = c.post(f"/v2/tenants/{tid}/devicegroups", json={"Name": "REGION 0", "ProductId": product["Id"]})
        assert dup.status_code == 409  # names are unique whatever their case
        bad = c.post(f"/v2/tenants/{tid}/devicegroups", json={"Name": "Region-8", "ProductId": product["Id"]})
        assert bad.status_code == 400 and "letters, digits and single spaces" in bad.json()[0]["Detail"]
        gid = created[0].json()["Id"]
        patched = c.patch(f"/v2/tenants/{tid}/devicegroups/{gid.upper()}", json={"OSFeedType": 1, "AllowCrashDumpsCollection": True})
        assert patched.status_code == 200 and patched.json()["OsFeedType"] == 1 and patched.json()["AllowCrashDumpsCollection"] is True
        by_name = c.get(f"/v2/tenants/{tid}/products/name/dw100/deviceGroups/name/region 0").json()
        assert by_name["Id"] == gid
        seen, cont = [], None
        while True:
            r = c.get(f"/v2/tenants/{tid}/deviceGroups", params={"maxPageSize": 5},
                      headers={"Sphere-Continuation": cont} if cont else {})  # fmt: skip
            assert r.status_code == 200
            seen += [g["Id"] for g in r.json()["Items"]]
            cont = r.json()["ContinuationToken"]
            if not cont:
                break
        assert len(seen) == len(set(seen)) == 12


def test_bulk_configure_rides_out_429_and_500(service, control: ControlClient) -> None:
    t = control.create_tenant(f"bulk-{uuid.uuid4().hex[:8]}")
    with Client(service.url, t["Token"], tenant_id=t["Id"]) as admin:
        p = admin.create_product(t["Id"], "Fleet")
        for i in range(250):
            admin.create_device_group(t["Id"], p["Id"], f"Group {i:03d}")
        # the first requests (tenants, the first listing page) answer 500 twice, then work
        control.set_fault("status", status=500, count=2, api="public")
        result: dict = {}

        def configure() -> None:
            result["r"] = run(service, t["Token"], ["crashdumps", "configure", "--set", "on", "-t", t["Id"].upper()],
                              ok=False, input="y\n")  # fmt: skip

        def consumed(what: str) -> None:
            """Wait until the CLI (nothing else sends public requests now) took the whole fault."""
            deadline = Deadline(60)
            while control.fault() is not None:
                assert worker.is_alive(), f"the bulk command ended before the {what} fault was used"
                assert not deadline.expired, f"the {what} fault was never used"
                deadline.sleep(0.02)

        worker = threading.Thread(target=configure)
        worker.start()
        consumed("500")
        deadline = Deadline(60)
        while sum(g["AllowCrashDumpsCollection"] for g in admin.device_groups(t["Id"])) < 20:
            assert not deadline.expired, "the bulk command made no progress"
            deadline.sleep(0.05)
        control.set_fault("status", status=429, count=3, api="public")  # during the PATCHes
        consumed("429")
        worker.join(120)
        assert not worker.is_alive()
        r = result["r"]
        assert r.exit_code == 0, r.output
        assert "250 of 250 device groups changed" in r.stderr
        assert "5 request(s) retried after 429/5xx answers" in r.stderr
        groups = admin.device_groups(t["Id"], 100)  # three pages
        assert len(groups) == 250 and all(g["AllowCrashDumpsCollection"] for g in groups)
