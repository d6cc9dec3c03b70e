"""The blob store: each region's dumps appended to segment files, ``blobs/<Region>/<n>.seg``.

A segment is a sequence of records (header: magic, dump id, length, CRC-32; then the
gzip bytes). The ingest writer appends one batch's records of a region with one
``pwrite`` and one ``fdatasync``; the dump's row keeps where its record is (segment,
offset, length as ``size``, ``sha256``), so a read is one ``pread``. A segment is
written only by the service run that created it (each start opens new ones) and
rotated when it passes ``MAX_SEGMENT_BYTES`` or ``SEGMENT_SECONDS`` of service
clock; retention deletes whole segments no row refers to any more. A dump's bytes
never leave its region's directory: a region's records go to its own segments.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REGIONS = ("EU", "EastUS", "WestUS")
SEGMENT_SUFFIX = ".seg"
#: A segment's file name: its sequence number (12 digits) and the suffix.
SEGMENT_NAME_RE = re.compile(r"([0-9]{12})\.seg\Z")
#: Start a new segment past this size (a batch is never split across two) ...
MAX_SEGMENT_BYTES = 64 << 20
#: ... or when the active one was started this long ago on the service clock: retention
#: frees whole segments, so an expired dump's bytes stay on disk at most this much longer.
SEGMENT_SECONDS = 3600

_HEADER = struct.Struct("<4s16sII")  # magic, dump id (uuid bytes), length, crc32
HEADER_SIZE = _HEADER.size
_MAGIC = b"TBS1"


def record(dump_id: str, data: bytes) -> bytes:
    """One dump as a segment record."""
    return _HEADER.pack(_MAGIC, bytes.fromhex(dump_id), len(data), zlib.crc32(data)) + data


def parse_record(raw: bytes, pos: int = 0) -> tuple[str, bytes] | None:
    """(dump id, bytes) of the whole record at ``pos`` of ``raw``; None when torn or corrupt."""
    if pos + HEADER_SIZE > len(raw):
        return None
    magic, ident, length, crc = _HEADER.unpack_from(raw, pos)
    data = raw[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
    if magic != _MAGIC or len(data) != length or zlib.crc32(data) != crc:
        return None
    return ident.hex(), data


def scan(path: Path) -> Iterator[tuple[int, str, int]]:
    """(offset, dump id, length) of each whole record of a segment, in order; stops at the
    first torn or corrupt one (the tail a crash can leave)."""
    with open(path, "rb") as fh:
        pos = 0
        while True:
            head = fh.read(HEADER_SIZE)
            if len(head) < HEADER_SIZE:
                return
            magic, ident, length, crc = _HEADER.unpack(head)
            data = fh.read(length) if magic == _MAGIC else b""
            if magic != _MAGIC or len(data) != length or zlib.crc32(data) != crc:
                return
            yield pos, ident.hex(), length
            pos += HEADER_SIZE + length


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Segment:
    """The segment a region's next batches are appended to (only the writer thread uses it)."""

    def __init__(self, name: str, path: Path, started: int) -> None:
        self.name = name  # "<Region>/<n>.seg", as the rows keep it
        self.path = path
        self.started = started
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        fsync_dir(path.parent)  # the new file's name is durable before any row names it
        #: bytes handed out so far (the next record's offset)
        self.size = 0

    def write_durable(self, offset: int, payload: bytes) -> None:
        """Write a batch's records at ``offset`` and make them durable (one write, one sync)."""
        view = memoryview(payload)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n
        os.fdatasync(self.fd)

    def undo(self, size: int) -> None:
        """Cut the segment back to ``size`` (a batch that was not acknowledged)."""
        os.ftruncate(self.fd, size)
        self.size = size

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Placement:
    """Where a batch's records of one region go."""

    segment: Segment
    offset: int
    payload: bytes


