"""Durable ingest with group commit, the retention sweep, and orphan cleanup.

One writer thread owns every change to dump rows and blob files. It takes all
uploads pending at the moment it wakes up (a batch), and for the batch:

1. decides each upload against the database as it is now: consent of the
   device's group and the throttle count of the signature (counting the ones
   accepted earlier in the same batch), so exactly N dumps of a signature are
   ever stored, however many arrive at once;
2. writes each accepted blob to a temporary file in its region's directory
   and fsyncs them in parallel (a small thread pool; ext4 folds concurrent
   fsyncs into shared journal commits);
3. renames each temporary file to its final name, fsyncs each region
   directory touched once;
4. re-checks consent inside one ``BEGIN IMMEDIATE`` transaction, inserts all
   rows and commits once (one WAL fsync, ``synchronous=FULL``);
5. only then answers every request of the batch.

So a 201 always means blob and row are on disk, and the cost of the fsyncs is
shared by everything that arrived while the previous batch was being written.
A crash between 3 and 4 leaves blob files without rows: they are removed at
the next start (``remove_orphans``), as are temporary files.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.service.clock import Clock
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
    inflated_size: int
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

    kind: str  # "stored" | "throttled" | "optout" | "error"
    dump_id: str = ""
    region: str = ""
    detail: str = ""


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


def _write_durable(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


class Ingest:
    """The single writer of dump rows and blobs."""

    def __init__(
        self, data_dir: Path, clock: Clock, throttle_limit: int, retention: int = RETENTION_SECONDS
    ) -> None:
        self.data_dir = data_dir
        self.blob_root = data_dir / "blobs"
        self.clock = clock
        self.throttle_limit = throttle_limit
        self.retention = retention
        for region in REGIONS:
            (self.blob_root / region).mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[Upload | _Sweep | None] = queue.Queue()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync")
        self._store = Store(data_dir / "service.db")
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self.batches = 0
        self.stored = 0
        self.max_batch_seen = 0
        self.busy_seconds = 0.0

    # lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        self.remove_orphans()
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)
        self._store.close()

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
                if entry.name.startswith(TMP_PREFIX) or rel not in known:
                    entry.unlink(missing_ok=True)
                    removed += 1
            fsync_dir(directory)
        if removed:
            log.warning("removed %d orphaned blob files", removed)
        return removed

    # API for the event loop ------------------------------------------------------
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

    def _answer(self, upload: Upload, outcome: Outcome) -> None:
        loop, future = upload.loop, upload.future
        if loop is None or future is None:
            return

        def settle() -> None:
            if not future.done():
                future.set_result(outcome)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:  # loop closed: the client is gone
            pass

    def _consent(self, device_ids: set[str]) -> dict[str, Any]:
        conn = self._store.conn
        out: dict[str, Any] = {}
        for device_id in device_ids:
            out[device_id] = conn.execute(
                "SELECT d.group_id, d.tenant_id, g.allow_crash_dumps, g.boundary FROM devices d "
                "JOIN device_groups g ON g.id = d.group_id WHERE d.id = ?",
                (device_id,),
            ).fetchone()
        return out

    def _ingest(self, batch: list[Upload]) -> None:
        self.batches += 1
        self.max_batch_seen = max(self.max_batch_seen, len(batch))
        store = self._store
        outcomes: dict[str, Outcome] = {}
        accepted: list[Upload] = []
        try:
            consent = self._consent({u.device_id for u in batch})
            counts: dict[tuple[str, str], int] = {}
            for u in batch:
                row = consent.get(u.device_id)
                if row is None or not row["allow_crash_dumps"] or row["tenant_id"] != u.tenant_id:
                    outcomes[u.dump_id] = Outcome("optout")
                    continue
                key = (u.tenant_id, u.signature)
                if key not in counts:
                    counts[key] = store.signature_count(u.tenant_id, u.signature)
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

            # blobs: write + fsync in parallel, then rename and fsync each directory once
            list(self._pool.map(lambda u: _write_durable(u.tmp_path, u.body), accepted))
            for u in accepted:
                os.rename(u.tmp_path, u.final_path)  # type: ignore[arg-type]
            for region in {u.region for u in accepted}:
                fsync_dir(self.blob_root / region)

            # rows: one transaction, consent re-checked under the write lock
            now = self.clock.now_int()
            store.conn.execute("BEGIN IMMEDIATE")
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
                store.conn.execute("COMMIT")
            except BaseException:
                store.conn.execute("ROLLBACK")
                raise
            for u in accepted:
                if u.dump_id in outcomes:  # refused at the re-check: its blob goes
                    u.final_path.unlink(missing_ok=True)  # type: ignore[union-attr]
                else:
                    outcomes[u.dump_id] = Outcome("stored", u.dump_id, u.region)
                    self.stored += 1
        except Exception as exc:  # disk full, I/O error: nothing of this batch is kept
            log.exception("ingest batch failed")
            for u in accepted:
                for path in (u.tmp_path, u.final_path):
                    if path is not None:
                        path.unlink(missing_ok=True)
            for u in batch:
                if u.dump_id not in outcomes or outcomes[u.dump_id].kind == "stored":
                    outcomes[u.dump_id] = Outcome("error", detail=f"{type(exc).__name__}: {exc}")
        for u in batch:
            self._answer(u, outcomes[u.dump_id])

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
        regions = set()
        for r in rows:
            (self.blob_root / r["blob"]).unlink(missing_ok=True)
            regions.add(r["blob"].split("/", 1)[0])
        for region in regions:
            fsync_dir(self.blob_root / region)
        log.info("retention: removed %d dumps older than %d", len(rows), cutoff)
        return len(rows)
