"""The expectations about what the boards printed: their @tb events, crash episodes and timing.

``timing=True`` marks the ones about how long something took (their broken promises are
listed as :class:`Late`, so a starved host can make them inconclusive); the others are
functional.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.contract.events import EventName
from testbed.scenario.evidence import Evidence, Finding, Late, matches
from testbed.scenario.expectations import SKIP_REASONS, Counted
from testbed.scenario.fields import (
    App,
    Boards,
    Bool,
    Duration,
    Event,
    FieldError,
    OneOf,
    Reason,
    Scope,
    Where,
    arg,
    check_reason,
)
from testbed.scenario.model import format_duration
from testbed.scenario.registry import Check, expectation
from testbed.scenario.timeline import board_episodes


@expectation("dump_skipped", shorthand="reason")
@dataclass(kw_only=True)
class DumpSkipped(Counted):
    """each board reported dump-skipped with the reason (default at least once)"""

    reason: str = arg(OneOf(SKIP_REASONS))
    boards: list[str] = arg(Boards(optional=True), "all")
    app: str | None = arg(App(), None)

    def evaluate(self, ev: Evidence) -> Finding:
        bad, seen = [], []
        for b in self.boards:
            events = [e for e in ev.events.get(b, []) if matches(e, EventName.DUMP_SKIPPED, {"reason": self.reason})]
            if self.app:
                events = [e for e in events if e.fields.get("app", self.app) == self.app]
            ok, want = self.counted(len(events))
            seen.append(f"{b}: {len(events)}")
            if not ok:
                others = sorted({e.fields.get("reason", "?") for e in ev.events.get(b, [])
                                 if e.name == EventName.DUMP_SKIPPED})  # fmt: skip
                bad.append(f"{b} skipped {len(events)} time(s) with reason {self.reason} ({want}; other reasons seen: "
                           f"{', '.join(others) or 'none'})")  # fmt: skip
        return Finding(not bad, "; ".join(bad) if bad else f"dump-skipped reason={self.reason}: " + ", ".join(seen))


@expectation("app_restarted", timing=True)
@dataclass(kw_only=True)
class AppRestarted(Check):
    """every crash of the app on the boards was followed by its restart within the time (`after_ms` of the
    firmware, else the host clock); after_upload: only once its upload completed; upload_slack: at most this
    long after it"""

    within: float = arg(Duration())
    boards: list[str] = arg(Boards(optional=True), "all")
    app: str | None = arg(App(), None)
    after_upload: bool = arg(Bool(), False)
    upload_slack: float | None = arg(Duration(), None)

    def evaluate(self, ev: Evidence) -> Finding:
        bad: list[str] = []
        late: list[Late] = []
        worst, n = 0.0, 0
        for b, ep in board_episodes(ev.events, self.boards, self.app):
            n += 1
            took = ep.to_restart
            if took is None:
                what = f"{b}: crash of {ep.app} at {ep.crash.t:.2f}s was never followed by app-restart"
                late.append(Late(b, ep.crash.t, None, what))
                continue
            worst = max(worst, took)
            end = ep.restart.t if ep.restart is not None else ep.crash.t + took
            if took > self.within:
                what = f"{b}: {ep.app} restarted {took:.3f}s after its crash (limit {format_duration(self.within)})"
                late.append(Late(b, ep.crash.t, end, what))
            if self.after_upload or self.upload_slack is not None:
                if ep.outcome is None or ep.outcome.name != EventName.UPLOAD_OK:
                    bad.append(f"{b}: crash at {ep.crash.t:.2f}s had no completed upload ({ep.outcome_name})")
                elif ep.restart is not None and ep.restart.t + 1e-6 < ep.outcome.t:
                    bad.append(f"{b}: {ep.app} restarted before its upload completed")
                elif ep.restart is not None and self.upload_slack is not None:
                    gap = ep.restart.t - ep.outcome.t
                    if gap > self.upload_slack:
                        what = (f"{b}: {ep.app} restarted {gap * 1000:.0f} ms after its upload completed "
                                f"(slack {format_duration(self.upload_slack)})")  # fmt: skip
                        late.append(Late(b, ep.crash.t, ep.restart.t, what))
        if n == 0:
            return Finding(False, "no crash of the app was seen on " + ", ".join(self.boards))
        problems = [x.what for x in late] + bad
        detail = "; ".join(problems) if problems else f"{n} crash(es), slowest restart {worst * 1000:.0f} ms"
        return Finding(not problems, detail, late, timing_only=bool(late) and not bad)


@expectation("stored_within", timing=True)
@dataclass(kw_only=True)
class StoredWithin(Check):
    """every crash of the app on the boards was stored at the service (upload-ok) within the time of the crash
    (host clock: the crash line to the upload-ok line, also one from the spool); a crash with another outcome
    fails"""

    within: float = arg(Duration())
    boards: list[str] = arg(Boards(optional=True), "all")
    app: str | None = arg(App(), None)

    def evaluate(self, ev: Evidence) -> Finding:
        bad: list[str] = []
        late: list[Late] = []
        worst, n = 0.0, 0
        for b, ep in board_episodes(ev.events, self.boards, self.app):
            n += 1
            if ep.outcome is None:
                late.append(Late(b, ep.crash.t, None, f"{b}: crash of {ep.app} at {ep.crash.t:.2f}s has no outcome"))
            elif ep.outcome.name != EventName.UPLOAD_OK and ep.to_stored is not None:
                took = ep.to_stored
                worst = max(worst, took)
                if took > self.within:  # the first attempt failed: not a matter of the host's CPU
                    bad.append(f"{b}: crash of {ep.app} at {ep.crash.t:.2f}s was stored from the spool {took:.3f}s "
                               f"after the crash ({ep.outcome_name} first; limit {format_duration(self.within)})")  # fmt: skip
            elif ep.outcome.name != EventName.UPLOAD_OK:
                bad.append(f"{b}: crash of {ep.app} at {ep.crash.t:.2f}s was not stored ({ep.outcome_name})")
            else:
                took = ep.outcome.t - ep.crash.t
                worst = max(worst, took)
                if took > self.within:
                    what = f"{b}: {ep.app} stored {took:.3f}s after its crash (limit {format_duration(self.within)})"
                    late.append(Late(b, ep.crash.t, ep.outcome.t, what))
        if n == 0:
            return Finding(False, "no crash of the app was seen on " + ", ".join(self.boards))
        problems = [x.what for x in late] + bad
        detail = "; ".join(problems) if problems else f"{n} crash(es) stored, slowest {worst * 1000:.0f} ms after the crash"
        return Finding(not problems, detail, late, timing_only=bool(late) and not bad)


@expectation("upload")
@dataclass(kw_only=True)
class Upload(Counted):
    """each board reported upload-ok (or upload-fail with the reason); spool retries included"""

    boards: list[str] = arg(Boards(optional=True), "all")
    result: str = arg(OneOf(("ok", "fail")), "ok")
    reason: str | None = arg(Reason(EventName.UPLOAD_FAIL), None)

    def evaluate(self, ev: Evidence) -> Finding:
        name = EventName.UPLOAD_OK if self.result == "ok" else EventName.UPLOAD_FAIL
        where = {"reason": self.reason} if self.reason else None
        bad, seen = [], []
        for b in self.boards:
            n = sum(1 for e in ev.events.get(b, []) if matches(e, name, where))
            ok, want = self.counted(n)
            seen.append(f"{b}: {n}")
            if not ok:
                bad.append(f"{b} printed {n} {name}{' reason=' + self.reason if self.reason else ''} ({want})")
        return Finding(not bad, "; ".join(bad) if bad else f"{name}: " + ", ".join(seen))


@expectation("events")
@dataclass(kw_only=True)
class Events(Counted):
    """each board printed matching @tb events (default at least one)"""

    event: str = arg(Event())
    boards: list[str] = arg(Boards(optional=True), "all")
    where: dict[str, str] | None = arg(Where(), None)

    def validate(self, scope: Scope) -> None:
        super().validate(scope)
        if self.where and "reason" in self.where:
            try:
                check_reason(self.event, self.where["reason"])
            except FieldError as exc:
                raise FieldError(str(exc), "where.reason") from None

    def evaluate(self, ev: Evidence) -> Finding:
        bad, seen = [], []
        for b in self.boards:
            n = sum(1 for e in ev.events.get(b, []) if matches(e, self.event, self.where))
            ok, want = self.counted(n)
            seen.append(f"{b}: {n}")
            if not ok:
                bad.append(f"{b} printed {n} matching {self.event} ({want})")
        return Finding(not bad, "; ".join(bad) if bad else f"{self.event}: " + ", ".join(seen))

