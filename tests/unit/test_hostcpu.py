"""HostCpuMonitor against real processes: busy children pinned to one CPU, threads that come and go."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from testbed.board import hostcpu
from testbed.board.hostcpu import STARVED_SHARE, CpuWindow, HostCpuMonitor, Sample, _at

pytestmark = pytest.mark.skipif(not hostcpu.schedstat_available(), reason="kernel without per-task schedstat")

#: A child that spins (bounded: it exits by itself after a while even if the test dies).
SPIN = "import time\nend = time.monotonic() + {secs}\nwhile time.monotonic() < end: pass\n"
#: A child whose worker threads spin briefly, end, and are replaced by new ones.
THREADS = (
    "import threading, time\n"
    "def spin(s):\n"
    "    end = time.monotonic() + s\n"
    "    while time.monotonic() < end: pass\n"
    "end = time.monotonic() + {secs}\n"
    "while time.monotonic() < end:\n"
    "    ts = [threading.Thread(target=spin, args=(0.05,)) for _ in range(3)]\n"
    "    [t.start() for t in ts]; [t.join() for t in ts]\n"
)


def _spawn(code: str, cpu: int | None) -> subprocess.Popen:
    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return subprocess.Popen([sys.executable, "-c", code], preexec_fn=pin)


@pytest.fixture
def children():
    procs: list[subprocess.Popen] = []

    def spawn(code: str, cpu: int | None = None) -> subprocess.Popen:
        procs.append(_spawn(code, cpu))
        return procs[-1]

    yield spawn
    for p in procs:
        p.kill()
        p.wait()


def _until(predicate, timeout: float = 20.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def test_contended_child_waits_and_figures_are_sane(children):
    """Three spinners on one CPU: each runs about a third of the time and waits the rest."""
    cpu = min(os.sched_getaffinity(0))
    procs = [children(SPIN.format(secs=30), cpu) for _ in range(3)]
    mon = HostCpuMonitor(procs[0].pid)
    try:
        t0 = time.monotonic()
        got = _until(lambda: (w := mon.window(t0, time.monotonic())).wait_s > 0.3 and w)
        assert got, "a spinner sharing one CPU with two others never waited for it"
        w: CpuWindow = got
        # run + wait of a single-threaded spinner cannot exceed the wall time (small slack for
        # the window's interpolated edges), and it ran at least a little
        assert 0 < w.cpu_s and w.cpu_s + w.wait_s <= w.wall_s * 1.1 + 0.05
        assert w.wait_share > 0 and w.starved == (w.wait_share > STARVED_SHARE)
        assert w.slices > 0
        assert "for a CPU" in w.describe()
        # the counters only grow: successive windows from t0 never shrink
        previous = w
        for _ in range(5):
            time.sleep(0.12)
            nxt = mon.window(t0, time.monotonic())
            assert nxt.cpu_s >= previous.cpu_s - 1e-9 and nxt.wait_s >= previous.wait_s - 1e-9
            previous = nxt
        history = mon.samples()
        assert len(history) >= 5, "the background sampler did not keep sampling"
        assert all(b.t > a.t and b.cpu_ns >= a.cpu_ns and b.wait_ns >= a.wait_ns
                   for a, b in zip(history, history[1:], strict=False))  # fmt: skip
    finally:
        mon.stop()


def test_threads_that_end_keep_their_counted_time(children):
    """Worker threads appear and exit all the time; the process's totals never go back."""
    proc = children(THREADS.format(secs=30))
    mon = HostCpuMonitor(proc.pid)
    try:
        t0 = time.monotonic()
        assert _until(lambda: mon.window(t0, time.monotonic()).cpu_s > 0.5), "the threaded child never ran"
        history = mon.samples()
        assert all(b.cpu_ns >= a.cpu_ns for a, b in zip(history, history[1:], strict=False))
        # short-lived threads were seen and retired: more CPU counted than the main thread alone ran
        main = hostcpu.read_schedstat(f"/proc/{proc.pid}/task/{proc.pid}/schedstat")
        assert main is not None and history[-1].cpu_ns > main[0]
    finally:
        mon.stop()


#: A child with a thread named as QEMU names its guest CPU ("CPU 0/TCG") and an unnamed one, both spinning.
NAMED = (
    "import ctypes, threading, time\n"
    "def spin(name):\n"
    "    if name: ctypes.CDLL('libc.so.6').prctl(15, name, 0, 0, 0)\n"
    "    end = time.monotonic() + {secs}\n"
    "    while time.monotonic() < end: pass\n"
    "ts = [threading.Thread(target=spin, args=(n,)) for n in (b'CPU 0/TCG', None)]\n"
    "[t.start() for t in ts]; [t.join() for t in ts]\n"
)


