"""pytest fixtures for the mock Security Service (gathered by ``testbed.pytest_plugin``).

- ``service_process`` (session): one real service (``ServiceProcess``, control
  enabled) for the whole run, in a temporary data directory.
- ``service`` (function): that same process, with faults, clock offset and
  rate-limit buckets reset before and after the test. Tests isolate from each
  other by working in their own tenant (``tenant_admin``).
- ``control``: a ``ControlClient`` for it.
- ``tenant_admin``: a ``Client`` with an Administrator token of a fresh tenant
  (``.tenant_id`` set).
- ``device_group``: factory ``device_group(allow_crash_dumps=False, boundary="None",
  name=None, product="DW100") -> DeviceGroupV2 dict`` in that tenant.
- ``claimed_device``: factory ``claimed_device(group=None, device_id=None) ->
  ClaimedDevice`` (``.device_id``, ``.secret``, ``.group_id``, ``.identity()``,
  ``.client()``); without a group it makes one that allows crash dumps.
- ``support_client``: a ``Client`` with a Support token.

docs/pytest.md is the user's reference for all of them.
"""

from __future__ import annotations

import itertools
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from testbed.board.identity import Identity
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
    """A device claimed into a group of the test's tenant (what ``claimed_device`` returns)."""

    device_id: str  #: 128 lowercase hex characters
    secret: str  #: the device secret issued at claim (the device API's credential)
    group_id: str
    tenant_id: str
    url: str  #: the service's root URL on the host (http://127.0.0.1:PORT)

    @property
    def port(self) -> int:
        """The service's port on the host."""
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def identity(self) -> Identity:
        """The identity to give an emulated board, ``board.provision(device.identity())``: this
        device's id and secret, and the service as a QEMU board reaches it (10.0.2.2:PORT)."""
        return Identity.for_port(self.device_id, self.secret, self.port)

    def client(self, timeout: float = 30.0) -> DeviceClient:
        """A ``DeviceClient`` that speaks the device API as this device (``sync()``,
        ``intent(...)``, ``upload(body, signature)``), without a board."""
        return DeviceClient(self.url, self.device_id, self.secret, timeout=timeout)


@pytest.fixture(scope="session")
def service_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One real mock Security Service (``ServiceProcess``) for the whole session, on
    127.0.0.1 with a free port, the control API enabled and a generous rate limit; its data and
    ``service.log`` are in pytest's session temp folder (``service_process.log_path``). Tests use
    ``service``, which resets it around each test."""
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
    """The session's running service (``ServiceProcess``: ``.url``, ``.port``, ``.log_path``,
    ``.control_token``), with faults, clock offset and rate-limit buckets reset before and after
    the test (restarted if a test stopped it). Tests isolate from each other by tenant
    (``tenant_admin``), so one service serves the whole run."""
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
    """A ``Client`` of the public v2 API with the Administrator token of a new tenant made for
    this test (tests are isolated by tenant); ``.tenant_id`` is its tenant. Methods take the
    API's own names: ``create_product(tenant_id, name)``, ``device_groups(tenant_id)``,
    ``update_device_group(tenant_id, group_id, AllowCrashDumpsCollection=True)``,
    ``claim_device(tenant_id, group_id)``, ``device(tenant_id, device_id)``, ..."""
    tenant = control.create_tenant(f"tenant-{uuid.uuid4().hex[:12]}")
    with Client(service.url, tenant["Token"], tenant_id=tenant["Id"]) as c:
        yield c


@pytest.fixture
def support_client(service: ServiceProcess, control: ControlClient) -> Iterator[Client]:
    """A ``Client`` with a Support token (all tenants), for the support API.
    ``support_dumps(reason=None, tenantId=, deviceId=, deviceGroupId=, signature=, region=,
    since=, limit=1000)`` -> stored dumps' metadata (dicts), oldest first, each listing audited;
    ``since`` is epoch seconds on the service's clock (``createdAt >= since``).
    ``support_read(dump_id, reason)`` -> the gzip'd core bytes (audited: the audit row is written
    before any byte; ``reason`` is required). ``audit(after=0)`` -> the audit rows after that
    id. docs/pytest.md lists the dump fields."""
    token = control.create_token("Support", label="pytest support")
    with Client(service.url, token) as c:
        yield c


@pytest.fixture
def device_group(tenant_admin: Client) -> Callable[..., dict[str, Any]]:
    """Factory: ``device_group(allow_crash_dumps=False, boundary="None", name=None,
    product="DW100", **fields)`` creates a device group in the test's tenant (and its product on
    first use) and returns its DeviceGroupV2 dict (``["Id"]``, ``["Name"]``, ...).
    ``allow_crash_dumps`` is the group's consent (the API's ``AllowCrashDumpsCollection``; off
    by default, as in the product); ``boundary`` its ``RegionalDataBoundary`` (``"None"`` or
    ``"EU"``); other API fields pass through as keywords. ``enabled=`` is a deprecated alias of
    ``allow_crash_dumps``."""
    counter = itertools.count(1)
    products: dict[str, str] = {}
    tenant_id = tenant_admin.tenant_id or ""

    def make(
        allow_crash_dumps: bool = False,
        boundary: str = "None",
        name: str | None = None,
        product: str = "DW100",
        *,
        enabled: bool | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        if enabled is not None:
            warnings.warn("device_group(enabled=) is deprecated: use allow_crash_dumps=",
                          DeprecationWarning, stacklevel=2)  # fmt: skip
            allow_crash_dumps = enabled
        if product not in products:
            products[product] = tenant_admin.create_product(tenant_id, product)["Id"]
        return tenant_admin.create_device_group(
            tenant_id,
            products[product],
            name or f"group {next(counter)}",
            AllowCrashDumpsCollection=allow_crash_dumps,
            RegionalDataBoundary=boundary,
            **fields,
        )

    return make


@pytest.fixture
def claimed_device(
    service: ServiceProcess, tenant_admin: Client, device_group: Callable[..., dict[str, Any]]
) -> Callable[..., ClaimedDevice]:
    """Factory: ``claimed_device(group=None, device_id=None)`` claims a device into ``group`` (a
    DeviceGroupV2 or its id; default a new group that allows crash dumps) and returns a
    ``ClaimedDevice``: ``device_id``, ``secret``, ``group_id``, ``tenant_id``, ``identity()``
    (``board.provision(device.identity())`` makes a board this device) and ``client()`` (a
    ``DeviceClient`` that speaks the device API as a board does). ``device_id`` defaults to a
    random 128-hex id."""
    tenant_id = tenant_admin.tenant_id or ""

    def make(group: dict[str, Any] | str | None = None, device_id: str | None = None) -> ClaimedDevice:
        if group is None:
            group = device_group(allow_crash_dumps=True)
        group_id = group if isinstance(group, str) else group["Id"]
        claimed = tenant_admin.claim_device(tenant_id, group_id, device_id)
        return ClaimedDevice(
            claimed["DeviceId"], claimed["DeviceSecret"], group_id, tenant_id, service.url
        )

    return make
