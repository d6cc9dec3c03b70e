"""A qemu-system-arm process and its QMP connection: started on free ports, never left behind.

:class:`QemuProcess` starts QEMU from a command line its board builds for the
ports it is given, retries with other ports when another process took one
meanwhile, connects QMP, and kills QEMU on close(). Whatever owns processes
(a :class:`~testbed.board.qemu.QemuBoard`) registers with :func:`track`: they
are closed on interpreter exit (atexit) and on SIGTERM/SIGHUP, and QEMU dies
with its parent even after a SIGKILL (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from testbed.board.errors import BoardError
from testbed.board.qmp import Qmp
from testbed.paths import cache_dir

#: QEMU's own words for a port it could not bind (another process took it meanwhile).
_PORT_RACE = ("Address already in use", "Failed to bind", "Could not set up host forwarding rule")


class QemuExited(BoardError):
    """QEMU exited on its own before QMP answered (its stderr says why: a bad option, a bad state file)."""


class Closable(Protocol):
    def close(self) -> None: ...


_live: weakref.WeakSet = weakref.WeakSet()
_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and not handed out by this process before."""
    with _ports_lock:
        for _ in range(50):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise BoardError("no free TCP port on 127.0.0.1")


def logs_dir() -> Path:
    d = cache_dir() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def prune_logs(keep: int = 300) -> None:
    """Keep the newest ``keep`` console logs (each with its raw transcript)."""
    from testbed.board.console_log import raw_path_for

    try:
        logs = sorted((p for p in logs_dir().glob("*.log") if not p.name.endswith(".raw.log")),
                      key=lambda p: p.stat().st_mtime)  # fmt: skip
        for p in logs[:-keep]:
            p.unlink(missing_ok=True)
            raw_path_for(p).unlink(missing_ok=True)
    except OSError:
        pass


def _close_all() -> None:
    for owner in list(_live):
        with contextlib.suppress(Exception):
            owner.close()


atexit.register(_close_all)
_signals_installed = False


def _install_signal_handlers() -> None:
    """On SIGTERM/SIGHUP, close every tracked owner, then exit as the signal would."""
    global _signals_installed
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    _signals_installed = True
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous not in (signal.SIG_DFL, None):
            continue  # somebody else handles it (pytest, uvicorn...): leave it, atexit still runs

        def handler(sig, frame, _sig=signum):
            _close_all()
            signal.signal(_sig, signal.SIG_DFL)
            os.kill(os.getpid(), _sig)

        signal.signal(signum, handler)


def track(owner: Closable) -> None:
    """Close ``owner`` on interpreter exit and on SIGTERM/SIGHUP (until :func:`untrack`)."""
    _live.add(owner)
    _install_signal_handlers()


def untrack(owner: Closable) -> None:
    _live.discard(owner)


def die_with_parent() -> None:
    """In the QEMU child: die with the parent (no stray QEMU after a SIGKILL'd test run)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


#: (console port or None, SSH port or None) -> QEMU's argv
CommandLine = Callable[[int | None, int | None], list[str]]


class QemuProcess:
    """One QEMU process: its ports, its QMP, its stderr file in ``work_dir``."""

    def __init__(self, name: str, work_dir: Path, *, console_port: bool, ssh_port: bool) -> None:
        self.name = name
        self.dir = work_dir
        self.wants_console_port = console_port
        self.wants_ssh_port = ssh_port
        self.popen: subprocess.Popen | None = None
        self.qmp: Qmp | None = None
        self.console_port: int | None = None
        self.ssh_port: int | None = None
        self.started_monotonic: float | None = None

    @property
    def qmp_socket(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def stderr_path(self) -> Path:
        return self.dir / "qemu.stderr"

    def start(self, command: CommandLine, attempts: int = 5) -> None:
        """Start QEMU (paused, as ``-S`` asks) and connect QMP; other ports when one was taken."""
        if self.popen is not None:
            raise BoardError(f"{self.name} is already started")
        last_error = ""
        for _attempt in range(attempts):
            self.console_port = free_port() if self.wants_console_port else None
            self.ssh_port = free_port() if self.wants_ssh_port else None
            with self.stderr_path.open("wb") as stderr:
                self.popen = subprocess.Popen(
                    command(self.console_port, self.ssh_port),
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    preexec_fn=die_with_parent if threading.current_thread() is threading.main_thread() else None,
                )
            self.started_monotonic = time.monotonic()
            popen = self.popen
            self.qmp = Qmp(self.qmp_socket, self.name)

            def alive(p: subprocess.Popen = popen) -> bool:
                return p.poll() is None

            try:
                self.qmp.connect(timeout=10, alive=alive)
                return
            except BoardError:
                exited = popen.poll() is not None
                last_error = self.stderr()
                self.kill()
                self.qmp.close()
                self.qmp = None
                self.popen = None
                if any(m in last_error for m in _PORT_RACE):
                    continue  # a port race with another process: try other ports
                error = QemuExited if exited else BoardError
                raise error(f"{self.name}: QEMU did not start:\n{last_error}") from None
        raise BoardError(f"{self.name}: QEMU could not bind its ports:\n{last_error}")

    def stderr(self) -> str:
        """What QEMU printed so far."""
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace")
        return ""

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def rss_bytes(self) -> tuple[int, int]:
        """(current, peak) resident memory of the QEMU process."""
        current = peak = 0
        if self.popen is None:
            return current, peak
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    current = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
        return current, peak

    def kill(self) -> None:
        """SIGTERM, then SIGKILL if QEMU has not exited in 3 s."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)

    def close(self) -> None:
        """Ask QEMU to quit over QMP, kill it if it does not, close QMP."""
        if self.qmp is not None and self.running:
            with contextlib.suppress(Exception):
                self.qmp.cmd("quit", timeout=2)
        with contextlib.suppress(Exception):
            self.kill()
        if self.qmp is not None:
            with contextlib.suppress(Exception):
                self.qmp.close()
