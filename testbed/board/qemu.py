"""QemuBoard: an emulated MT3620-like board (Cortex-A7, 64 MiB) driven from Python.

    with QemuBoard(image) as board:
        board.boot()                       # cold boot to `@tb event=boot-ready`
        out, code = board.console.run("uname -a")
        board.link_down(); board.link_up()

    with QemuBoard(image) as board:
        board.restore(snapshot)            # ~0.6 s instead of ~7 s
        board.provision(identity)

Every board has its own free ports and temp dir; all are cleaned up on
close(), on interpreter exit (atexit) and on SIGTERM/SIGHUP.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from testbed.board.console import Console, Event
from testbed.board.errors import (
    BoardBootTimeout,
    BoardCrashed,
    BoardError,
    ConsoleClosed,
    ConsoleTimeout,
)
from testbed.board.hostcpu import HostCpuMonitor
from testbed.board.identity import Identity
from testbed.board.protocols import Capability
from testbed.board.qmp import Qmp, QmpEvent
from testbed.image.build import Image, ensure_image
from testbed.paths import cache_dir

QEMU = "qemu-system-arm"
#: TCG translation cache of a board, MiB, chosen by `testbed bench board-profile` (docs/board.md,
#: "The profile"): 12 made every exec on the board ~4x dearer (51 vs 12-14 ms of QEMU CPU) and a
#: crash + restart with collection off 7x (0.30 vs 0.04 s); 24, 32 and 64 cost the same there
#: and settle at ~125 MiB RSS, but 24 still flushed on the upload path. Even full, 32 keeps a
#: board under RSS_LIMIT_MB (~138 MB estimated; 64 full would not).
TRANSLATION_CACHE_MIB = 32
#: What one board may use (MB): 24 GiB hold well over 100 boards.
RSS_LIMIT_MB = 160
#: The MT3620-like profile. Changing it invalidates saved snapshots (it is part of their key).
PROFILE = {
    "machine": "virt",
    "cpu": "cortex-a7",
    "smp": 1,
    "memory_mib": 64,
    "nic": "virtio-net-device",
    # The guest reports free pages; QEMU drops them (lower RSS, zero pages in snapshots).
    "balloon": "virtio-balloon-device,free-page-reporting=on",
    "mac": "52:54:00:12:34:56",
    # No zeroing of every allocated page (Debian's default init_on_alloc=1): with the balloon,
    # it keeps a board's RSS down (docs/board.md).
    "accel": f"tcg,tb-size={TRANSLATION_CACHE_MIB}",
    "append": "console=ttyAMA0 quiet init_on_alloc=0",
}
NIC_ID = "nic0"

_live_boards: weakref.WeakSet[QemuBoard] = weakref.WeakSet()
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


def _prune_logs(keep: int = 300) -> None:
    try:
        logs = sorted(logs_dir().glob("*.log"), key=lambda p: p.stat().st_mtime)
        for p in logs[:-keep]:
            p.unlink(missing_ok=True)
    except OSError:
        pass


def _close_all_boards() -> None:
    for board in list(_live_boards):
        with contextlib.suppress(Exception):
            board.close()


atexit.register(_close_all_boards)
_signals_installed = False


def _install_signal_handlers() -> None:
    """On SIGTERM/SIGHUP, close boards, then exit as the signal would."""
    global _signals_installed
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    _signals_installed = True
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous not in (signal.SIG_DFL, None):
            continue  # somebody else handles it (pytest, uvicorn...): leave it, atexit still runs

        def handler(sig, frame, _sig=signum):
            _close_all_boards()
            signal.signal(_sig, signal.SIG_DFL)
            os.kill(os.getpid(), _sig)

        signal.signal(signum, handler)


def _pdeathsig() -> None:
    """In the QEMU child: die with the parent (no stray QEMU after a SIGKILL'd test run)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class QemuBoard:
    """One emulated board: a qemu-system-arm process, its console, QMP and temp dir."""

    #: All of them; HOST_CPU is ``host_cpu``, the QEMU process's CPU time and run delay.
    capabilities: frozenset[Capability] = frozenset(Capability)

    def __init__(
        self,
        image: Image | None = None,
        *,
        name: str | None = None,
        identity: Identity | None = None,
        boot_timeout: float = 60,
        console: str = "socket",
        ssh: bool = True,
        log_dir: Path | None = None,
        extra_append: str = "",
    ):
        if console not in ("socket", "pty"):
            raise ValueError("console must be 'socket' (TCP) or 'pty' (a /dev/pts/N tty)")
        if shutil.which(QEMU) is None:
            raise BoardError(f"{QEMU} not found: install the Debian package qemu-system-arm (see `testbed doctor`)")
        self.image = image or ensure_image()
        self.name = name or f"board-{os.getpid()}-{id(self) & 0xFFFFF:05x}"
        self.identity = identity
        self.boot_timeout = boot_timeout
        self.console_kind = console
        self.ssh_enabled = ssh
        self.extra_append = extra_append
        self.dir = Path(tempfile.mkdtemp(prefix=f"tb-{self.name}-"))
        self.log_path = (log_dir or logs_dir()) / f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.console: Console | None = None
        self.qmp: Qmp | None = None
        self.console_port: int | None = None
        self.console_path: str | None = None
        self.ssh_port: int | None = None
        self.started_monotonic: float | None = None
        self.ready_seconds: float | None = None
        self.host_cpu: HostCpuMonitor | None = None
        self._closed = False
        _live_boards.add(self)
        _install_signal_handlers()
        _prune_logs()

    # -- starting ----------------------------------------------------------------------

    def _append(self) -> str:
        parts = [PROFILE["append"]]
        if self.identity:
            parts.append(self.identity.kernel_args())
        if self.extra_append:
            parts.append(self.extra_append)
        return " ".join(parts)

    def _command(self, incoming: Path | None) -> list[str]:
        p = PROFILE
        if self.console_kind == "socket":
            chardev = f"socket,id=con0,host=127.0.0.1,port={self.console_port},server=on,wait=off,nodelay=on"
        else:
            chardev = "pty,id=con0"
        netdev = "user,id=net0,net=10.0.2.0/24,host=10.0.2.2"
        if self.ssh_enabled:
            netdev += f",hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22"
        cmd = [
            QEMU, "-M", p["machine"], "-cpu", p["cpu"], "-smp", str(p["smp"]), "-m", str(p["memory_mib"]),
            "-name", f"{self.name.replace(',', ',,')},debug-threads=on",  # "CPU 0/TCG": host_cpu's guest CPU
            "-accel", p["accel"],
            "-display", "none", "-nodefaults", "-no-user-config",
            "-kernel", str(self.image.vmlinuz), "-initrd", str(self.image.initramfs),
            "-append", self._append(),
            "-chardev", chardev, "-serial", "chardev:con0",
            "-qmp", f"unix:{self.dir / 'qmp.sock'},server=on,wait=off",
            "-netdev", netdev,
            "-device", f"{p['nic']},netdev=net0,id={NIC_ID},mac={p['mac']}",
            "-device", p["balloon"],
            "-S",
        ]
        if incoming is not None:
            cmd += ["-incoming", f"exec:cat {incoming}"]
        return cmd

    def _start(self, incoming: Path | None = None) -> None:
        if self.process is not None:
            raise BoardError(f"{self.name} is already started")
        last_error = ""
        for _attempt in range(5):
            self.console_port = free_port() if self.console_kind == "socket" else None
            self.ssh_port = free_port() if self.ssh_enabled else None
            stderr = (self.dir / "qemu.stderr").open("wb")
            self.process = subprocess.Popen(
                self._command(incoming),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                preexec_fn=_pdeathsig if threading.current_thread() is threading.main_thread() else None,
            )
            stderr.close()
            self.started_monotonic = time.monotonic()
            self.qmp = Qmp(self.dir / "qmp.sock", self.name)
            try:
                self.qmp.connect(timeout=10, alive=lambda: self.process.poll() is None)
                self.host_cpu = HostCpuMonitor(self.process.pid)  # run delay and CPU, until close()
                break
            except BoardError:
                last_error = self._qemu_stderr()
                self._kill_process()
                self.qmp.close()
                self.qmp = None
                self.process = None
                if any(m in last_error for m in ("Address already in use", "Failed to bind",
                                                 "Could not set up host forwarding rule")):
                    continue  # a port race with another process: try other ports
                raise BoardError(f"{self.name}: QEMU did not start:\n{last_error}") from None
        else:
            raise BoardError(f"{self.name}: QEMU could not bind its ports:\n{last_error}")
        if self.console_kind == "socket":
            url = f"socket://127.0.0.1:{self.console_port}"
        else:
            chardevs = self.qmp.cmd("query-chardev")
            filename = next(c["filename"] for c in chardevs if c["label"] == "con0")
            self.console_path = filename.removeprefix("pty:")
            url = self.console_path
        self.console = Console(url, log_path=self.log_path, name=self.name)

    def _qemu_stderr(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "qemu.stderr").read_text(errors="replace")
        return ""

    def boot(self, timeout: float | None = None) -> QemuBoard:
        """Cold boot and wait for `@tb event=boot-ready`."""
        timeout = self.boot_timeout if timeout is None else timeout
        self._start()
        self.qmp.cmd("cont")
        self._wait_boot_ready(timeout, since=None)
        self._prepare_console()
        return self

    def _prepare_console(self) -> None:
        try:
            self.console.prepare(timeout=15)
        except ConsoleTimeout:
            self._fail_boot("printed boot-ready, but no shell answered on the console")

    def _wait_boot_ready(self, timeout: float, since: float | None) -> Event:
        try:
            event = self.console.wait_for_event("boot-ready", timeout=timeout, since=since)
        except ConsoleTimeout:
            self._fail_boot(f"did not reach boot-ready within {timeout} s")
        except ConsoleClosed:
            self._fail_boot("QEMU exited before boot-ready")
        except BoardCrashed as exc:
            self._fail_boot(f"the kernel crashed while booting: {exc.line}")
        self.ready_seconds = event.monotonic - self.started_monotonic
        return event

    def _fail_boot(self, why: str) -> None:
        stderr = self._qemu_stderr().strip()
        tail = "\n".join(self.console.tail(30)) if self.console else ""
        log = self.log_path
        self.close()
        raise BoardBootTimeout(
            f"{self.name} {why}.\nwhole console log: {log}\n"
            + (f"QEMU said: {stderr}\n" if stderr else "")
            + (f"--- last console lines ---\n{tail}" if tail else "(no console output)")
        )

    def restore(self, snapshot, *, set_clock: bool = True, timeout: float = 30) -> QemuBoard:
        """Start from a saved snapshot (see testbed.board.snapshot); the shell answers on return.

        The guest clock is set to the host's, its RNG reseeded, and when the board
        was made with an ``identity`` it is provisioned with it (tb-provision).
        """
        # Duck-typed (no import here: restore() runs in worker threads, see board_pool).
        if not hasattr(snapshot, "state_file") or not hasattr(snapshot, "image_hash"):
            raise TypeError("restore() takes a testbed.board.snapshot.Snapshot")
        if snapshot.image_hash != self.image.hash:
            raise BoardError(
                f"snapshot {snapshot.path} was made from image {snapshot.image_hash}, this board runs {self.image.hash}"
            )
        self._start(incoming=snapshot.state_file)
        self._wait_migration(timeout, incoming=True)
        self.qmp.cmd("cont")
        self._prepare_console()
        self.ready_seconds = time.monotonic() - self.started_monotonic
        # Every board restored from one snapshot starts with the same kernel RNG state,
        # and Linux 6.1 reseeds its CRNG only about once a minute: without this, two
        # restored boards draw the same "random" bytes (measured). tb-reseed (images/src)
        # mixes a host seed in and forces the reseed; same round trip as the clock.
        clock = f"date -s @{int(time.time())} >/dev/null; " if set_clock else ""
        seed = secrets.token_hex(32)
        self.console.run_check(
            f"{clock}if command -v tb-reseed >/dev/null; then tb-reseed {seed}; else echo {seed} > /dev/urandom; fi"
        )
        if self.identity is not None:  # given at construction: provision now, as a cold boot would
            self.provision(self.identity)
        return self

    def _wait_migration(self, timeout: float, incoming: bool) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = self.qmp.cmd("query-migrate")
            except BoardError:
                info = None
            if self.process.poll() is not None:
                self.process.wait()
                self._fail_boot("QEMU exited during the snapshot transfer (a bad or truncated snapshot file?)")
            if info is None:
                # QMP goes quiet first when QEMU is exiting on a bad snapshot: let it finish
                # exiting, so the error carries what QEMU said
                try:
                    self.process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    raise BoardError(f"{self.name}: QMP stopped answering during the snapshot transfer") from None
                self._fail_boot("QEMU exited during the snapshot transfer (a bad or truncated snapshot file?)")
            status = info.get("status")
            if status == "completed" or (incoming and status is None and self._vm_status() == "prelaunch"
                                         and self._incoming_done()):
                return
            if status == "failed":
                raise BoardError(f"{self.name}: snapshot transfer failed: {info.get('error-desc', info)}")
            if time.monotonic() > deadline:
                raise BoardError(f"{self.name}: snapshot transfer did not finish in {timeout} s ({info})")
            time.sleep(0.01)

    def _vm_status(self) -> str:
        return self.qmp.cmd("query-status").get("status", "")

    def _incoming_done(self) -> bool:
        return any(e.name == "MIGRATION" and e.data.get("status") == "completed" for e in self.qmp.events)

    # -- guest operations -------------------------------------------------------------

    def set_clock(self, epoch: float | None = None) -> None:
        """Set the guest's clock (to the host's now by default)."""
        epoch = int(time.time() if epoch is None else epoch)
        self.console.run_check(f"date -s @{epoch} >/dev/null")

    def provision(self, identity: Identity, timeout: float = 20) -> tuple[str, int]:
        """Give a running board its identity (after a snapshot restore): clock, then tb-provision.

        Returns tb-provision's (output, exit code): 0 provisioned and synced,
        1 provisioned but the first sync failed (e.g. the service is down, which
        a scenario may want). Bad input (exit 2 or more) raises BoardError.
        """
        self.identity = identity
        self.set_clock()
        _, code = self.console.run("command -v tb-provision >/dev/null", timeout=timeout)
        if code != 0:
            raise BoardError(
                f"{self.name}: tb-provision is not in the image (build firmware_stubs into it: `testbed image build`)"
            )
        output, code = self.console.run(identity.provision_command(), timeout=timeout)
        if code not in (0, 1):
            raise BoardError(f"{self.name}: tb-provision failed (exit {code}):\n{output}")
        return output, code

    # -- faults over QMP --------------------------------------------------------------

    def link_down(self) -> None:
        self.qmp.cmd("set_link", name=NIC_ID, up=False)

    def link_up(self) -> None:
        self.qmp.cmd("set_link", name=NIC_ID, up=True)

    def pause(self) -> None:
        self.qmp.cmd("stop")

    def resume(self) -> None:
        self.qmp.cmd("cont")

    def reset(self, wait: bool = True, timeout: float | None = None) -> None:
        """Hardware reset; with wait, until the board is ready again."""
        since = time.monotonic()
        self.started_monotonic = since
        self.qmp.cmd("system_reset")
        self.console.clear_crash()
        if wait:
            self._wait_boot_ready(self.boot_timeout if timeout is None else timeout, since=since)
            self._prepare_console()

    def power_off(self) -> None:
        """Pull the power: QEMU quits at once (the board is closed)."""
        with contextlib.suppress(Exception):
            self.qmp.cmd("quit", timeout=5)
        self.close()

    @property
    def events(self) -> list[Event]:
        return self.console.events if self.console else []

    @property
    def qmp_events(self) -> list[QmpEvent]:
        return self.qmp.events if self.qmp else []

    def wait_for_event(self, name: str, timeout: float = 30, since: float | None = None, where=None) -> Event:
        return self.console.wait_for_event(name, timeout=timeout, since=since, where=where)

    def ssh(self, **kwargs):
        """An SshConnection to this board's dropbear (through the forwarded 127.0.0.1 port)."""
        from testbed.board.ssh import SshConnection

        if not self.ssh_port:
            raise BoardError(f"{self.name} was started without SSH")
        return SshConnection("127.0.0.1", port=self.ssh_port, **kwargs)

    # -- measurements ------------------------------------------------------------------

    def rss_bytes(self) -> tuple[int, int]:
        """(current, peak) resident memory of the QEMU process."""
        current = peak = 0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    current = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
        return current, peak

    # -- snapshots -----------------------------------------------------------------------

    def save_state(self, path: Path, timeout: float = 60) -> None:
        """Pause the board and write its whole state (RAM, devices) to ``path`` via QMP migrate.

        The board stays paused afterwards; snapshot.save() closes it.
        """
        self.qmp.cmd("stop")
        self.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 8 << 30})
        tmp = path.with_name(path.name + ".part")
        self.qmp.cmd("migrate", uri=f"exec:cat > {tmp}")
        self._wait_migration(timeout, incoming=False)
        os.replace(tmp, path)

    # -- teardown ------------------------------------------------------------------------

    def _kill_process(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.host_cpu is not None:
            self.host_cpu.stop()  # its history stays readable after close
        if self.qmp is not None and self.process is not None and self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.qmp.cmd("quit", timeout=2)
        with contextlib.suppress(Exception):
            self._kill_process()
        if self.console is not None:
            with contextlib.suppress(Exception):
                self.console.close()
        if self.qmp is not None:
            with contextlib.suppress(Exception):
                self.qmp.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        _live_boards.discard(self)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and not self._closed

    def __enter__(self) -> QemuBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<QemuBoard {self.name} image={self.image.hash} alive={self.alive}>"


@contextlib.contextmanager
def booted_board(image: Image | None = None, **kwargs) -> Iterator[QemuBoard]:
    board = QemuBoard(image, **kwargs)
    try:
        board.boot()
        yield board
    finally:
        board.close()
