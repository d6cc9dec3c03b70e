"""Durable ingest with group commit: the single writer of dump rows and blobs.

One writer thread owns every change to dump rows. It takes all uploads
pending at the moment it wakes up (a batch), and for the batch:

1. checks each body (capped gzip inflate, whole ELF core: :mod:`.checks`);
2. decides each upload against the database as it is now: consent of the
   device's group and the throttle count of the signature (counting the ones
   accepted earlier in the same batch), so exactly N dumps of a signature are
   ever stored, however many arrive at once;
3. appends the accepted blobs of each region to one journal file in that
   region's store (:mod:`.journal`) and fsyncs it: one fsync per region per
   batch, not per upload;
4. in one ``BEGIN IMMEDIATE`` transaction re-checks consent, inserts every
   dump row and commits (one WAL fsync, ``synchronous=FULL``);
5. answers every request of the batch (one wake-up of the event loop).

Then :mod:`.materialize` writes each blob as its own file and later makes it
durable and drops the journals; at start :func:`.journal.recover` repairs what
a crash left. Every SQL statement is the store's (:mod:`.store_dumps`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from testbed.contract.device_api import RETENTION_SECONDS, SkipReason
from testbed.service.blobs import REGIONS, BlobStore, write_durable
from testbed.service.checks import check_core
from testbed.service.clock import Clock
from testbed.service.errors import ApiError
from testbed.service.journal import (
    JOURNAL_PREFIX,
    JOURNAL_SUFFIX,
    journal_name,
    journal_record,
    leftover_journals,
    read_journal,
    recover,
    remove_orphans,
)
from testbed.service.materialize import BlobFiles
from testbed.service.store import Store

__all__ = [
    "JOURNAL_PREFIX",
    "JOURNAL_SUFFIX",
    "MAX_BATCH",
    "REGIONS",
    "RETENTION_SECONDS",
    "Ingest",
    "Kind",
    "Outcome",
    "Upload",
    "journal_record",
    "read_journal",
    "region_for",
]

log = logging.getLogger("testbed.service.ingest")

MAX_BATCH = 256


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
    future: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    # filled by the writer
    dump_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    region: str = ""
    group_id: str = ""


class Kind(StrEnum):
    """What became of an upload (compares equal to its value)."""

    STORED = "stored"
    THROTTLED = SkipReason.THROTTLED.value
    OPTOUT = SkipReason.OPTOUT.value
    INVALID = "invalid"  # not a whole gzip'd ELF core, or inflates past the cap
    ERROR = "error"  # the batch could not be made durable


@dataclass
class Outcome:
    """What the writer answers for an upload."""

    kind: Kind
    dump_id: str = ""
    region: str = ""
    detail: str = ""
    #: for "invalid": the 400/413 to answer (not a gzip'd ELF core, or inflates past the cap)
    error: ApiError | None = None


class _Sweep:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.removed = 0


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
        machines: tuple[str, ...] = ("arm",),
    ) -> None:
        self.data_dir = data_dir
        self.blobs = BlobStore(data_dir / "blobs")
        self.clock = clock
        self.throttle_limit = throttle_limit
        #: when set, the writer checks each body (capped gzip inflate, whole ELF core) before
        #: deciding on it: zlib(-ng) releases the GIL while it inflates, so the event loop
        #: keeps serving meanwhile, and the hand-off to the writer is one the upload makes anyway
        self.max_inflated = max_inflated
        self.machines = machines
        self.retention = retention
        self.blobs.make_dirs()
        self._queue: queue.Queue[Upload | _Sweep | None] = queue.Queue()
        self._store = Store(data_dir / "service.db")
        self._store.disable_autocheckpoint()  # the flusher checkpoints
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self.files = BlobFiles(data_dir / "service.db", flush_delay)
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="journal")
        self._journal_seq = itertools.count(int(time.time() * 1000))
        self.batches = 0
        self.stored = 0
        self.max_batch_seen = 0
        self.busy_seconds = 0.0
        #: Bumped after every change to dump rows (commit or sweep): readers cache by it.
        self.version = 0
        self.lock_wait_seconds = 0.0
        self.commit_seconds = 0.0
        #: journal files found at start (left by a crash; none after a clean stop)
        self.journals_at_start = 0
        #: (tenant, signature) pairs with at least ``throttle_limit`` stored dumps. Only the
        #: writer changes it (after each commit and sweep); the event loop reads it to skip a
        #: throttled upload before reading its body, instead of a SQLite count per request.
        #: The writer's own per-batch count stays the authority (exactly N per signature).
        self.throttled: frozenset[tuple[str, str]] = frozenset()

    @property
    def flushed(self) -> int:
        return self.files.flushed

    # lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        self.journals_at_start = len(leftover_journals(self.blobs))
        self.recover()
        self.remove_orphans()
        self._load_throttled()
        self._thread.start()
        self.files.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self.files.stop()
        self._pool.shutdown(wait=True)
        self._store.close()

    def recover(self) -> int:
        return recover(self._store, self.blobs)

    def remove_orphans(self) -> int:
        return remove_orphans(self._store, self.blobs)

    def wait_materialized(self, timeout: float = 10.0) -> bool:
        """Block until every blob acknowledged so far exists as its file."""
        return self.files.wait(timeout)

    def _load_throttled(self) -> None:
        self.throttled = self._store.throttled_pairs(self.throttle_limit)

    # API for the event loop ------------------------------------------------------
    def is_throttled(self, tenant_id: str, signature: str) -> bool:
        """Whether the signature has its N dumps stored (as of the last commit); no I/O."""
        return (tenant_id, signature) in self.throttled

    async def submit(self, upload: Upload) -> Outcome:
        loop = asyncio.get_running_loop()
        upload.loop = loop
        upload.future = loop.create_future()
        self._queue.put(upload)
        return await upload.future

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

    def _check_bodies(self, batch: list[Upload], outcomes: dict[str, Outcome]) -> list[Upload]:
        if self.max_inflated is None:
            return batch
        valid: list[Upload] = []
        for u in batch:
            try:
                u.inflated_size = check_core(u.body, self.max_inflated, self.machines)
            except ApiError as exc:
                outcomes[u.dump_id] = Outcome(Kind.INVALID, error=exc)
                continue
            valid.append(u)
        return valid

    def _decide(self, valid: list[Upload], outcomes: dict[str, Outcome]) -> tuple[list[Upload], dict[tuple[str, str], int]]:
        """Consent and throttling against the database as it is; returns the accepted uploads
        and the stored count of each signature before this batch."""
        store = self._store
        consent = store.consent({u.device_id for u in valid})
        counts = store.signature_counts({(u.tenant_id, u.signature) for u in valid})
        stored_before = dict(counts)
        accepted: list[Upload] = []
        for u in valid:
            row = consent.get(u.device_id)
            if row is None or not row["allow_crash_dumps"] or row["tenant_id"] != u.tenant_id:
                outcomes[u.dump_id] = Outcome(Kind.OPTOUT)
                continue
            key = (u.tenant_id, u.signature)
            if counts[key] >= self.throttle_limit:
                outcomes[u.dump_id] = Outcome(Kind.THROTTLED)
                continue
            counts[key] += 1
            u.group_id = row["group_id"]
            u.region = region_for(row["boundary"], u.device_id)
            accepted.append(u)
        return accepted, stored_before

    def _row(self, u: Upload, now: int) -> tuple[Any, ...]:
        return (
            u.dump_id, u.tenant_id, u.device_id, u.group_id, u.signature, u.region,
            self.blobs.name(u.region, u.dump_id), len(u.body), u.inflated_size,
            u.component_class, u.component_name, u.crash_time, now,
            None, hashlib.sha256(u.body).hexdigest(),
        )  # fmt: skip

    def _ingest(self, batch: list[Upload]) -> None:
        self.batches += 1
        self.max_batch_seen = max(self.max_batch_seen, len(batch))
        store = self._store
        outcomes: dict[str, Outcome] = {}
        journals: list[Path] = []
        valid = self._check_bodies(batch, outcomes)
        try:
            accepted, stored_before = self._decide(valid, outcomes)

            # blobs: one journal file per region, written and fsynced in parallel with the
            # row commit below; the batch is answered only when all of them are durable.
            pending_journals = []
            for region in sorted({u.region for u in accepted}):
                path = self.blobs.region_dir(region) / journal_name(next(self._journal_seq))
                records = b"".join(journal_record(u.dump_id, u.body) for u in accepted if u.region == region)
                journals.append(path)
                pending_journals.append(self._pool.submit(write_durable, path, records))

            # rows: one transaction, consent re-checked under the write lock
            now = self.clock.now_int()
            t_lock = time.perf_counter()
            store.begin()
            self.lock_wait_seconds += time.perf_counter() - t_lock
            try:
                consent = store.consent({u.device_id for u in accepted})
                kept: list[Upload] = []
                for u in accepted:
                    row = consent.get(u.device_id)
                    if row is None or not row["allow_crash_dumps"]:
                        outcomes[u.dump_id] = Outcome(Kind.OPTOUT)
                        continue
                    kept.append(u)
                store.insert_dumps([self._row(u, now) for u in kept])
                t_commit = time.perf_counter()
                store.commit()
                self.commit_seconds += time.perf_counter() - t_commit
            except BaseException:
                store.rollback()
                for future in pending_journals:
                    future.exception()  # wait, so the cleanup below sees every file
                raise
            try:
                for future in pending_journals:
                    future.result()
            except BaseException:
                # Rows committed but a journal is not durable: take the rows back
                # (never acknowledged), then report the batch failed.
                store.begin()
                store.delete_dumps(u.dump_id for u in kept)
                store.commit()
                raise
            full: set[tuple[str, str]] = set()
            for u in kept:
                outcomes[u.dump_id] = Outcome(Kind.STORED, u.dump_id, u.region)
                self.stored += 1
                key = (u.tenant_id, u.signature)
                stored_before[key] += 1
                if stored_before[key] >= self.throttle_limit:
                    full.add(key)
            if full - self.throttled:
                # a new set object, swapped in one assignment: readers never see it half-built
                self.throttled = self.throttled | full
            self.version += 1
            files = [
                (self.blobs.tmp_path(u.region, u.dump_id), self.blobs.final_path(u.region, u.dump_id), u.body)
                for u in kept
            ]
            self.files.write(files, journals)
        except Exception as exc:  # disk full, I/O error: nothing of this batch is kept
            log.exception("ingest batch failed")
            self.version += 1
            for path in journals:
                path.unlink(missing_ok=True)
            for u in batch:
                if u.dump_id not in outcomes or outcomes[u.dump_id].kind == Kind.STORED:
                    outcomes[u.dump_id] = Outcome(Kind.ERROR, detail=f"{type(exc).__name__}: {exc}")
        self._answer_all(batch, outcomes)

    def _sweep(self) -> int:
        """Delete dumps older than the retention period: rows first, then their blobs."""
        cutoff = self.clock.now_int() - self.retention
        store = self._store
        rows = store.expired(cutoff)
        if not rows:
            return 0
        store.begin()
        try:
            store.delete_dumps(r["id"] for r in rows)
            store.commit()
        except BaseException:
            store.rollback()
            raise
        self.version += 1
        self._load_throttled()
        # The materializer deletes the files, after any write of them still queued.
        self.files.delete([self.blobs.path(r["blob"]) for r in rows])
        log.info("retention: removed %d dumps older than %d", len(rows), cutoff)
        return len(rows)
