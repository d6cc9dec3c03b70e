"""What one crash costs an emulated board in host CPU, and how long the board waited for a CPU.

Used by ``testbed bench crash`` and ``testbed bench fleet``: the runner builds its boards
through a :class:`RecordingFactory`, which keeps each QEMU board (and so its
``host_cpu`` monitor, readable after close) and restores them staggered; afterwards
:func:`episode_costs` pairs every crash with its outcome and restart (host clock, from
the boards' own event lines) and reads the board's QEMU CPU over it.

Kinds of crash, by their outcome: ``off`` (collection off: no reporter, ``dump-skipped
reason=optout``), ``throttled`` (``dump-skipped reason=throttled``), ``uploaded``
(``upload-ok``), ``failed`` (``upload-fail``), other skip reasons by name, ``none``.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

from testbed.board.hostcpu import STARVED_SHARE, CpuWindow
from testbed.contract.events import EventName
from testbed.scenario.results import BoardEvent
from testbed.scenario.timeline import crash_episodes

#: After an app-restart line the new app still starts (exec, heap, FIFO): counted in its crash.
RESTART_TAIL_SECONDS = 0.5
#: How the runner's crash commands begin (testbed.scenario.runner.crash_command).
CRASH_COMMAND = "crashapp "
#: Boards restored at once start this far apart, so their restores do not all peak together.
STAGGER_SECONDS = 0.3

KIND_OF_SKIP = {"optout": "off", "no-reporter": "off", "stale-sync": "off"}


class RecordingFactory:
    """A board factory (runner's BoardFactory) that keeps the boards it made and staggers them.

    ``tb_size_mib`` runs the boards with another translation cache than the profile's
    (to measure the profile before and after, in the same code).
    """

    def __init__(self, tb_size_mib: int | None = None, stagger: float = STAGGER_SECONDS) -> None:
        from testbed.board.snapshot import ensure_snapshot
        from testbed.image.build import ensure_image

        self.image = ensure_image()
        self.snapshot = ensure_snapshot(self.image)
        self.tb_size_mib = tb_size_mib
        self.stagger = stagger
        self.boards: dict[str, Any] = {}
        self.ready_s: dict[str, float] = {}  # restore + provision, wall seconds per board
        self.crash_sent: dict[str, list[float]] = {}  # monotonic times crash commands were sent
        self.first_start: float | None = None
        self.last_ready: float | None = None
        self._lock = threading.Lock()
        self._next_start = 0.0

    def _slot(self) -> None:
        """Wait for this board's turn to start: at most one start per ``stagger`` seconds."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self.stagger
        if start > now:
            time.sleep(start - now)

    def __call__(self, name: str, device_id: str, secret: str, port: int) -> Any:
        from testbed.board.identity import Identity
        from testbed.board.profile_bench import ProfiledBoard
        from testbed.board.qemu import QemuBoard

        self._slot()
        t0 = time.monotonic()
        if self.tb_size_mib is None:
            board = QemuBoard(self.image, name=name, ssh=False)
        else:
            board = ProfiledBoard(self.image, name=name, ssh=False, tb_size_mib=self.tb_size_mib)
        try:
            board.restore(self.snapshot)
            board.provision(Identity.for_port(device_id, secret, port))
        except BaseException:
            board.close()
            raise
        with self._lock:
            self.boards[name] = board
            self.ready_s[name] = time.monotonic() - t0
            self.first_start = min(t0, self.first_start or t0)
            self.last_ready = time.monotonic()
            self.crash_sent[name] = []
        self._watch_crash_commands(name, board)
        return board

    @property
    def fleet_up_s(self) -> float | None:
        """From the first board's restore to the last one provisioned."""
        if self.first_start is None or self.last_ready is None:
            return None
        return self.last_ready - self.first_start

    def _watch_crash_commands(self, name: str, board: Any) -> None:
        """Note when each crash command goes to the board (a storm's commands go out a few at a time)."""
        run = board.console.run
        sent = self.crash_sent[name]

        def run_noting_crashes(cmd: str, *args: Any, **kwargs: Any) -> Any:
            if cmd.startswith(CRASH_COMMAND):
                sent.append(time.monotonic())
            return run(cmd, *args, **kwargs)

        board.console.run = run_noting_crashes


@dataclass
class EpisodeCost:
    board: str
    kind: str
    started: float  # monotonic: the crash command was sent (its step's start)
    restart_s: float | None  # the firmware's after_ms
    outcome_s: float | None  # crash line -> outcome line (host clock)
    skip_s: float | None  # crash command -> dump-skipped (host clock): the skip decision's latency
    cpu_s: float  # QEMU CPU above the board's idle rate, command to restart + tail
    host: CpuWindow  # command to restart line: what the board got and waited for

    @property
    def starved(self) -> bool:
        return self.host.wait_share > STARVED_SHARE


def kind_of(outcome: BoardEvent | None) -> str:
    if outcome is None:
        return "none"
    if outcome.name == "upload-ok":
        return "uploaded"
    if outcome.name == "upload-fail":
        return "failed"
    reason = outcome.fields.get("reason", "?")
    return KIND_OF_SKIP.get(reason, reason)


def raw_events(board: Any) -> list[BoardEvent]:
    """A board's events on the host's monotonic clock (t = time.monotonic() at arrival)."""
    return [BoardEvent(e.name, dict(e.fields), e.monotonic, e.wall) for e in list(board.events)]


def episode_costs(board_name: str, board: Any, crash_starts: list[float], idle_rate: float,
                  until: float | None = None) -> list[EpisodeCost]:  # fmt: skip
    """Each crash of the board after crash_starts[0], with its cost.

    ``crash_starts``: monotonic times the crash commands were sent to this board, in order
    (a crash episode's window starts at the last of them before its crash line). A window
    ends at the restart line plus :data:`RESTART_TAIL_SECONDS`, or at the next crash
    command, or at ``until``.
    """
    if not crash_starts:
        return []
    out: list[EpisodeCost] = []
    episodes = [e for e in crash_episodes(raw_events(board)) if e.crash.t >= crash_starts[0]]
    for ep in episodes:
        started = max((s for s in crash_starts if s <= ep.crash.t), default=crash_starts[0])
        later = [s for s in crash_starts if s > started]
        end = ep.restart.t + RESTART_TAIL_SECONDS if ep.restart is not None else (until or time.monotonic())
        if later:
            end = min(end, later[0])
        if until is not None:
            end = min(end, until)
        restart_line = ep.restart.t if ep.restart is not None else end
        skip_line = ep.outcome.t if ep.outcome is not None and ep.outcome.name == EventName.DUMP_SKIPPED else None
        out.append(EpisodeCost(
            board=board_name, kind=kind_of(ep.outcome), started=started, restart_s=ep.to_restart,
            outcome_s=ep.to_outcome, skip_s=skip_line - started if skip_line is not None else None,
            cpu_s=board.host_cpu.window(started, end).cpu_s - idle_rate * (end - started),
            host=board.host_cpu.window(started, max(restart_line, started + 1e-3)),
        ))  # fmt: skip
    return out


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": round(statistics.median(values), 4), "max": round(max(values), 4),
            "min": round(min(values), 4), "n": len(values)}  # fmt: skip


