"""``testbed crashdumps configure``: get or set AllowCrashDumpsCollection for one, many or all
device groups, with the Azure Sphere Gallery script's options (``--tenantid/-t``,
``--devicegroupid/-dg ID [ID ...]``, ``--verbose/-v``) beside testbed's own.

Unlike the gallery's script it follows every continuation page of the group listing (the
script reads only the first page), and it retries 429 and 500 answers as the script means to.
"""

from __future__ import annotations

import json
from typing import Any

import click

from testbed import settings
from testbed.admin import resolve
from testbed.admin.options import (
    MultiValueCommand,
    choice,
    connect,
    handle_errors,
    is_guid,
    log_err,
    stdin_confirm,
)
from testbed.service.client import ServiceError

#: The gallery script's table columns first, then the product (two groups may share a name) and boundary.
TABLE_COLUMNS = ("Name", "Id", "AllowCrashDumpsCollection", "Product", "RegionalDataBoundary")


def format_table(rows: list[dict[str, Any]]) -> str:
    """The gallery's table: left-aligned columns, a row of '=' under the headers."""
    if not rows:
        return "No device groups found."
    cells = [[str(r.get(c, "")) for c in TABLE_COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths, strict=True)).rstrip(),
             "  ".join("=" * w for w in widths)]  # fmt: skip
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


@click.group()
def crashdumps() -> None:
    """Crash dump consent across device groups (the Azure Sphere Gallery's script)."""


@crashdumps.command("configure", cls=MultiValueCommand)
@click.option("--service-url", envvar=settings.SERVICE_URL, default=None, help=f"Service root URL [env {settings.SERVICE_URL}].")
@click.option("--token", envvar=settings.TOKEN, default=None, help=f"Bearer token [env {settings.TOKEN}].")
@click.option("--get", "get_", is_flag=True, help="Show AllowCrashDumpsCollection.")
@click.option("--set", "set_", type=choice(["on", "off"]), default=None,
              help="Enable (on) or disable (off) collection.")
@click.option("--tenantid", "-t", "--catalog", "-c", "--tenant", "tenant", envvar=settings.TENANT, default=None,
              help="Tenant (catalog) id or name [default: every tenant the token sees].")
@click.option("--devicegroupid", "-dg", "--device-group", "groups", multiple=True,
              help="Device group ids (any case), names or Product/Group; several after one flag, or repeat it. "
                   "Default: every group.")
@click.option("--product", "-p", default=None, help="Only this product's groups (name or id); also finds groups by name in it.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before changing every group.")
@click.option("--continue-on-error", is_flag=True, help="Log a group that cannot be read or changed and carry on.")
@click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True, help="maxPageSize for listing.")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON (the Public API's objects).")
@click.option("--verbose", "-v", is_flag=True, help="Log each change and retry.")
@click.option("--forceinteractive", is_flag=True, hidden=True, help="The gallery's; no effect (bearer tokens only).")
@click.option("--nocache", is_flag=True, hidden=True, help="The gallery's; no effect (nothing is cached).")
@handle_errors
def configure(service_url: str | None, token: str | None, get_: bool, set_: str | None, tenant: str | None,
              groups: tuple[str, ...], product: str | None, yes: bool, continue_on_error: bool, page_size: int,
              as_json: bool, verbose: bool, forceinteractive: bool, nocache: bool) -> None:  # fmt: skip
    """Read (--get) or set (--set on|off) AllowCrashDumpsCollection for one, many or all groups.

    Without --devicegroupid it works on every group (of --product, of --tenantid, or of every tenant
    the token sees), following every continuation page. Disabling every group revokes consent.
    Changing every group asks first; a piped answer ("y") is read too, or pass --yes.
    """
    if get_ == (set_ is not None):
        raise click.UsageError("give exactly one of --get or --set on|off")
    session = connect(service_url, token, None, None)
    client = session.client
    tenants = client.tenants()
    if tenant:
        tenants = [t for t in tenants if tenant.lower() in (str(t["Id"]).lower(), str(t["Name"]).lower())]
        if not tenants:
            raise click.ClickException(f"no tenant {tenant!r} for this token")
    if groups and len(tenants) != 1:
        raise click.UsageError("with --devicegroupid, name the tenant with --tenantid/-t")
    failures = 0

    def failed(what: str, exc: Exception) -> None:
        nonlocal failures
        failures += 1
        if not continue_on_error:
            raise click.ClickException(f"{what}: {exc}")
        log_err(f"error: {what}: {exc}")

    targets: list[tuple[str, dict[str, Any]]] = []  # (tenant id, group)
    for t in tenants:
        tid = str(t["Id"])
        product_id = resolve.product(client, tid, product)["Id"] if product else None
        if groups:
            for ref in groups:
                try:
                    if is_guid(ref) and product is None:
                        targets.append((tid, client.device_group(tid, ref.lower())))
                    else:
                        targets.append((tid, resolve.device_group(client, tid, ref, product)))
                except (ServiceError, ValueError) as exc:
                    failed(f"device group {ref}", exc)
        else:
            targets += [(tid, g) for g in client.device_groups(tid, page_size, product_id)]
    if set_ is not None:
        value = set_.lower() == "on"
        if not groups and not yes:
            action = "enable" if value else "disable (revoking consent for)"
            where = f"tenant {tenants[0]['Name']}" if len(tenants) == 1 else f"{len(tenants)} tenants"
            if not stdin_confirm(f"This will {action} crash dump collection on all {len(targets)} device groups of {where}. Continue?"):
                raise click.ClickException("not confirmed: nothing changed (answer y, or pass --yes)")
        results: list[tuple[str, dict[str, Any]]] = []
        changed = 0
        for tid, g in targets:
            if g["AllowCrashDumpsCollection"] is value:
                results.append((tid, g))
                continue
            try:
                new = client.update_device_group(tid, g["Id"], AllowCrashDumpsCollection=value)
            except ServiceError as exc:
                failed(f"device group {g['Name']} ({g['Id']})", exc)
                results.append((tid, g))
                continue
            changed += 1
            if verbose:
                log_err(f"{g['Name']} ({g['Id']}): AllowCrashDumpsCollection -> {value}")
            results.append((tid, new))
        click.echo(f"{changed} of {len(targets)} device groups changed", err=True)
        targets = results
    if session.transport.retried:
        log_err(f"{session.transport.retried} request(s) retried after 429/5xx answers")
    if as_json:
        click.echo(json.dumps([g for _, g in targets], indent=2))
    else:
        names: dict[str, dict[str, str]] = {}
        rows = []
        for tid, g in targets:
            if tid not in names:
                names[tid] = resolve.product_names(client, tid)
            rows.append({**g, "Product": names[tid].get(g["ProductId"], g["ProductId"])})
        click.echo(format_table(rows))
    if failures:
        raise click.ClickException(f"{failures} device group(s) could not be read or changed (logged above)")
