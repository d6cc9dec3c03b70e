"""Fixtures of the unit tier. ``fake_factory``: fake boards for the scenario runner's tests, the Board
protocol over a fake firmware.

The fake firmware reads the command lines the firmware driver types (the contract's) and
acts like the real one in miniature: it syncs, asks intent and uploads a real recorded
core through the device API (to the runner's wire tap, so the real service stores it),
and prints the same @tb events with host timestamps.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testbed.board.protocols import Capability
from testbed.contract.events import EventName
from testbed.service.client import DeviceClient, ServiceError

CORE = Path(__file__).resolve().parents[2] / "testbed" / "load" / "cores" / "segv-xs.core.gz"


@dataclass(frozen=True)
class FakeEvent:
    name: str
    fields: dict[str, str]
    monotonic: float
    wall: float


@dataclass
class FakeFirmware:
    """The shell of a fake board: ``run(cmd)`` -> (output, exit code)."""

    name: str
    emit: Callable[[str, dict[str, str]], None]
    device_id: str = ""
    secret: str = ""
    port: int = 0
    opt_in: bool = False
    link_up: bool = True
    clock_offset: float = 0.0
    restart_s: float = 0.0  # how long (really) the app manager takes to restart the app after its crash
    crash_after_s: float = 0.0  # > 0: the crash command returns at once, the app crashes this long after
    commands: list[str] = field(default_factory=list)
    command_at: list[float] = field(default_factory=list)  # monotonic time of each command
    spool: list[dict[str, str]] = field(default_factory=list)  # dumps kept after an upload-fail: app, sig, upload_id

    def client(self) -> DeviceClient:
        return DeviceClient(f"http://127.0.0.1:{self.port}", self.device_id, self.secret, timeout=10)

    def run(self, cmd: str, timeout: float = 30) -> tuple[str, int]:
        self.commands.append(cmd)
        self.command_at.append(time.monotonic())
        argv = shlex.split(cmd)
        opts = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("--")}
        if argv[0] == "date":
            warp = re.search(r"\+ (-?\d+) \)\)", cmd)
            if warp:
                self.clock_offset += int(warp.group(1))
            return (f"{int(time.time() + self.clock_offset)}\n" if cmd.endswith("date +%s") else ""), 0
        if argv[0] == "command":
            return "", 0
        if argv[0] == "tb-provision":
            self.device_id, self.secret = opts["--device-id"], opts["--secret"]
            self.port = int(opts["--service"].rpartition(":")[2])
            self.emit(EventName.PROVISIONED, {})
            return self.sync()
        if argv[0] == "syncd":
            return self.sync()
        if argv[0] == "crashapp":
            if self.crash_after_s > 0:  # as the real app: signalled now, crashing (and reported) a moment later
                args = (opts["--app"], opts.get("--id", ""))
                threading.Timer(self.crash_after_s, self.crash, args).start()
                return "", 0
            return self.crash(opts["--app"], opts.get("--id", ""))
        return f"{argv[0]}: not found", 127

    def sync(self) -> tuple[str, int]:
        if not self.link_up:
            self.emit(EventName.SYNC_FAIL, {"reason": "connect"})
            return "", 1
        answer = self.client().sync()
        self.opt_in = bool(answer.get("optIn"))
        self.emit(EventName.SYNC_OK, {"optin": str(int(self.opt_in))})
        if not self.opt_in:
            self.spool.clear()  # an opt-out empties the spool
        for kept in list(self.spool):  # then the spool is retried, as syncd does
            self.spool.remove(kept)
            self.upload(kept["app"], kept["sig"], kept["upload_id"], spooled=True)
        return "", 0

    def upload(self, app: str, sig: str, upload_id: str, spooled: bool = False) -> None:
        """Intent and upload of the recorded core, the outcome printed; a retryable failure is spooled."""
        body = CORE.read_bytes()
        extra = {"spooled": "1"} if spooled else {}
        if not self.link_up:
            self.emit(EventName.UPLOAD_FAIL, {"app": app, "sig": sig, "reason": "connect", **extra,
                                              "upload_id": upload_id})  # fmt: skip
            self.spool.append({"app": app, "sig": sig, "upload_id": upload_id})
            return
        try:
            intent = self.client().intent(sig, len(body), "App", app)
            if intent.get("action") == "skip":
                self.emit(EventName.DUMP_SKIPPED, {"app": app, "sig": sig, "reason": intent.get("reason", ""), **extra})
            else:
                stored = self.client().upload(body, sig, component=app, upload_id=upload_id)
                self.emit(EventName.UPLOAD_OK, {"app": app, "sig": sig, "id": str(stored.get("id")),
                                                "region": str(stored.get("region")), **extra,
                                                "upload_id": upload_id})  # fmt: skip
        except ServiceError as exc:
            self.emit(EventName.UPLOAD_FAIL, {"app": app, "sig": sig, "reason": f"http-{exc.status}", **extra,
                                              "upload_id": upload_id})  # fmt: skip
            if exc.status >= 500:
                self.spool.append({"app": app, "sig": sig, "upload_id": upload_id})

    def crash(self, app: str, crash_id: str) -> tuple[str, int]:
        t0 = time.monotonic()
        sig = hashlib.md5(f"{app}/{crash_id}".encode()).hexdigest()
        self.emit(EventName.CRASH, {"app": app, "sig": sig, "signal": "11"})
        if not self.opt_in:
            self.emit(EventName.DUMP_SKIPPED, {"app": app, "sig": sig, "reason": "optout"})
        else:
            self.upload(app, sig, hashlib.md5(f"{sig}/{t0}".encode()).hexdigest())
        time.sleep(self.restart_s)
        took = time.monotonic() - t0
        self.emit(EventName.APP_RESTART, {"app": app, "after_ms": str(int(took * 1000))})
        return "", 0

    def run_check(self, cmd: str, timeout: float = 30) -> str:
        out, code = self.run(cmd, timeout)
        if code:
            raise RuntimeError(f"{cmd} exited {code}")
        return out


@dataclass(frozen=True)
class FakeWindow:
    cpu_s: float
    wait_s: float
    wall_s: float


class FakeHostCpu:
    """A host-CPU monitor whose board waits ``share`` of any window for a CPU."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.windows: list[tuple[float, float]] = []

    def window(self, t0_monotonic: float, t1_monotonic: float) -> FakeWindow:
        self.windows.append((t0_monotonic, t1_monotonic))
        wall = max(0.0, t1_monotonic - t0_monotonic)
        return FakeWindow(wall * (1 - self.share), wall * self.share, wall)


