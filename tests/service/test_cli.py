"""The admin CLIs against a real service: sphere device-group, crashdumps configure, service tenant/token/upload."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from service_helpers import blob_regions, core_files

from testbed.cli import main
from testbed.service.client import Client


@pytest.fixture
def cli(service):
    """Invoke `testbed ...` with TESTBED_SERVICE_URL set; returns (invoke, service)."""
    runner = CliRunner()

    def invoke(args: list[str], token: str | None = None, input: str | None = None, ok: bool = True):
        env = {"TESTBED_SERVICE_URL": service.url, "TESTBED_TOKEN": token or "", "TESTBED_TENANT": ""}
        result = runner.invoke(main, args, env=env, input=input, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def test_must_show_flow_eu_group_via_cli(cli, service) -> None:
    """Tenant from the service CLI; sphere CLI enables dumps with EU; a device's core lands in EU only."""
    name = f"Contoso-{uuid.uuid4().hex[:8]}"
    out = cli(["service", "tenant", "create", name, "--data-dir", str(service.data_dir), "--json"])
    tenant = json.loads(out.stdout)
    token = tenant["Token"]
    cli(["sphere", "product", "create", "--name", "DW100"], token)
    created = json.loads(cli(["sphere", "device-group", "create", "--product", "DW100", "--device-group", "Marketing"], token).stdout)
    assert created["AllowCrashDumpsCollection"] is False and created["RegionalDataBoundary"] == "None"
    updated = json.loads(
        cli(
            ["sphere", "device-group", "update", "--product", "DW100", "--device-group", "Marketing",
             "--allow-crash-dumps-collection", "Enabled", "--regional-data-boundary", "EU"],
            token,
        ).stdout
    )
    assert updated["AllowCrashDumpsCollection"] is True and updated["RegionalDataBoundary"] == "EU"
    shown = json.loads(cli(["sphere", "device-group", "show", "--product", "DW100", "--device-group", "Marketing"], token).stdout)
    assert shown == updated
    device = json.loads(cli(["sphere", "device", "claim", "--product", "DW100", "--device-group", "Marketing"], token).stdout)
    shown_device = json.loads(cli(["sphere", "device", "show", "--device", device["DeviceId"]], token).stdout)
    assert shown_device["DeviceGroupId"] == updated["Id"] and "DeviceSecret" not in shown_device
    core = min(core_files(), key=lambda p: p.stat().st_size)
    res = cli(["service", "upload", "--service-url", service.url, "--device-id", device["DeviceId"],
               "--secret", device["DeviceSecret"], "--core", str(core)])  # fmt: skip
    answer = json.loads(res.stdout)
    assert answer["sync"]["optIn"] is True and answer["intent"] == {"action": "upload"}
    assert answer["upload"]["status"] == 201 and answer["upload"]["body"]["region"] == "EU"
    assert blob_regions(service, answer["upload"]["body"]["id"]) == ["EU"]


def test_update_options_map_to_v2_fields(cli, tenant_admin: Client, device_group) -> None:
    group = device_group(name="Field")
    out = cli(
        ["sphere", "device-group", "update", "--device-group", group["Id"], "--os-feed", "RetailEval",
         "--application-update", "No3rdPartyAppUpdates", "--description", "lab", "--new-name", "Lab"],
        tenant_admin.token,
    )
    g = json.loads(out.stdout)
    assert (g["OsFeedType"], g["UpdatePolicy"], g["Description"], g["Name"]) == (1, 1, "lab", "Lab")
    bad = cli(["sphere", "device-group", "update", "--device-group", "Lab", "--allow-crash-dumps-collection", "Yes"], tenant_admin.token, ok=False)
    assert bad.exit_code == 2 and "Enabled" in bad.output
    nothing = cli(["sphere", "device-group", "update", "--device-group", "Lab"], tenant_admin.token, ok=False)
    assert nothing.exit_code == 2 and "nothing to update" in nothing.output
    missing = cli(["sphere", "device-group", "show", "--device-group", "Nope"], tenant_admin.token, ok=False)
    assert missing.exit_code == 1 and "no device group 'Nope'" in missing.output


