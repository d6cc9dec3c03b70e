"""Plain helpers for the service tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from pathlib import Path

import pytest

from testbed.paths import REPO_ROOT

CORES_DIR = REPO_ROOT / "testbed" / "load" / "cores"


def core_files() -> list[Path]:
    files = sorted(CORES_DIR.glob("*.core.gz"))
    if not files:
        pytest.skip(f"no recorded cores in {CORES_DIR}")
    return files


def new_signature() -> str:
    return secrets.token_hex(16)


def snapshot(data_dir: Path) -> dict[str, object]:
    """What a refused request must not change: blob files and every table's rows."""
    blobs = {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((data_dir / "blobs").rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    conn = sqlite3.connect(f"file:{data_dir / 'service.db'}?mode=ro", uri=True)
    try:
        tables = {}
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            if name in ("audit", "pending_blobs") or name.startswith("sqlite_"):
                continue
            tables[name] = sorted(map(repr, conn.execute(f"SELECT * FROM {name}")))
    finally:
        conn.close()
    return {"blobs": blobs, "tables": tables}


def blob_regions(data_dir: Path, dump_id: str, timeout: float = 5.0) -> list[str]:
    """Regions holding the dump's blob file (written just after the 201: polled briefly)."""
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(p.parent.name for p in (data_dir / "blobs").rglob(f"{dump_id}.gz"))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


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
