"""``--provision URL`` of ``testbed board boot`` and ``testbed board run``: boards given an
identity of a running service (``testbed service run``) and synced with it.

The identity is a device already claimed in that service (``--device-id`` and ``--secret``,
as ``testbed sphere device claim`` prints them) or, with ``--device-group``, a new device
claimed for each board with an Administrator token (``--token``, as the admin CLIs take it).
Everything is checked before a board starts: the URL's form, that the service answers
``/healthz``, the claim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click
import httpx

from testbed import settings
from testbed.board.identity import Identity

PROVISION_OPTIONS = [
    click.option("--provision", "service_url", metavar="URL", default=None,
                 help="Provision the board against a running service (`testbed service run`), e.g. "
                      "http://127.0.0.1:8443: a device claimed there (--device-id, --secret) or a new "
                      "one claimed into --device-group."),
    click.option("--device-id", default=None, help="With --provision: the claimed device's id (128 hex)."),
    click.option("--secret", envvar=settings.DEVICE_SECRET, default=None,
                 help=f"With --device-id: its DeviceSecret [env {settings.DEVICE_SECRET}]."),
    click.option("--device-group", "-dg", "device_group", default=None,
                 help="With --provision: claim a new device for each board into this group (Product/Group, "
                      "name or id), with --token."),
    click.option("--token", envvar=settings.TOKEN, default=None,
                 help=f"With --device-group: an Administrator token of the tenant [env {settings.TOKEN}]."),
    click.option("--catalog", "--tenant", "catalog", envvar=settings.TENANT, default=None,
                 help=f"With --device-group: the tenant, when the token sees several [env {settings.TENANT}]."),
]  # fmt: skip


def provision_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(PROVISION_OPTIONS):
        f = option(f)
    return f


@dataclass(frozen=True)
class ProvisionPlan:
    url: str
    port: int
    device_id: str | None
    secret: str | None
    device_group: str | None
    token: str | None
    catalog: str | None


def plan(service_url: str | None, device_id: str | None, secret: str | None, device_group: str | None,
         token: str | None, catalog: str | None, count: int = 1) -> ProvisionPlan | None:  # fmt: skip
    """The options checked for form (no network yet); None without --provision."""
    if service_url is None:
        if device_id or device_group:
            raise click.UsageError("--device-id and --device-group go with --provision URL")
        return None
    parts = urlsplit(service_url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise click.BadParameter(f"{service_url!r}: give the service's URL, e.g. http://127.0.0.1:8443",
                                 param_hint="'--provision'")  # fmt: skip
    if not parts.hostname.startswith("127."):
        raise click.BadParameter(
            f"{service_url!r}: an emulated board reaches only the host's loopback (127.x, seen from the board "
            "as 10.0.2.2)", param_hint="'--provision'")  # fmt: skip
    if (device_id is None) == (device_group is None):
        raise click.UsageError("--provision needs either --device-id and --secret (a claimed device) "
                               "or --device-group (claim a new one)")  # fmt: skip
    if device_id is not None:
        if not secret:
            raise click.UsageError(f"--device-id needs --secret (or {settings.DEVICE_SECRET})")
        if count > 1:
            raise click.UsageError("one --device-id is one board: use --device-group to claim one per board")
        try:
            Identity(device_id, secret, f"10.0.2.2:{parts.port}")
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--device-id'/'--secret'") from exc
    return ProvisionPlan(service_url.rstrip("/"), parts.port, device_id, secret, device_group, token, catalog)


def check_reachable(p: ProvisionPlan, timeout: float = 5) -> None:
    """The service answers ``GET /healthz``, or a ClickException that says how to start one."""
    try:
        response = httpx.get(f"{p.url}/healthz", timeout=timeout)
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"no service answers at {p.url} ({type(exc).__name__}: {exc or 'no answer'}); "
            f"start one with `testbed service run --port {p.port}`"
        ) from None
    if response.status_code != 200:
        raise click.ClickException(f"{p.url}/healthz answered {response.status_code}: is this a testbed service?")


def identities(p: ProvisionPlan, count: int, progress: Callable[[str], None]) -> list[Identity]:
    """One identity per board: the claimed device given, or new devices claimed into the group."""
    if p.device_id is not None:
        assert p.secret is not None  # checked by plan()
        return [Identity.for_port(p.device_id, p.secret, p.port)]
    from testbed.admin import resolve
    from testbed.admin.options import connect
    from testbed.service.client import ServiceError

    assert p.device_group is not None  # checked by plan()
    try:
        session = connect(p.url, p.token, p.catalog, None)
        group = resolve.device_group(session.client, session.tenant_id, p.device_group)
        claimed = [session.client.claim_device(session.tenant_id, group["Id"]) for _ in range(count)]
    except (ServiceError, ValueError) as exc:
        raise click.ClickException(f"claiming a device in {p.device_group!r} failed: {exc}") from None
    for c in claimed:
        progress(f"claimed device {c['DeviceId'][:16]}... into {group['Name']}")
    return [Identity.for_port(c["DeviceId"], c["DeviceSecret"], p.port) for c in claimed]


def provision(board: Any, identity: Identity, progress: Callable[[str], None]) -> None:
    """tb-provision on the board; a failed first sync is said, not fatal (the service may be faulted)."""
    output, code = board.provision(identity)
    if code == 0:
        progress(f"{board.name}: provisioned as {identity.device_id[:16]}... and synced with {identity.service}")
    else:
        progress(f"{board.name}: provisioned as {identity.device_id[:16]}..., but the first sync failed:\n"
                 f"{output.strip()}")  # fmt: skip
