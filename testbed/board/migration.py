"""A board's whole state to and from a file over QMP (migrate / -incoming): what snapshots use."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from testbed.board.errors import BoardError
from testbed.board.qemu_process import QemuProcess
from testbed.deadline import Deadline

#: Called when QEMU died during a transfer: raises (with the board's console and QEMU's stderr).
Fail = Callable[[str], NoReturn]

#: Why a restore failed when QEMU exited while loading a state file.
BAD_SNAPSHOT = "QEMU exited during the snapshot transfer (a bad or truncated snapshot file?)"


def _incoming_done(qemu: QemuProcess) -> bool:
    assert qemu.qmp is not None
    return any(e.name == "MIGRATION" and e.data.get("status") == "completed" for e in qemu.qmp.events)


def _vm_status(qemu: QemuProcess) -> str:
    assert qemu.qmp is not None
    return qemu.qmp.cmd("query-status").get("status", "")


def wait_migration(qemu: QemuProcess, timeout: float, incoming: bool, fail: Fail) -> None:
    """Wait until a state transfer (outgoing ``migrate``, or ``-incoming``) has completed."""
    assert qemu.qmp is not None and qemu.popen is not None  # a started QEMU
    deadline = Deadline(timeout)
    while True:
        try:
            info = qemu.qmp.cmd("query-migrate")
            status = info.get("status")
            done = status == "completed" or (
                incoming and status is None and _vm_status(qemu) == "prelaunch" and _incoming_done(qemu)
            )
        except BoardError:  # any of these QMP calls may meet a QEMU that is exiting
            info = None
        if qemu.popen.poll() is not None:
            qemu.popen.wait()
            fail(BAD_SNAPSHOT)
        if info is None:
            # QMP goes quiet first when QEMU is exiting on a bad snapshot: let it finish
            # exiting, so the error carries what QEMU said
            try:
                qemu.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                raise BoardError(f"{qemu.name}: QMP stopped answering during the snapshot transfer") from None
            fail(BAD_SNAPSHOT)
        if done:
            return
        if status == "failed":
            raise BoardError(f"{qemu.name}: snapshot transfer failed: {info.get('error-desc', info)}")
        if deadline.expired:
            raise BoardError(f"{qemu.name}: snapshot transfer did not finish in {timeout} s ({info})")
        deadline.sleep(0.01)


def save_state(qemu: QemuProcess, path: Path, fail: Fail, timeout: float = 60) -> None:
    """Pause the board and write its whole state (RAM, devices) to ``path``; it stays paused."""
    assert qemu.qmp is not None  # a started QEMU
    qemu.qmp.cmd("stop")
    qemu.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 8 << 30})
    tmp = path.with_name(path.name + ".part")
    qemu.qmp.cmd("migrate", uri=f"exec:cat > {tmp}")
    wait_migration(qemu, timeout, incoming=False, fail=fail)
    os.replace(tmp, path)
