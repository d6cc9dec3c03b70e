"""Before a load run: a tenant, a device group with collection on, and a fleet of claimed devices.

Everything goes through the service's public API (claims) and control API
(a fresh tenant with an Administrator token, a Support token), so a run
starts from nothing and leaves the rest of the service alone. Claims run on
a few threads; progress is printed for large fleets.
"""

from __future__ import annotations

import ipaddress
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx


class LoadSetupError(RuntimeError):
    """The service refused or failed a setup step; the message says which and why."""


#: what ``allow_private`` accepts besides loopback (RFC 1918)
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def check_loopback_url(url: str, what: str = "service URL") -> str:
    """Return ``url`` without a trailing slash if it is http://<loopback>[:port]; else raise ValueError."""
    return check_service_url(url, what)


def check_service_url(url: str, what: str = "service URL", *, allow_private: bool = False) -> str:
    """``url`` without a trailing slash if it is http://<loopback>[:port]; else raise ValueError.

    ``allow_private`` also accepts a private address (10/8, 172.16/12, 192.168/16): only for
    a network the caller made itself on this machine, such as a test's own network namespaces.
    """
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"{what} {url!r}: only http:// is supported")
    host = parts.hostname or ""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{what} {url!r}: the host must be a loopback IP address (127.0.0.0/8 or ::1), not a name"
        ) from None
    if not addr.is_loopback and not (allow_private and any(addr in net for net in PRIVATE_NETWORKS)):
        raise ValueError(f"{what} {url!r}: load runs target loopback only (127.0.0.0/8 or ::1), not {host}")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{what} {url!r}: give the service root only (no path or query)")
    return url.rstrip("/")


@dataclass
class Fleet:
    """What a load run needs to act as devices and check results afterwards."""

    service_url: str
    tenant_id: str
    admin_token: str
    support_token: str
    group_id: str
    devices: list[list[str]] = field(default_factory=list)  # [device id, secret]
    claim_seconds: float = 0.0

    def to_config(self) -> dict[str, Any]:
        return {
            "service_url": self.service_url,
            "tenant_id": self.tenant_id,
            "group_id": self.group_id,
            "devices": self.devices,
        }


def _check(resp: httpx.Response, step: str, expect: tuple[int, ...] = (200, 201)) -> Any:
    if resp.status_code not in expect:
        raise LoadSetupError(f"{step}: HTTP {resp.status_code}: {resp.text[:300]}")
    try:
        return resp.json()
    except ValueError as exc:
        raise LoadSetupError(f"{step}: the response is not JSON: {resp.text[:200]!r}") from exc


def provision(
    service_url: str,
    control_token: str,
    devices: int,
    *,
    name: str = "load",
    threads: int = 8,
    progress: Callable[[str], None] | None = None,
    allow_private: bool = False,
) -> Fleet:
    """Create a tenant, a product and an opted-in device group, and claim ``devices`` devices."""
    url = check_service_url(service_url, allow_private=allow_private)
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    control = {"Authorization": f"Bearer {control_token}"}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        tenant = _check(
            client.post("/testbed/v1/tenants", json={"name": f"{name}-{time.time_ns()}"}, headers=control),
            "create tenant (control API)",
        )
        tenant_id, admin = tenant["Id"], tenant["Token"]
        support = _check(
            client.post("/testbed/v1/tokens", json={"role": "Support", "label": f"{name} checks"}, headers=control),
            "create Support token (control API)",
        )["token"]
        auth = {"Authorization": f"Bearer {admin}"}
        operation = _check(
            client.post(f"/v2/tenants/{tenant_id}/products", json={"Name": f"{name}-product"}, headers=auth),
            "create product",
            expect=(202,),  # an Operation, finished: the product is at its ResourceLocation
        )
        product = _check(client.get(operation["ResourceLocation"], headers=auth), "read the new product")
        group = _check(
            client.post(
                f"/v2/tenants/{tenant_id}/devicegroups",
                # group names hold letters, digits and spaces only
                json={"Name": "Load fleet", "ProductId": product["Id"], "AllowCrashDumpsCollection": True},
                headers=auth,
            ),
            "create device group",
        )
        if not group.get("AllowCrashDumpsCollection"):
            group = _check(
                client.patch(
                    f"/v2/tenants/{tenant_id}/devicegroups/{group['Id']}",
                    json={"AllowCrashDumpsCollection": True},
                    headers=auth,
                ),
                "enable crash dump collection",
            )
    fleet = Fleet(url, tenant_id, admin, support, group["Id"])
    fleet.devices = claim_devices(url, tenant_id, admin, group["Id"], devices, threads=threads, progress=say)
    return fleet


def claim_devices(
    service_url: str,
    tenant_id: str,
    admin_token: str,
    group_id: str,
    count: int,
    *,
    threads: int = 8,
    progress: Callable[[str], None] | None = None,
) -> list[list[str]]:
    """Claim ``count`` new devices (ids chosen by the service) into ``group_id``."""
    say = progress or (lambda msg: None)
    out: list[list[str] | None] = [None] * count
    lock = threading.Lock()
    done = 0
    started = time.monotonic()
    last_report = started
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=service_url, timeout=30.0, headers={"Authorization": f"Bearer {admin_token}"}
            )
        return local.client

    clients: list[httpx.Client] = []

    def claim(i: int) -> None:
        nonlocal done, last_report
        c = client()
        with lock:
            if c not in clients:
                clients.append(c)
        body = _check(
            c.post(f"/v2/tenants/{tenant_id}/devices", json={"DeviceGroupId": group_id}),
            f"claim device {i + 1} of {count}",
            (201,),
        )
        out[i] = [body["DeviceId"], body["DeviceSecret"]]
        with lock:
            done += 1
            now = time.monotonic()
            if count >= 500 and (now - last_report > 2.0 or done == count):
                last_report = now
                say(f"claimed {done}/{count} devices ({done / max(now - started, 1e-9):.0f}/s)")

    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for future in [pool.submit(claim, i) for i in range(count)]:
                future.result()
    finally:
        for c in clients:
            c.close()
    return [d for d in out if d is not None]
