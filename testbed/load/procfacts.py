"""Facts about the service's process during a load run: its memory and its client connections."""

from __future__ import annotations

import threading
import time

import psutil

from testbed.deadline import Deadline


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def open_connections(pid: int, port: int) -> int:
    """TCP connections of ``pid`` on its service ``port`` other than the listening socket."""
    n = 0
    for conn in psutil.Process(pid).net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN:
            continue
        if conn.laddr and conn.laddr.port == port:
            n += 1
    return n


def wait_connections_drained(pid: int, port: int, timeout: float) -> tuple[int, float]:
    """Poll until the service holds no client connections; (count left, seconds waited)."""
    deadline = Deadline(timeout)
    left = open_connections(pid, port)
    while left and not deadline.expired:
        deadline.sleep(0.2)
        left = open_connections(pid, port)
    return left, round(deadline.elapsed, 2)


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread: [(wall time, bytes), ...]."""

    def __init__(self, pid: int | None, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.pid:
            try:
                self.samples.append((time.time(), rss_bytes(self.pid)))
            except psutil.Error:  # the process is gone: nothing more to sample
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
