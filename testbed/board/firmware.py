"""The firmware driver: every firmware operation on a board, over any command runner.

The only place that types the firmware's command lines (they come from
``testbed.contract.commands``); a QEMU board, a real board and a labgrid place all
reach their firmware through it.
"""

from __future__ import annotations

import time

from testbed.board.errors import BoardError
from testbed.board.identity import Identity
from testbed.board.protocols import CommandRunner
from testbed.contract import commands


class FirmwareDriver:
    def __init__(self, runner: CommandRunner, name: str = "board") -> None:
        self.runner = runner
        self.name = name

    def _check(self, cmd: str, timeout: float) -> str:
        output, code = self.runner.run(cmd, timeout=timeout)
        if code != 0:
            raise BoardError(f"{self.name}: `{cmd}` exited {code}: {output.strip()[-300:]}")
        return output

    # -- clock ------------------------------------------------------------------------
    def set_clock(self, epoch: float | None = None, timeout: float = 10) -> None:
        """Set the board's wall clock (to the host's now by default)."""
        self._check(commands.set_clock(int(time.time() if epoch is None else epoch)), timeout)

    def warp(self, seconds: float, timeout: float = 10) -> None:
        """Move the board's wall clock by ``seconds``."""
        self._check(commands.warp_clock(int(seconds)), timeout)

    def reseed(self, seed: str, timeout: float = 10) -> None:
        self._check(commands.reseed(seed), timeout)

    # -- identity and sync ------------------------------------------------------------
    def provision(self, identity: Identity, timeout: float = 20) -> tuple[str, int]:
        """Clock, then tb-provision. Returns its (output, exit code): 0 provisioned and synced,
        1 provisioned but the first sync failed. Bad input (exit 2 or more) raises BoardError."""
        self.set_clock()
        _, code = self.runner.run(commands.has_program("tb-provision"), timeout=timeout)
        if code != 0:
            raise BoardError(
                f"{self.name}: tb-provision is not on the board (install the firmware, or `testbed image build`)"
            )
        output, code = self.runner.run(
            commands.provision(identity.device_id, identity.secret, identity.service, identity.allow_remote),
            timeout=timeout,
        )
        if code not in (0, 1):
            raise BoardError(f"{self.name}: tb-provision failed (exit {code}):\n{output}")
        return output, code

    def sync_now(self, timeout: float = 20) -> tuple[str, int]:
        """One sync now: (output, exit code), 0 when it succeeded."""
        return self.runner.run(commands.sync_now(), timeout=timeout)

    # -- crashes ----------------------------------------------------------------------
    def crash(self, app: str, mode: str, heap_kib: int | None = None, crash_id: str | None = None,
              timeout: float = 15) -> tuple[str, int]:  # fmt: skip
        """Make the running app (or OS component) crash; (output, exit code) of the trigger."""
        return self.runner.run(commands.crash(app, mode, heap_kib, crash_id), timeout=timeout)

    def clear_state(self, timeout: float = 10) -> None:
        """Forget identity, sync state and spool: a fresh device."""
        self._check(commands.clear_state(), timeout)
