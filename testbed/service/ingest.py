"""Durable ingest with group commit, the retention sweep, crash recovery and orphan cleanup.

One writer thread owns every change to dump rows. It takes all uploads
pending at the moment it wakes up (a batch), and for the batch:

1. decides each upload against the database as it is now: consent of the
   device's group and the throttle count of the signature (counting the ones
   accepted earlier in the same batch), so exactly N dumps of a signature are
   ever stored, however many arrive at once;
2. appends the accepted blobs of each region to one journal file in that
   region's store, ``blobs/<Region>/.batch-<n>.jnl`` (records with length and
   CRC-32), and fsyncs it: one fsync per region per batch, not per upload;
3. in one ``BEGIN IMMEDIATE`` transaction re-checks consent, inserts every
   dump row and commits (one WAL fsync, ``synchronous=FULL``);
4. answers every request of the batch (one wake-up of the event loop).

A materializer thread then writes each blob as its own file,
``blobs/<Region>/<id>.gz`` (temporary name, then rename), a few milliseconds
after the 201. A flusher thread, ``flush_delay`` seconds later (35 s: by then
the kernel has written the data back and ext4 has committed the metadata, so
each fsync is cheap), fsyncs those files and their directories and deletes
the journal files they came from; it also runs the WAL checkpoints, off the
writer's path. (``syncfs`` would be one call, but it flushes everybody's
dirty data on the filesystem and stalls the writer's own fsyncs behind it.)

At start, before anything is served, ``recover`` replays every journal left
by a crash: each record whose row was committed is written out as its blob
file (fsynced) if missing or different; records of uncommitted batches (a
torn tail included) are dropped. Then ``remove_orphans`` deletes blob files
that no row refers to and temporary files. So after a crash every
acknowledged dump is there complete, nothing else is, and a dump's bytes
never leave its region's directory.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import itertools
import logging
import os
import queue
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.service.checks import check_core
from testbed.service.clock import Clock
from testbed.service.errors import ApiError
from testbed.service.store import REGIONS, Store

log = logging.getLogger("testbed.service.ingest")

RETENTION_SECONDS = 29 * 24 * 3600
MAX_BATCH = 256
TMP_PREFIX = ".tmp-"


def region_for(boundary: str, device_id: str) -> str:
    """The store a dump goes to: EU for EU groups; EastUS or WestUS by device id otherwise."""
    if boundary == "EU":
        return "EU"
    digest = hashlib.sha256(device_id.encode()).digest()
    return "EastUS" if digest[0] % 2 == 0 else "WestUS"


@dataclass
class Upload:
    tenant_id: str
    device_id: str
    signature: str
    body: bytes
    inflated_size: int  # filled by the writer's check when it has ``max_inflated``
    component_class: str
    component_name: str
    crash_time: int | None
    future: asyncio.Future[dict[str, Any]] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    # filled by the writer
    dump_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    region: str = ""
    group_id: str = ""
    tmp_path: Path | None = None
    final_path: Path | None = None


@dataclass
class Outcome:
    """What the writer answers for an upload."""

    kind: str  # "stored" | "throttled" | "optout" | "invalid" | "error"
    dump_id: str = ""
    region: str = ""
    detail: str = ""
    #: for "invalid": the 400/413 to answer (not a gzip'd ELF core, or inflates past the cap)
    error: ApiError | None = None


class _Sweep:
    def __init__(self, done: threading.Event | None = None) -> None:
        self.done = done or threading.Event()
        self.removed = 0


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _fsync_file(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _write_file(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Create ``path`` (it must not exist) holding ``data``; fsync it before returning when ``durable``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    _write_file(path, data, durable=True)


class Ingest:
    """The single writer of dump rows and blobs."""

    def __init__(
        self,
        data_dir: Path,
        clock: Clock,
        throttle_limit: int,
        retention: int = RETENTION_SECONDS,
        flush_delay: float = 35.0,
        max_inflated: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.blob_root = data_dir / "blobs"
        self.clock = clock
        self.throttle_limit = throttle_limit
        #: when set, the writer checks each body (capped gzip inflate, ELF core) before
        #: deciding on it: zlib(-ng) releases the GIL while it inflates, so the event loop
        #: keeps serving meanwhile, and the hand-off to the writer is one the upload makes anyway
        self.max_inflated = max_inflated
        self.retention = retention
        for region in REGIONS:
            (self.blob_root / region).mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[Upload | _Sweep | None] = queue.Queue()
        self._store = Store(data_dir / "service.db")
        self._store.conn.execute("PRAGMA wal_autocheckpoint=0")  # the flusher checkpoints
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self.flush_delay = flush_delay
        self._flusher = threading.Thread(target=self._flush_loop, name="blob-flusher", daemon=True)
        self._materializer = threading.Thread(target=self._materialize_loop, name="blob-materializer", daemon=True)
        self._mqueue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._materialized: collections.deque[tuple[float, list[Path], list[Path]]] = collections.deque()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="journal")
        self._journal_seq = itertools.count(int(time.time() * 1000))
        self.batches = 0
        self.stored = 0
        self.max_batch_seen = 0
        self.busy_seconds = 0.0
        #: Bumped after every change to dump rows (commit or sweep): readers cache by it.
        self.version = 0
        self.flushed = 0
        self.lock_wait_seconds = 0.0
        self.commit_seconds = 0.0
        #: (tenant, signature) pairs with at least ``throttle_limit`` stored dumps. Only the
        #: writer changes it (after each commit and sweep); the event loop reads it to skip a
        #: throttled upload before reading its body, instead of a SQLite count per request.
        #: The writer's own per-batch count stays the authority (exactly N per signature).
        self.throttled: frozenset[tuple[str, str]] = frozenset()

    # lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self.remove_orphans()
        self._load_throttled()
        self._thread.start()
        self._materializer.start()
        self._flusher.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._mqueue.put(None)
        self._materializer.join(timeout=30)
        self._stopping.set()
        self._flusher.join(timeout=30)
        self._pool.shutdown(wait=True)
        self._store.close()

    def wait_materialized(self, timeout: float = 10.0) -> bool:
        """Block until every blob acknowledged so far exists as its file."""
        done = threading.Event()
        self._mqueue.put(("barrier", done))
        return done.wait(timeout)

    def recover(self) -> int:
        """Replay journals left by a crash: committed records become complete, durable files."""
        conn = self._store.conn
        rewritten = 0
        for region in REGIONS:
            directory = self.blob_root / region
            journals = sorted(directory.glob(f"{JOURNAL_PREFIX}*{JOURNAL_SUFFIX}"))
            if not journals:
                continue
            for journal in journals:
                for dump_id, data in read_journal(journal.read_bytes()):
                    row = conn.execute("SELECT blob FROM dumps WHERE id = ?", (dump_id,)).fetchone()
                    if row is None or row["blob"] != f"{region}/{dump_id}.gz":
                        continue  # its batch never committed, or it was deleted since
                    path = directory / f"{dump_id}.gz"
                    try:
                        ok = path.read_bytes() == data
                    except FileNotFoundError:
                        ok = False
                    if not ok:
                        tmp = directory / f"{TMP_PREFIX}{dump_id}"
                        tmp.unlink(missing_ok=True)
                        _write_durable(tmp, data)
                        os.rename(tmp, path)
                        rewritten += 1
                    else:
                        _fsync_file(path)
            fsync_dir(directory)
            for journal in journals:
                journal.unlink()
            fsync_dir(directory)
        # Rows whose batch crashed after the row commit but before its journal was durable
        # were never acknowledged and have no bytes: they go.
        lost = [
            row["id"]
            for row in conn.execute("SELECT id, blob FROM dumps").fetchall()
            if not (self.blob_root / row["blob"]).exists()
        ]
        if lost:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM dumps WHERE id = ?", [(i,) for i in lost])
            conn.execute("COMMIT")
            log.warning("recovery: removed %d rows of unacknowledged dumps with no blob", len(lost))
        if rewritten:
            log.warning("recovery: rewrote %d blob files from their journals", rewritten)
        return rewritten

    def remove_orphans(self) -> int:
        """Delete temporary files and blob files no row refers to (left by a crash)."""
        known = {
            row["blob"] for row in self._store.conn.execute("SELECT blob FROM dumps").fetchall()
        }
        removed = 0
        for region in REGIONS:
            directory = self.blob_root / region
            for entry in directory.iterdir():
                rel = f"{region}/{entry.name}"
                if entry.name.startswith(JOURNAL_PREFIX):
                    continue  # recover() has replayed and removed them before this runs
                if entry.name.startswith(TMP_PREFIX) or rel not in known:
                    entry.unlink(missing_ok=True)
                    removed += 1
            fsync_dir(directory)
        if removed:
            log.warning("removed %d orphaned blob files", removed)
        return removed

    def _load_throttled(self) -> None:
        rows = self._store.conn.execute(
            "SELECT tenant_id, signature FROM dumps GROUP BY tenant_id, signature HAVING COUNT(*) >= ?",
            (self.throttle_limit,),
        ).fetchall()
        self.throttled = frozenset((r["tenant_id"], r["signature"]) for r in rows)

    # API for the event loop ------------------------------------------------------
    def is_throttled(self, tenant_id: str, signature: str) -> bool:
        """Whether the signature has its N dumps stored (as of the last commit); no I/O."""
        return (tenant_id, signature) in self.throttled

    async def submit(self, upload: Upload) -> Outcome:
        loop = asyncio.get_running_loop()
        upload.loop = loop
        upload.future = loop.create_future()
        self._queue.put(upload)
        return await upload.future  # type: ignore[return-value]

    def request_sweep(self, wait: bool = False, timeout: float = 30.0) -> int:
        sweep = _Sweep()
        self._queue.put(sweep)
        if wait:
            sweep.done.wait(timeout)
        return sweep.removed

    # the writer ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch: list[Upload] = []
            sweeps: list[_Sweep] = []
            stop = False
            item: Upload | _Sweep | None = first
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Sweep):
                    sweeps.append(item)
                else:
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                t0 = time.perf_counter()
                self._ingest(batch)
                self.busy_seconds += time.perf_counter() - t0
            for sweep in sweeps:
                try:
                    sweep.removed = self._sweep()
                except Exception:  # keep the writer alive; the next sweep retries
                    log.exception("retention sweep failed")
                sweep.done.set()
            if stop:
                return

    def _answer_all(self, batch: list[Upload], outcomes: dict[str, Outcome]) -> None:
        """Settle the batch's futures with one wake-up per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
        for u in batch:
            if u.loop is not None and u.future is not None:
                by_loop.setdefault(u.loop, []).append((u.future, outcomes[u.dump_id]))

        def settle(items: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
            for future, outcome in items:
                if not future.done():
                    future.set_result(outcome)

        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(settle, items)
            except RuntimeError:  # loop closed: the clients are gone
                pass

    def _consent(self, device_ids: set[str]) -> dict[str, Any]:
        """Group, tenant, consent and boundary of each device, in one query."""
        if not device_ids:
            return {}
        ids = list(device_ids)
        out: dict[str, Any] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self._store.conn.execute(
                "SELECT d.id, d.group_id, d.tenant_id, g.allow_crash_dumps, g.boundary FROM devices d "
                "JOIN device_groups g ON g.id = d.group_id "
                f"WHERE d.id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            out.update({row["id"]: row for row in rows})
        return out

    def _counts(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Stored dumps per (tenant, signature), in one query per 400 keys."""
        out = dict.fromkeys(keys, 0)
        ordered = list(keys)
        for i in range(0, len(ordered), 400):
            chunk = ordered[i : i + 400]
            where = " OR ".join(["(tenant_id = ? AND signature = ?)"] * len(chunk))
            params = [v for key in chunk for v in key]
            for row in self._store.conn.execute(
                f"SELECT tenant_id, signature, COUNT(*) AS n FROM dumps WHERE {where} "
                "GROUP BY tenant_id, signature",
                params,
            ):
                out[(row["tenant_id"], row["signature"])] = row["n"]
        return out

    def _ingest(self, batch: list[Upload]) -> None:
        self.batches += 1
        self.max_batch_seen = max(self.max_batch_seen, len(batch))
        store = self._store
        outcomes: dict[str, Outcome] = {}
        accepted: list[Upload] = []
        journals: list[Path] = []
        if self.max_inflated is not None:
            valid: list[Upload] = []
            for u in batch:
                try:
                    u.inflated_size = check_core(u.body, self.max_inflated)
                except ApiError as exc:
                    outcomes[u.dump_id] = Outcome("invalid", error=exc)
                    continue
                valid.append(u)
        else:
            valid = batch
        try:
            consent = self._consent({u.device_id for u in valid})
            counts = self._counts({(u.tenant_id, u.signature) for u in valid})
            stored_before = dict(counts)
            for u in valid:
                row = consent.get(u.device_id)
                if row is None or not row["allow_crash_dumps"] or row["tenant_id"] != u.tenant_id:
                    outcomes[u.dump_id] = Outcome("optout")
                    continue
                key = (u.tenant_id, u.signature)
                if counts[key] >= self.throttle_limit:
                    outcomes[u.dump_id] = Outcome("throttled")
                    continue
                counts[key] += 1
                u.group_id = row["group_id"]
                u.region = region_for(row["boundary"], u.device_id)
                directory = self.blob_root / u.region
                u.tmp_path = directory / f"{TMP_PREFIX}{u.dump_id}"
                u.final_path = directory / f"{u.dump_id}.gz"
                accepted.append(u)

            # blobs: one journal file per region, written and fsynced in parallel with the
            # row commit below; the batch is answered only when all of them are durable.
            pending_journals = []
            for region in sorted({u.region for u in accepted}):
                path = self.blob_root / region / f"{JOURNAL_PREFIX}{next(self._journal_seq)}{JOURNAL_SUFFIX}"
                records = b"".join(journal_record(u.dump_id, u.body) for u in accepted if u.region == region)
                journals.append(path)
                pending_journals.append(self._pool.submit(_write_durable, path, records))

            # rows: one transaction, consent re-checked under the write lock
            now = self.clock.now_int()
            t_lock = time.perf_counter()
            store.conn.execute("BEGIN IMMEDIATE")
            self.lock_wait_seconds += time.perf_counter() - t_lock
            try:
                consent = self._consent({u.device_id for u in accepted})
                kept: list[Upload] = []
                for u in accepted:
                    row = consent.get(u.device_id)
                    if row is None or not row["allow_crash_dumps"]:
                        outcomes[u.dump_id] = Outcome("optout")
                        continue
                    kept.append(u)
                store.conn.executemany(
                    "INSERT INTO dumps (id, tenant_id, device_id, group_id, signature, region, "
                    "blob, size, inflated_size, component_class, component_name, crash_time, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            u.dump_id,
                            u.tenant_id,
                            u.device_id,
                            u.group_id,
                            u.signature,
                            u.region,
                            f"{u.region}/{u.dump_id}.gz",
                            len(u.body),
                            u.inflated_size,
                            u.component_class,
                            u.component_name,
                            u.crash_time,
                            now,
                        )
                        for u in kept
                    ],
                )
                t_commit = time.perf_counter()
                store.conn.execute("COMMIT")
                self.commit_seconds += time.perf_counter() - t_commit
            except BaseException:
                store.conn.execute("ROLLBACK")
                for future in pending_journals:
                    future.exception()  # wait, so the cleanup below sees every file
                raise
            try:
                for future in pending_journals:
                    future.result()
            except BaseException:
                # Rows committed but a journal is not durable: take the rows back
                # (never acknowledged), then report the batch failed.
                store.conn.execute("BEGIN IMMEDIATE")
                store.conn.executemany("DELETE FROM dumps WHERE id = ?", [(u.dump_id,) for u in kept])
                store.conn.execute("COMMIT")
                raise
            full: set[tuple[str, str]] = set()
            for u in kept:
                outcomes[u.dump_id] = Outcome("stored", u.dump_id, u.region)
                self.stored += 1
                key = (u.tenant_id, u.signature)
                stored_before[key] += 1
                if stored_before[key] >= self.throttle_limit:
                    full.add(key)
            if full - self.throttled:
                # a new set object, swapped in one assignment: readers never see it half-built
                self.throttled = self.throttled | full
            self.version += 1
            self._mqueue.put(("write", (kept, journals)))
        except Exception as exc:  # disk full, I/O error: nothing of this batch is kept
            log.exception("ingest batch failed")
            self.version += 1
            for path in journals:
                path.unlink(missing_ok=True)
            for u in batch:
                if u.dump_id not in outcomes or outcomes[u.dump_id].kind == "stored":
                    outcomes[u.dump_id] = Outcome("error", detail=f"{type(exc).__name__}: {exc}")
        self._answer_all(batch, outcomes)

    def _sweep(self) -> int:
        """Delete dumps older than the retention period: rows first, then their blobs."""
        cutoff = self.clock.now_int() - self.retention
        conn = self._store.conn
        rows = conn.execute("SELECT id, blob FROM dumps WHERE created_at <= ?", (cutoff,)).fetchall()
        if not rows:
            return 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM dumps WHERE id = ?", [(r["id"],) for r in rows])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.version += 1
        self._load_throttled()
        # The materializer deletes the files, after any write of them still queued.
        done = threading.Event()
        self._mqueue.put(("delete", ([self.blob_root / r["blob"] for r in rows], done)))
        done.wait(30)
        log.info("retention: removed %d dumps older than %d", len(rows), cutoff)
        return len(rows)

    # the materializer -----------------------------------------------------------------
    def _materialize_loop(self) -> None:
        while True:
            item = self._mqueue.get()
            if item is None:
                return
            kind, payload = item
            try:
                if kind == "write":
                    kept, journals = payload
                    for u in kept:
                        _write_file(u.tmp_path, u.body)
                        os.rename(u.tmp_path, u.final_path)
                    self._materialized.append((time.time(), journals, [u.final_path for u in kept]))
                elif kind == "delete":
                    paths, done = payload
                    for path in paths:
                        path.unlink(missing_ok=True)
                    for region in {p.parent for p in paths}:
                        fsync_dir(region)
                    done.set()
                elif kind == "barrier":
                    payload.set()
            except Exception:  # the journal stays; recovery at the next start repairs
                log.exception("blob materialization failed")
                if kind == "write":
                    self._materialized.append((float("inf"), [], []))

    # the flusher ----------------------------------------------------------------------
    def _flush_loop(self) -> None:
        store = Store(self.data_dir / "service.db")
        store.conn.execute("PRAGMA wal_autocheckpoint=0")
        try:
            while not self._stopping.wait(min(1.0, max(self.flush_delay / 2, 0.05))):
                try:
                    self.flush(self.flush_delay)
                    store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception:  # keep going; the journals stay until it works
                    log.exception("blob flush failed")
            self.flush(0.0)
            store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            store.close()

    def flush(self, older_than: float) -> int:
        """Make blob files materialized ``older_than`` seconds ago durable; drop their journals."""
        cutoff = time.time() - older_than
        journals: list[Path] = []
        files: list[Path] = []
        while self._materialized and self._materialized[0][0] <= cutoff:
            _, batch_journals, batch_files = self._materialized.popleft()
            journals.extend(batch_journals)
            files.extend(batch_files)
        if not journals:
            return 0
        directories = {p.parent for p in journals}
        for path in files:
            _fsync_file(path)  # a missing one was swept meanwhile
        for directory in directories:
            fsync_dir(directory)
        for path in journals:
            path.unlink(missing_ok=True)
        self.flushed += len(journals)
        return len(journals)
