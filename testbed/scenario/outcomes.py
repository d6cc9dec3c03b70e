"""Each crash's outcome chain: crash -> skipped / failed -> spooled -> sent again -> stored (dump id,
time) or lost, from the board's events and the service's stored dumps.

A crash's dump goes one way (docs/firmware.md): skipped before any byte is sent, stored at once,
or failed; a failure that may pass (``connect``, ``timeout``, ``bad-response``, ``http-5xx``) keeps
the dump in the spool, which sends it again after a sync with the same upload id (``spooled=1``
events). The stored dump is found at the service by the id the board printed in its upload-ok (else
by the upload id and device), which gives the time the service stored it on its own clock.
"""

from __future__ import annotations

from testbed.contract.events import EventKey, EventName
from testbed.scenario.results import BoardEvent, ChainLink, CrashOutcome, DumpRecord, ScenarioResult
from testbed.scenario.timeline import CrashEpisode, crash_episodes, is_spooled_failure

#: What each fate is called in the report.
FATES = {
    "stored": "stored",
    "stored-from-spool": "stored from the spool",
    "skipped": "skipped",
    "dropped": "dropped from the spool",
    "lost": "lost",
    "in-spool": "still in the spool at the end",
    "no-outcome": "no outcome",
}


def _reason(event: BoardEvent) -> str:
    reason = event.fields.get(EventKey.REASON, "?")
    stage = event.fields.get(EventKey.STAGE)
    return f"{reason}, at the {stage}" if stage else reason


def _stored_link(event: BoardEvent, dump: DumpRecord | None, spooled: bool) -> ChainLink:
    dump_id = event.fields.get(EventKey.ID, "")
    detail = f"dump {dump_id}" if dump_id else "dump (no id printed)"
    region = event.fields.get(EventKey.REGION)
    if region:
        detail += f" in {region}"
    if spooled:
        detail += ", sent from the spool"
    if dump is None:
        detail += "; the service lists no such dump"
    return ChainLink("stored", event.t, detail)


def _find_dump(event: BoardEvent, device_id: str, dumps: list[DumpRecord]) -> DumpRecord | None:
    dump_id = event.fields.get(EventKey.ID, "")
    upload_id = event.fields.get(EventKey.UPLOAD_ID, "")
    for d in dumps:
        if dump_id and d.id == dump_id:
            return d
    for d in dumps:
        if upload_id and d.upload_id == upload_id and (not device_id or d.device_id == device_id):
            return d
    return None


def outcome_of(board: str, device_id: str, ep: CrashEpisode, dumps: list[DumpRecord]) -> CrashOutcome:
    """The chain of one crash episode."""
    sig = ep.crash.fields.get(EventKey.SIG, "")
    out = CrashOutcome(board, ep.app, round(ep.crash.t, 3), "no-outcome", signature="" if sig == "-" else sig,
                       upload_id=ep.upload_id, restart=None if ep.restart is None else round(ep.restart.t, 3),
                       to_restart=ep.to_restart)  # fmt: skip
    signal = ep.crash.fields.get(EventKey.SIGNAL)
    out.chain.append(ChainLink("crash", ep.crash.t, f"{ep.app}" + (f" signal {signal}" if signal else "")))
    first = ep.outcome
    if first is None:
        return out
    if first.name == EventName.DUMP_SKIPPED:
        out.fate = "skipped"
        out.chain.append(ChainLink("skipped", first.t, first.fields.get(EventKey.REASON, "?")))
        return out
    spooled = False
    for i, event in enumerate([first, *ep.retries]):
        if event.name == EventName.UPLOAD_OK:
            dump = _find_dump(event, device_id, dumps)
            out.chain.append(_stored_link(event, dump, spooled))
            out.fate = "stored-from-spool" if spooled else "stored"
            out.dump_id = dump.id if dump is not None else event.fields.get(EventKey.ID, "")
            out.stored_t = round(event.t, 3)
            out.stored_at = dump.created if dump is not None and dump.created else None
            out.crash_at = dump.crash_time if dump is not None and dump.crash_time else None
            out.to_stored = event.t - ep.crash.t
            return out
        if event.name == EventName.DUMP_SKIPPED:  # a spooled dump checked again (throttled, opt-out)
            out.fate = "dropped"
            out.chain.append(ChainLink("dropped", event.t, event.fields.get(EventKey.REASON, "?")))
            return out
        out.chain.append(ChainLink("failed" if i == 0 else "retry-failed", event.t, _reason(event)))
        if not is_spooled_failure(event):
            out.fate = "lost"
            out.chain.append(ChainLink("lost", None, "a failure that would not pass: not kept for a retry"))
            return out
        if not spooled:
            out.chain.append(ChainLink("spooled", None, "kept in the board's spool, sent again after a sync"))
            spooled = True
    out.fate = "in-spool"
    out.chain.append(ChainLink("waiting", None, "not stored by the end of the run (still in the spool, "
                                                "or dropped by the board without an event)"))  # fmt: skip
    return out


def crash_outcomes(result: ScenarioResult) -> list[CrashOutcome]:
    """Every crash of the run with its outcome chain, board by board in time order."""
    out = []
    for board in result.boards:
        for ep in crash_episodes(board.events):
            out.append(outcome_of(board.name, board.device_id, ep, result.dumps))
    return out
