"""Per-crash host CPU and waiting, from a board's events and its CPU samples (no board)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from testbed.board.hostcpu import STARVED_SHARE, HostCpuMonitor, Sample
from testbed.scenario.crashcost import episode_costs, idle_rate_between, kind_of, summarize_kinds
from testbed.scenario.results import BoardEvent


@dataclass
class _Ev:
    name: str
    fields: dict[str, str]
    monotonic: float
    wall: float = 0.0


@dataclass
class _Board:
    host_cpu: HostCpuMonitor
    events: list[_Ev] = field(default_factory=list)


def _monitor(rate: dict[tuple[float, float], tuple[float, float]], until: float) -> HostCpuMonitor:
    """Samples every 0.1 s; ``rate``: (t0, t1) -> (cpu per s, wait per s) there, 0.01 / 0 elsewhere."""
    mon = HostCpuMonitor(os.getpid(), start=False)
    cpu = wait = 0.0
    t = 0.0
    while t <= until + 1e-9:
        mon._fine.append(Sample(t, int(cpu * 1e9), int(wait * 1e9), int(t * 10)))
        c, w = next((v for (a, b), v in rate.items() if a <= t < b), (0.01, 0.0))
        cpu, wait, t = cpu + c * 0.1, wait + w * 0.1, round(t + 0.1, 6)
    mon.stopped = True
    return mon


def test_costs_by_kind_with_idle_subtracted_and_starvation():
    # idle 0..2 s at 0.01; crash 1 (collection off) at 3 s, cheap and prompt; crash 2 (throttled)
    # at 6 s, 0.5 CPU/s and waiting 0.8 s per s until its restart at 8 s
    mon = _monitor({(3.0, 3.5): (0.2, 0.0), (6.0, 8.0): (0.5, 0.8)}, until=12)
    board = _Board(mon, [
        _Ev("crash", {"app": "crashapp", "sig": "-"}, 3.05),
        _Ev("dump-skipped", {"reason": "optout", "app": "crashapp"}, 3.06),
        _Ev("app-restart", {"app": "crashapp", "after_ms": "40"}, 3.1),
        _Ev("crash", {"app": "crashapp", "sig": "a" * 32}, 6.5),
        _Ev("dump-skipped", {"reason": "throttled", "sig": "a" * 32}, 7.5),
        _Ev("app-restart", {"app": "crashapp", "after_ms": "1900"}, 8.0),
    ])  # fmt: skip
    rate = idle_rate_between(board, 0.0, 2.0)
    assert rate == pytest.approx(0.01, abs=1e-6)
    costs = episode_costs("b-1", board, [3.0, 6.0], rate, until=12.0)
    off, throttled = costs
    assert (off.kind, throttled.kind) == ("off", "throttled")
    # 0.5 s at 0.2 CPU/s = 0.1 s; the window is 3.0 .. 3.6 (restart + 0.5 s tail), idle 0.01/s removed
    assert off.cpu_s == pytest.approx(0.1 + 0.01 * 0.1 - 0.0, abs=0.01)
    assert off.skip_s == pytest.approx(0.06) and off.restart_s == 0.04 and not off.starved
    assert throttled.skip_s == pytest.approx(1.5) and throttled.restart_s == 1.9
    assert throttled.host.wait_s == pytest.approx(1.6, abs=0.05) and throttled.host.wall_s == pytest.approx(2.0)
    assert throttled.starved and throttled.host.wait_share > STARVED_SHARE
    kinds = summarize_kinds(costs)
    assert set(kinds) == {"off", "throttled"}
    assert kinds["throttled"]["skip_decision_s"]["median"] == pytest.approx(1.5)
    assert kinds["throttled"]["skip_after_crash_line_s"]["median"] == pytest.approx(1.0)
    assert kinds["off"]["qemu_cpu_per_crash_s"]["n"] == 1


def test_the_next_crash_command_ends_a_window_and_kinds_are_named():
    mon = _monitor({}, until=5)
    board = _Board(mon, [_Ev("crash", {"app": "crashapp"}, 1.1), _Ev("upload-ok", {"ms": "300"}, 1.5)])
    (c,) = episode_costs("b-1", board, [1.0, 1.8], 0.0, until=5.0)
    assert c.kind == "uploaded" and c.restart_s is None and c.skip_s is None
    assert c.cpu_s == pytest.approx(0.008, abs=1e-3)  # 1.0 .. 1.8 at 0.01/s
    assert kind_of(None) == "none"
    assert kind_of(BoardEvent("upload-fail", {"reason": "connect"}, 0)) == "failed"
    assert kind_of(BoardEvent("dump-skipped", {"reason": "too-large"}, 0)) == "too-large"
    assert episode_costs("b-1", board, [], 0.0) == []
