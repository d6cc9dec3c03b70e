"""Durable ingest with group commit: the single writer of dump rows and blobs.

One writer thread owns every change to dump rows. It takes all uploads
pending at the moment it wakes up (a batch), and for the batch:

1. checks each body (capped gzip inflate, whole ELF core: :mod:`.checks`);
2. decides each upload against the database as it is now: consent of the
   device's group and the throttle count of the signature (counting the ones
   accepted earlier in the same batch), so exactly N dumps of a signature are
   ever stored, however many arrive at once;
3. appends the accepted blobs of each region to that region's active segment
   (:mod:`.segments`: one write and one ``fdatasync`` per region per batch);
4. in one ``BEGIN IMMEDIATE`` transaction re-checks consent, inserts every
   dump row (with its segment and offset) and commits (one WAL fsync,
   ``synchronous=FULL``), in parallel with step 3;
5. answers every request of the batch (one wake-up of the event loop).

At start :func:`.recovery.recover` repairs what a crash left. Every SQL
statement is the store's (:mod:`.store_dumps`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from testbed.contract.device_api import RETENTION_SECONDS
from testbed.service.batch import answer_repeats, decide
from testbed.service.checkpoint import Checkpointer
from testbed.service.checks import check_core
from testbed.service.clock import Clock
from testbed.service.errors import ApiError
from testbed.service.recovery import Recovered, recover
from testbed.service.segments import REGIONS, Placement, SegmentStore, record
from testbed.service.store import Store
from testbed.service.uploads import Kind, Outcome, Upload, region_for

__all__ = [
    "MAX_BATCH",
    "REGIONS",
    "RETENTION_SECONDS",
    "Ingest",
    "Kind",
    "Outcome",
    "Upload",
    "region_for",
]

log = logging.getLogger("testbed.service.ingest")

MAX_BATCH = 256


class _Barrier:
    """Passes the writer after the batch it arrives with."""

    def __init__(self) -> None:
        self.done = threading.Event()


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
        max_inflated: int | None = None,
        machines: tuple[str, ...] = ("arm",),
    ) -> None:
        self.data_dir = data_dir
        self.segments = SegmentStore(data_dir / "blobs")
        self.clock = clock
        self.throttle_limit = throttle_limit
        #: when set, the writer checks each body (capped gzip inflate, whole ELF core) before
        #: deciding on it: zlib(-ng) releases the GIL while it inflates, so the event loop
        #: keeps serving meanwhile, and the hand-off to the writer is one the upload makes anyway
        self.max_inflated = max_inflated
        self.machines = machines
        self.retention = retention
        self.segments.make_dirs()
        self._queue: queue.Queue[Upload | _Sweep | _Barrier | None] = queue.Queue()
        self._store = Store(data_dir / "service.db")
        self._store.disable_autocheckpoint()  # the checkpointer checkpoints
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self.checkpointer = Checkpointer(data_dir / "service.db")
        self._pool = ThreadPoolExecutor(max_workers=len(REGIONS), thread_name_prefix="segment")
        self.batches = 0
        self.stored = 0
        self.max_batch_seen = 0
        self.busy_seconds = 0.0
        #: Bumped after every change to dump rows (commit or sweep): readers cache by it.
        self.version = 0
        self.lock_wait_seconds = 0.0
        self.commit_seconds = 0.0
        #: uploads answered with the first answer of their upload id
        self.repeats = 0
        #: what recovery repaired at start (nothing after a clean stop)
        self.recovered = Recovered()
        self.segments_dropped = 0
        #: (tenant, signature) pairs with at least ``throttle_limit`` stored dumps. Only the
        #: writer changes it (after each commit and sweep); the event loop reads it to skip a
        #: throttled upload before reading its body, instead of a SQLite count per request.
        #: The writer's own per-batch count stays the authority (exactly N per signature).
        self.throttled: frozenset[tuple[str, str]] = frozenset()

    # lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        self.recovered = recover(self._store, self.segments)
        self._load_throttled()
        self._thread.start()
        self.checkpointer.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self.checkpointer.stop()
        self._pool.shutdown(wait=True)
        self.segments.close()
        self._store.close()

    def wait_written(self, timeout: float = 10.0) -> bool:
        """Block until the writer has finished the uploads handed to it so far."""
        if not self._thread.is_alive():
            return True
        barrier = _Barrier()
        self._queue.put(barrier)
        return barrier.done.wait(timeout)

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
            barriers: list[_Barrier] = []
            stop = False
            item: Upload | _Sweep | _Barrier | None = first
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Sweep):
                    sweeps.append(item)
                elif isinstance(item, _Barrier):
                    barriers.append(item)
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
            for barrier in barriers:
                barrier.done.set()
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

    @staticmethod
    def _row(u: Upload, now: int, where: tuple[str, int]) -> tuple[Any, ...]:
        return (
            u.dump_id, u.tenant_id, u.device_id, u.group_id, u.signature, u.region,
            where[0], where[1], len(u.body), u.inflated_size,
            u.component_class, u.component_name, u.crash_time, now,
            u.upload_id, hashlib.sha256(u.body).hexdigest(),
        )  # fmt: skip

    def _place(self, accepted: list[Upload], now: int, placements: list[Placement]) -> dict[str, tuple[str, int]]:
        """Room in each region's active segment for the batch's records: appends what to
        write to ``placements`` (also when it fails midway, so the caller can undo) and
        returns each dump's (segment, offset)."""
        where: dict[str, tuple[str, int]] = {}
        for region in sorted({u.region for u in accepted}):
            ups = [u for u in accepted if u.region == region]
            placement, offsets = self.segments.place(region, [record(u.dump_id, u.body) for u in ups], now)
            placements.append(placement)
            for u, offset in zip(ups, offsets, strict=True):
                where[u.dump_id] = (placement.segment.name, offset)
        return where

    def _ingest(self, batch: list[Upload]) -> None:
        self.batches += 1
        self.max_batch_seen = max(self.max_batch_seen, len(batch))
        store = self._store
        outcomes: dict[str, Outcome] = {}
        placements: list[Placement] = []
        valid = self._check_bodies(batch, outcomes)
        try:
            decision = decide(store, valid, outcomes, self.throttle_limit)
            accepted, stored_before = decision.accepted, decision.stored_before
            now = self.clock.now_int()

            # blobs: each region's records appended to its segment and synced, in parallel
            # with the row commit below; the batch is answered only when all are durable.
            where = self._place(accepted, now, placements)
            pending = [self._pool.submit(p.segment.write_durable, p.offset, p.payload) for p in placements]

            # rows: one transaction, consent re-checked under the write lock
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
                store.insert_dumps([self._row(u, now, where[u.dump_id]) for u in kept])
                t_commit = time.perf_counter()
                store.commit()
                self.commit_seconds += time.perf_counter() - t_commit
            except BaseException:
                store.rollback()
                for future in pending:
                    future.exception()  # wait, so the undo below cuts after every write
                raise
            errors = [e for e in (future.exception() for future in pending) if e is not None]
            if errors:
                # Rows committed but a segment write is not durable: take the rows back
                # (never acknowledged), then report the batch failed.
                store.begin()
                store.delete_dumps(u.dump_id for u in kept)
                store.commit()
                raise errors[0]
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
            answer_repeats(decision, outcomes)
            self.repeats += sum(1 for u in valid if outcomes[u.dump_id].repeat)
            self.version += 1
        except Exception as exc:  # disk full, I/O error: nothing of this batch is kept
            log.exception("ingest batch failed")
            self.version += 1
            self._undo(placements)
            for u in batch:
                outcome = outcomes.get(u.dump_id)
                if outcome is None or (outcome.kind == Kind.STORED and not outcome.repeat):
                    outcomes[u.dump_id] = Outcome(Kind.ERROR, detail=f"{type(exc).__name__}: {exc}")
        self._answer_all(batch, outcomes)

    def _undo(self, placements: list[Placement]) -> None:
        """Cut the segments back to before a failed batch (its records are no one's)."""
        for p in placements:
            try:
                p.segment.undo(p.offset)
            except OSError:  # recovery at the next start cuts the tail instead
                log.exception("cannot cut segment %s back", p.segment.name)
                self.segments.close_active(p.segment.name.split("/", 1)[0])

    def _sweep(self) -> int:
        """Delete dumps older than the retention period: rows first, then every segment no
        row refers to any more."""
        now = self.clock.now_int()
        cutoff = now - self.retention
        store = self._store
        expired = store.expired(cutoff)
        self.segments.retire_old(now)
        if not expired:
            return 0
        store.begin()
        try:
            store.delete_dumps(expired)
            store.commit()
        except BaseException:
            store.rollback()
            raise
        self.version += 1
        self._load_throttled()
        dropped = self.segments.drop_unreferenced(store.referenced_segments())
        self.segments_dropped += dropped
        log.info("retention: removed %d dumps older than %d, %d segments", len(expired), cutoff, dropped)
        return len(expired)
