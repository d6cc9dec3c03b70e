"""Waiting for the boards' events: every wait of a run goes through the boards' event logs.

A ``wait`` step counts events since the start of the run of actions before it; an outcome
(upload-ok, upload-fail, dump-skipped) or a restart counts only when it belongs to a crash
of that run, so a late restart of an earlier crash is not taken for the new one's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from testbed.deadline import Deadline
from testbed.eventlog import EventLog, EventLogTimeout
from testbed.scenario.model import format_duration
from testbed.scenario.results import BoardEvent
from testbed.scenario.steps import StepFailed
from testbed.scenario.timeline import OUTCOMES, RESTARTS, crash_episodes


class BoardWaits:
    """The run's event logs (board -> EventLog of the board's events) and the waits on them."""

    def __init__(self, t0: Callable[[], float]) -> None:
        self.logs: dict[str, EventLog[Any]] = {}
        self.kernel_crash: dict[str, Callable[[], Any]] = {}
        self._t0 = t0
        self.action_mark: dict[str, int] = {}  # board -> log position where the current run of actions began
        self.action_mark_t = 0.0  # ... and its scenario time

    def add(self, board: str, log: EventLog[Any], kernel_crash: Callable[[], Any]) -> None:
        self.logs[board] = log
        self.kernel_crash[board] = kernel_crash

    def event(self, e: Any) -> BoardEvent:
        return BoardEvent(e.name, dict(e.fields), e.monotonic - self._t0(), e.wall)

    def events(self, board: str) -> list[BoardEvent]:
        log = self.logs.get(board)
        return [self.event(e) for e in log.snapshot()] if log is not None else []

    def mark(self, board: str) -> int:
        return self.logs[board].mark()

    def start_actions(self, now: float) -> None:
        self.action_mark = {b: log.mark() for b, log in self.logs.items()}
        self.action_mark_t = now

    def _crashed(self, board: str) -> str:
        crash = self.kernel_crash[board]()
        return f"; the kernel crashed: {crash}" if crash is not None else ""

    def wait_any(self, board: str, names: tuple[str, ...], since: int, timeout: float) -> Any:
        try:
            return self.logs[board].wait_for(lambda e: e.name in names, timeout, since=since)[0]
        except EventLogTimeout:
            raise StepFailed(f"{board}: no {' or '.join(names)} within {format_duration(timeout)}"
                             f"{self._crashed(board)}") from None  # fmt: skip

    def wait_events(self, board: str, event: str, where: dict[str, str] | None, count: int, timeout: float) -> None:
        log = self.logs[board]
        baseline = self.action_mark.get(board, 0)
        where = where or {}
        if event in (*OUTCOMES, *RESTARTS) and where.get("spooled") != "1":
            match = self._of_this_run(log.snapshot()[:baseline], event, where)
        else:
            match = lambda e: e.name == event and all(e.fields.get(k) == v for k, v in where.items())  # noqa: E731
        try:
            log.wait_for(match, Deadline(timeout), since=baseline, count=count, what=event)
        except EventLogTimeout:
            got = ", ".join(e.name + (f"({e.fields['reason']})" if e.fields.get("reason") else "")
                            for e in log.snapshot(baseline)[-8:]) or "none"  # fmt: skip
            raise StepFailed(f"{board}: {count} new {event}{' ' + str(where) if where else ''} did not come within "
                             f"{format_duration(timeout)} (events since the previous step: {got})"
                             f"{self._crashed(board)}") from None  # fmt: skip

    def _of_this_run(self, before: list[Any], event: str, where: dict[str, str]) -> Callable[[Any], bool]:
        """A matcher fed the events in order: true for the event that completes one more crash
        episode of this run whose outcome (or restart) is ``event``."""
        seen = [self.event(e) for e in before]
        done = [self._belonging(seen, event, where)]

        def match(e: Any) -> bool:
            seen.append(self.event(e))
            n = self._belonging(seen, event, where)
            hit, done[0] = n > done[0], n
            return hit

        return match

    def _belonging(self, events: list[BoardEvent], event: str, where: dict[str, str]) -> int:
        n = 0
        for ep in crash_episodes(events):
            got = ep.restart if event in RESTARTS else ep.outcome
            if ep.crash.t >= self.action_mark_t and got is not None and got.name == event and all(
                got.fields.get(k) == v for k, v in where.items()
            ):
                n += 1
        return n

    def settle(self, boards: list[str], limit: float) -> None:
        """Wait (bounded) until every crash seen since the start has its restart and its outcome
        (the reporter may print its upload-fail a moment after the app manager's deadline restart)."""
        deadline = Deadline(limit)
        lacks: tuple[tuple[tuple[str, ...], Callable[[Any], bool]], ...] = (
            (RESTARTS, lambda ep: ep.restart is None),
            (OUTCOMES, lambda ep: ep.outcome is None),
        )
        for b in boards:
            for names, missing in lacks:
                mark = self.mark(b)
                pending = sum(1 for ep in crash_episodes(self.events(b)) if ep.crash.t >= 0 and missing(ep))
                if pending:
                    try:
                        self.logs[b].wait_for(_named(names), deadline, since=mark, count=pending)
                    except EventLogTimeout:
                        pass  # the expectations say what is missing


def _named(names: tuple[str, ...]) -> Callable[[Any], bool]:
    """A predicate: an event whose name is one of ``names``."""
    wanted = frozenset(names)
    return lambda e: e.name in wanted