def test_guest_cpu_thread_wait_is_told_apart(children):
    """wait_s is the guest CPU thread's waiting; threads_wait_s all threads' (here two spinners)."""
    cpu = min(os.sched_getaffinity(0))
    proc = children(NAMED.format(secs=30), cpu)
    children(SPIN.format(secs=30), cpu)
    mon = HostCpuMonitor(proc.pid)
    try:
        # the child names its thread once running; unnamed threads are looked at again every few samples
        assert _until(lambda: bool(mon._vcpus)), "the thread named 'CPU 0/TCG' was not recognised"
        t0 = time.monotonic()
        got = _until(lambda: (w := mon.window(t0, time.monotonic())).wait_s > 0.2 and w.threads_wait_s > 0.5 and w)
        assert got, "the named thread never waited for its CPU"
        assert got.wait_s < got.threads_wait_s  # the unnamed spinner waited too, and only counts in the sum
        assert got.wait_s <= got.wall_s * 1.1 + 0.05
    finally:
        mon.stop()


def test_process_exit_and_stop(children):
    proc = children(SPIN.format(secs=0.3))
    mon = HostCpuMonitor(proc.pid)
    t0 = time.monotonic()
    proc.wait(timeout=20)
    assert _until(lambda: mon.sample() is None and mon.exited), "the monitor did not notice the exit"
    assert not mon.running
    w = mon.window(t0 - 1, time.monotonic() + 1)
    assert w.cpu_s > 0 and not w.covered  # the edges lie outside what was sampled
    n = len(mon.samples())
    mon.stop()
    mon.stop()  # idempotent
    assert len(mon.samples()) == n


def test_monitor_of_a_missing_process():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    mon = HostCpuMonitor(proc.pid)
    assert mon.exited and mon.samples() == []
    w = mon.window(0.0, 1.0)
    assert (w.cpu_s, w.wait_s, w.covered) == (0.0, 0.0, False)
    mon.stop()


def test_sampler_cost_is_counted(children):
    proc = children(SPIN.format(secs=5))
    mon = HostCpuMonitor(proc.pid)
    try:
        assert _until(lambda: hostcpu.sampler_cost()["samples"] >= 3)
        cost = hostcpu.sampler_cost()
        assert cost["cpu_s"] > 0 and cost["cpu_us_per_sample"] > 0
    finally:
        mon.stop()


# -- the window arithmetic, on made-up samples ---------------------------------------------


def _mon(samples: list[Sample]) -> HostCpuMonitor:
    mon = HostCpuMonitor(os.getpid(), start=False)
    mon._fine.extend(samples)
    mon.stopped = True
    return mon


def test_window_interpolates_between_samples_and_clamps_outside():
    s = [Sample(10.0, 0, 0, 0), Sample(11.0, 1_000_000_000, 500_000_000, 10), Sample(12.0, 1_000_000_000, 500_000_000, 10)]
    mon = _mon(s)
    w = mon.window(10.5, 11.5)
    assert w.cpu_s == pytest.approx(0.5) and w.wait_s == pytest.approx(0.25) and w.wall_s == pytest.approx(1.0)
    assert w.wait_share == pytest.approx(0.25) and not w.starved
    assert mon.window(11.5, 10.5) == w  # reversed edges
    out = mon.window(9.0, 13.0)
    assert out.cpu_s == pytest.approx(1.0) and out.wall_s == pytest.approx(4.0) and not out.covered
    assert _at(s, 10.0)[:3] == (0.0, 0.0, 0.0)
    assert mon.total().cpu_s == pytest.approx(1.0)


def test_history_is_bounded(monkeypatch):
    monkeypatch.setattr(hostcpu, "FINE_SAMPLES", 20)
    monkeypatch.setattr(hostcpu, "COARSE_SAMPLES", 5)
    mon = HostCpuMonitor(os.getpid(), start=False)
    mon._fine = hostcpu.deque(maxlen=20)
    mon._coarse = hostcpu.deque(maxlen=5)
    for _ in range(200):
        mon.sample()
    history = mon.samples()
    assert len(history) == 25
    assert all(b.t >= a.t for a, b in zip(history, history[1:], strict=False))
