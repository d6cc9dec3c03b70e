"""``testbed sphere``: the ``az sphere`` commands for catalogs, products, device groups and devices.

Option names and short forms are az's (ARM era): ``--resource-group/-g``, ``--catalog/-c``,
``--product/-p``, ``--device-group/-dg``, ``--allow-crash-dumps-collection/-cd``,
``--regional-data-boundary/-r``, ``--application-update/-a``, ``--os-feed/-f``; enum values in
any case; ``--output/-o`` and ``--query``. docs/admin.md maps each to the mock.
"""

from __future__ import annotations

from typing import Any

import click

from testbed.admin import resolve
from testbed.admin.azshape import OS_FEED_NAMES, UPDATE_POLICY_NAMES, device_group_row, generic_row
from testbed.admin.options import (
    CONNECTION,
    OUTPUT,
    Session,
    choice,
    connect,
    handle_errors,
    with_options,
)

OS_FEEDS = {name: value for value, name in OS_FEED_NAMES.items()}
APP_UPDATES = {name: value for value, name in UPDATE_POLICY_NAMES.items()}
ENABLED = {"Enabled": True, "Disabled": False}
BOUNDARIES = ("EU", "None")

GROUP_SETTINGS = [
    click.option("--description", "-d", default=None, help="Description of the device group."),
    click.option("--os-feed", "-f", type=choice(OS_FEEDS), default=None, help="OS feed type."),
    click.option("--application-update", "-a", type=choice(APP_UPDATES), default=None, help="Application update policy."),
    click.option("--allow-crash-dumps-collection", "-cd", "allow", type=choice(ENABLED), default=None,
                 help="Consent to collect crash dumps."),
    click.option("--regional-data-boundary", "-r", "boundary", type=choice(BOUNDARIES), default=None,
                 help="Where crash dumps are stored (EU: only in the EU)."),
]  # fmt: skip


def _session(kw: dict[str, Any]) -> Session:
    return connect(kw.pop("service_url"), kw.pop("token"), kw.pop("catalog"), kw.pop("resource_group"),
                   kw.pop("output_format"), kw.pop("query"), kw.pop("api_shape"))  # fmt: skip


def group_fields(description: str | None, os_feed: str | None, application_update: str | None,
                 allow: str | None, boundary: str | None) -> dict[str, Any]:  # fmt: skip
    """The Public API fields of the group settings given on the command line."""
    body: dict[str, Any] = {}
    if description is not None:
        body["Description"] = description
    if os_feed is not None:
        body["OsFeedType"] = OS_FEEDS[os_feed]
    if application_update is not None:
        body["UpdatePolicy"] = APP_UPDATES[application_update]
    if allow is not None:
        body["AllowCrashDumpsCollection"] = ENABLED[allow]
    if boundary is not None:
        body["RegionalDataBoundary"] = boundary
    return body


def _emit_groups(s: Session, groups: list[dict[str, Any]], single: bool = False) -> None:
    names = resolve.product_names(s.client, s.tenant_id)
    az = [s.scope.device_group(g, names.get(g["ProductId"], g["ProductId"])) for g in groups]
    s.emit(groups[0] if single else groups, az[0] if single else az, device_group_row)


@click.group()
def sphere() -> None:
    """Administer catalogs, products, device groups and devices (like `az sphere`)."""


# ------------------------------------------------------------------------------------- catalog


@sphere.group("catalog")
def catalog_cmd() -> None:
    """Catalogs (the mock's tenants): list, show."""


@catalog_cmd.command("list")
@with_options(CONNECTION + OUTPUT)
@handle_errors
def catalog_list(**kw: Any) -> None:
    """The catalogs (tenants) this token sees."""
    s = _session(kw)
    tenants = s.client.tenants()
    s.emit(tenants, [s.scope.catalog_resource(t) for t in tenants], generic_row)


@catalog_cmd.command("show")
@with_options(CONNECTION + OUTPUT)
@handle_errors
def catalog_show(**kw: Any) -> None:
    """The catalog (tenant) named by --catalog, or the token's only one."""
    s = _session(kw)
    s.emit(s.tenant, s.scope.catalog_resource(s.tenant), generic_row)


# ------------------------------------------------------------------------------------- product


