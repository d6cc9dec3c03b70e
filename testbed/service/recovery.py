"""At start, before anything is served: the data directory's layout check and crash recovery
of the segment store.

A crash (SIGKILL, power loss) can leave: a torn tail on a region's last segment (a
batch whose write had not finished: never acknowledged); rows committed whose records
never became durable (the batch died between its commit and its ``fdatasync``: never
acknowledged either); a segment whose rows a sweep had deleted. :func:`recover`
keeps every record a row refers to and that is whole, cuts each segment after the
last such record, deletes the rows without a whole record, the segments no row
refers to and any other file in the region directories.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from testbed.service.segments import (
    HEADER_SIZE,
    REGIONS,
    SEGMENT_NAME_RE,
    SegmentStore,
    fsync_dir,
    scan,
)
from testbed.service.store import Store

log = logging.getLogger("testbed.service.ingest")

#: Files of the layout before segments: one file per dump, and batch journals.
_OLD_BLOB_RE = re.compile(r"([0-9a-f]{32}\.gz|\.batch-[0-9]+\.jnl)\Z")


class DataDirError(ValueError):
    """The data directory cannot be used by this version of the service."""


def check_layout(data_dir: Path) -> None:
    """Refuse a data directory of the per-file blob layout (``blobs/<Region>/<id>.gz``):
    it is not converted."""
    found = ""
    db = data_dir / "service.db"
    if db.exists():
        conn = sqlite3.connect(str(db))
        try:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(dumps)")}
        finally:
            conn.close()
        if columns and "segment" not in columns:
            found = f"{db} has dump rows without a segment column"
    for region in REGIONS:
        directory = data_dir / "blobs" / region
        if found or not directory.is_dir():
            continue
        old = next((e.name for e in os.scandir(directory) if _OLD_BLOB_RE.match(e.name)), None)
        if old is not None:
            found = f"{directory / old} is a per-dump blob file or journal"
    if found:
        raise DataDirError(
            f"{data_dir} holds the older per-file blob layout ({found}); this service keeps blobs in "
            "segment files (docs/service.md) and does not convert a data directory: start it with "
            "a new --data-dir, or remove this directory"
        )


@dataclass
class Recovered:
    """What recovery changed (all 0 after a clean stop)."""

    truncated_segments: int = 0
    dropped_segments: int = 0
    dropped_rows: int = 0
    other_files: int = 0

    def to_json(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items()}


def recover(store: Store, segments: SegmentStore) -> Recovered:
    out = Recovered()
    rows: dict[str, list[tuple[str, int, int]]] = {}
    for row in store.segment_rows():
        rows.setdefault(row["segment"], []).append((row["id"], row["seg_offset"], row["size"]))
    lost: list[str] = []
    for region in REGIONS:
        directory = segments.region_dir(region)
        changed = False
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                continue  # not ours, and never a dump's bytes: left alone
            if not SEGMENT_NAME_RE.match(entry.name) or not entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink()  # not ours: a crash's leftover or a stray file
                out.other_files += 1
                changed = True
                continue
            name = f"{region}/{entry.name}"
            whole = {offset: (dump_id, length) for offset, dump_id, length in scan(Path(entry.path))}
            end = 0
            for dump_id, offset, size in rows.pop(name, []):
                if whole.get(offset) == (dump_id, size):
                    end = max(end, offset + HEADER_SIZE + size)
                else:
                    lost.append(dump_id)
            if end == 0:
                Path(entry.path).unlink()
                out.dropped_segments += 1
                changed = True
            elif entry.stat().st_size > end:
                with open(entry.path, "r+b") as fh:
                    fh.truncate(end)
                    os.fsync(fh.fileno())
                out.truncated_segments += 1
        if changed:
            fsync_dir(directory)
    # rows whose segment is gone altogether
    lost.extend(dump_id for refs in rows.values() for dump_id, _, _ in refs)
    if lost:
        store.begin()
        store.delete_dumps(lost)
        store.commit()
        out.dropped_rows = len(lost)
    if out != Recovered():
        log.warning("recovery: %s", out)
    return out
