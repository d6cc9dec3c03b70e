"""Crash episodes: a crash event paired with what followed it on the same board.

Used by expectations (restart within T), the report (latencies on the
timeline) and ``testbed bench crash``.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.contract.device_api import UPLOAD_DEADLINE_MS
from testbed.contract.events import EventName
from testbed.scenario.results import BoardEvent

OUTCOMES = (EventName.UPLOAD_OK, EventName.UPLOAD_FAIL, EventName.DUMP_SKIPPED)


@dataclass
class CrashEpisode:
    app: str
    crash: BoardEvent
    outcome: BoardEvent | None = None  # upload-ok, upload-fail or dump-skipped
    restart: BoardEvent | None = None

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
            if event.fields.get("spooled") == "1":
                continue  # a retry from the spool: it belongs to no crash on the timeline
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
