"""Evaluating expectations against evidence: the service's database, the wire tap and board events.

Pure functions over an :class:`Evidence` snapshot, so each rule is unit-tested
without boards; the runner builds the snapshot from the real service and boards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.scenario.results import BoardEvent
from testbed.scenario.schema import Expectation, format_duration
from testbed.scenario.tap import TappedRequest
from testbed.scenario.timeline import crash_episodes


@dataclass
class Evidence:
    """What the runner observed, at one moment."""

    device_ids: dict[str, str]  # board -> device id
    events: dict[str, list[BoardEvent]]  # board -> its @tb events so far
    dumps: list[dict[str, Any]]  # rows of the service's dumps table (dict per row)
    requests: list[TappedRequest] = field(default_factory=list)  # what reached the service's door
    audit: list[dict[str, Any]] = field(default_factory=list)  # support audit rows
    blobs: dict[str, int] = field(default_factory=dict)  # region -> blob files on disk
    tenant_probe: Callable[[list[str]], list[str]] | None = None  # dump ids -> problems found
    groups: Callable[[], dict[str, dict[str, Any]]] | None = None  # group key -> DeviceGroupV2 at the service


def region_matches(wanted: str, region: str) -> bool:
    if wanted == "any":
        return True
    if wanted == "US":
        return region in ("EastUS", "WestUS")
    return region == wanted


def _count_ok(n: int, args: dict[str, Any], default_min: int | None = 1) -> tuple[bool, str]:
    count, lo, hi = args.get("count"), args.get("min"), args.get("max")
    if count is not None:
        return n == count, f"expected exactly {count}"
    if lo is None and hi is None:
        lo = default_min
    ok = (lo is None or n >= lo) and (hi is None or n <= hi)
    want = " and ".join(x for x in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else "") if x)
    return ok, f"expected {want}" if want else ""


def _matches(event: BoardEvent, name: str, where: dict[str, str] | None) -> bool:
    return event.name == name and all(event.fields.get(k) == v for k, v in (where or {}).items())


def _signatures_of(app: str, ev: Evidence, boards: list[str]) -> set[str]:
    return {e.fields["sig"] for b in boards for e in ev.events.get(b, []) if e.name == "crash"
            and e.fields.get("app") == app and e.fields.get("sig")}  # fmt: skip


def _dumps_for(ev: Evidence, board: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    device = ev.device_ids.get(board, "")
    out = [d for d in ev.dumps if d["device_id"] == device and region_matches(args.get("region", "any"), d["region"])]
    if args.get("app"):
        out = [d for d in out if d["component_name"] == args["app"]]
    return out


def evaluate(exp: Expectation, ev: Evidence) -> tuple[bool, str]:
    """(held, detail) for one expectation. The detail says what was seen, pass or fail."""
    a = exp.args
    kind = exp.kind
    boards: list[str] = a.get("boards") or []

    if kind == "dump_stored":
        bad, seen = [], []
        for b in boards:
            n = len(_dumps_for(ev, b, a))
            ok, want = _count_ok(n, a)
            seen.append(f"{b}: {n}")
            if not ok:
                all_regions = sorted({d["region"] for d in ev.dumps if d["device_id"] == ev.device_ids.get(b)})
                bad.append(f"{b} has {n} dump(s) in region {a['region']} ({want}; its dumps are in "
                           f"{', '.join(all_regions) or 'no region'})")  # fmt: skip
        return not bad, "; ".join(bad) if bad else "dumps stored: " + ", ".join(seen)

    if kind == "dumps":
        rows = [d for b in boards for d in _dumps_for(ev, b, a)]
        if a.get("signature_of"):
            sigs = _signatures_of(a["signature_of"], ev, boards)
            rows = [d for d in rows if d["signature"] in sigs]
            if not sigs:
                return False, f"no crash of {a['signature_of']} was reported, so its signature is unknown"
        ok, want = _count_ok(len(rows), a, default_min=1)
        regions = sorted({d["region"] for d in rows})
        return ok, f"{len(rows)} dump(s) stored ({want}); regions: {', '.join(regions) or '-'}"

    if kind == "no_request":
        bad = []
        for b in boards:
            device = ev.device_ids.get(b, "")
            reqs = [r for r in ev.requests if r.device_id == device and r.path.startswith("/device/v1/crashdumps")]
            stored = [d for d in ev.dumps if d["device_id"] == device]
            if reqs or stored:
                sent = sum(r.body_bytes for r in reqs)
                bad.append(f"{b}: {len(reqs)} crash-dump request(s) ({sent} body bytes), {len(stored)} stored")
        return not bad, "; ".join(bad) if bad else f"no crash-dump request from {', '.join(boards)} reached the service"

    if kind == "dump_skipped":
        bad, seen = [], []
        for b in boards:
            events = [e for e in ev.events.get(b, []) if _matches(e, "dump-skipped", {"reason": a["reason"]})]
            if a.get("app"):
                events = [e for e in events if e.fields.get("app", a["app"]) == a["app"]]
            ok, want = _count_ok(len(events), a)
            seen.append(f"{b}: {len(events)}")
            if not ok:
                others = sorted({e.fields.get("reason", "?") for e in ev.events.get(b, []) if e.name == "dump-skipped"})
                bad.append(f"{b} skipped {len(events)} time(s) with reason {a['reason']} ({want}; other reasons seen: "
                           f"{', '.join(others) or 'none'})")  # fmt: skip
        return not bad, "; ".join(bad) if bad else f"dump-skipped reason={a['reason']}: " + ", ".join(seen)

    if kind == "app_restarted":
        within = a["within"]
        bad, worst, n = [], 0.0, 0
        for b in boards:
            for ep in crash_episodes(ev.events.get(b, [])):
                if a.get("app") and ep.app != a["app"]:
                    continue
                n += 1
                took = ep.to_restart
                if took is None:
                    bad.append(f"{b}: crash of {ep.app} at {ep.crash.t:.2f}s was never followed by app-restart")
                    continue
                worst = max(worst, took)
                if took > within:
                    bad.append(f"{b}: {ep.app} restarted {took:.3f}s after its crash (limit {format_duration(within)})")
                if a.get("after_upload") or a.get("upload_slack") is not None:
                    if ep.outcome is None or ep.outcome.name != "upload-ok":
                        bad.append(f"{b}: crash at {ep.crash.t:.2f}s had no completed upload ({ep.outcome_name})")
                    elif ep.restart is not None and ep.restart.t + 1e-6 < ep.outcome.t:
                        bad.append(f"{b}: {ep.app} restarted before its upload completed")
                    elif ep.restart is not None and a.get("upload_slack") is not None:
                        gap = ep.restart.t - ep.outcome.t
                        if gap > a["upload_slack"]:
                            bad.append(f"{b}: {ep.app} restarted {gap * 1000:.0f} ms after its upload completed "
                                       f"(slack {format_duration(a['upload_slack'])})")  # fmt: skip
        if n == 0:
            return False, "no crash of the app was seen on " + ", ".join(boards)
        return not bad, "; ".join(bad) if bad else f"{n} crash(es), slowest restart {worst * 1000:.0f} ms"

    if kind == "upload":
        name = "upload-ok" if a["result"] == "ok" else "upload-fail"
        where = {"reason": a["reason"]} if a.get("reason") else None
        bad, seen = [], []
        for b in boards:
            n = sum(1 for e in ev.events.get(b, []) if _matches(e, name, where))
            ok, want = _count_ok(n, a)
            seen.append(f"{b}: {n}")
            if not ok:
                bad.append(f"{b} printed {n} {name}{' reason=' + a['reason'] if a.get('reason') else ''} ({want})")
        return not bad, "; ".join(bad) if bad else f"{name}: " + ", ".join(seen)

    if kind == "events":
        bad, seen = [], []
        for b in boards:
            n = sum(1 for e in ev.events.get(b, []) if _matches(e, a["event"], a.get("where")))
            ok, want = _count_ok(n, a)
            seen.append(f"{b}: {n}")
            if not ok:
                bad.append(f"{b} printed {n} matching {a['event']} ({want})")
        return not bad, "; ".join(bad) if bad else f"{a['event']}: " + ", ".join(seen)

    if kind == "audit_rows":
        rows = [r for r in ev.audit if r.get("action") == "read"]
        if a.get("reason"):
            rows = [r for r in rows if r.get("reason") == a["reason"]]
        ok, want = _count_ok(len(rows), a)
        return ok, f"{len(rows)} audited read(s) ({want})"

    if kind == "tenant_denied":
        ids = [d["id"] for b in boards for d in ev.dumps if d["device_id"] == ev.device_ids.get(b)]
        if ev.tenant_probe is None:
            return False, "no tenant probe available"
        problems = ev.tenant_probe(ids)
        if not ids:
            problems = problems + ["no dump is stored for these boards, so nothing was tried"]
        return not problems, "; ".join(problems) if problems else f"tenant token refused for {len(ids)} dump(s) and the listing"

    if kind == "blobs":
        n = sum(v for r, v in ev.blobs.items() if region_matches(a.get("region", "any"), r))
        ok, want = _count_ok(n, a, default_min=1)
        return ok, f"{n} blob file(s) in {a.get('region', 'any')} store(s) ({want})"

    if kind == "requests":
        prefix = {"sync": "/device/v1/sync", "intent": "/device/v1/crashdumps/intent"}.get(a["path"])
        devices = {ev.device_ids.get(b) for b in boards}
        rows = [r for r in ev.requests if r.device_id in devices]
        if prefix:
            rows = [r for r in rows if r.path.startswith(prefix)]
        else:  # upload: the dump itself
            rows = [r for r in rows if r.method == "POST" and r.path.rstrip("/") == "/device/v1/crashdumps"]
        ok, want = _count_ok(len(rows), a)
        statuses = ",".join(str(r.status) for r in rows[-8:]) or "-"
        return ok, f"{len(rows)} {a['path']} request(s) ({want}); statuses: {statuses}"

    if kind == "dump_sizes":
        devices = {ev.device_ids.get(b) for b in boards}
        sizes = [d["size"] for d in ev.dumps if d["device_id"] in devices]
        if not sizes:
            return False, "no dump stored for these boards"
        lo, hi = a.get("min_bytes"), a.get("max_bytes")
        bad = [s for s in sizes if (lo is not None and s < lo) or (hi is not None and s > hi)]
        span = f"{min(sizes):,} to {max(sizes):,} bytes over {len(sizes)} dump(s)"
        return not bad, (f"{len(bad)} outside {lo}..{hi}: {bad[:5]}; " if bad else "") + span

    if kind == "groups":
        if ev.groups is None:
            return False, "the service's groups could not be read"
        current = ev.groups()
        bad, seen = [], []
        for key in a["group"]:
            g = current.get(key)
            if g is None:
                bad.append(f"{key} not found at the service")
                continue
            seen.append(f"{key}: {'Enabled' if g.get('AllowCrashDumpsCollection') else 'Disabled'}/"
                        f"{g.get('RegionalDataBoundary')}")  # fmt: skip
            if a.get("allow_crash_dumps") is not None and bool(g.get("AllowCrashDumpsCollection")) != a["allow_crash_dumps"]:
                bad.append(f"{key} AllowCrashDumpsCollection is {g.get('AllowCrashDumpsCollection')}")
            if a.get("boundary") is not None and g.get("RegionalDataBoundary") != a["boundary"]:
                bad.append(f"{key} RegionalDataBoundary is {g.get('RegionalDataBoundary')}")
        return not bad, "; ".join(bad) if bad else "; ".join(seen)

    raise ValueError(f"no evaluator for expectation {kind!r}")
