"""The board's layers on their own: the firmware driver over a recording runner, the QEMU
board's declared capabilities and protocol, its firmware operations delegated to the
driver, and no firmware command line typed outside the driver (no QEMU started here)."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

import testbed.board.qemu as qemu_module
from testbed.board.errors import BoardError
from testbed.board.firmware import FirmwareDriver
from testbed.board.identity import Identity
from testbed.board.protocols import (
    Board,
    BoardConsole,
    Capability,
    CommandRunner,
    UnsupportedCapability,
    require,
)
from testbed.board.qmp import Qmp, QmpEvent
from testbed.contract import commands

DEVICE = "ab" * 64


class RecordingRunner:
    """A command runner that records each command line and answers from a table of exit codes."""

    def __init__(self, codes: dict[str, int] | None = None) -> None:
        self.typed: list[str] = []
        self.codes = codes or {}

    def run(self, cmd: str, timeout: float = 30) -> tuple[str, int]:
        self.typed.append(cmd)
        code = next((c for prefix, c in self.codes.items() if cmd.startswith(prefix)), 0)
        return f"out of {cmd.split()[0]}", code

    def run_check(self, cmd: str, timeout: float = 30) -> str:
        out, code = self.run(cmd, timeout)
        if code:
            raise BoardError(out)
        return out


def test_the_firmware_driver_types_the_contracts_command_lines() -> None:
    runner = RecordingRunner()
    assert isinstance(runner, CommandRunner)
    fw = FirmwareDriver(runner, "unit")
    fw.set_clock(1_700_000_000.7)
    fw.warp(-3600)
    fw.reseed("00ff")
    fw.sync_now()
    fw.crash("crashapp", "segv", heap_kib=64, crash_id="c1")
    fw.clear_state()
    assert runner.typed == [
        commands.set_clock(1_700_000_000),
        commands.warp_clock(-3600),
        commands.reseed("00ff"),
        commands.sync_now(),
        commands.crash("crashapp", "segv", 64, "c1"),
        commands.clear_state(),
    ]


def test_after_restore_sets_the_clock_and_reseeds_in_one_round_trip() -> None:
    runner = RecordingRunner()
    FirmwareDriver(runner).after_restore("beef")
    FirmwareDriver(runner).after_restore("cafe", set_clock=False)
    assert len(runner.typed) == 2
    clock = commands.set_clock(0).split("@")[0]
    assert runner.typed[0].startswith(clock) and runner.typed[0].endswith(commands.reseed("beef"))
    assert runner.typed[1] == commands.reseed("cafe")


@pytest.mark.parametrize(("code", "ok"), [(0, True), (1, True), (2, False), (64, False)])
def test_provision_accepts_a_failed_first_sync_but_not_bad_input(code: int, ok: bool) -> None:
    identity = Identity(DEVICE, "s3cret", "10.0.2.2:8443")
    runner = RecordingRunner({"tb-provision": code})
    fw = FirmwareDriver(runner, "unit")
    if ok:
        assert fw.provision(identity)[1] == code
    else:
        with pytest.raises(BoardError, match=f"exit {code}"):
            fw.provision(identity)
    assert runner.typed[-1] == commands.provision(DEVICE, "s3cret", "10.0.2.2:8443") == identity.provision_command()


def test_provision_says_when_the_firmware_is_not_on_the_board() -> None:
    runner = RecordingRunner({commands.has_program("tb-provision"): 1})
    with pytest.raises(BoardError, match="tb-provision is not on the board"):
        FirmwareDriver(runner, "bench-1").provision(Identity(DEVICE, "s", "10.0.2.2:1"))
    assert not any(cmd.startswith("tb-provision") for cmd in runner.typed)


@pytest.fixture
def unstarted_board(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A QemuBoard object whose QEMU was never started (no process, no image needed)."""
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(qemu_module.shutil, "which", lambda name: f"/usr/bin/{name}")

    class FakeImage:
        hash = "0" * 16
        vmlinuz = tmp_path / "vmlinuz"
        initramfs = tmp_path / "initramfs"

    board = qemu_module.QemuBoard(FakeImage(), name="unit-board", log_dir=tmp_path)
    yield board
    board.close()


