"""No QEMU outlives the Python process that started it: Ctrl-C, SIGTERM, even SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = """
import sys, time
from testbed.board.snapshot import Snapshot, restored_board
board = restored_board(Snapshot.from_dir(__import__("pathlib").Path(sys.argv[1])))
print(board.process.pid, board.dir, flush=True)
time.sleep(120)
"""


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie whose parent is gone is reaped by init; check its state too.
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "sigkill"])
def test_qemu_dies_with_its_python_process(board_snapshot, sig):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(board_snapshot.path)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line, "the child did not start a board"
        qemu_pid, board_dir = int(line[0]), line[1]
        os.kill(qemu_pid, 0)  # running
        proc.send_signal(sig)
        proc.wait(timeout=20)
        assert _gone(qemu_pid), f"QEMU {qemu_pid} survived {sig.name}"
        if sig != signal.SIGKILL:  # a clean exit also removes the board's temp dir
            assert not os.path.exists(board_dir)
    finally:
        if proc.poll() is None:
            proc.kill()
