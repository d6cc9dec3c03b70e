"""The firmware driver: every firmware operation on a board, over any command runner.

The only place that types the firmware's command lines (they come from
``testbed.contract.commands``); a QEMU board, a real board and a labgrid place all
reach their firmware through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.board.errors import BoardError
from testbed.board.identity import Identity
from testbed.board.protocols import CommandRunner
from testbed.contract import commands
from testbed.deadline import Deadline


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

    def warp(self, seconds: float, timeout: float = 10) -> int | None:
        """Move the board's wall clock by ``seconds``; its time after (epoch seconds) when it said it."""
        output = self._check(commands.warp_clock(int(seconds)), timeout)
        numbers = [line.strip() for line in output.splitlines() if line.strip().isdigit()]
        return int(numbers[-1]) if numbers else None

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

    def set_test_restart_delay(self, ms: int, timeout: float = 10) -> None:
        """Test only: a broken device, whose app manager restarts crashed apps ``ms`` after the
        crash whatever the upload does (0 restores the normal behaviour)."""
        self._check(commands.set_test_restart_delay(ms), timeout)

    def clear_state(self, timeout: float = 10) -> None:
        """Forget identity, sync state and spool: a fresh device."""
        self._check(commands.clear_state(), timeout)

    # -- after a snapshot restore -------------------------------------------------------
    def after_restore(self, seed: str, set_clock: bool = True, timeout: float = 10) -> None:
        """A board restored from a snapshot: the host's clock and fresh randomness, one round trip.

        Every board restored from one snapshot starts with the same kernel RNG state
        (and Linux 6.1 reseeds its CRNG only about once a minute), so without the
        reseed two restored boards draw the same "random" bytes.
        """
        cmd = commands.reseed(seed)
        if set_clock:
            cmd = f"{commands.set_clock(int(time.time()))}; {cmd}"
        self._check(cmd, timeout)

    # -- installing and running (real boards) -----------------------------------------
    def status(self, timeout: float = 10) -> FirmwareStatus:
        """The firmware build installed on the board (None when there is none) and whether it runs."""
        output, code = self.runner.run(commands.firmware_build(), timeout=timeout)
        build = output.strip().splitlines()[-1].strip() if code == 0 and output.strip() else None
        _, running = self.runner.run(commands.firmware_running(), timeout=timeout)
        return FirmwareStatus(build, running == 0)

    def install(self, bundle: Any, upload: Uploader, timeout: float = 600) -> bool:
        """Install ``bundle`` (a testbed.image.firmware_tree.FirmwareBundle) unless the board
        already has that build. ``upload(local, remote_tmp)`` copies one file onto the board
        (over SSH, or through the console); each file is checked by its sha256 on the board
        before it is put in place, the build file last. Returns True when it installed."""
        if self.status().build == bundle.build:
            return False
        deadline = Deadline(timeout)
        placed: dict[str, str] = {}  # sha256 -> where it is on the board already
        for f in bundle.files:
            tmp = f"/tmp/.tb-install-{f.local.name}"
            if f.sha256 in placed:  # the same program under two names (crashapp, crashsvc): copy it there
                self._check(commands.copy_file(placed[f.sha256], tmp), 30)
            else:
                upload(f.local, tmp)
            got = self._check(commands.sha256_of(tmp), max(5.0, deadline.remaining or 0.0)).split()
            if not got or got[0] != f.sha256:
                raise BoardError(f"{self.name}: {f.remote} arrived damaged (sha256 {got[0] if got else '?'}, "
                                 f"expected {f.sha256})")  # fmt: skip
            self._check(commands.install_file(tmp, f.remote, f.mode), 10)
            placed[f.sha256] = f.remote
        if self.status().build != bundle.build:
            raise BoardError(f"{self.name}: the firmware build {bundle.build} is not on the board after installing it")
        return True

    def stop(self, timeout: float = 90) -> None:
        """Stop the firmware's daemons, apps and the init script's restart loop."""
        self._check(commands.stop_firmware(), timeout)

    def start(self, events: Any, timeout: float = 90) -> None:
        """Run the firmware's init script and wait for its firmware-ready event on ``events``
        (an EventSource: the console)."""
        since = time.monotonic()
        self._check(commands.start_firmware(), timeout)
        events.wait_for_event("firmware-ready", timeout=timeout, since=since)

    def restart(self, events: Any, fresh: bool = True, timeout: float = 90) -> None:
        """Stop the firmware, forget its state when ``fresh`` (a new device), start it again."""
        self.stop(timeout=timeout)
        if fresh:
            self.clear_state(timeout=timeout)
        self.start(events, timeout=timeout)


@dataclass(frozen=True)
class FirmwareStatus:
    build: str | None
    running: bool


#: Copies a local file onto the board at a remote path.
Uploader = Callable[[Path, str], None]
