"""How much host CPU an emulated board got, and how long it waited for one.

An emulated board shares the host's cores with every other board and process;
a real device has its own. The kernel counts, per thread, the CPU time it ran
and the time it was runnable but waiting on a run queue (``/proc/<pid>/task/
<tid>/schedstat``: ``run_ns wait_ns timeslices``; present whenever the kernel
has ``CONFIG_SCHED_INFO``, no ``kernel.sched_schedstats`` switch needed).
:class:`HostCpuMonitor` samples those counters for all the threads of one
process in the background and answers, for any past interval, how much CPU the
board got and how long it waited (:meth:`HostCpuMonitor.window`).

One sampler thread serves every monitor of the process (48 boards do not make
48 threads); its own CPU cost is counted (:func:`sampler_cost`).

:data:`STARVED_SHARE` is the documented threshold: a board that waited for a
host CPU more than this share of an episode was starved, and a timing
expectation that failed during it says nothing about the device (docs/board.md).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

#: A board waiting for a host CPU (summed over its QEMU threads) more than this share of
#: an episode's wall time was starved: its timing says more about the host than the device.
#: 0.25: at that share a 5 s deadline has lost 1.25 s to the host, more than the slowest
#: restart measured on an idle host needs of margin (16-board storm: 3.9 s).
STARVED_SHARE = 0.25

#: Seconds between samples. A window's edges fall between samples and are interpolated.
SAMPLE_INTERVAL = 0.1
#: Past this many processes the interval grows in proportion (48 boards: 0.3 s), so the
#: sampler stays near 2% of a core however large the fleet (~0.15 ms per board per sample).
BOARDS_AT_FULL_RATE = 16
#: Fine history (every sample) and coarse history (one sample in COARSE_EVERY) lengths:
#: 5 minutes at 100 ms, then 1 hour at 1 s; about 1 MB per board at the most.
FINE_SAMPLES = 3000
#: Every this many samples, threads not known as guest CPUs have their names read again.
RENAME_CHECK_EVERY = 20
COARSE_EVERY = 10
COARSE_SAMPLES = 3600


@dataclass(frozen=True)
class Sample:
    t: float  # time.monotonic() when read
    cpu_ns: int  # CPU time, all threads so far (exited threads included at their last reading)
    wait_ns: int  # runnable but waiting for a CPU: the guest CPU threads (all threads if unnamed)
    slices: int  # times scheduled onto a CPU, all threads
    threads_wait_ns: int = 0  # waiting, all threads (the main loop's I/O too)


@dataclass(frozen=True)
class CpuWindow:
    """What a process got from the host over [t0, t1] (monotonic seconds).

    ``cpu_s``: CPU time of all the process's threads (what it cost the host); ``wait_s``:
    time its guest CPU thread was runnable but waiting for a host CPU (QEMU names it
    ``CPU 0/TCG`` with ``-name ...,debug-threads=on``; for a process without such names, all
    its threads summed); ``threads_wait_s``: all threads' waiting summed (may pass wall_s).
    """

    cpu_s: float
    wait_s: float
    wall_s: float
    slices: int = 0
    covered: bool = True  # False when the window reaches outside the samples (clamped)
    threads_wait_s: float = 0.0

    @property
    def wait_share(self) -> float:
        """The guest CPU's waiting for a host CPU, as a share of the wall time."""
        return self.wait_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def starved(self) -> bool:
        return self.wait_share > STARVED_SHARE

    def describe(self, what: str = "episode") -> str:
        """``waited 2.4 s of its 5.3 s episode for a CPU (45%)``."""
        return f"waited {self.wait_s:.1f} s of its {self.wall_s:.1f} s {what} for a CPU ({self.wait_share:.0%})"

    def as_dict(self) -> dict[str, float | int | bool]:
        return {"cpu_s": round(self.cpu_s, 4), "wait_s": round(self.wait_s, 4), "wall_s": round(self.wall_s, 4),
                "wait_share": round(self.wait_share, 4), "threads_wait_s": round(self.threads_wait_s, 4),
                "slices": self.slices, "covered": self.covered}  # fmt: skip