def summarize_kinds(costs: list[EpisodeCost]) -> dict[str, dict[str, Any]]:
    """Per kind of crash: QEMU CPU per crash, restart time, skip latency, waiting share."""
    kinds: dict[str, list[EpisodeCost]] = {}
    for c in costs:
        kinds.setdefault(c.kind, []).append(c)
    return {
        kind: {
            "crashes": len(cs),
            "qemu_cpu_per_crash_s": _stats([c.cpu_s for c in cs]),
            "crash_to_restart_s": _stats([c.restart_s for c in cs if c.restart_s is not None]),
            "skip_decision_s": _stats([c.skip_s for c in cs if c.skip_s is not None]),
            # the same from the crash line (printed once the crash is known: by the reporter, or
            # by the app manager when there is none)
            "skip_after_crash_line_s": _stats([c.outcome_s for c in cs if c.skip_s is not None and c.outcome_s is not None]),
            "host_wait_share": _stats([c.host.wait_share for c in cs]),
        }
        for kind, cs in sorted(kinds.items())
    }


def idle_rate_between(board: Any, t0: float, t1: float) -> float:
    """The board's QEMU CPU per wall second over an idle stretch."""
    return board.host_cpu.window(t0, t1).cpu_s / (t1 - t0) if t1 > t0 else 0.0


def run_offset(result: Any, boards: dict[str, Any]) -> float:
    """The monotonic time of the run's zero (StepRecord.start and BoardEvent.t count from it)."""
    for rec in result.boards:
        board = boards.get(rec.name)
        if board is not None and rec.events and board.events:
            return board.events[0].monotonic - rec.events[0].t
    raise ValueError("no board events to align the run's clock with")

