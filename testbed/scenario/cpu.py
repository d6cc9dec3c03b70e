"""The boards' host CPU over a run: figures for a time window, attached to episodes and steps.

Each board with the host-cpu capability has a monitor (``board.host_cpu``) that samples its
emulator's CPU time and run delay continuously; this turns its windows into
:class:`~testbed.scenario.verdict.CpuFigures` in scenario time.
"""

from __future__ import annotations

from collections.abc import Callable

from testbed.scenario.results import BoardEvent, EpisodeRecord, ScenarioResult
from testbed.scenario.timeline import crash_episodes
from testbed.scenario.verdict import CpuFigures, HostCpuMonitor


class BoardCpu:
    def __init__(self, t0: Callable[[], float]) -> None:
        self.monitors: dict[str, HostCpuMonitor] = {}
        self._t0 = t0

    def add(self, board: str, monitor: HostCpuMonitor | None) -> None:
        if monitor is not None:
            self.monitors[board] = monitor

    def figures(self, board: str, start: float, end: float) -> CpuFigures | None:
        """The board's host CPU between scenario times ``start`` and ``end``; None when not measured."""
        monitor = self.monitors.get(board)
        if monitor is None:
            return None
        t0 = self._t0()
        w = monitor.window(t0 + start, t0 + max(start, end))
        return CpuFigures(board, round(start, 3), round(end, 3), w.cpu_s, w.wait_s, w.wall_s)

    def attach(self, result: ScenarioResult, events: dict[str, list[BoardEvent]], now: float) -> None:
        """Every crash episode (crash to restart), and every step on every measured board, gets
        the board's figures (the results JSON and the report carry them)."""
        for board, board_events in events.items():
            for ep in crash_episodes(board_events):
                if ep.crash.t < 0:
                    continue
                # the OS may print its component's restart before the reporter's crash line
                end = ep.restart.t if ep.restart is not None else now
                figures = self.figures(board, min(ep.crash.t, end), max(ep.crash.t, end))
                result.episodes.append(EpisodeRecord(
                    board, ep.app, round(ep.crash.t, 3), ep.outcome_name,
                    round(ep.restart.t, 3) if ep.restart is not None else None, ep.to_restart,
                    figures.to_dict() if figures else None))  # fmt: skip
        for record in result.steps:
            for board in self.monitors:
                figures = self.figures(board, record.start, record.end)
                if figures is not None:
                    record.host_cpu[board] = figures.to_dict()