def test_a_qemu_board_declares_every_capability(unstarted_board) -> None:
    b = unstarted_board
    assert isinstance(b, Board)
    assert b.capabilities == frozenset(Capability)  # host-cpu included: its monitor comes with the process
    assert b.host_cpu is None and b.pid is None  # until QEMU starts
    for capability in b.capabilities:
        require(b, capability)
    b.capabilities = frozenset(Capability) - {Capability.PAUSE}  # a board that cannot pause
    with pytest.raises(UnsupportedCapability, match="unit-board cannot pause"):
        require(b, Capability.PAUSE, "pause")
    assert b.events == [] and not b.alive


def test_firmware_operations_on_a_qemu_board_go_through_its_driver(unstarted_board) -> None:
    b = unstarted_board
    with pytest.raises(BoardError, match="not started"):
        b.provision(Identity(DEVICE, "s", "10.0.2.2:1"))
    runner = RecordingRunner()
    b.console = runner  # what the driver reaches: whatever console the board has now
    identity = Identity(DEVICE, "s", "10.0.2.2:9")
    assert b.provision(identity) == ("out of tb-provision", 0)
    b.set_clock(5)
    assert b.identity == identity
    assert runner.typed[-2:] == [identity.provision_command(), commands.set_clock(5)]


def test_the_qemu_command_line_holds_the_profile_and_no_firmware(unstarted_board) -> None:
    cmd = unstarted_board._command(Path("/tmp/state.bin"), 4000, 4001)
    assert cmd[0] == qemu_module.QEMU and "-S" in cmd
    assert cmd[cmd.index("-m") + 1] == str(qemu_module.PROFILE["memory_mib"])
    assert "port=4000" in cmd[cmd.index("-chardev") + 1]
    assert "hostfwd=tcp:127.0.0.1:4001-:22" in cmd[cmd.index("-netdev") + 1]
    assert cmd[-2:] == ["-incoming", "exec:cat /tmp/state.bin"]


#: Modules of the QEMU board and its console: none may type a firmware command line.
BOARD_MODULES = ("qemu.py", "qemu_process.py", "migration.py", "qmp.py", "console.py", "console_reader.py",
                 "console_interact.py", "snapshot.py", "fixtures.py", "bench.py")


def _string_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_no_firmware_command_line_is_typed_outside_the_firmware_driver() -> None:
    programs = {line.split()[0] for line in (
        commands.provision(DEVICE, "s", "10.0.2.2:1"), commands.sync_now(), commands.crash("a", "segv"))}
    programs |= {"tb-reseed", "date -s", commands.STATE_DIR}
    board_dir = Path(qemu_module.__file__).parent
    for module in BOARD_MODULES:
        for literal in _string_literals(board_dir / module):
            assert not any(p in literal for p in programs), f"{module} types a firmware command: {literal!r}"


def test_qmp_events_are_kept_in_an_event_log() -> None:
    qmp = Qmp(Path("/nonexistent/qmp.sock"), "unit")
    try:
        qmp.event_log.append(QmpEvent("STOP", {}, 1.0, 1.0))
        threading.Timer(0.05, lambda: qmp.event_log.append(QmpEvent("RESET", {"guest": True}, 2.0, 2.0))).start()
        assert qmp.wait_event("RESET", timeout=5, where=lambda e: e.data["guest"]).monotonic == 2.0
        assert [e.name for e in qmp.events] == ["STOP", "RESET"]
        with pytest.raises(BoardError, match="no QMP event RESUME within 0.05 s"):
            qmp.wait_event("RESUME", timeout=0.05)
        with pytest.raises(BoardError, match="did not answer"):
            qmp.connect(timeout=0.1)
    finally:
        qmp.close()


def test_the_console_protocol_is_what_console_gives() -> None:
    from testbed.board.console import Console

    console = Console("loop://", name="loop")
    try:
        assert isinstance(console, BoardConsole)
    finally:
        console.close()
