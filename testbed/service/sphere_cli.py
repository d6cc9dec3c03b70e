"""Admin CLIs over HTTP: ``testbed sphere ...`` (az sphere-like) and ``testbed crashdumps configure``.

Both talk to the service's public API through ``testbed.service.client``.
The service URL and token come from ``--service-url`` / ``--token`` or the
environment (``TESTBED_SERVICE_URL``, ``TESTBED_TOKEN``; ``TESTBED_TENANT``
for ``--tenant``).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from testbed.service.client import Client, ServiceError

OS_FEEDS = {"Retail": 0, "RetailEval": 1}
APP_UPDATES = {"UpdateAll": 0, "No3rdPartyAppUpdates": 1}
ENABLED = {"Enabled": True, "Disabled": False}


def _connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--tenant", envvar="TESTBED_TENANT", default=None, help="Tenant id or name [default: the token's only tenant; env TESTBED_TENANT].")(f)
    f = click.option("--token", envvar="TESTBED_TOKEN", default=None, help="Bearer token [env TESTBED_TOKEN].")(f)
    f = click.option("--service-url", envvar="TESTBED_SERVICE_URL", default=None, help="Service root URL, e.g. http://127.0.0.1:8443 [env TESTBED_SERVICE_URL].")(f)
    return f


def _handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ServiceError as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _connect(service_url: str | None, token: str | None, tenant: str | None) -> tuple[Client, str]:
    client = Client.from_env(service_url, token)
    return client, client.resolve_tenant(tenant)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _group_patch(
    new_name: str | None,
    description: str | None,
    os_feed: str | None,
    application_update: str | None,
    allow: str | None,
    boundary: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if new_name is not None:
        body["Name"] = new_name
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


_group_setting_options = [
    click.option("--description", "-d", default=None, help="Description of the device group."),
    click.option("--os-feed", type=click.Choice(list(OS_FEEDS)), default=None, help="OS feed type."),
    click.option("--application-update", type=click.Choice(list(APP_UPDATES)), default=None, help="Update policy."),
    click.option("--allow-crash-dumps-collection", "allow", type=click.Choice(list(ENABLED)), default=None, help="Consent to collect crash dumps."),
    click.option("--regional-data-boundary", "boundary", type=click.Choice(["EU", "None"]), default=None, help="Where dumps are stored."),
]


def _with(options: Iterable[Callable[..., Any]]) -> Callable[..., Any]:
    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(list(options)):
            f = option(f)
        return f

    return deco


@click.group()
def sphere() -> None:
    """Administer tenants' products, device groups and devices (like `az sphere`)."""


@sphere.group("device-group")
def device_group() -> None:
    """Device groups: create, show, list, update."""


@device_group.command("list")
@_connection_options
@click.option("--product", "-p", default=None, help="Only the groups of this product (name or id).")
@_handle_errors
def dg_list(service_url: str | None, token: str | None, tenant: str | None, product: str | None) -> None:
    """List every device group (all continuation pages) as JSON."""
    client, tenant_id = _connect(service_url, token, tenant)
    product_id = client.resolve_product(tenant_id, product)["Id"] if product else None
    _echo_json(client.device_groups(tenant_id, product_id=product_id))


@device_group.command("show")
@_connection_options
@click.option("--device-group", "-g", "group", required=True, help="Device group name or id.")
@click.option("--product", "-p", default=None, help="Product name or id (to find a group by name).")
@_handle_errors
def dg_show(service_url: str | None, token: str | None, tenant: str | None, group: str, product: str | None) -> None:
    """Show one device group as JSON."""
    client, tenant_id = _connect(service_url, token, tenant)
    _echo_json(client.resolve_device_group(tenant_id, group, product))


@device_group.command("create")
@_connection_options
@click.option("--product", "-p", required=True, help="Product name or id.")
@click.option("--device-group", "--name", "-n", "name", required=True, help="Name of the new group.")
@_with(_group_setting_options)
@_handle_errors
def dg_create(
    service_url: str | None,
    token: str | None,
    tenant: str | None,
    product: str,
    name: str,
    description: str | None,
    os_feed: str | None,
    application_update: str | None,
    allow: str | None,
    boundary: str | None,
) -> None:
    """Create a device group (crash dumps Disabled and boundary None unless given)."""
    client, tenant_id = _connect(service_url, token, tenant)
    product_id = client.resolve_product(tenant_id, product)["Id"]
    fields = _group_patch(None, description, os_feed, application_update, allow, boundary)
    _echo_json(client.create_device_group(tenant_id, product_id, name, **fields))


@device_group.command("update")
@_connection_options
@click.option("--device-group", "-g", "group", required=True, help="Device group name or id.")
@click.option("--product", "-p", default=None, help="Product name or id (to find a group by name).")
@click.option("--new-name", default=None, help="Rename the group.")
@_with(_group_setting_options)
@_handle_errors
def dg_update(
    service_url: str | None,
    token: str | None,
    tenant: str | None,
    group: str,
    product: str | None,
    new_name: str | None,
    description: str | None,
    os_feed: str | None,
    application_update: str | None,
    allow: str | None,
    boundary: str | None,
) -> None:
    """Change a device group (PATCH of the given settings only); prints the whole group."""
    body = _group_patch(new_name, description, os_feed, application_update, allow, boundary)
    if not body:
        raise click.UsageError("nothing to update: give at least one setting to change")
    client, tenant_id = _connect(service_url, token, tenant)
    target = client.resolve_device_group(tenant_id, group, product)
    _echo_json(client.update_device_group(tenant_id, target["Id"], **body))


@sphere.group("product")
def product_group() -> None:
    """Products: create, list."""


