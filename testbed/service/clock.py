"""The service's injectable clock: real time plus an offset the control API can move."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Clock:
    """Wall-clock seconds since the epoch, shifted by ``offset``.

    Listeners are called (from the caller's thread) whenever the clock is moved,
    so the retention sweeper can run at once after a warp.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = float(offset)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @property
    def offset(self) -> float:
        return self._offset

    def now(self) -> float:
        return time.time() + self._offset

    def now_int(self) -> int:
        return int(self.now())

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += float(seconds)
        self._changed()
        return self.now()

    def set(self, epoch: float) -> float:
        with self._lock:
            self._offset = float(epoch) - time.time()
        self._changed()
        return self.now()

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
        self._changed()

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()
