"""Crash recovery, retention and the layout check of the segment store (real SQLite and files,
no service process).

Each recovery test builds the on-disk state a crash at a given point leaves behind,
then starts an ``Ingest`` on it, as the service does at start.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import uuid
from pathlib import Path

import pytest
from service_helpers import SEEDED_DEVICE, seed_data_dir, write_dumps

from testbed.service.clock import Clock
from testbed.service.ingest import Ingest, Upload
from testbed.service.recovery import DataDirError, check_layout
from testbed.service.segments import HEADER_SIZE, SEGMENT_SECONDS, parse_record, record, scan
from testbed.service.store import Store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return seed_data_dir(tmp_path)


def rows(data_dir: Path) -> set[str]:
    store = Store(data_dir / "service.db")
    try:
        return {r["id"] for r in store.conn.execute("SELECT id FROM dumps")}
    finally:
        store.close()


def start(data_dir: Path, **kw) -> Ingest:
    ingest = Ingest(data_dir, kw.pop("clock", Clock()), throttle_limit=5, **kw)
    ingest.start()
    return ingest


def read(ingest: Ingest, dump_id: str) -> bytes | None:
    store = Store(ingest.data_dir / "service.db")
    try:
        row = store.dump(dump_id)
    finally:
        store.close()
    assert row is not None
    return ingest.segments.read(row["segment"], row["seg_offset"], row["size"], dump_id)


def blob(n: int = 5000) -> bytes:
    return b"\x1f\x8b" + secrets.token_bytes(n)


def store_one(ingest: Ingest, body: bytes) -> str:
    store = Store(ingest.data_dir / "service.db")
    tenant = store.get_meta("tenant") or ""
    store.close()

    async def upload() -> str:
        out = await ingest.submit(Upload(tenant, SEEDED_DEVICE, secrets.token_hex(16), body, len(body), "App", "a", None))
        assert out.kind == "stored" and out.region == "EU"
        return out.dump_id

    return asyncio.run(upload())


def test_records_roundtrip_and_a_torn_tail_ends_the_scan(tmp_path: Path) -> None:
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    raw = record(a, b"first") + record(b, b"second" * 100)
    assert parse_record(raw) == (a, b"first")
    assert parse_record(raw, HEADER_SIZE + 5) == (b, b"second" * 100)
    path = tmp_path / "s"
    path.write_bytes(raw[:-1])
    assert list(scan(path)) == [(0, a, 5)]  # torn: the whole prefix only
    corrupt = bytearray(raw)
    corrupt[-1] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    assert list(scan(path)) == [(0, a, 5)]
    assert parse_record(bytes(corrupt), HEADER_SIZE + 5) is None
    path.write_bytes(b"\x00" * 64)
    assert list(scan(path)) == []


def test_torn_tail_is_cut_and_every_committed_dump_kept(data_dir: Path) -> None:
    dumps = [(uuid.uuid4().hex, blob()) for _ in range(3)]
    torn = record(uuid.uuid4().hex, b"x" * 100)[:-10]  # a batch that never finished its write
    name = write_dumps(data_dir, dumps, tail=torn)
    path = data_dir / "blobs" / name
    whole_size = path.stat().st_size - len(torn)
    ingest = start(data_dir)
    try:
        assert path.stat().st_size == whole_size
        assert rows(data_dir) == {d for d, _ in dumps}
        assert all(read(ingest, d) == data for d, data in dumps)
        assert ingest.recovered.truncated_segments == 1 and ingest.recovered.dropped_rows == 0
    finally:
        ingest.stop()


def test_uncommitted_batch_and_stray_files_leave_nothing(data_dir: Path) -> None:
    write_dumps(data_dir, [(uuid.uuid4().hex, blob())], committed=0)  # durable, but no row: never acknowledged
    (data_dir / "blobs" / "WestUS" / ".tmp-deadbeef").write_bytes(b"half")
    (data_dir / "blobs" / "EastUS" / "0123.gz").write_bytes(b"stray")
    (data_dir / "blobs" / "EU" / "lost+found").mkdir()
    ingest = start(data_dir)
    try:
        assert [p for p in (data_dir / "blobs").rglob("*") if p.is_file()] == []
        assert rows(data_dir) == set()
        assert (ingest.recovered.dropped_segments, ingest.recovered.other_files) == (1, 2)
    finally:
        ingest.stop()


def test_rows_without_a_whole_record_are_dropped(data_dir: Path) -> None:
    fine, torn = (uuid.uuid4().hex, blob()), (uuid.uuid4().hex, blob())
    # the batch of ``torn`` committed its row, then died before its record was durable
    name = write_dumps(data_dir, [fine, torn])
    path = data_dir / "blobs" / name
    path.write_bytes(path.read_bytes()[:-7])
    gone = uuid.uuid4().hex
    write_dumps(data_dir, [(gone, blob())], region="WestUS")
    (data_dir / "blobs" / "WestUS" / "000000000001.seg").unlink()  # its segment never reached the disk
    ingest = start(data_dir)
    try:
        assert rows(data_dir) == {fine[0]}
        assert read(ingest, fine[0]) == fine[1]
        assert path.stat().st_size == HEADER_SIZE + len(fine[1])
        assert ingest.recovered.dropped_rows == 2
    finally:
        ingest.stop()


def test_clean_stop_leaves_nothing_to_repair(data_dir: Path) -> None:
    ingest = start(data_dir)
    body = blob()
    dump_id = store_one(ingest, body)
    ingest.stop()
    again = start(data_dir)
    try:
        assert again.recovered.to_json() == dict.fromkeys(again.recovered.to_json(), 0)
        assert read(again, dump_id) == body
        assert store_one(again, blob()) in rows(data_dir)
        assert len(again.segments.segments("EU")) == 2  # each start appends to a new segment
    finally:
        again.stop()


def test_retention_drops_whole_segments_and_only_them(data_dir: Path) -> None:
    clock = Clock()
    ingest = start(data_dir, clock=clock, retention=10 * SEGMENT_SECONDS)
    try:
        first = store_one(ingest, blob())
        shares = store_one(ingest, blob())  # same segment as ``first``
        clock.advance(2 * SEGMENT_SECONDS)  # the segment is old: the next batch starts a new one
        young = store_one(ingest, blob())
        assert len(ingest.segments.segments("EU")) == 2
        clock.advance(9 * SEGMENT_SECONDS)  # first and shares are past retention, young is not
        assert ingest.request_sweep(wait=True) == 2
        assert rows(data_dir) == {young}
        store = Store(data_dir / "service.db")
        refs = store.segment_refs()
        store.close()
        assert ingest.segments.segments("EU") == list(refs)  # the old segment's file went with its rows
        assert ingest.segments.storage(refs)["EU"]["dumps"] == 1
        assert {first, shares}.isdisjoint(rows(data_dir))
    finally:
        ingest.stop()


def test_expired_dump_sharing_a_segment_is_not_counted(data_dir: Path) -> None:
    clock = Clock()
    ingest = start(data_dir, clock=clock, retention=SEGMENT_SECONDS // 2)
    try:
        store_one(ingest, blob())
        clock.advance(SEGMENT_SECONDS // 2 + 1)
        kept = store_one(ingest, blob(700))  # the same, still young, segment
        assert ingest.request_sweep(wait=True) == 1
        store = Store(data_dir / "service.db")
        refs = store.segment_refs()
        store.close()
        eu = ingest.segments.storage(refs)["EU"]
        assert (eu["dumps"], eu["bytes"], eu["segments"]) == (1, 702, 1)  # the expired record's bytes
        assert eu["segmentBytes"] > eu["bytes"] + HEADER_SIZE  # wait for the whole segment to go
        assert read(ingest, kept) is not None
    finally:
        ingest.stop()


def test_a_failed_batch_is_cut_back(data_dir: Path) -> None:
    ingest = start(data_dir)
    try:
        store_one(ingest, blob())
        placement, offsets = ingest.segments.place("EU", [record(uuid.uuid4().hex, b"never written")], Clock().now_int())
        assert offsets == [placement.offset] and placement.segment.size > placement.offset
        placement.segment.undo(placement.offset)
        body = blob()
        dump_id = store_one(ingest, body)  # right after the first record: no hole
        assert read(ingest, dump_id) == body
        path = data_dir / "blobs" / placement.segment.name
        assert [o for o, _, _ in scan(path)] == [0, placement.offset]
    finally:
        ingest.stop()


def test_the_per_file_layout_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "blobs" / "EU").mkdir(parents=True)
    conn = sqlite3.connect(str(old / "service.db"))
    conn.execute("CREATE TABLE dumps (id TEXT PRIMARY KEY, region TEXT NOT NULL, blob TEXT NOT NULL)")
    conn.close()
    with pytest.raises(DataDirError, match="older per-file blob layout.*new --data-dir"):
        check_layout(old)
    files_only = tmp_path / "files"
    (files_only / "blobs" / "EU").mkdir(parents=True)
    (files_only / "blobs" / "EU" / f"{uuid.uuid4().hex}.gz").write_bytes(b"x")
    with pytest.raises(DataDirError, match=r"\.gz is a per-dump blob file"):
        check_layout(files_only)
    check_layout(tmp_path / "fresh")  # nothing there yet: fine