class FakeConsole:
    def __init__(self, board: FakeBoard) -> None:
        self.board = board
        self.lines: list[str] = []
        self.crash = None
        self._listeners: list[Callable[[Any], None]] = []

    def run(self, cmd: str, timeout: float = 30) -> tuple[str, int]:
        return self.board.fw.run(cmd, timeout)

    def run_check(self, cmd: str, timeout: float = 30) -> str:
        return self.board.fw.run_check(cmd, timeout)

    def add_listener(self, callback: Callable[[Any], None]) -> None:
        self._listeners.append(callback)


class FakeBoard:
    """Implements the Board protocol; ``calls`` records the board-level operations."""

    def __init__(self, name: str, capabilities: frozenset[Capability] = frozenset(Capability),
                 host_cpu: FakeHostCpu | None = None) -> None:  # fmt: skip
        self.name = name
        self.capabilities = capabilities if host_cpu else capabilities - {Capability.HOST_CPU}
        if host_cpu is not None:
            self.host_cpu = host_cpu
        self.events: list[FakeEvent] = []
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self.fw = FakeFirmware(name, self.emit)
        self.console = FakeConsole(self)
        self.closed = False

    def emit(self, name: str, fields: dict[str, str]) -> None:
        event = FakeEvent(str(name), {k: str(v) for k, v in fields.items()}, time.monotonic(), time.time())
        with self._lock:
            self.events.append(event)
            self.console.lines.append(f"@tb event={name} " + " ".join(f"{k}={v}" for k, v in fields.items()))
        for listener in list(self.console._listeners):
            listener(event)

    def wait_for_event(self, name: str, timeout: float = 30, since: float | None = None, where: Any = None) -> Any:
        raise NotImplementedError("the runner waits on its event logs")

    def link_down(self) -> None:
        self.calls.append("link_down")
        self.fw.link_up = False

    def link_up(self) -> None:
        self.calls.append("link_up")
        self.fw.link_up = True

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")

    def reset(self, wait: bool = True, timeout: float | None = None) -> None:
        self.calls.append("reset")
        self.emit(EventName.BOOT_READY, {})

    def power_off(self) -> None:
        self.calls.append("power_off")

    def close(self) -> None:
        self.closed = True


class FakeFactory:
    """A board factory that says what its boards can do before making them."""

    def __init__(self, capabilities: dict[str, frozenset[Capability]] | None = None, *,
                 starved: dict[str, float] | None = None, restart_s: float = 0.0,
                 crash_after_s: float = 0.0) -> None:  # fmt: skip
        self.caps = capabilities or {}
        self.crash_after_s = crash_after_s
        self.starved = starved or {}  # board -> share of time it waits for a CPU (measured boards)
        self.restart_s = restart_s
        self.made: dict[str, FakeBoard] = {}

    def capabilities_for(self, name: str) -> frozenset[Capability]:
        return self.caps.get(name, frozenset(Capability))

    def __call__(self, name: str, device_id: str, secret: str, port: int) -> FakeBoard:
        from testbed.board.identity import Identity
        from testbed.scenario.boards import firmware_of

        share = self.starved.get(name)
        board = FakeBoard(name, self.capabilities_for(name), FakeHostCpu(share) if share is not None else None)
        board.fw.restart_s = self.restart_s
        board.fw.crash_after_s = self.crash_after_s
        firmware_of(board).provision(Identity.for_port(device_id, secret, port))
        self.made[name] = board
        return board


@pytest.fixture
def fake_factory() -> type[FakeFactory]:
    """The fake board factory class: ``fake_factory({"b-1": capabilities})`` makes boards on demand."""
    return FakeFactory
