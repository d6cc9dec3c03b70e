"""A real board's host CPU figures: its QEMU process's CPU time and its guest CPU's run delay."""

from __future__ import annotations

import time

import pytest

from testbed.board.hostcpu import schedstat_available
from testbed.board.protocols import Capability, require

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not schedstat_available(), reason="kernel without per-task schedstat")]  # fmt: skip


def test_a_board_reports_its_cpu_and_waiting(board):
    require(board, Capability.HOST_CPU)
    mon = board.host_cpu
    assert mon is not None and mon.running and mon.pid == board.process.pid
    assert mon._vcpus, "QEMU's guest CPU thread (CPU 0/TCG) was not found: wait_s would be all threads"
    t0 = time.monotonic()
    board.console.run_check("i=0; while [ $i -lt 20 ]; do busybox true; i=$((i+1)); done", timeout=60)
    w = mon.window(t0, time.monotonic())
    assert w.cpu_s > 0 and w.slices > 0 and w.covered
    # one guest CPU: its waiting cannot pass the wall time (small slack for interpolated edges)
    assert 0 <= w.wait_s <= w.wall_s * 1.05 + 0.05 and w.wait_s <= w.threads_wait_s + 1e-6
    before = mon.total().cpu_s
    board.close()
    assert not mon.running
    assert mon.total().cpu_s >= before  # the history outlives the board
