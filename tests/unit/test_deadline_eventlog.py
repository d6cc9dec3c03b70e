from __future__ import annotations

import threading
import time

import pytest

from testbed.deadline import Deadline
from testbed.eventlog import EventLog, EventLogTimeout


def test_deadline_counts_down_and_expires() -> None:
    d = Deadline(0.05)
    assert not d.expired and 0 < (d.remaining or 0) <= 0.05
    assert d.remaining_or(0.01) == pytest.approx(0.01)
    while d.sleep(0.01):
        pass
    assert d.expired and d.remaining == 0.0
    never = Deadline(None)
    assert never.remaining is None and not never.expired and never.remaining_or(0.3) == 0.3


def test_eventlog_waits_for_items_after_a_mark() -> None:
    log: EventLog[str] = EventLog()
    log.append("old-a")
    mark = log.mark()
    seen: list[str] = []
    log.subscribe(seen.append)
    threading.Timer(0.05, lambda: log.extend(["b", "a", "a"])).start()
    got = log.wait_for(lambda s: s.endswith("a"), timeout=5, since=mark, count=2)
    assert got == ["a", "a"]
    assert seen == ["b", "a", "a"]
    with pytest.raises(EventLogTimeout, match="1 of 1 thing did not come"):
        log.wait_for(lambda s: s == "zzz", timeout=0.05, what="thing")


def test_eventlog_close_wakes_waiters() -> None:
    log: EventLog[int] = EventLog()
    threading.Timer(0.05, log.close).start()
    t0 = time.monotonic()
    with pytest.raises(EventLogTimeout, match="closed"):
        log.wait_for(lambda _: True, timeout=10)
    assert time.monotonic() - t0 < 5
