"""pytest fixtures for the mock Security Service (gathered by ``testbed.pytest_plugin``).

- ``service_process`` (session): one real service (``ServiceProcess``, control
  enabled) for the whole run, in a temporary data directory.
- ``service`` (function): that same process, with faults, clock offset and
  rate-limit buckets reset before and after the test. Tests isolate from each
  other by working in their own tenant (``tenant_admin``).
- ``control``: a ``ControlClient`` for it.
- ``tenant_admin``: a ``Client`` with an Administrator token of a fresh tenant
  (``.tenant_id`` set).
- ``device_group``: factory ``device_group(enabled=False, boundary="None",
  name=None, product=None) -> DeviceGroupV2 dict`` in that tenant.
- ``claimed_device``: factory ``claimed_device(group=None, device_id=None) ->
  ClaimedDevice`` (``.device_id``, ``.secret``, ``.group_id``, ``.client()``);
  without a group it makes an enabled one.
- ``support_client``: a ``Client`` with a Support token.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from testbed.service.client import Client, ControlClient, DeviceClient
from testbed.service.process import ServiceProcess

__all__ = [
    "ClaimedDevice",
    "claimed_device",
    "control",
    "device_group",
    "service",
    "service_process",
    "support_client",
    "tenant_admin",
]


@dataclass
class ClaimedDevice:
    device_id: str
    secret: str
    group_id: str
    tenant_id: str
    url: str

    def client(self, timeout: float = 30.0) -> DeviceClient:
        return DeviceClient(self.url, self.device_id, self.secret, timeout=timeout)


@pytest.fixture(scope="session")
def service_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One running service for the session (generous rate limit, so tests do not trip it)."""
    proc = ServiceProcess(
        tmp_path_factory.mktemp("service"), enable_control=True, rate_limit=6000, rate_burst=1000
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.cleanup()


def _reset(proc: ServiceProcess) -> None:
    if proc.running and proc.control_token:
        with ControlClient(proc.url, proc.control_token) as c:
            c.reset()


@pytest.fixture
def service(service_process: ServiceProcess) -> Iterator[ServiceProcess]:
    """The session's service, with faults and clock reset around the test."""
    if not service_process.running:  # a test killed or stopped it: bring it back
        service_process.start()
    _reset(service_process)
    yield service_process
    if not service_process.running:
        service_process.start()
    _reset(service_process)


@pytest.fixture
def control(service: ServiceProcess) -> Iterator[ControlClient]:
    """The testbed control API of the test's service (``ControlClient``): the service clock
    (``advance_clock``, ``set_clock``), faults (``set_fault("hang"|"delay"|"drip"|"status"|"drop",
    ..., api="device"|"public")``), tenants and tokens, and the evidence (``dumps()``, ``blob(id)``,
    ``storage()``, ``config()``), which writes no audit row."""
    assert service.control_token
    with ControlClient(service.url, service.control_token) as c:
        yield c


@pytest.fixture
def tenant_admin(service: ServiceProcess, control: ControlClient) -> Iterator[Client]:
    """A ``Client`` with the Administrator token of a new tenant made for this test (tests are
    isolated by tenant); ``.tenant_id`` is its tenant."""
    tenant = control.create_tenant(f"tenant-{uuid.uuid4().hex[:12]}")
    with Client(service.url, tenant["Token"], tenant_id=tenant["Id"]) as c:
        yield c


@pytest.fixture
def support_client(service: ServiceProcess, control: ControlClient) -> Iterator[Client]:
    """A ``Client`` with a Support token: ``support_dumps(reason, tenantId=, deviceId=,
    deviceGroupId=, signature=, region=, since=, limit=)``, ``support_read(dump_id, reason)``
    (audited: the audit row is written before any byte) and ``audit(after=0)``."""
    token = control.create_token("Support", label="pytest support")
    with Client(service.url, token) as c:
        yield c


@pytest.fixture
def device_group(tenant_admin: Client) -> Callable[..., dict[str, Any]]:
    """Factory: ``device_group(enabled=False, boundary="None", name=None, product="DW100",
    **fields)`` creates a device group in the test's tenant and returns its DeviceGroupV2
    (``enabled`` is the group's AllowCrashDumpsCollection)."""
    counter = itertools.count(1)
    products: dict[str, str] = {}
    tenant_id = tenant_admin.tenant_id or ""

    def make(
        enabled: bool = False,
        boundary: str = "None",
        name: str | None = None,
        product: str = "DW100",
        **fields: Any,
    ) -> dict[str, Any]:
        if product not in products:
            products[product] = tenant_admin.create_product(tenant_id, product)["Id"]
        return tenant_admin.create_device_group(
            tenant_id,
            products[product],
            name or f"group {next(counter)}",
            AllowCrashDumpsCollection=enabled,
            RegionalDataBoundary=boundary,
            **fields,
        )

    return make


@pytest.fixture
def claimed_device(
    service: ServiceProcess, tenant_admin: Client, device_group: Callable[..., dict[str, Any]]
) -> Callable[..., ClaimedDevice]:
    """Factory: ``claimed_device(group=None, device_id=None)`` claims a device into ``group`` (a
    DeviceGroupV2 or its id; default a new group with collection enabled) and returns a
    ``ClaimedDevice`` (``device_id``, ``secret``, ``group_id``, ``tenant_id``, ``client()``: a
    ``DeviceClient`` that speaks the device API as a board does)."""
    tenant_id = tenant_admin.tenant_id or ""

    def make(group: dict[str, Any] | str | None = None, device_id: str | None = None) -> ClaimedDevice:
        if group is None:
            group = device_group(enabled=True)
        group_id = group if isinstance(group, str) else group["Id"]
        claimed = tenant_admin.claim_device(tenant_id, group_id, device_id)
        return ClaimedDevice(
            claimed["DeviceId"], claimed["DeviceSecret"], group_id, tenant_id, service.url
        )

    return make
