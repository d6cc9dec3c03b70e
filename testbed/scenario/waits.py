"""Waiting for the boards' events: every wait of a run goes through the boards' event logs.

A ``wait`` step counts events since the start of the run of actions before it; an outcome
(upload-ok, upload-fail, dump-skipped) or a restart counts only when it belongs to a crash
of that run, so a late restart of an earlier crash is not taken for the new one's. A spool
retry's outcome (``spooled=1``) counts when the crash whose dump it carries happened in this
scenario (any step before): the crash was cut off, the retry follows a later sync. A retry of
a dump from before the scenario (a snapshot's, an earlier scenario's) never counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from testbed.contract.events import EventKey, EventName
from testbed.deadline import Deadline
from testbed.eventlog import EventLog, EventLogTimeout
from testbed.scenario.model import format_duration
from testbed.scenario.results import BoardEvent
from testbed.scenario.spooled import spool_retries, still_spooled
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
        if event in (*OUTCOMES, *RESTARTS):
            match = self._of_this_run(log.snapshot()[:baseline], event, where)
        else:
            match = lambda e: e.name == event and _fits(e.fields, where)  # noqa: E731
        try:
            log.wait_for(match, Deadline(timeout), since=baseline, count=count, what=event)
        except EventLogTimeout:
            raise StepFailed(self._not_come(board, event, where, count, timeout, baseline)) from None

    def _of_this_run(self, before: list[Any], event: str, where: dict[str, str]) -> Callable[[Any], bool]:
        """A matcher fed the events in order: true for each event that makes one more outcome (or
        restart) called ``event`` count for this wait (see :meth:`_counted`)."""
        seen = [self.event(e) for e in before]
        done = [len(self._counted(seen, event, where))]

        def match(e: Any) -> bool:
            seen.append(self.event(e))
            n = len(self._counted(seen, event, where))
            hit, done[0] = n > done[0], n
            return hit

        return match

    def _counted(self, events: list[BoardEvent], event: str, where: dict[str, str]) -> set[int]:
        """Positions in ``events`` of the outcomes (or restarts) called ``event`` that count: the
        outcome or restart of a crash of this run of actions, and a spool retry's outcome of a dump
        whose crash happened in this scenario (its first outcome was an upload-fail)."""
        pos = {id(e): i for i, e in enumerate(events)}
        episodes = crash_episodes(events)
        out: set[int] = set()
        for ep in episodes:
            got = ep.restart if event in RESTARTS else ep.outcome
            if ep.crash.t >= self.action_mark_t and got is not None and got.name == event and _fits(got.fields, where):
                out.add(pos[id(got)])
        if event in OUTCOMES:
            for retry in spool_retries(events, episodes):
                crash = retry.episode.crash if retry.episode is not None else None
                if crash is not None and crash.t >= 0 and retry.event.name == event and _fits(retry.event.fields, where):
                    out.add(pos[id(retry.event)])
        return out

    def _not_come(self, board: str, event: str, where: dict[str, str], count: int, timeout: float,
                  baseline: int) -> str:  # fmt: skip
        """The message of a wait that timed out: what came, what was seen and why it did not count,
        and what to write instead where there is a way."""
        events = self.events(board)
        since = events[baseline:]
        wanted = f"{event}{' ' + _where_text(where) if where else ''}"
        notes: list[str] = []
        came = 0
        if event in (*OUTCOMES, *RESTARTS):
            counted = self._counted(events, event, where)
            came = sum(1 for i in counted if i >= baseline)
            notes = self._why_not_counted(events, baseline, counted, event, where)
        else:
            came = sum(1 for e in since if e.name == event and _fits(e.fields, where))
            notes = [f"{_label(e)}: {_mismatch(e.fields, where)}" for e in since
                     if e.name == event and not _fits(e.fields, where)]  # fmt: skip
        got = ", ".join(_label(e) for e in since[-8:]) or "none"
        text = f"{board}: {count} new {wanted} did not come within {format_duration(timeout)}: {came} came"
        if notes:
            text += "; seen but not counted: " + "; ".join(notes)
        hint = self._hint(events, event)
        if hint:
            text += f"; {hint}"
        early = [_label(e) for e in events[:baseline] if e.name == event and e.t >= 0 and _fits(e.fields, where)]
        if early:
            text += (f"; before this wait's actions began came {', '.join(early[-2:])}: a wait counts only what "
                     "comes after the actions just before it")  # fmt: skip
        return (f"{text} (events since this wait's actions began at {self.action_mark_t:.1f}s: {got})"
                f"{self._crashed(board)}")  # fmt: skip

    def _why_not_counted(self, events: list[BoardEvent], baseline: int, counted: set[int], event: str,
                         where: dict[str, str]) -> list[str]:  # fmt: skip
        episodes = crash_episodes(events)
        slot = "restart" if event in RESTARTS else "outcome"
        owner = {id(getattr(ep, slot)): ep for ep in episodes if getattr(ep, slot) is not None}
        retries = {id(r.event): r for r in spool_retries(events, episodes)}
        notes: list[str] = []
        for i, e in enumerate(events[baseline:], start=baseline):
            if e.name != event or i in counted:
                continue
            label = _label(e)
            if not _fits(e.fields, where):
                notes.append(f"{label}: {_mismatch(e.fields, where)}")
            elif id(e) in retries:
                ep = retries[id(e)].episode
                if ep is None:
                    notes.append(f"{label}: a retry from the spool of a dump whose crash is not in this scenario "
                                 "(spooled before it began); it does not count for this scenario")  # fmt: skip
                else:
                    notes.append(f"{label}: a retry from the spool of the crash at {ep.crash.t:.1f}s, before this "
                                 "scenario began; it does not count for this scenario")  # fmt: skip
            elif id(e) in owner:
                crash = owner[id(e)].crash
                notes.append(f"{label}: the {slot} of the crash at {crash.t:.1f}s, before this wait's actions began "
                             f"(at {self.action_mark_t:.1f}s); a wait counts the crashes of the actions just before "
                             "it: wait for it before the next action, or check it with an expectation "
                             f"(`events: {{event: {event}}}`)")  # fmt: skip
            else:
                notes.append(f"{label}: belongs to no crash this board printed")
        return notes

    def _hint(self, events: list[BoardEvent], event: str) -> str:
        """For a wait on upload-ok: crashes of this scenario whose dump waits in the spool for a sync."""
        if event != EventName.UPLOAD_OK:
            return ""
        waiting = [ep for ep in still_spooled(events) if ep.crash.t >= 0]
        if not waiting:
            return ""
        last_fail = max(ep.outcome.t for ep in waiting if ep.outcome is not None)
        synced = any(e.name == EventName.SYNC_OK and e.t > last_fail for e in events)
        crashes = ", ".join(f"{ep.crash.t:.1f}s ({_label(ep.outcome)})" for ep in waiting if ep.outcome is not None)
        text = f"the dump of the crash(es) at {crashes} may wait in the board's spool"
        if synced:
            return text + " (a sync succeeded since, and no retry stored it)"
        return text + ": it is sent after the next successful sync; put a `sync:` step (with the link up) before this wait"

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


def _fits(fields: dict[str, str], where: dict[str, str]) -> bool:
    return all(fields.get(k) == v for k, v in where.items())


def _where_text(where: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in where.items())


def _mismatch(fields: dict[str, str], where: dict[str, str]) -> str:
    """Why an event's fields do not fit ``where``: ``has reason=connect, the wait asks reason=timeout``."""
    parts = [f"{k}={fields[k]}" if k in fields else f"no {k}" for k, v in where.items() if fields.get(k) != v]
    return f"has {', '.join(parts)}; the wait asks {_where_text(where)}"


def _label(e: BoardEvent) -> str:
    """An event as the messages show it: ``upload-fail(connect) at 3.2s``, ``upload-ok(spooled) at 9.1s``."""
    tags = [e.fields["reason"]] if e.fields.get("reason") else []
    if e.fields.get(EventKey.SPOOLED) == "1":
        tags.append("spooled")
    return f"{e.name}{'(' + ', '.join(tags) + ')' if tags else ''} at {e.t:.1f}s"


def _named(names: tuple[str, ...]) -> Callable[[Any], bool]:
    """A predicate: an event whose name is one of ``names``."""
    wanted = frozenset(names)
    return lambda e: e.name in wanted