@sphere.group("product")
def product_cmd() -> None:
    """Products: create, list, show, generate default device groups."""


@product_cmd.command("create")
@with_options(CONNECTION + OUTPUT)
@click.option("--name", "-n", "--product", "-p", "name", required=True, help="Name of the new product.")
@click.option("--description", "-d", default=None)
@click.option("--no-default-groups", is_flag=True, help="Do not create the five default device groups.")
@handle_errors
def product_create(name: str, description: str | None, no_default_groups: bool, **kw: Any) -> None:
    """Create a product (with the default device groups, as Azure Sphere does)."""
    s = _session(kw)
    created = s.client.create_product(s.tenant_id, name, description, create_default_groups=not no_default_groups)
    s.emit(created, s.scope.product(created), generic_row)


@product_cmd.command("list")
@with_options(CONNECTION + OUTPUT)
@handle_errors
def product_list(**kw: Any) -> None:
    """List the catalog's products."""
    s = _session(kw)
    products = s.client.products(s.tenant_id)
    s.emit(products, [s.scope.product(p) for p in products], generic_row)


@product_cmd.command("show")
@with_options(CONNECTION + OUTPUT)
@click.option("--product", "-p", "--name", "-n", "product", required=True, help="Product name or id.")
@handle_errors
def product_show(product: str, **kw: Any) -> None:
    """Show one product."""
    s = _session(kw)
    p = resolve.product(s.client, s.tenant_id, product)
    s.emit(p, s.scope.product(p), generic_row)


@product_cmd.command("generate-default-groups")
@with_options(CONNECTION + OUTPUT)
@click.option("--product", "-p", "--name", "-n", "product", required=True, help="Product name or id.")
@handle_errors
def product_defaults(product: str, **kw: Any) -> None:
    """Create the product's default device groups (those missing)."""
    s = _session(kw)
    p = resolve.product(s.client, s.tenant_id, product)
    _emit_groups(s, s.client.create_default_device_groups(s.tenant_id, p["Id"]))


# -------------------------------------------------------------------------------- device-group


@sphere.group("device-group")
def device_group_cmd() -> None:
    """Device groups: create, list, show, update."""


@device_group_cmd.command("list")
@with_options(CONNECTION + OUTPUT)
@click.option("--product", "-p", default=None, help="Only the groups of this product (name or id).")
@click.option("--device-group", "-dg", "group", default=None, help="Only groups with this name (any case).")
@handle_errors
def dg_list(product: str | None, group: str | None, **kw: Any) -> None:
    """List device groups (every continuation page)."""
    s = _session(kw)
    product_id = resolve.product(s.client, s.tenant_id, product)["Id"] if product else None
    groups = s.client.device_groups(s.tenant_id, product_id=product_id)
    if group:
        groups = [g for g in groups if g["Name"].casefold() == group.casefold() or g["Id"].lower() == group.lower()]
    _emit_groups(s, groups)


@device_group_cmd.command("show")
@with_options(CONNECTION + OUTPUT)
@click.option("--device-group", "-dg", "--name", "-n", "group", required=True,
              help="Device group name, id, or Product/Group.")  # fmt: skip
@click.option("--product", "-p", default=None, help="Product name or id (to find a group by name).")
@handle_errors
def dg_show(group: str, product: str | None, **kw: Any) -> None:
    """Show one device group."""
    s = _session(kw)
    _emit_groups(s, [resolve.device_group(s.client, s.tenant_id, group, product)], single=True)


@device_group_cmd.command("create")
@with_options(CONNECTION + OUTPUT)
@click.option("--product", "-p", required=True, help="Product name or id.")
@click.option("--name", "-n", "--device-group", "-dg", "name", required=True, help="Name of the new group.")
@with_options(GROUP_SETTINGS)
@handle_errors
def dg_create(product: str, name: str, description: str | None, os_feed: str | None,
              application_update: str | None, allow: str | None, boundary: str | None, **kw: Any) -> None:  # fmt: skip
    """Create a device group (crash dumps Disabled and boundary None unless given)."""
    s = _session(kw)
    product_id = resolve.product(s.client, s.tenant_id, product)["Id"]
    fields = group_fields(description, os_feed, application_update, allow, boundary)
    _emit_groups(s, [s.client.create_device_group(s.tenant_id, product_id, name, **fields)], single=True)


