"""Fixtures of the contract tier: the host firmware, devices claimed on the real service,
and services with small limits (each its own ServiceProcess on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from contract_helpers import Device
from fw_helpers import build_host, make_env

from testbed.service.client import Client, ControlClient
from testbed.service.fixtures import ClaimedDevice
from testbed.service.process import ServiceProcess


@pytest.fixture(scope="session")
def fw_bin() -> Path:
    return build_host()


@pytest.fixture
def device(tmp_path: Path, fw_bin: Path, service: ServiceProcess,
           claimed_device: Callable[..., ClaimedDevice]) -> Callable[..., Device]:
    """``device(group=None)``: a device claimed in this test's tenant, with its own firmware dirs."""
    count = 0

    def make(group: dict | str | None = None) -> Device:
        nonlocal count
        count += 1
        fw = make_env(tmp_path / f"d{count}", fw_bin)
        return Device(fw, claimed_device(group), service.port)

    return make


class SmallService:
    """A service with small limits, its own tenant and an enabled group."""

    def __init__(self, proc: ServiceProcess) -> None:
        self.proc = proc
        assert proc.control_token
        self.control = ControlClient(proc.url, proc.control_token)
        tenant = self.control.create_tenant("contract")
        self.admin = Client(proc.url, tenant["Token"], tenant_id=tenant["Id"])
        product = self.admin.create_product(tenant["Id"], "P")
        self.group = self.admin.create_device_group(
            tenant["Id"], product["Id"], "G", AllowCrashDumpsCollection=True, RegionalDataBoundary="None")
        self.support = Client(proc.url, self.control.create_token("Support", label="contract"))

    def device(self, root: Path, fw_bin: Path) -> Device:
        claimed = self.admin.claim_device(self.admin.tenant_id or "", self.group["Id"])
        cd = ClaimedDevice(claimed["DeviceId"], claimed["DeviceSecret"], self.group["Id"],
                           self.admin.tenant_id or "", self.proc.url)
        return Device(make_env(root, fw_bin), cd, self.proc.port)

    def close(self) -> None:
        self.control.close()
        self.admin.close()
        self.support.close()


def _small(tmp_path_factory: pytest.TempPathFactory, name: str, **limits: int) -> Iterator[SmallService]:
    proc = ServiceProcess(tmp_path_factory.mktemp(name), enable_control=True, **limits)
    proc.start()
    small = SmallService(proc)
    try:
        yield small
    finally:
        small.close()
        proc.cleanup()


@pytest.fixture(scope="session")
def small_upload_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmallService]:
    """--max-upload-bytes 1000: smaller than any gzip'd core (the device is told at sync)."""
    yield from _small(tmp_path_factory, "small-upload", max_upload_bytes=1000)


@pytest.fixture(scope="session")
def strict_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmallService]:
    """--max-inflated-bytes 4096 (a real core is refused with 413 after the intent) and a rate
    limit of 2 crash requests per device (intent + body) before 429."""
    yield from _small(tmp_path_factory, "strict", max_inflated_bytes=4096, rate_limit=1, rate_burst=2)
