"""Crash episodes: a crash event paired with what followed it on the same board.

Used by expectations (restart within T), the report (latencies on the
timeline, each crash's outcome chain) and ``testbed bench crash``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from testbed.contract.device_api import UPLOAD_DEADLINE_MS
from testbed.contract.events import HTTP_REASON_RE, EventKey, EventName, UploadFailReason
from testbed.scenario.results import BoardEvent

OUTCOMES = (EventName.UPLOAD_OK, EventName.UPLOAD_FAIL, EventName.DUMP_SKIPPED)
#: ``upload-fail`` reasons after which the reporter keeps the dump in its spool (docs/firmware.md):
#: the failure may pass. Any ``http-5xx`` too; other reasons lose the dump.
SPOOLED_REASONS = frozenset({UploadFailReason.CONNECT, UploadFailReason.TIMEOUT, UploadFailReason.BAD_RESPONSE})


def is_spooled_failure(event: BoardEvent) -> bool:
    """An upload-fail after which the dump stays in the board's spool, to be sent after a sync."""
    if event.name != EventName.UPLOAD_FAIL:
        return False
    reason = event.fields.get(EventKey.REASON, "")
    return reason in SPOOLED_REASONS or (HTTP_REASON_RE.match(reason) is not None and reason.startswith("http-5"))


@dataclass
class CrashEpisode:
    app: str
    crash: BoardEvent
    outcome: BoardEvent | None = None  # upload-ok, upload-fail or dump-skipped
    restart: BoardEvent | None = None
    #: The spool's retries of this crash's dump (events with ``spooled=1``), in time order.
    retries: list[BoardEvent] = field(default_factory=list)

    @property
    def upload_id(self) -> str:
        for e in (self.outcome, *self.retries):
            if e is not None and e.fields.get(EventKey.UPLOAD_ID):
                return e.fields[EventKey.UPLOAD_ID]
        return ""

    @property
    def in_spool(self) -> bool:
        """The dump waits in the board's spool: its last attempt failed in a way that may pass."""
        last = self.retries[-1] if self.retries else self.outcome
        return last is not None and is_spooled_failure(last)

    @property
    def stored(self) -> BoardEvent | None:
        """The upload-ok of this crash's dump: at once, or from the spool."""
        last = self.retries[-1] if self.retries else self.outcome
        return last if last is not None and last.name == EventName.UPLOAD_OK else None

    @property
    def to_stored(self) -> float | None:
        """Seconds from the crash line to its upload-ok (from the spool too; host clock)."""
        return None if self.stored is None else self.stored.t - self.crash.t

    @property
    def outcome_name(self) -> str:
        if self.outcome is None:
            return "none"
        if self.outcome.name == EventName.DUMP_SKIPPED:
            return f"skipped:{self.outcome.fields.get('reason', '?')}"
        if self.outcome.name == EventName.UPLOAD_FAIL:
            return f"fail:{self.outcome.fields.get('reason', '?')}"
        return "stored"

    @property
    def to_outcome(self) -> float | None:
        """Seconds from the crash line to the outcome line (host clock)."""
        return None if self.outcome is None else self.outcome.t - self.crash.t

    @property
    def to_restart(self) -> float | None:
        """Seconds from crash to restart: the firmware's after_ms when given, else host clock."""
        if self.restart is None:
            return None
        after = self.restart.fields.get("after_ms")
        if after is not None:
            try:
                return int(after) / 1000.0
            except ValueError:
                pass
        return max(0.0, self.restart.t - self.crash.t)


RESTARTS = (EventName.APP_RESTART, EventName.OS_RESTART)
#: A restart printed at most this long before its crash line belongs to that crash. The OS
#: restarts its component (crashsvc) as soon as it reaps it, while the reporter prints the crash
#: line only after reading the core: on an idle host a few hundred ms later, on a starved one
#: seconds (0.75 s seen at load 9 on 2 cores). The reporter is done within the upload deadline.
ORPHAN_WINDOW = UPLOAD_DEADLINE_MS / 1000


def _app_of(event: BoardEvent) -> str:
    return event.fields.get("app") or event.fields.get("component", "")


def _sig_of(event: BoardEvent) -> str:
    sig = event.fields.get("sig", "")
    return "" if sig == "-" else sig


def crash_episodes(events: list[BoardEvent]) -> list[CrashEpisode]:
    """Pair each crash with the first later outcome and app-restart of the same app.

    Outcome and restart lines may omit ``app=``; they are then given to the
    oldest crash still waiting for one.
    """
    episodes: list[CrashEpisode] = []
    orphans: list[BoardEvent] = []  # restarts seen before their crash line (the OS loop reaps first)
    for event in sorted(events, key=lambda e: e.t):
        if event.name == EventName.CRASH:
            episode = CrashEpisode(_app_of(event), event)
            for orphan in orphans:
                if _app_of(orphan) == episode.app and 0 <= event.t - orphan.t <= ORPHAN_WINDOW:
                    episode.restart = orphan
                    orphans.remove(orphan)
                    break
            episodes.append(episode)
            continue
        if event.name in OUTCOMES or event.name in RESTARTS:
            if event.fields.get(EventKey.SPOOLED) == "1":
                if event.name in OUTCOMES:
                    _give_retry(episodes, event)
                continue  # a retry from the spool is not the crash's first outcome
            slot = "restart" if event.name in RESTARTS else "outcome"
            app = _app_of(event)
            sig = _sig_of(event)
            for episode in episodes:
                if getattr(episode, slot) is not None:
                    continue
                if app and episode.app and app != episode.app:
                    continue
                if sig and _sig_of(episode.crash) and sig != _sig_of(episode.crash):
                    continue
                setattr(episode, slot, event)
                break
            else:
                if slot == "restart":
                    orphans.append(event)
    return episodes


def _give_retry(episodes: list[CrashEpisode], event: BoardEvent) -> None:
    """A retry from the spool goes to the crash whose dump it sends: the same upload id; else (a dump
    spooled late gets a fresh id, a skip prints none) the oldest spooled dump of that signature."""
    waiting = [ep for ep in episodes if ep.in_spool]
    upload_id = event.fields.get(EventKey.UPLOAD_ID, "")
    sig = _sig_of(event)
    same_id = [ep for ep in waiting if upload_id and ep.upload_id == upload_id]
    # two different ids are two different dumps; a missing id matches any
    maybe = [ep for ep in waiting if not (upload_id and ep.upload_id)]
    same_sig = [ep for ep in maybe if sig and _sig_of(ep.crash) == sig]
    candidates = same_id or same_sig or maybe
    if candidates:
        candidates[0].retries.append(event)


def board_episodes(
    events: Mapping[str, list[BoardEvent]], boards: list[str], app: str | None = None
) -> Iterator[tuple[str, CrashEpisode]]:
    """(board, episode) for every crash on the boards, in board order; only the app's when given."""
    for b in boards:
        for ep in crash_episodes(events.get(b, [])):
            if app and ep.app != app:
                continue
            yield b, ep
