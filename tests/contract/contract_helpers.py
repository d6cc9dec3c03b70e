"""Helpers for the contract tier: the host-built firmware against the real service on 127.0.0.1.

Imported by name (tests/contract is on pytest's ``pythonpath``). Cores are real: the ARM
core recorded on a board (testbed/load/cores), fed on stdin as the kernel does.
"""

from __future__ import annotations

import gzip
import subprocess
import time
from dataclasses import dataclass

from fw_helpers import FwEnv

from testbed.contract import events
from testbed.contract.events import EventName
from testbed.paths import REPO_ROOT
from testbed.service.client import Client
from testbed.service.fixtures import ClaimedDevice

BOARD_CORE_GZ = REPO_ROOT / "testbed" / "load" / "cores" / "segv-16k.core.gz"


def board_core() -> bytes:
    return gzip.decompress(BOARD_CORE_GZ.read_bytes())


@dataclass
class Device:
    """One claimed device and the host firmware that acts as it."""

    fw: FwEnv
    claimed: ClaimedDevice
    port: int

    def provision(self, secret: str | None = None, sync: bool = True) -> subprocess.CompletedProcess:
        args = ["--device-id", self.claimed.device_id, "--secret", secret or self.claimed.secret,
                "--service", f"127.0.0.1:{self.port}"]
        if not sync:
            args.append("--no-sync")
        return self.fw.run("tb-provision", *args)

    def sync(self, **env: str) -> subprocess.CompletedProcess:
        return self.fw.run("syncd", "--now", **env)

    def crash(self, core: bytes, pid: int = 4242, **env: str) -> tuple[float, subprocess.CompletedProcess]:
        """Run the crash reporter as the kernel would, the core on stdin; (seconds, process)."""
        t0 = time.monotonic()
        proc = self.fw.run("crash-reporter", str(pid), "crashapp", "11", str(int(time.time())),
                           input=core, timeout=30, **env)
        return time.monotonic() - t0, proc

    def outcome(self, after: int = 0) -> dict[str, str]:
        """The reporter's one outcome event (dump-skipped, upload-ok or upload-fail) after index ``after``."""
        names = {EventName.DUMP_SKIPPED, EventName.UPLOAD_OK, EventName.UPLOAD_FAIL}
        found = [e for e in self.fw.events()[after:] if e.get("event") in names]
        assert len(found) == 1, f"expected one outcome, got {found}; all: {self.fw.events()}"
        return found[0]

    def event_count(self) -> int:
        return len(self.fw.events())


def stored(support: Client, device_id: str) -> list[dict]:
    """The dumps the service holds for the device (read through the support API)."""
    return support.support_dumps(reason="contract test", deviceId=device_id)


def check_event(ev: dict[str, str]) -> None:
    """Every event the firmware printed is in the contract's vocabulary."""
    name = ev["event"]
    assert name in set(EventName), f"event {name!r} is not in testbed.contract.events"
    if "reason" in ev and EventName(name) in events.REASONS:
        assert events.reason_is_known(name, ev["reason"]), f"{name} reason={ev['reason']} is not in the contract"
    for key in ev:
        assert key == "event" or key in set(events.EventKey), f"{name}: key {key!r} is not in the contract"


def dump_ids(dumps: list[dict]) -> list[str]:
    return [x["id"] for x in dumps]
