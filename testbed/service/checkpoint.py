"""The WAL checkpointer: a thread that checkpoints the metadata database every second, so the
ingest writer's commits never do (its connection and the event loop's have auto-checkpoint
off)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from testbed.service.store import Store

log = logging.getLogger("testbed.service.ingest")

INTERVAL = 1.0


class Checkpointer:
    def __init__(self, db_path: Path, interval: float = INTERVAL) -> None:
        self.db_path = db_path
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        store = Store(self.db_path)
        store.disable_autocheckpoint()
        try:
            while not self._stopping.wait(self.interval):
                try:
                    store.checkpoint()
                except Exception:  # keep going: the WAL only grows meanwhile
                    log.exception("WAL checkpoint failed")
            store.checkpoint()
        finally:
            store.close()
