"""Spool retries and the crashes whose dumps they carry.

A dump the firmware could not upload (its crash's outcome is an ``upload-fail``) waits in the
board's spool and is sent after a later successful sync. The retry's outcome line carries
``spooled=1``; an ``upload-ok`` or ``upload-fail`` of a retry also carries the dump's
``upload_id``, the id the crash's first ``upload-fail`` printed (firmware_stubs/src/api.c), so
the two are linked exactly. A ``dump-skipped`` of a retry carries the signature only, and a dump
that missed the deadline while being compressed is spooled after an ``upload-fail`` without an
id: those are linked by signature to the oldest crash still waiting in the spool.

:func:`crash_episodes` leaves spooled lines out of the episodes (a retry is not the crash's
first outcome); :func:`spool_retries` gives each of them its crash, or none when the crash is
not in the events (it happened before them: a dump spooled before the scenario began).
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.contract.events import EventKey, EventName
from testbed.scenario.results import BoardEvent
from testbed.scenario.timeline import OUTCOMES, CrashEpisode, crash_episodes


@dataclass(frozen=True)
class SpoolRetry:
    """A spooled outcome line and the crash episode whose dump it carries (None: not among the events)."""

    event: BoardEvent
    episode: CrashEpisode | None


def is_spooled(event: BoardEvent) -> bool:
    return event.fields.get(EventKey.SPOOLED) == "1"


def _sig(event: BoardEvent) -> str:
    sig = event.fields.get(EventKey.SIG, "")
    return "" if sig == "-" else sig


def spool_retries(events: list[BoardEvent], episodes: list[CrashEpisode] | None = None) -> list[SpoolRetry]:
    """Every spooled outcome in ``events`` (one board's), in time order, with its crash episode.

    ``episodes``: ``crash_episodes(events)`` when the caller has them already.
    """
    episodes = crash_episodes(events) if episodes is None else episodes
    failed_first = {id(ep.outcome): ep for ep in episodes
                    if ep.outcome is not None and ep.outcome.name == EventName.UPLOAD_FAIL}  # fmt: skip
    waiting: list[CrashEpisode] = []  # crashes whose dump may be in the spool, oldest first
    upload_id: dict[int, str] = {}  # id(episode) -> the dump's upload id, once known
    out: list[SpoolRetry] = []
    for event in sorted(events, key=lambda e: e.t):
        ep = failed_first.get(id(event))
        if ep is not None:
            waiting.append(ep)
            if event.fields.get(EventKey.UPLOAD_ID):
                upload_id[id(ep)] = event.fields[EventKey.UPLOAD_ID]
            continue
        if event.name not in OUTCOMES or not is_spooled(event):
            continue
        found = _find(waiting, upload_id, event)
        out.append(SpoolRetry(event, found))
        if found is not None:
            if event.fields.get(EventKey.UPLOAD_ID):
                upload_id.setdefault(id(found), event.fields[EventKey.UPLOAD_ID])
            if event.name != EventName.UPLOAD_FAIL:  # stored or dropped: it left the spool
                waiting = [w for w in waiting if w is not found]
    return out


def _find(waiting: list[CrashEpisode], upload_id: dict[int, str], event: BoardEvent) -> CrashEpisode | None:
    uid = event.fields.get(EventKey.UPLOAD_ID, "")
    if uid:
        for ep in waiting:
            if upload_id.get(id(ep)) == uid:
                return ep
    sig = _sig(event)
    if not sig:
        return None
    for ep in waiting:
        # by signature: only a dump whose id is unknown (or a line that carries none) can be it
        if _sig(ep.crash) == sig and (not uid or id(ep) not in upload_id):
            return ep
    return None


def still_spooled(events: list[BoardEvent], episodes: list[CrashEpisode] | None = None) -> list[CrashEpisode]:
    """Crashes whose first outcome was an upload-fail and whose dump no retry has stored or dropped yet."""
    episodes = crash_episodes(events) if episodes is None else episodes
    done = {id(r.episode) for r in spool_retries(events, episodes)
            if r.episode is not None and r.event.name != EventName.UPLOAD_FAIL}  # fmt: skip
    return [ep for ep in episodes if ep.outcome is not None and ep.outcome.name == EventName.UPLOAD_FAIL
            and id(ep) not in done]  # fmt: skip
