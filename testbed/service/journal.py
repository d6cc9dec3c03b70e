"""The ingest journal and crash recovery.

Each batch appends the accepted blobs of a region to one journal file,
``blobs/<Region>/.batch-<n>.jnl`` (records with length and CRC-32), fsynced
before the batch is answered. At start, before anything is served,
:func:`recover` replays every journal left by a crash: each record whose row
was committed is written out as its blob file (fsynced) if missing or
different; records of uncommitted batches (a torn tail included) are dropped.
Then :func:`remove_orphans` deletes blob files no row refers to and temporary
files. So after a crash every acknowledged dump is there complete, nothing
else is, and a dump's bytes never leave its region's directory.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator

from testbed.service.blobs import (
    REGIONS,
    TMP_PREFIX,
    BlobStore,
    fsync_dir,
    fsync_file,
    write_durable,
)
from testbed.service.store import Store

log = logging.getLogger("testbed.service.ingest")

JOURNAL_PREFIX = ".batch-"
JOURNAL_SUFFIX = ".jnl"
_RECORD = struct.Struct("<4s16sII")  # magic, dump id (uuid bytes), length, crc32
_MAGIC = b"TBJ1"


def journal_record(dump_id: str, data: bytes) -> bytes:
    return _RECORD.pack(_MAGIC, bytes.fromhex(dump_id), len(data), zlib.crc32(data)) + data


def read_journal(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """The intact records of a journal; stops at the first torn or corrupt one."""
    pos = 0
    while pos + _RECORD.size <= len(raw):
        magic, ident, length, crc = _RECORD.unpack_from(raw, pos)
        start = pos + _RECORD.size
        data = raw[start : start + length]
        if magic != _MAGIC or len(data) != length or zlib.crc32(data) != crc:
            return
        yield ident.hex(), data
        pos = start + length


def journal_name(seq: int) -> str:
    return f"{JOURNAL_PREFIX}{seq}{JOURNAL_SUFFIX}"


def recover(store: Store, blobs: BlobStore) -> int:
    """Replay journals left by a crash: committed records become complete, durable files."""
    rewritten = 0
    for region in REGIONS:
        directory = blobs.region_dir(region)
        journals = sorted(directory.glob(f"{JOURNAL_PREFIX}*{JOURNAL_SUFFIX}"))
        if not journals:
            continue
        for journal in journals:
            for dump_id, data in read_journal(journal.read_bytes()):
                if store.dump_blob(dump_id) != blobs.name(region, dump_id):
                    continue  # its batch never committed, or it was deleted since
                path = blobs.final_path(region, dump_id)
                try:
                    ok = path.read_bytes() == data
                except FileNotFoundError:
                    ok = False
                if not ok:
                    tmp = blobs.tmp_path(region, dump_id)
                    tmp.unlink(missing_ok=True)
                    write_durable(tmp, data)
                    os.rename(tmp, path)
                    rewritten += 1
                else:
                    fsync_file(path)
        fsync_dir(directory)
        for journal in journals:
            journal.unlink()
        fsync_dir(directory)
    # Rows whose batch crashed after the row commit but before its journal was durable
    # were never acknowledged and have no bytes: they go.
    lost = [row["id"] for row in store.dump_blobs() if not blobs.path(row["blob"]).exists()]
    if lost:
        store.begin()
        store.delete_dumps(lost)
        store.commit()
        log.warning("recovery: removed %d rows of unacknowledged dumps with no blob", len(lost))
    if rewritten:
        log.warning("recovery: rewrote %d blob files from their journals", rewritten)
    return rewritten


def remove_orphans(store: Store, blobs: BlobStore) -> int:
    """Delete temporary files and blob files no row refers to (left by a crash)."""
    known = {row["blob"] for row in store.dump_blobs()}
    removed = 0
    for region in REGIONS:
        directory = blobs.region_dir(region)
        for entry in directory.iterdir():
            if entry.name.startswith(JOURNAL_PREFIX):
                continue  # recover() has replayed and removed them before this runs
            if entry.name.startswith(TMP_PREFIX) or f"{region}/{entry.name}" not in known:
                entry.unlink(missing_ok=True)
                removed += 1
        fsync_dir(directory)
    if removed:
        log.warning("removed %d orphaned blob files", removed)
    return removed


def leftover_journals(blobs: BlobStore) -> list[str]:
    """Journal files still in the stores (none after a clean stop)."""
    return sorted(
        f"{region}/{p.name}" for region in REGIONS for p in blobs.region_dir(region).glob(f"{JOURNAL_PREFIX}*")
    )
