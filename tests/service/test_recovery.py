"""Crash recovery of the ingest store (real SQLite and files, no service process).

Each test builds the on-disk state a crash at a given point leaves behind,
then starts an ``Ingest`` on it, as the service does at start.
"""

from __future__ import annotations

import secrets
import time
import uuid
from pathlib import Path

import pytest
from service_helpers import seed_data_dir

from testbed.service.clock import Clock
from testbed.service.ingest import (
    JOURNAL_PREFIX,
    JOURNAL_SUFFIX,
    Ingest,
    journal_record,
    read_journal,
)
from testbed.service.store import Store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return seed_data_dir(tmp_path)


def commit_row(data_dir: Path, dump_id: str, region: str = "EU") -> None:
    store = Store(data_dir / "service.db")
    store.conn.execute(
        "INSERT INTO dumps (id, tenant_id, device_id, group_id, signature, region, blob, size, "
        "inflated_size, component_class, component_name, crash_time, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 1, 1, 'App', 'a', NULL, ?)",
        (dump_id, store.get_meta("tenant"), "ab" * 64, store.get_meta("group"), secrets.token_hex(16), region, f"{region}/{dump_id}.gz", int(time.time())),
    )
    store.close()


def rows(data_dir: Path) -> set[str]:
    store = Store(data_dir / "service.db")
    try:
        return {r["id"] for r in store.conn.execute("SELECT id FROM dumps")}
    finally:
        store.close()


def start(data_dir: Path) -> Ingest:
    ingest = Ingest(data_dir, Clock(), throttle_limit=5)
    ingest.start()
    return ingest


def test_journal_roundtrip_and_torn_tail() -> None:
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    raw = journal_record(a, b"first") + journal_record(b, b"second" * 100)
    assert list(read_journal(raw)) == [(a, b"first"), (b, b"second" * 100)]
    assert list(read_journal(raw[:-1])) == [(a, b"first")]  # torn: the intact prefix only
    corrupt = bytearray(raw)
    corrupt[-1] ^= 0xFF
    assert list(read_journal(bytes(corrupt))) == [(a, b"first")]
    assert list(read_journal(b"\x00" * 64)) == []


def test_committed_row_with_lost_file_is_rebuilt_from_its_journal(data_dir: Path) -> None:
    kept, torn = uuid.uuid4().hex, uuid.uuid4().hex
    blob = b"\x1f\x8b" + secrets.token_bytes(5000)
    journal = data_dir / "blobs" / "EU" / f"{JOURNAL_PREFIX}1{JOURNAL_SUFFIX}"
    journal.write_bytes(journal_record(kept, blob) + journal_record(torn, b"x" * 100)[:-10])
    commit_row(data_dir, kept)
    # a crash lost the page cache: the file is half there
    (data_dir / "blobs" / "EU" / f"{kept}.gz").write_bytes(blob[:100])
    ingest = start(data_dir)
    try:
        assert (data_dir / "blobs" / "EU" / f"{kept}.gz").read_bytes() == blob
        assert not journal.exists()
        assert rows(data_dir) == {kept}
    finally:
        ingest.stop()


def test_uncommitted_batch_leaves_nothing(data_dir: Path) -> None:
    orphan = uuid.uuid4().hex
    journal = data_dir / "blobs" / "EU" / f"{JOURNAL_PREFIX}2{JOURNAL_SUFFIX}"
    journal.write_bytes(journal_record(orphan, b"bytes"))
    (data_dir / "blobs" / "EU" / f"{orphan}.gz").write_bytes(b"bytes")  # no row: never acknowledged
    (data_dir / "blobs" / "WestUS" / f".tmp-{orphan}").write_bytes(b"half")
    ingest = start(data_dir)
    try:
        assert [p for p in (data_dir / "blobs").rglob("*") if p.is_file()] == []
        assert rows(data_dir) == set()
    finally:
        ingest.stop()


def test_row_without_durable_journal_is_dropped(data_dir: Path) -> None:
    lost, fine = uuid.uuid4().hex, uuid.uuid4().hex
    commit_row(data_dir, lost)  # its journal never reached the disk
    commit_row(data_dir, fine, "WestUS")
    (data_dir / "blobs" / "WestUS" / f"{fine}.gz").write_bytes(b"complete")
    ingest = start(data_dir)
    try:
        assert rows(data_dir) == {fine}
        assert (data_dir / "blobs" / "WestUS" / f"{fine}.gz").read_bytes() == b"complete"
    finally:
        ingest.stop()


def test_clean_stop_leaves_no_journals(data_dir: Path) -> None:
    import asyncio

    from testbed.service.ingest import Upload

    store = Store(data_dir / "service.db")
    tenant = store.get_meta("tenant")
    store.close()
    ingest = start(data_dir)

    async def upload() -> str:
        out = await ingest.submit(Upload(tenant or "", "ab" * 64, secrets.token_hex(16), b"blob", 4, "App", "a", None))
        assert out.kind == "stored" and out.region == "EU"
        return out.dump_id

    dump_id = asyncio.run(upload())
    ingest.stop()
    assert (data_dir / "blobs" / "EU" / f"{dump_id}.gz").read_bytes() == b"blob"
    assert list((data_dir / "blobs").rglob(f"{JOURNAL_PREFIX}*")) == []
