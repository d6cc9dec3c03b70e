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


def write_dumps(
    data_dir: Path,
    dumps: list[tuple[str, bytes]],
    *,
    region: str = "EU",
    segment: int = 1,
    committed: int | None = None,
    tail: bytes = b"",
    signature: str | None = None,
    created_at: int | None = None,
) -> str:
    """Put dumps on disk as the ingest writer does, in a seeded data dir: their records in one
    segment of ``region`` (then ``tail``, e.g. a torn record), and the rows of the first
    ``committed`` of them (all by default). Returns the segment's name."""
    import hashlib

    from testbed.service.segments import record
    from testbed.service.store import Store

    name = f"{region}/{segment:012d}.seg"
    raw = b""
    rows = []
    store = Store(data_dir / "service.db")
    tenant, group = store.get_meta("tenant"), store.get_meta("group")
    for dump_id, data in dumps:
        rows.append((dump_id, tenant, SEEDED_DEVICE, group, signature or new_signature(), region, name, len(raw),
                     len(data), len(data), "App", "a", None, created_at or int(time.time()), None,
                     hashlib.sha256(data).hexdigest()))  # fmt: skip
        raw += record(dump_id, data)
    (data_dir / "blobs" / name).write_bytes(raw + tail)
    store.insert_dumps(rows[: len(rows) if committed is None else committed])
    store.close()
    return name