def test_cli_without_url_or_token_says_so(cli) -> None:
    r = CliRunner().invoke(main, ["sphere", "device-group", "list"], env={"TESTBED_SERVICE_URL": "", "TESTBED_TOKEN": ""})
    assert r.exit_code == 1 and "TESTBED_SERVICE_URL" in r.output
    r = cli(["sphere", "device-group", "list"], "tbt_wrong", ok=False)
    assert r.exit_code == 1 and "401" in r.output


def test_configure_get_and_set_all_follows_pages(cli, tenant_admin: Client, device_group) -> None:
    groups = [device_group(name=f"g{i:02d}") for i in range(7)]
    out = cli(["crashdumps", "configure", "--get", "--page-size", "2"], tenant_admin.token).stdout
    lines = out.strip().splitlines()
    assert lines[0].split() == ["Name", "Id", "AllowCrashDumpsCollection", "RegionalDataBoundary"]
    assert len(lines) == 2 + 7
    assert all(g["Id"] in out for g in groups)
    # all groups: refuses without a terminal and without --yes
    refused = cli(["crashdumps", "configure", "--set", "on", "--page-size", "2"], tenant_admin.token, ok=False)
    assert refused.exit_code == 1 and "--yes" in refused.output
    assert not any(g["AllowCrashDumpsCollection"] for g in tenant_admin.device_groups(tenant_admin.tenant_id))
    res = cli(["crashdumps", "configure", "--set", "on", "--yes", "--page-size", "2", "--json"], tenant_admin.token)
    assert "7 of 7 device groups changed" in res.stderr
    assert all(g["AllowCrashDumpsCollection"] for g in json.loads(res.stdout))
    assert all(g["AllowCrashDumpsCollection"] for g in tenant_admin.device_groups(tenant_admin.tenant_id))
    # disabling all = revoking consent: every group off
    cli(["crashdumps", "configure", "--set", "off", "--yes", "--page-size", "3"], tenant_admin.token)
    assert not any(g["AllowCrashDumpsCollection"] for g in tenant_admin.device_groups(tenant_admin.tenant_id))


def test_configure_some_groups_by_id_and_name(cli, tenant_admin: Client, device_group) -> None:
    a, b, c = device_group(name="A"), device_group(name="B"), device_group(name="C")
    out = cli(["crashdumps", "configure", "--set", "on", "--device-group", a["Id"], "--device-group", "B", "--json"], tenant_admin.token)
    changed = {g["Id"]: g["AllowCrashDumpsCollection"] for g in json.loads(out.stdout)}
    assert changed == {a["Id"]: True, b["Id"]: True}
    assert tenant_admin.device_group(tenant_admin.tenant_id, c["Id"])["AllowCrashDumpsCollection"] is False
    bad = cli(["crashdumps", "configure", "--get", "--set", "on"], tenant_admin.token, ok=False)
    assert bad.exit_code == 2


def test_token_create_prints_once_and_works(cli, service, control) -> None:
    t = control.create_tenant(f"tok-{uuid.uuid4().hex[:8]}")
    out = cli(["service", "token", "create", "--data-dir", str(service.data_dir), "--tenant", t["Name"], "--role", "Reader"])
    token = out.stdout.strip()
    with Client(service.url, token) as c:
        assert c.tenants()[0]["Roles"] == ["Reader"]
    r = cli(["service", "token", "create", "--data-dir", str(service.data_dir), "--tenant", "no-such", "--role", "Reader"], ok=False)
    assert r.exit_code == 1 and "no tenant" in r.output
    r = cli(["service", "token", "create", "--data-dir", str(service.data_dir), "--role", "Support", "--tenant", t["Name"]], ok=False)
    assert r.exit_code == 2