@device_group_cmd.command("update")
@with_options(CONNECTION + OUTPUT)
@click.option("--device-group", "-dg", "--name", "-n", "group", required=True,
              help="Device group name, id, or Product/Group.")  # fmt: skip
@click.option("--product", "-p", default=None, help="Product name or id (to find a group by name).")
@click.option("--new-name", default=None, help="Rename the group.")
@with_options(GROUP_SETTINGS)
@handle_errors
def dg_update(group: str, product: str | None, new_name: str | None, description: str | None,
              os_feed: str | None, application_update: str | None, allow: str | None, boundary: str | None,
              **kw: Any) -> None:  # fmt: skip
    """Change a device group (a PATCH of the given settings only); prints the whole group."""
    body = group_fields(description, os_feed, application_update, allow, boundary)
    if new_name is not None:
        body["Name"] = new_name
    if not body:
        raise click.UsageError("nothing to update: give at least one setting to change")
    s = _session(kw)
    target = resolve.device_group(s.client, s.tenant_id, group, product)
    _emit_groups(s, [s.client.update_device_group(s.tenant_id, target["Id"], **body)], single=True)


# ------------------------------------------------------------------------------------- device


@sphere.group("device")
def device_cmd() -> None:
    """Devices: claim, list, move, show."""


def _emit_devices(s: Session, devices: list[dict[str, Any]], single: bool = False) -> None:
    names = resolve.product_names(s.client, s.tenant_id)
    groups = {g["Id"]: g["Name"] for g in s.client.device_groups(s.tenant_id)}
    az = [s.scope.device(d, names.get(d.get("ProductId") or "", "?"), groups.get(d["DeviceGroupId"], "?"))
          for d in devices]  # fmt: skip
    s.emit(devices[0] if single else devices, az[0] if single else az, generic_row)


@device_cmd.command("claim")
@with_options(CONNECTION + OUTPUT)
@click.option("--device-group", "-dg", "group", required=True, help="Device group name, id, or Product/Group.")
@click.option("--product", "-p", default=None)
@click.option("--device", "--device-id", "-d", "device_id", default=None, help="128 hex characters [default: a new id].")
@handle_errors
def device_claim(group: str, product: str | None, device_id: str | None, **kw: Any) -> None:
    """Claim a device into a group; prints its DeviceSecret (shown once)."""
    s = _session(kw)
    target = resolve.device_group(s.client, s.tenant_id, group, product)
    _emit_devices(s, [s.client.claim_device(s.tenant_id, target["Id"], device_id)], single=True)


@device_cmd.command("list")
@with_options(CONNECTION + OUTPUT)
@click.option("--device-group", "-dg", "group", required=True, help="Device group name, id, or Product/Group.")
@click.option("--product", "-p", default=None)
@handle_errors
def device_list(group: str, product: str | None, **kw: Any) -> None:
    """List the devices of a device group."""
    s = _session(kw)
    target = resolve.device_group(s.client, s.tenant_id, group, product)
    _emit_devices(s, s.client.devices_in_group(s.tenant_id, target["Id"]))


@device_cmd.command("move")
@with_options(CONNECTION + OUTPUT)
@click.option("--device", "--device-id", "-d", "device_id", required=True)
@click.option("--device-group", "-dg", "group", required=True, help="Target group name, id, or Product/Group.")
@click.option("--product", "-p", default=None)
@handle_errors
def device_move(device_id: str, group: str, product: str | None, **kw: Any) -> None:
    """Move a device to another group."""
    s = _session(kw)
    target = resolve.device_group(s.client, s.tenant_id, group, product)
    _emit_devices(s, [s.client.move_device(s.tenant_id, device_id, target["Id"])], single=True)


@device_cmd.command("show")
@with_options(CONNECTION + OUTPUT)
@click.option("--device", "--device-id", "-d", "device_id", required=True)
@handle_errors
def device_show(device_id: str, **kw: Any) -> None:
    """Show a device (its group and product)."""
    s = _session(kw)
    _emit_devices(s, [s.client.device(s.tenant_id, device_id)], single=True)
