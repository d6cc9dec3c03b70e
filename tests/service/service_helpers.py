"""Plain helpers for the service tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed.paths import REPO_ROOT
from testbed.service.client import ControlClient

if TYPE_CHECKING:
    from testbed.service.process import ServiceProcess

CORES_DIR = REPO_ROOT / "testbed" / "load" / "cores"


def core_files() -> list[Path]:
    files = sorted(CORES_DIR.glob("*.core.gz"))
    if not files:
        pytest.skip(f"no recorded cores in {CORES_DIR}")
    return files


def new_signature() -> str:
    return secrets.token_hex(16)


def control_of(service: ServiceProcess) -> ControlClient:
    assert service.control_token, "the service runs without its control API"
    return ControlClient(service.url, service.control_token)


def snapshot(service: ServiceProcess) -> dict[str, object]:
    """What a refused upload must not change: the durable dumps and what each region's store
    physically holds (through the control API's evidence endpoints)."""
    with control_of(service) as control:
        dumps = [(d["id"], d["sha256"]) for d in control.dumps()]
        storage = {region: (s["dumps"], s["bytes"]) for region, s in control.storage().items()}
    return {"dumps": dumps, "storage": storage}


def blob_regions(service: ServiceProcess, dump_id: str) -> list[str]:
    """Regions whose store holds the dump (the control API lists durable dumps only)."""
    with control_of(service) as control:
        return [d["region"] for d in control.dumps() if d["id"] == dump_id]


#: The device of :func:`seed_data_dir`.
SEEDED_DEVICE = "ab" * 64


def seed_data_dir(data_dir: Path) -> Path:
    """A data dir with one tenant, product, EU group (collection on) and claimed device; blob dirs made.

    For tests that drive ``Ingest`` directly; the tenant and group ids are in
    the store's meta (``tenant``, ``group``).
    """
    from testbed.service.store import Store

    store = Store(data_dir / "service.db")
    now = int(time.time())
    t = store.create_tenant("t", now)
    p = store.create_product(t["Id"], "P", None, now)
    g = store.create_group(t["Id"], p["id"], {"Name": "G", "AllowCrashDumpsCollection": True, "RegionalDataBoundary": "EU"}, now)
    store.claim_device(SEEDED_DEVICE, t["Id"], g["id"], now)
    store.set_meta("tenant", t["Id"])
    store.set_meta("group", g["id"])
    store.close()
    for region in ("EU", "EastUS", "WestUS"):
        (data_dir / "blobs" / region).mkdir(parents=True)
    return data_dir