class SegmentStore:
    """Every region's segments: the writer's appends, reads, retention and the storage figures."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._active: dict[str, Segment] = {}
        self._next: dict[str, int] = {}

    def make_dirs(self) -> None:
        for region in REGIONS:
            self.region_dir(region).mkdir(parents=True, exist_ok=True)

    def region_dir(self, region: str) -> Path:
        return self.root / region

    def path(self, segment: str) -> Path:
        return self.root / segment

    def segments(self, region: str) -> list[str]:
        """The region's segment names, oldest first."""
        names = [e.name for e in os.scandir(self.region_dir(region)) if SEGMENT_NAME_RE.match(e.name)]
        return [f"{region}/{n}" for n in sorted(names)]

    # the writer -------------------------------------------------------------------------
    def place(self, region: str, records: list[bytes], now: int) -> tuple[Placement, list[int]]:
        """Reserve room for a batch's records of ``region`` in its active segment (a new one
        when it is full or old); returns the placement and each record's offset."""
        payload = b"".join(records)
        seg = self._active.get(region)
        if seg is not None and (
            (seg.size and seg.size + len(payload) > MAX_SEGMENT_BYTES) or not 0 <= now - seg.started < SEGMENT_SECONDS
        ):
            self.close_active(region)
            seg = None
        if seg is None:
            seg = self._new_segment(region, now)
        offsets = []
        pos = seg.size
        for rec in records:
            offsets.append(pos)
            pos += len(rec)
        placement = Placement(seg, seg.size, payload)
        seg.size = pos
        return placement, offsets

    def _new_segment(self, region: str, now: int) -> Segment:
        if region not in self._next:
            existing = self.segments(region)
            last = SEGMENT_NAME_RE.match(existing[-1].split("/", 1)[1]) if existing else None
            self._next[region] = int(last.group(1)) + 1 if last else 1
        n = self._next[region]
        self._next[region] = n + 1
        name = f"{region}/{n:012d}{SEGMENT_SUFFIX}"
        seg = Segment(name, self.path(name), now)
        self._active[region] = seg
        return seg

    def close_active(self, region: str) -> None:
        seg = self._active.pop(region, None)
        if seg is not None:
            seg.close()

    def close(self) -> None:
        for region in list(self._active):
            self.close_active(region)

    def retire_old(self, now: int) -> None:
        """Close active segments started ``SEGMENT_SECONDS`` ago, so retention can drop them."""
        for region, seg in list(self._active.items()):
            if not 0 <= now - seg.started < SEGMENT_SECONDS:
                self.close_active(region)

    def drop_unreferenced(self, referenced: set[str]) -> int:
        """Delete every segment no row refers to (except the active ones); returns how many."""
        active = {seg.name for seg in self._active.values()}
        dropped = 0
        for region in REGIONS:
            gone = [name for name in self.segments(region) if name not in referenced and name not in active]
            for name in gone:
                self.path(name).unlink(missing_ok=True)
            if gone:
                fsync_dir(self.region_dir(region))
                dropped += len(gone)
        return dropped

    # readers ----------------------------------------------------------------------------
    def read(self, segment: str, offset: int, size: int, dump_id: str) -> bytes | None:
        """A dump's bytes from its record; None when its segment is gone (retention)."""
        try:
            fd = os.open(self.path(segment), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            raw = os.pread(fd, HEADER_SIZE + size, offset)
        finally:
            os.close(fd)
        parsed = parse_record(raw)
        if parsed is None or parsed[0] != dump_id:
            raise OSError(f"segment {segment} has no whole record of dump {dump_id} at offset {offset}")
        return parsed[1]

    def storage(self, refs: Mapping[str, Mapping[int, str]]) -> dict[str, dict[str, int]]:
        """What each region's directory physically holds. ``refs``: segment -> {offset: dump
        id} of the rows. ``dumps``/``bytes``: whole records in the region's segments that a
        row refers to; ``segments``/``segmentBytes``: the segment files (with the bytes of
        dumps already past retention that share a segment with younger ones);
        ``otherFiles``: anything else in the directory."""
        out: dict[str, dict[str, int]] = {}
        for region in REGIONS:
            dumps = size = segments = segment_bytes = other = 0
            directory = self.region_dir(region)
            entries = list(os.scandir(directory)) if directory.is_dir() else []
            for entry in entries:
                if not entry.is_file():
                    continue
                if not SEGMENT_NAME_RE.match(entry.name):
                    other += 1
                    continue
                segments += 1
                segment_bytes += entry.stat().st_size
                wanted = refs.get(f"{region}/{entry.name}", {})
                for offset, dump_id, length in scan(Path(entry.path)):
                    if wanted.get(offset) == dump_id:
                        dumps += 1
                        size += length
            out[region] = {
                "dumps": dumps, "bytes": size, "otherFiles": other,
                "segments": segments, "segmentBytes": segment_bytes,
            }  # fmt: skip
        return out
