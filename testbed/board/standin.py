"""A stand-in for a real board: a QEMU process started outside QemuBoard, from the stock image.

It is what a bench board looks like to the testbed: ARMv7 Linux with busybox and dropbear
but no firmware, a console that is a tty opened by path (a pty, as ``/dev/ttyUSB0`` would
be) or a TCP port (for a labgrid exporter's NetworkSerialPort), SSH on a loopback port, and
the service reached through its own network path (10.0.2.2 under QEMU user networking is
the host's loopback). Tests use it to run the real-board path without hardware::

    with StandIn() as board:       # booted; board.console_path, board.ssh_port
        ...
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from testbed.board.errors import BoardError
from testbed.board.profile import PROFILE, QEMU
from testbed.board.qemu_process import die_with_parent, free_port
from testbed.deadline import Deadline

_PTY_RE = re.compile(r"char device redirected to (/dev/pts/\d+) \(label con0\)")


class StandIn:
    """One QEMU process: the stock image, console on a pty (or a TCP port), SSH forwarded to loopback."""

    def __init__(self, image: Any = None, *, console: str = "pty", name: str = "standin") -> None:
        if console not in ("pty", "tcp"):
            raise ValueError("console is 'pty' (a tty by path) or 'tcp' (a TCP port on 127.0.0.1)")
        if shutil.which(QEMU) is None:
            raise BoardError(f"{QEMU} not found: install the Debian package qemu-system-arm")
        if image is None:
            from testbed.image.build import ensure_image

            image = ensure_image(firmware=False)
        self.image = image
        self.name = name
        self.console_kind = console
        self.dir = Path(tempfile.mkdtemp(prefix=f"tb-{name}-"))
        self.ssh_port = 0
        self.console_port = 0
        self.console_path = ""
        self.process: subprocess.Popen | None = None

    @property
    def console_url(self) -> str:
        return self.console_path if self.console_kind == "pty" else f"socket://127.0.0.1:{self.console_port}"

    def _command(self) -> list[str]:
        p = PROFILE
        if self.console_kind == "pty":
            chardev = "pty,id=con0"
        else:
            chardev = f"socket,id=con0,host=127.0.0.1,port={self.console_port},server=on,wait=off,nodelay=on"
        return [
            QEMU, "-M", p["machine"], "-cpu", p["cpu"], "-smp", str(p["smp"]), "-m", str(p["memory_mib"]),
            "-accel", p["accel"], "-display", "none", "-nodefaults", "-no-user-config",
            "-kernel", str(self.image.vmlinuz), "-initrd", str(self.image.initramfs), "-append", p["append"],
            "-chardev", chardev, "-serial", "chardev:con0",
            "-netdev", f"user,id=net0,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-device", f"{p['nic']},netdev=net0,mac={p['mac']}",
        ]  # fmt: skip

    def start(self, timeout: float = 180) -> StandIn:
        """Start QEMU and wait until the board's SSH server answers (it starts late in the boot)."""
        self.ssh_port = free_port()
        self.console_port = free_port() if self.console_kind == "tcp" else 0
        log = (self.dir / "qemu.out").open("wb")
        self.process = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        preexec_fn=die_with_parent)  # fmt: skip
        log.close()
        deadline = Deadline(timeout)
        if self.console_kind == "pty":
            while not self.console_path:
                m = _PTY_RE.search(self._output())
                if m:
                    self.console_path = m.group(1)
                else:
                    self._check_alive(deadline, "print its console's pty")
                    time.sleep(0.05)
        while not self._ssh_banner():
            self._check_alive(deadline, "start its SSH server")
            time.sleep(0.5)
        return self

    def _output(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "qemu.out").read_text(errors="replace")
        return ""

    def _check_alive(self, deadline: Deadline, what: str) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BoardError(f"{self.name}: QEMU exited ({self.process.returncode}) before it could {what}:\n{self._output()}")
        if deadline.expired:
            self.close()
            raise BoardError(f"{self.name}: the stand-in did not {what} in time")

    def _ssh_banner(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ssh_port), timeout=2) as s:
                s.settimeout(3)
                return s.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> StandIn:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
