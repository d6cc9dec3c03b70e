"""The admin CLIs' output formats, --query, retries and the gallery's multi-value flags (no service)."""

from __future__ import annotations

import json

import click
import httpx
import pytest
import yaml
from click.testing import CliRunner

from testbed.admin import output
from testbed.admin.azshape import Scope, device_group_row
from testbed.admin.options import MultiValueCommand
from testbed.admin.retry import RetryTransport

GROUP = {"Id": "5f7c3a0e-0000-4000-8000-000000000001", "Name": "Marketing", "Description": None,
         "ProductId": "p1", "TenantId": "t1", "OsFeedType": 1, "UpdatePolicy": 0,
         "AllowCrashDumpsCollection": True, "RegionalDataBoundary": "EU", "CurrentDeployment": None}  # fmt: skip


def az_group() -> dict:
    return Scope("t1", "Contoso", "MyRG").device_group(GROUP, "DW100")


def test_az_shape_of_a_device_group() -> None:
    r = az_group()
    assert r["id"] == ("/subscriptions/t1/resourceGroups/MyRG/providers/Microsoft.AzureSphere/catalogs/Contoso"
                       "/products/DW100/deviceGroups/Marketing")  # fmt: skip
    assert r["type"] == "Microsoft.AzureSphere/catalogs/products/deviceGroups"
    p = r["properties"]
    assert (p["allowCrashDumpsCollection"], p["osFeedType"], p["updatePolicy"], p["regionalDataBoundary"]) == (
        "Enabled", "RetailEval", "UpdateAll", "EU")
    assert p["hasDeployment"] is False and p["provisioningState"] == "Succeeded"


def test_query_and_each_format() -> None:
    r = az_group()
    assert output.render(r, "json", "properties.allowCrashDumpsCollection") == '"Enabled"'
    assert output.render(r, "tsv", "properties.allowCrashDumpsCollection") == "Enabled"
    assert json.loads(output.render([r, r], "json", "[].name") or "") == ["Marketing", "Marketing"]
    assert yaml.safe_load(output.render(r, "yaml") or "") == r
    assert output.render(r, "none") is None
    colored = output.render(r, "jsonc") or ""
    assert "\x1b[" in colored and json.loads(colored.replace("\x1b[94m", "").replace("\x1b[32m", "")
                                             .replace("\x1b[33m", "").replace("\x1b[36m", "")
                                             .replace("\x1b[0m", "")) == r  # fmt: skip
    table = (output.render([r], "table", row=device_group_row) or "").splitlines()
    assert table[0].split()[:4] == ["Name", "ResourceGroup", "AllowCrashDumpsCollection", "RegionalDataBoundary"]
    assert table[2].split()[:4] == ["Marketing", "MyRG", "Enabled", "EU"]
    tsv = output.render(r, "tsv") or ""
    # keys in sorted order; null (systemData) is an empty field
    assert tsv.split("\t") == [r["id"], "Marketing", "MyRG", "", "Microsoft.AzureSphere/catalogs/products/deviceGroups"]
    with pytest.raises(click.BadParameter, match="not a valid JMESPath"):
        output.render(r, "json", "properties.[")


def _transport(statuses: list[int], retry_after: str = "0") -> tuple[RetryTransport, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        status = statuses.pop(0)
        return httpx.Response(status, headers={"Retry-After": retry_after}, json=[])

    slept: list[float] = []
    t = RetryTransport(httpx.MockTransport(handler), sleep=slept.append)
    return t, seen


def test_retries_429_for_any_method_and_500_for_idempotent_only() -> None:
    t, seen = _transport([429, 500, 200])
    with httpx.Client(transport=t, base_url="http://127.0.0.1") as c:
        assert c.patch("/x", json={}).status_code == 200
    assert seen == ["PATCH"] * 3 and t.retried == 2
    t, seen = _transport([500, 200])
    with httpx.Client(transport=t, base_url="http://127.0.0.1") as c:
        assert c.post("/x").status_code == 500  # a create is not repeated after a 500
    t, seen = _transport([429, 429, 429, 429, 200])
    with httpx.Client(transport=t, base_url="http://127.0.0.1") as c:
        assert c.get("/x").status_code == 429  # three retries, then the answer as it is
    assert len(seen) == 4


def test_multi_value_flags_like_the_gallery() -> None:
    @click.command(cls=MultiValueCommand)
    @click.option("--devicegroupid", "-dg", "groups", multiple=True)
    @click.option("--get", is_flag=True)
    def cmd(groups: tuple[str, ...], get: bool) -> None:
        click.echo(",".join(groups) + f"|{get}")

    r = CliRunner().invoke(cmd, ["-dg", "a", "b", "--get", "--devicegroupid", "c"])
    assert r.exit_code == 0 and r.output.strip() == "a,b,c|True"