@product_group.command("create")
@_connection_options
@click.option("--name", "-n", required=True)
@click.option("--description", "-d", default=None)
@_handle_errors
def product_create(service_url: str | None, token: str | None, tenant: str | None, name: str, description: str | None) -> None:
    """Create a product."""
    client, tenant_id = _connect(service_url, token, tenant)
    _echo_json(client.create_product(tenant_id, name, description))


@product_group.command("list")
@_connection_options
@_handle_errors
def product_list(service_url: str | None, token: str | None, tenant: str | None) -> None:
    """List products as JSON."""
    client, tenant_id = _connect(service_url, token, tenant)
    _echo_json(client.products(tenant_id))


@sphere.group("device")
def device_cmd() -> None:
    """Devices: claim, move, show."""


@device_cmd.command("claim")
@_connection_options
@click.option("--device-group", "-g", "group", required=True, help="Device group name or id.")
@click.option("--product", "-p", default=None)
@click.option("--device-id", default=None, help="128 hex characters [default: a new id].")
@_handle_errors
def device_claim(service_url: str | None, token: str | None, tenant: str | None, group: str, product: str | None, device_id: str | None) -> None:
    """Claim a device into a group; prints its DeviceSecret (shown once)."""
    client, tenant_id = _connect(service_url, token, tenant)
    target = client.resolve_device_group(tenant_id, group, product)
    _echo_json(client.claim_device(tenant_id, target["Id"], device_id))


@device_cmd.command("move")
@_connection_options
@click.option("--device", "device_id", required=True)
@click.option("--device-group", "-g", "group", required=True)
@click.option("--product", "-p", default=None)
@_handle_errors
def device_move(service_url: str | None, token: str | None, tenant: str | None, device_id: str, group: str, product: str | None) -> None:
    """Move a device to another group."""
    client, tenant_id = _connect(service_url, token, tenant)
    target = client.resolve_device_group(tenant_id, group, product)
    _echo_json(client.move_device(tenant_id, device_id, target["Id"]))


@device_cmd.command("show")
@_connection_options
@click.option("--device", "device_id", required=True)
@_handle_errors
def device_show(service_url: str | None, token: str | None, tenant: str | None, device_id: str) -> None:
    """Show a device (its group and product) as JSON."""
    client, tenant_id = _connect(service_url, token, tenant)
    _echo_json(client.device(tenant_id, device_id))


# --------------------------------------------------------------------------- crashdumps


def format_table(groups: list[dict[str, Any]]) -> str:
    headers = ["Name", "Id", "AllowCrashDumpsCollection", "RegionalDataBoundary"]
    rows = [[str(g.get(h)) for h in headers] for g in groups]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


@click.group()
def crashdumps() -> None:
    """Crash dump consent across device groups."""


@crashdumps.command("configure")
@_connection_options
@click.option("--get", "get_", is_flag=True, help="Show AllowCrashDumpsCollection.")
@click.option("--set", "set_", type=click.Choice(["on", "off"]), default=None, help="Enable (on) or disable (off) collection.")
@click.option("--device-group", "-g", "groups", multiple=True, help="A group id (or name); repeat for many. Default: every group of the tenant.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before changing every group.")
@click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True, help="maxPageSize for listing.")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON instead of a table.")
@_handle_errors
def configure(
    service_url: str | None,
    token: str | None,
    tenant: str | None,
    get_: bool,
    set_: str | None,
    groups: tuple[str, ...],
    yes: bool,
    page_size: int,
    as_json: bool,
) -> None:
    """Read (--get) or set (--set on|off) AllowCrashDumpsCollection for one, many or all groups.

    Without --device-group it works on every group of the tenant, following
    every continuation page. Disabling every group revokes consent.
    """
    if get_ == (set_ is not None):
        raise click.UsageError("give exactly one of --get or --set on|off")
    client, tenant_id = _connect(service_url, token, tenant)
    if groups:
        all_groups: list[dict[str, Any]] | None = None
        targets = []
        for ref in groups:
            if all_groups is None and not _looks_like_id(ref):
                all_groups = client.device_groups(tenant_id, page_size)
            if _looks_like_id(ref):
                targets.append(client.device_group(tenant_id, ref))
            else:
                named = [g for g in all_groups or [] if g["Name"] == ref]
                if len(named) != 1:
                    raise click.ClickException(
                        f"{len(named)} device groups are named {ref!r}; give its id"
                    )
                targets.append(named[0])
    else:
        targets = client.device_groups(tenant_id, page_size)
    if set_ is not None:
        value = set_ == "on"
        if not groups and not yes:
            action = "enable" if value else "disable (revoking consent for)"
            if not sys.stdin.isatty():
                raise click.ClickException(
                    f"refusing to {action} crash dump collection on all {len(targets)} groups "
                    "without confirmation; pass --yes"
                )
            click.confirm(
                f"This will {action} crash dump collection on all {len(targets)} device groups "
                f"of tenant {tenant_id}. Continue?",
                abort=True,
            )
        changed = []
        for g in targets:
            if g["AllowCrashDumpsCollection"] is value:
                changed.append(g)
            else:
                changed.append(client.update_device_group(tenant_id, g["Id"], AllowCrashDumpsCollection=value))
        n = sum(1 for old, new in zip(targets, changed, strict=True) if old != new)
        click.echo(f"{n} of {len(targets)} device groups changed", err=True)
        targets = changed
    if as_json:
        _echo_json(targets)
    else:
        click.echo(format_table(targets))


_GROUP_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _looks_like_id(ref: str) -> bool:
    return _GROUP_ID.fullmatch(ref) is not None
