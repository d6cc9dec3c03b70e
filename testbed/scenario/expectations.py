"""The expectations: one class each, evaluated against an :class:`Evidence` snapshot.

Each says in its detail what was seen, pass or fail. ``timing=True`` marks the ones about
how long something took (their broken promises are listed as :class:`Late`); every
other one is functional.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.contract.device_api import CRASHDUMPS_PREFIX, INTENT_PATH, SYNC_PATH, UPLOAD_PATH
from testbed.contract.events import DumpSkipReason, EventName
from testbed.scenario.evidence import (
    Evidence,
    Finding,
    Late,
    StoredDump,
    count_ok,
    matches,
    region_matches,
)
from testbed.scenario.fields import (
    App,
    Boards,
    Bool,
    Duration,
    Event,
    FieldError,
    Groups,
    Int,
    OneOf,
    Reason,
    Scope,
    Text,
    Where,
    arg,
    check_reason,
)
from testbed.scenario.model import format_duration
from testbed.scenario.registry import Check, expectation
from testbed.scenario.timeline import crash_episodes

#: Regions an expectation may name; "US" means East US or West US.
REGIONS: tuple[str, ...] = ("EU", "EastUS", "WestUS", "US", "any")
BOUNDARIES: tuple[str, ...] = ("None", "EU")
SKIP_REASONS: tuple[str, ...] = tuple(DumpSkipReason)
#: The device API path each ``requests: {path: ...}`` names.
REQUEST_PATHS: dict[str, str] = {"sync": SYNC_PATH, "intent": INTENT_PATH, "upload": UPLOAD_PATH}


@dataclass(kw_only=True)
class Counted(Check):
    """An expectation with a count: exactly ``count``, or ``min`` / ``max`` (default at least one)."""

    count: int | None = arg(Int(), None)
    min: int | None = arg(Int(), None)
    max: int | None = arg(Int(), None)

    def validate(self, scope: Scope) -> None:
        if self.count is not None and (self.min is not None or self.max is not None):
            raise FieldError("give either count or min/max, not both", "count")

    def counted(self, n: int, default_min: int | None = 1) -> tuple[bool, str]:
        return count_ok(n, self.count, self.min, self.max, default_min)


def dumps_of(ev: Evidence, board: str, region: str = "any", app: str | None = None) -> list[StoredDump]:
    device = ev.device_ids.get(board, "")
    out = [d for d in ev.dumps if d.device_id == device and region_matches(region, d.region)]
    return [d for d in out if d.component_name == app] if app else out


@expectation("dump_stored", shorthand="boards")
@dataclass(kw_only=True)
class DumpStored(Counted):
    """each board has dumps stored at the service (default at least 1), in the region (`US` = East or West US)"""

    boards: list[str] = arg(Boards(optional=True), "all")
    region: str = arg(OneOf(REGIONS), "any")
    app: str | None = arg(App(), None)

    def evaluate(self, ev: Evidence) -> Finding:
        bad, seen = [], []
        for b in self.boards:
            n = len(dumps_of(ev, b, self.region, self.app))
            ok, want = self.counted(n)
            seen.append(f"{b}: {n}")
            if not ok:
                regions = sorted({d.region for d in ev.dumps if d.device_id == ev.device_ids.get(b)})
                bad.append(f"{b} has {n} dump(s) in region {self.region} ({want}; its dumps are in "
                           f"{', '.join(regions) or 'no region'})")  # fmt: skip
        return Finding(not bad, "; ".join(bad) if bad else "dumps stored: " + ", ".join(seen))


@expectation("dumps")
@dataclass(kw_only=True)
class Dumps(Counted):
    """the total of dumps stored for the boards (optionally one region, one app or one crash signature)"""

    boards: list[str] = arg(Boards(optional=True), "all")
    region: str = arg(OneOf(REGIONS), "any")
    app: str | None = arg(App(), None)
    signature_of: str | None = arg(App(), None, doc="only the signature the boards reported for this app's crash")

    def evaluate(self, ev: Evidence) -> Finding:
        rows = [d for b in self.boards for d in dumps_of(ev, b, self.region, self.app)]
        if self.signature_of:
            sigs = {e.fields["sig"] for b in self.boards for e in ev.events.get(b, []) if e.name == EventName.CRASH
                    and e.fields.get("app") == self.signature_of and e.fields.get("sig")}  # fmt: skip
            if not sigs:
                return Finding(False, f"no crash of {self.signature_of} was reported, so its signature is unknown")
            rows = [d for d in rows if d.signature in sigs]
        ok, want = self.counted(len(rows))
        regions = sorted({d.region for d in rows})
        return Finding(ok, f"{len(rows)} dump(s) stored ({want}); regions: {', '.join(regions) or '-'}")


@expectation("no_request", shorthand="boards")
@dataclass(kw_only=True)
class NoRequest(Check):
    """no crash-dump request (intent or upload) from the boards reached the service (the wire tap), none stored"""

    boards: list[str] = arg(Boards(optional=True), "all")

    def evaluate(self, ev: Evidence) -> Finding:
        bad = []
        for b in self.boards:
            device = ev.device_ids.get(b, "")
            reqs = [r for r in ev.requests if r.device_id == device and r.path.startswith(CRASHDUMPS_PREFIX)]
            stored = [d for d in ev.dumps if d.device_id == device]
            if reqs or stored:
                sent = sum(r.body_bytes for r in reqs)
                bad.append(f"{b}: {len(reqs)} crash-dump request(s) ({sent} body bytes), {len(stored)} stored")
        return Finding(not bad, "; ".join(bad) if bad else f"no crash-dump request from {', '.join(self.boards)} "
                       "reached the service")  # fmt: skip


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
        for b in self.boards:
            for ep in crash_episodes(ev.events.get(b, [])):
                if self.app and ep.app != self.app:
                    continue
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


@expectation("audit_rows")
@dataclass(kw_only=True)
class AuditRows(Counted):
    """rows of action `read` in the support audit log (with that reason; default at least one)"""

    reason: str | None = arg(Text(), None)

    def evaluate(self, ev: Evidence) -> Finding:
        rows = [r for r in ev.audit if r.get("action") == "read"]
        if self.reason:
            rows = [r for r in rows if r.get("reason") == self.reason]
        ok, want = self.counted(len(rows))
        return Finding(ok, f"{len(rows)} audited read(s) ({want})")


@expectation("tenant_denied", shorthand="boards")
@dataclass(kw_only=True)
class TenantDenied(Check):
    """the tenant's own Administrator token is refused (401/403/404, no gzip) for the support listing and every
    dump of the boards, and leaves no audit row"""

    boards: list[str] = arg(Boards(optional=True), "all")

    def evaluate(self, ev: Evidence) -> Finding:
        devices = {ev.device_ids.get(b) for b in self.boards}
        ids = [d.id for d in ev.dumps if d.device_id in devices]
        if ev.tenant_probe is None:
            return Finding(False, "no tenant probe available")
        problems = ev.tenant_probe(ids)
        if not ids:
            problems = problems + ["no dump is stored for these boards, so nothing was tried"]
        return Finding(not problems, "; ".join(problems) if problems else
                       f"tenant token refused for {len(ids)} dump(s) and the listing")  # fmt: skip


@expectation("blobs")
@dataclass(kw_only=True)
class Blobs(Counted):
    """dumps physically in the service's region stores (the control API's storage, not the rows)"""

    region: str = arg(OneOf(REGIONS), "any")

    def evaluate(self, ev: Evidence) -> Finding:
        n = sum(v for r, v in ev.blobs.items() if region_matches(self.region, r))
        ok, want = self.counted(n)
        return Finding(ok, f"{n} blob file(s) in {self.region} store(s) ({want})")


@expectation("requests")
@dataclass(kw_only=True)
class Requests(Counted):
    """requests from the boards that reached the service (seen by the wire tap), in total"""

    path: str = arg(OneOf(tuple(REQUEST_PATHS)))
    boards: list[str] = arg(Boards(optional=True), "all")

    def evaluate(self, ev: Evidence) -> Finding:
        devices = {ev.device_ids.get(b) for b in self.boards}
        rows = [r for r in ev.requests if r.device_id in devices]
        if self.path == "upload":  # the dump itself, not its intent
            rows = [r for r in rows if r.method == "POST" and r.path.rstrip("/") == UPLOAD_PATH]
        else:
            rows = [r for r in rows if r.path.startswith(REQUEST_PATHS[self.path])]
        ok, want = self.counted(len(rows))
        statuses = ",".join(str(r.status) for r in rows[-8:]) or "-"
        return Finding(ok, f"{len(rows)} {self.path} request(s) ({want}); statuses: {statuses}")


@expectation("dump_sizes")
@dataclass(kw_only=True)
class DumpSizes(Check):
    """every stored dump of the boards has a compressed size within the bounds"""

    boards: list[str] = arg(Boards(optional=True), "all")
    min_bytes: int | None = arg(Int(), None)
    max_bytes: int | None = arg(Int(), None)

    def evaluate(self, ev: Evidence) -> Finding:
        devices = {ev.device_ids.get(b) for b in self.boards}
        sizes = [d.size for d in ev.dumps if d.device_id in devices]
        if not sizes:
            return Finding(False, "no dump stored for these boards")
        lo, hi = self.min_bytes, self.max_bytes
        bad = [s for s in sizes if (lo is not None and s < lo) or (hi is not None and s > hi)]
        span = f"{min(sizes):,} to {max(sizes):,} bytes over {len(sizes)} dump(s)"
        return Finding(not bad, (f"{len(bad)} outside {lo}..{hi}: {bad[:5]}; " if bad else "") + span)


@expectation("groups")
@dataclass(kw_only=True)
class GroupsAre(Check):
    """the device groups' settings at the service (read back through the public API) are these"""

    group: list[str] = arg(Groups())
    allow_crash_dumps: bool | None = arg(Bool(), None)
    boundary: str | None = arg(OneOf(BOUNDARIES), None)

    def evaluate(self, ev: Evidence) -> Finding:
        if ev.groups is None:
            return Finding(False, "the service's groups could not be read")
        current = ev.groups()
        bad, seen = [], []
        for key in self.group:
            g = current.get(key)
            if g is None:
                bad.append(f"{key} not found at the service")
                continue
            seen.append(f"{key}: {'Enabled' if g.get('AllowCrashDumpsCollection') else 'Disabled'}/"
                        f"{g.get('RegionalDataBoundary')}")  # fmt: skip
            if self.allow_crash_dumps is not None and bool(g.get("AllowCrashDumpsCollection")) != self.allow_crash_dumps:
                bad.append(f"{key} AllowCrashDumpsCollection is {g.get('AllowCrashDumpsCollection')}")
            if self.boundary is not None and g.get("RegionalDataBoundary") != self.boundary:
                bad.append(f"{key} RegionalDataBoundary is {g.get('RegionalDataBoundary')}")
        return Finding(not bad, "; ".join(bad) if bad else "; ".join(seen))
