"""QemuBoard: an emulated MT3620-like board (Cortex-A7, 64 MiB) driven from Python.

    with QemuBoard(image) as board:
        board.boot()                       # cold boot to `@tb event=boot-ready`
        out, code = board.console.run("uname -a")
        board.link_down(); board.link_up()

    with QemuBoard(image) as board:
        board.restore(snapshot)            # ~0.6 s instead of ~7 s
        board.firmware.provision(identity)

The board is the QEMU process (:mod:`testbed.board.qemu_process`), its QMP faults
and its state transfers (:mod:`testbed.board.migration`); the console is
:class:`~testbed.board.console.Console` and every firmware operation is the
:class:`~testbed.board.firmware.FirmwareDriver` at ``board.firmware``. Every board
has its own free ports and temp dir; all are cleaned up on close(), on
interpreter exit (atexit) and on SIGTERM/SIGHUP.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from testbed.board import migration, qemu_process
from testbed.board.console import Console, Event
from testbed.board.errors import (
    BoardBootTimeout,
    BoardCrashed,
    BoardError,
    ConsoleClosed,
    ConsoleTimeout,
)
from testbed.board.firmware import FirmwareDriver
from testbed.board.hostcpu import HostCpuMonitor
from testbed.board.identity import Identity
from testbed.board.profile import CAPABILITIES, NIC_ID, PROFILE, QEMU
from testbed.board.protocols import Capability, EventWhere
from testbed.board.qemu_process import QemuProcess, logs_dir
from testbed.board.qmp import Qmp, QmpEvent
from testbed.image.build import Image, ensure_image


class _ConsoleRunner:
    """A board's console as the firmware driver's command runner (the console is made at start)."""

    def __init__(self, board: QemuBoard) -> None:
        self._board = board

    def _console(self) -> Console:
        console = self._board.console
        if console is None:
            raise BoardError(f"{self._board.name} is not started: boot() or restore() it first")
        return console

    def run(self, cmd: str, timeout: float = 30) -> tuple[str, int]:
        return self._console().run(cmd, timeout=timeout)

    def run_check(self, cmd: str, timeout: float = 30) -> str:
        return self._console().run_check(cmd, timeout=timeout)


class QemuBoard:
    """One emulated board: a qemu-system-arm process, its console, QMP, firmware driver and temp dir."""

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
        self.capabilities: frozenset[Capability] = CAPABILITIES
        self.identity = identity
        self.boot_timeout = boot_timeout
        self.console_kind = console
        self.ssh_enabled = ssh
        self.extra_append = extra_append
        self.dir = Path(tempfile.mkdtemp(prefix=f"tb-{self.name}-"))
        self.log_path = (log_dir or logs_dir()) / f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.qemu = QemuProcess(self.name, self.dir, console_port=console == "socket", ssh_port=ssh)
        self.console: Console | None = None
        self.console_path: str | None = None
        self.started_monotonic: float | None = None
        self.ready_seconds: float | None = None
        #: Every firmware operation on this board (provision, clock, sync, crash), over its console.
        self.firmware = FirmwareDriver(_ConsoleRunner(self), self.name)
        #: The QEMU process's CPU time and run delay (Capability.HOST_CPU), from start to close.
        self.host_cpu: HostCpuMonitor | None = None
        self._closed = False
        qemu_process.track(self)
        qemu_process.prune_logs()

    # -- the parts ---------------------------------------------------------------------

    @property
    def process(self):  # subprocess.Popen | None
        return self.qemu.popen

    @property
    def pid(self) -> int | None:
        """The QEMU process's id (None before start): the hook for host CPU figures."""
        return self.qemu.pid

    @property
    def qmp(self) -> Qmp | None:
        return self.qemu.qmp

    @property
    def console_port(self) -> int | None:
        return self.qemu.console_port

    @property
    def ssh_port(self) -> int | None:
        return self.qemu.ssh_port


    # -- starting ----------------------------------------------------------------------

    def _append(self) -> str:
        parts = [PROFILE["append"]]
        if self.identity:
            parts.append(self.identity.kernel_args())
        if self.extra_append:
            parts.append(self.extra_append)
        return " ".join(parts)

    def _command(self, incoming: Path | None, console_port: int | None, ssh_port: int | None) -> list[str]:
        p = PROFILE
        if self.console_kind == "socket":
            chardev = f"socket,id=con0,host=127.0.0.1,port={console_port},server=on,wait=off,nodelay=on"
        else:
            chardev = "pty,id=con0"
        netdev = "user,id=net0,net=10.0.2.0/24,host=10.0.2.2"
        if self.ssh_enabled:
            netdev += f",hostfwd=tcp:127.0.0.1:{ssh_port}-:22"
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
        self.qemu.start(lambda console_port, ssh_port: self._command(incoming, console_port, ssh_port))
        self.started_monotonic = self.qemu.started_monotonic
        if self.qemu.pid is not None:
            self.host_cpu = HostCpuMonitor(self.qemu.pid)  # run delay and CPU, until close()
        if self.console_kind == "socket":
            url = f"socket://127.0.0.1:{self.console_port}"
        else:
            assert self.qmp is not None  # started
            chardevs = self.qmp.cmd("query-chardev")
            filename = next(c["filename"] for c in chardevs if c["label"] == "con0")
            self.console_path = filename.removeprefix("pty:")
            url = self.console_path
        try:
            self.console = Console(url, log_path=self.log_path, name=self.name)
        except OSError:  # pyserial's SerialException is one
            if not self.qemu.running:  # it read a bad state file and left after QMP answered
                raise qemu_process.QemuExited(f"{self.name}: QEMU exited before its console was opened") from None
            raise

    def _qemu_stderr(self) -> str:
        return self.qemu.stderr()

    def boot(self, timeout: float | None = None) -> QemuBoard:
        """Cold boot and wait for `@tb event=boot-ready`."""
        timeout = self.boot_timeout if timeout is None else timeout
        self._start()
        assert self.qmp is not None
        self.qmp.cmd("cont")
        self._wait_boot_ready(timeout, since=None)
        self._prepare_console()
        return self

    def _prepare_console(self) -> None:
        assert self.console is not None  # made by _start()
        try:
            self.console.prepare(timeout=15)
        except ConsoleTimeout:
            self._fail_boot("printed boot-ready, but no shell answered on the console")

    def _wait_boot_ready(self, timeout: float, since: float | None) -> Event:
        assert self.console is not None and self.started_monotonic is not None  # started
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

    def _fail_boot(self, why: str) -> NoReturn:
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
        try:
            self._start(incoming=snapshot.state_file)
        except qemu_process.QemuExited:
            # QEMU may read a bad state file and exit before QMP answers: the same failure
            # as one seen during the transfer, with what QEMU said.
            self._fail_boot(migration.BAD_SNAPSHOT)
        migration.wait_migration(self.qemu, timeout, incoming=True, fail=self._fail_boot)
        assert self.qmp is not None and self.started_monotonic is not None  # started
        self.qmp.cmd("cont")
        self._prepare_console()
        self.ready_seconds = time.monotonic() - self.started_monotonic
        # Restored boards share the snapshot's RNG state: fresh randomness from the host
        # (tb-reseed, images/src), with the clock in the same round trip.
        self.firmware.after_restore(secrets.token_hex(32), set_clock=set_clock)
        if self.identity is not None:  # given at construction: provision now, as a cold boot would
            self.provision(self.identity)
        return self

    # -- firmware operations (thin: they are the firmware driver's) -----------------------

    def set_clock(self, epoch: float | None = None) -> None:
        """Set the guest's clock (to the host's now by default): ``board.firmware.set_clock``."""
        self.firmware.set_clock(epoch)

    def provision(self, identity: Identity, timeout: float = 20) -> tuple[str, int]:
        """Give a running board its identity: ``board.firmware.provision`` (and remember it).

        Returns tb-provision's (output, exit code): 0 provisioned and synced,
        1 provisioned but the first sync failed (e.g. the service is down, which
        a scenario may want). Bad input (exit 2 or more) raises BoardError.
        """
        self.identity = identity
        return self.firmware.provision(identity, timeout=timeout)

    # -- faults over QMP --------------------------------------------------------------

    def link_down(self) -> None:
        assert self.qmp is not None
        self.qmp.cmd("set_link", name=NIC_ID, up=False)

    def link_up(self) -> None:
        assert self.qmp is not None
        self.qmp.cmd("set_link", name=NIC_ID, up=True)

    def pause(self) -> None:
        assert self.qmp is not None
        self.qmp.cmd("stop")

    def resume(self) -> None:
        assert self.qmp is not None
        self.qmp.cmd("cont")

    def reset(self, wait: bool = True, timeout: float | None = None) -> None:
        """Hardware reset; with wait, until the board is ready again."""
        since = time.monotonic()
        self.started_monotonic = since
        assert self.qmp is not None
        self.qmp.cmd("system_reset")
        assert self.console is not None
        self.console.clear_crash()
        if wait:
            self._wait_boot_ready(self.boot_timeout if timeout is None else timeout, since=since)
            self._prepare_console()

    def power_off(self) -> None:
        """Pull the power: QEMU quits at once (the board is closed)."""
        with contextlib.suppress(Exception):
            assert self.qmp is not None
            self.qmp.cmd("quit", timeout=5)
        self.close()

    # -- events ----------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        return self.console.events if self.console else []

    @property
    def qmp_events(self) -> list[QmpEvent]:
        return self.qmp.events if self.qmp else []

    def wait_for_event(self, name: str, timeout: float = 30, since: float | None = None,
                       where: EventWhere = None) -> Event:  # fmt: skip
        """The first ``@tb`` event called ``name`` that arrived at or after ``since`` (a host
        ``time.monotonic()``, taken before the action; None: any since the board started) and
        matches ``where`` (a dict of field values, all strings, or a predicate); waits up to
        ``timeout`` seconds (ConsoleTimeout), BoardCrashed at once if the kernel dies."""
        assert self.console is not None
        return self.console.wait_for_event(name, timeout=timeout, since=since, where=where)

    def ssh(self, **kwargs):
        """An SshConnection to this board's dropbear (through the forwarded 127.0.0.1 port)."""
        from testbed.board.ssh import SshConnection

        if not self.ssh_port:
            raise BoardError(f"{self.name} was started without SSH")
        return SshConnection("127.0.0.1", port=self.ssh_port, **kwargs)

    # -- measurements and snapshots ----------------------------------------------------

    def rss_bytes(self) -> tuple[int, int]:
        """(current, peak) resident memory of the QEMU process."""
        return self.qemu.rss_bytes()

    def save_state(self, path: Path, timeout: float = 60) -> None:
        """Pause the board and write its whole state (RAM, devices) to ``path`` via QMP migrate.

        The board stays paused afterwards; snapshot.save() closes it.
        """
        migration.save_state(self.qemu, path, fail=self._fail_boot, timeout=timeout)

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.host_cpu is not None:
            self.host_cpu.stop()  # its history stays readable after close
        self.qemu.close()
        if self.console is not None:
            with contextlib.suppress(Exception):
                self.console.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        qemu_process.untrack(self)

    @property
    def alive(self) -> bool:
        return self.qemu.running and not self._closed

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
