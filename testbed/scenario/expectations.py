"""The expectations about what the service holds and what reached it: one class each, evaluated
against an :class:`Evidence` snapshot (the boards' events: :mod:`testbed.scenario.expectations_board`).

Each says in its detail what was seen, pass or fail. All of these are functional: a starved
host never softens them.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.contract.device_api import CRASHDUMPS_PREFIX, INTENT_PATH, SYNC_PATH, UPLOAD_PATH
from testbed.contract.events import DumpSkipReason, EventName
from testbed.scenario.evidence import (
    Evidence,
    Finding,
    StoredDump,
    count_ok,
    region_matches,
)
from testbed.scenario.fields import (
    App,
    Boards,
    Bool,
    FieldError,
    Groups,
    Int,
    OneOf,
    Scope,
    Text,
    arg,
)
from testbed.scenario.registry import Check, expectation

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

