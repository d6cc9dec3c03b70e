"""After the 201: the materializer writes each acknowledged blob as its own file, the flusher
makes those files durable later and drops the journals they came from.

The materializer thread writes ``blobs/<Region>/<id>.gz`` (temporary name, then
rename) a few milliseconds after the batch is answered. The flusher thread,
``flush_delay`` seconds later (35 s: by then the kernel has written the data
back and ext4 has committed the metadata, so each fsync is cheap), fsyncs those
files and their directories and deletes the journal files they came from; it
also runs the WAL checkpoints, off the writer's path. (``syncfs`` would be one
call, but it flushes everybody's dirty data on the filesystem and stalls the
writer's own fsyncs behind it.)
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from testbed.service.blobs import fsync_dir, fsync_file, write_file
from testbed.service.store import Store

log = logging.getLogger("testbed.service.ingest")


class BlobFiles:
    """The materializer and flusher threads of one ingest."""

    def __init__(self, db_path: Path, flush_delay: float) -> None:
        self.db_path = db_path
        self.flush_delay = flush_delay
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._materialized: collections.deque[tuple[float, list[Path], list[Path]]] = collections.deque()
        self._stopping = threading.Event()
        self._materializer = threading.Thread(target=self._materialize_loop, name="blob-materializer", daemon=True)
        self._flusher = threading.Thread(target=self._flush_loop, name="blob-flusher", daemon=True)
        self.flushed = 0

    def start(self) -> None:
        self._materializer.start()
        self._flusher.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._materializer.join(timeout=30)
        self._stopping.set()
        self._flusher.join(timeout=30)

    # what the writer hands over ---------------------------------------------------------
    def write(self, files: list[tuple[Path, Path, bytes]], journals: list[Path]) -> None:
        """Write each (temporary path, final path, bytes); the journals go once they are durable."""
        self._queue.put(("write", (files, journals)))

    def delete(self, paths: list[Path], timeout: float = 30.0) -> None:
        """Delete files after any queued write of them; returns when done."""
        done = threading.Event()
        self._queue.put(("delete", (paths, done)))
        done.wait(timeout)

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until every file handed over so far is written."""
        done = threading.Event()
        self._queue.put(("barrier", done))
        return done.wait(timeout)

    # the materializer -------------------------------------------------------------------
    def _materialize_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            kind, payload = item
            try:
                if kind == "write":
                    files, journals = payload
                    for tmp, final, data in files:
                        write_file(tmp, data)
                        os.rename(tmp, final)
                    self._materialized.append((time.time(), journals, [final for _, final, _ in files]))
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

    # the flusher ------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        store = Store(self.db_path)
        store.disable_autocheckpoint()
        try:
            while not self._stopping.wait(min(1.0, max(self.flush_delay / 2, 0.05))):
                try:
                    self.flush(self.flush_delay)
                    store.checkpoint()
                except Exception:  # keep going; the journals stay until it works
                    log.exception("blob flush failed")
            self.flush(0.0)
            store.checkpoint()
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
        for path in files:
            fsync_file(path)  # a missing one was swept meanwhile
        for directory in {p.parent for p in journals}:
            fsync_dir(directory)
        for path in journals:
            path.unlink(missing_ok=True)
        self.flushed += len(journals)
        return len(journals)