def read_schedstat(path: str) -> tuple[int, int, int] | None:
    """``(run_ns, wait_ns, timeslices)`` of one task, None when it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)  # os-level: a third of open()'s cost, it adds up over boards
        try:
            run, wait, slices = os.read(fd, 128).split()[:3]
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return None
    return int(run), int(wait), int(slices)


def _thread_name(task_dir: str, tid: int) -> str:
    try:
        with open(f"{task_dir}/{tid}/comm", "rb") as f:
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def schedstat_available(pid: int | None = None) -> bool:
    """True when this kernel gives per-task run delay (CONFIG_SCHED_INFO)."""
    return read_schedstat(f"/proc/{pid or os.getpid()}/schedstat") is not None


class HostCpuMonitor:
    """Samples one process's threads' CPU time and run delay until stop() or the process ends."""

    def __init__(self, pid: int, *, start: bool = True) -> None:
        self.pid = pid
        self._task_dir = f"/proc/{pid}/task"
        self._lock = threading.Lock()
        self._threads: dict[int, tuple[int, int, int]] = {}  # tid -> last reading
        self._retired = [0, 0, 0, 0]  # threads gone (or tids reused): run, wait, slices, guest CPU wait
        self._vcpus: set[int] = set()  # tids of the guest CPU threads (named "CPU n/...")
        self._fine: deque[Sample] = deque(maxlen=FINE_SAMPLES)
        self._coarse: deque[Sample] = deque(maxlen=COARSE_SAMPLES)
        self._count = 0
        self.exited = False
        self.stopped = False
        if start:
            self.sample()
            _SAMPLER.add(self)

    # -- sampling ----------------------------------------------------------------------

    def _read(self) -> Sample | None:
        try:
            tids = os.listdir(self._task_dir)
        except OSError:
            return None
        now = time.monotonic()
        seen: dict[int, tuple[int, int, int]] = {}
        for name in tids:
            reading = read_schedstat(f"{self._task_dir}/{name}/schedstat")
            if reading is not None:
                seen[int(name)] = reading
        if not seen:
            return None
        retired = self._retired
        for tid, last in self._threads.items():
            now_reading = seen.get(tid)
            # a thread that ended, or a tid reused by a new thread (its counters went back)
            if now_reading is None or now_reading[0] < last[0] or now_reading[2] < last[2]:
                retired[0] += last[0]
                retired[1] += last[1]
                retired[2] += last[2]
                if tid in self._vcpus:
                    retired[3] += last[1]
                    self._vcpus.discard(tid)
        # a thread is named by itself once running: look at new threads, and now and then again
        # at the unnamed ones (QEMU names its guest CPU thread at once; the check is cheap)
        fresh = seen.keys() - self._threads.keys()
        recheck = seen.keys() - self._vcpus if self._count % RENAME_CHECK_EVERY == 0 else fresh
        for tid in recheck:
            if _thread_name(self._task_dir, tid).startswith("CPU "):
                self._vcpus.add(tid)
        self._threads = seen
        run = retired[0] + sum(r[0] for r in seen.values())
        wait = retired[1] + sum(r[1] for r in seen.values())
        slices = retired[2] + sum(r[2] for r in seen.values())
        vcpu_wait = retired[3] + sum(seen[t][1] for t in self._vcpus if t in seen)
        named = bool(self._vcpus) or retired[3] > 0
        return Sample(now, run, vcpu_wait if named else wait, slices, wait)

    def sample(self) -> Sample | None:
        """Read the counters now and keep the sample; None once the process is gone."""
        with self._lock:
            if self.exited or self.stopped:
                return None
            s = self._read()
            if s is None:
                self.exited = True
                return None
            last = self._fine[-1] if self._fine else None
            if last is not None and (s.cpu_ns < last.cpu_ns or s.wait_ns < last.wait_ns):
                # cannot happen with the bookkeeping above; never let a window go negative
                s = Sample(s.t, max(s.cpu_ns, last.cpu_ns), max(s.wait_ns, last.wait_ns), max(s.slices, last.slices),
                           max(s.threads_wait_ns, last.threads_wait_ns))
            if len(self._fine) == self._fine.maxlen:
                # the oldest fine sample leaves: keep one in COARSE_EVERY of them
                if (self._count - FINE_SAMPLES) % COARSE_EVERY == 0:
                    self._coarse.append(self._fine[0])
            self._fine.append(s)
            self._count += 1
            return s

    def stop(self) -> None:
        """Stop sampling (the history stays readable). Idempotent."""
        if not self.stopped:
            self.sample()
            self.stopped = True
        _SAMPLER.remove(self)

    @property
    def running(self) -> bool:
        return not (self.stopped or self.exited)

    # -- reading -----------------------------------------------------------------------

    def samples(self) -> list[Sample]:
        with self._lock:
            return [*self._coarse, *self._fine]

    def latest(self) -> Sample | None:
        with self._lock:
            return self._fine[-1] if self._fine else None

    def window(self, t0: float, t1: float) -> CpuWindow:
        """CPU and waiting time over [t0, t1] (time.monotonic()), interpolated between samples.

        Edges outside the samples are clamped to the first / last one (``covered`` is then
        False); a window ending after the last sample of a running process reads the
        counters once more first.
        """
        if t1 < t0:
            t0, t1 = t1, t0
        last = self.latest()
        if self.running and (last is None or last.t < t1):
            self.sample()
        history = self.samples()
        if not history:
            return CpuWindow(0.0, 0.0, t1 - t0, 0, covered=False)
        covered = history[0].t <= t0 and (t1 <= history[-1].t or not self.running)
        a, b = _at(history, t0), _at(history, t1)
        return CpuWindow((b[0] - a[0]) / 1e9, (b[1] - a[1]) / 1e9, t1 - t0, int(round(b[2] - a[2])), covered,
                         (b[3] - a[3]) / 1e9)

    def total(self) -> CpuWindow:
        """Everything sampled, first sample to last."""
        history = self.samples()
        if not history:
            return CpuWindow(0.0, 0.0, 0.0, 0, covered=False)
        return self.window(history[0].t, history[-1].t)


def _values(s: Sample) -> tuple[float, float, float, float]:
    return float(s.cpu_ns), float(s.wait_ns), float(s.slices), float(s.threads_wait_ns)


def _at(history: list[Sample], t: float) -> tuple[float, ...]:
    """The counters at time t: linear between the samples around it, clamped outside them."""
    if t <= history[0].t:
        return _values(history[0])
    if t >= history[-1].t:
        return _values(history[-1])
    lo, hi = 0, len(history) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if history[mid].t <= t:
            lo = mid
        else:
            hi = mid
    a, b = history[lo], history[hi]
    f = (t - a.t) / (b.t - a.t) if b.t > a.t else 1.0
    return tuple(x + f * (y - x) for x, y in zip(_values(a), _values(b), strict=True))


class _Sampler:
    """The one background thread that samples every live monitor every SAMPLE_INTERVAL."""

    def __init__(self) -> None:
        self._monitors: list[HostCpuMonitor] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.cpu_s = 0.0  # the sampler thread's own CPU time
        self.ticks = 0
        self.samples = 0

    def add(self, monitor: HostCpuMonitor) -> None:
        with self._lock:
            self._monitors.append(monitor)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="host-cpu-sampler", daemon=True)
                self._thread.start()

    def remove(self, monitor: HostCpuMonitor) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._monitors.remove(monitor)

    def _loop(self) -> None:
        while True:
            with self._lock:
                monitors = list(self._monitors)
                if not monitors:
                    self._thread = None
                    return
            c0 = time.thread_time()
            for m in monitors:
                if m.sample() is None:
                    self.remove(m)
                else:
                    self.samples += 1
            self.ticks += 1
            self.cpu_s += time.thread_time() - c0
            self._wake.wait(SAMPLE_INTERVAL * max(1.0, len(monitors) / BOARDS_AT_FULL_RATE))


_SAMPLER = _Sampler()


def sampler_cost() -> dict[str, float | int]:
    """The sampler's own CPU so far: total seconds, and per sample of one process."""
    per = _SAMPLER.cpu_s / _SAMPLER.samples if _SAMPLER.samples else 0.0
    return {"cpu_s": round(_SAMPLER.cpu_s, 4), "samples": _SAMPLER.samples, "ticks": _SAMPLER.ticks,
            "cpu_us_per_sample": round(per * 1e6, 1),
            # what one board costs the host in sampler CPU, as a share of one core
            "core_share_per_board": round(per / SAMPLE_INTERVAL, 5)}  # fmt: skip
