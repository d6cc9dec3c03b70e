"""One append-only, timestamped event log with waits: the console's @tb events, QMP's events
and the scenario runner's records all keep theirs in an :class:`EventLog`.

A writer thread appends; readers wait for an item matching a predicate that was appended
at or after a position (``since``, an index from :meth:`EventLog.mark`), with a
:class:`~testbed.deadline.Deadline`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from testbed.deadline import Deadline

T = TypeVar("T")


class EventLogTimeout(TimeoutError):
    pass


class EventLog(Generic[T]):
    def __init__(self) -> None:
        self._items: list[T] = []
        self._cond = threading.Condition()
        self._closed = False
        self._listeners: list[Callable[[T], None]] = []

    def append(self, item: T) -> None:
        self.extend([item])

    def extend(self, items: list[T]) -> None:
        if not items:
            return
        with self._cond:
            self._items.extend(items)
            listeners = list(self._listeners)
            self._cond.notify_all()
        for item in items:
            for listener in listeners:
                listener(item)

    def subscribe(self, listener: Callable[[T], None]) -> None:
        """Call ``listener`` with every item appended from now on (in the writer's thread)."""
        with self._cond:
            self._listeners.append(listener)

    def wake(self) -> None:
        """Wake every waiter to check its ``abort`` (something happened that is not an item)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """No more items will come: wake every waiter."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def mark(self) -> int:
        """The position of the next item: pass it as ``since`` to see only what comes after."""
        with self._cond:
            return len(self._items)

    def snapshot(self, since: int = 0) -> list[T]:
        with self._cond:
            return self._items[since:]

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.snapshot())

    def __getitem__(self, index: int) -> T:
        with self._cond:
            return self._items[index]

    def wait_for(
        self,
        match: Callable[[T], bool],
        timeout: float | Deadline | None,
        since: int = 0,
        count: int = 1,
        what: str = "event",
        abort: Callable[[], BaseException | None] | None = None,
    ) -> list[T]:
        """The first ``count`` items from position ``since`` on that ``match``; waits for them.

        Raises :class:`EventLogTimeout` naming ``what`` when they do not come in time
        (or the log is closed before they do). ``abort`` is asked (under the log's lock)
        each time the items seen so far are not enough: an exception it returns is raised
        at once (a board that crashed or went away while waited on; see :meth:`wake`).
        """
        deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout)
        seen = since
        found: list[T] = []
        with self._cond:
            while True:
                while seen < len(self._items) and len(found) < count:
                    item = self._items[seen]
                    seen += 1
                    if match(item):
                        found.append(item)
                if len(found) >= count:
                    return found
                if abort is not None and (exc := abort()) is not None:
                    raise exc
                if deadline.expired or self._closed:
                    why = "the log was closed" if self._closed else f"within {deadline.timeout:g} s"
                    raise EventLogTimeout(f"{count - len(found)} of {count} {what} did not come ({why})")
                self._cond.wait(deadline.remaining_or(0.5))
