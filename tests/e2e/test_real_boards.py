"""The real-board path, for real, without hardware: a stand-in board through an inventory file.

The stand-in is a QEMU process this test starts itself (not a QemuBoard): the stock image
(kernel, busybox, dropbear, no firmware), its console on a pty opened by path as
/dev/ttyUSB0 would be, SSH forwarded to 127.0.0.1. The testbed installs the firmware onto
it, provisions it and runs scenarios against the real service, which the board reaches
through its own network path (10.0.2.2 under QEMU user networking).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.board.inventory import load_inventory
from testbed.board.inventory_boards import InventoryBoards
from testbed.board.protocols import Board, Capability
from testbed.board.standin import StandIn
from testbed.contract.commands import FIRMWARE_BUILD_FILE
from testbed.paths import REPO_ROOT
from testbed.scenario.model import ScenarioError
from testbed.scenario.results import load_results
from testbed.scenario.runner import RunOptions, run_scenarios
from testbed.scenario.schema import load_scenarios

pytestmark = pytest.mark.e2e

SCENARIOS = REPO_ROOT / "scenarios"


def _scenario(prefix: str) -> Path:
    (path,) = SCENARIOS.glob(f"{prefix}-*.yaml")
    return path


def write_inventory(path: Path, standin: StandIn, ssh: bool = True, name: str = "bench-1", reset: bool = False) -> Path:
    lines = ["boards:", f"  {name}:", f"    console: {standin.console_url}"]
    if ssh:
        lines.append(f"    ssh: {{address: 127.0.0.1, port: {standin.ssh_port}, user: root}}")
    if reset:
        lines.append("    reset: shell")
    lines += ["    service: 10.0.2.2", "    interface: eth0", ""]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def standin():
    board = StandIn(name="standin-pty").start(timeout=300)
    try:
        yield board
    finally:
        board.close()


def _board_build(standin: StandIn) -> str | None:
    from testbed.board.ssh import SshConnection

    with SshConnection("127.0.0.1", port=standin.ssh_port) as ssh:
        out, code = ssh.run(f"cat {FIRMWARE_BUILD_FILE}")
    return out.strip() if code == 0 else None


def test_cli_installs_the_firmware_and_runs_s04_s07(standin, tmp_path):
    """`testbed scenario run --boards-file inventory.yaml s04 s07` on a board that started without firmware."""
    assert _board_build(standin) is None, "the stand-in must start without any firmware"
    inventory = write_inventory(tmp_path / "inventory.yaml", standin)
    results = tmp_path / "results.json"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "scenario", "run", "--boards-file", str(inventory),
         str(_scenario("s04")), str(_scenario("s07")), "--json", str(results), "--report", str(tmp_path / "r.html")],
        capture_output=True, text=True, timeout=900, cwd=REPO_ROOT,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "installed over SSH" in output, output[-3000:]
    by_name = {r.name: r for r in load_results(str(results))}
    assert set(by_name) == {"s04-restart-after-upload", "s07-throttling"}
    assert all(r.passed for r in by_name.values()), output[-3000:]
    # the service stored the board's uploads (s04: two of crashapp, one of crashsvc; s07: four)
    assert len(by_name["s04-restart-after-upload"].dumps) == 3
    assert len(by_name["s07-throttling"].dumps) == 4
    from testbed.image.build import ensure_image

    assert _board_build(standin) == ensure_image().meta["firmware"]["build"]
    print(f"s04 + s07 through the CLI on the stand-in: {time.monotonic() - started:.0f} s")


def test_s01_and_s05_link_down_from_the_boards_own_shell(standin, tmp_path):
    inventory = load_inventory(write_inventory(tmp_path / "inventory.yaml", standin))
    said: list[str] = []
    boards = InventoryBoards(inventory, log_dir=tmp_path / "logs", say=said.append)
    scenarios = load_scenarios([str(_scenario("s01")), str(_scenario("s05"))])
    results = run_scenarios(scenarios, RunOptions(parallel=1, board_factory=boards, workdir=tmp_path / "work"))
    for r in results:
        assert r.passed, f"{r.name}: {r.error or [e.detail for e in r.failures]}"
    s05 = next(r for r in results if r.name == "s05-deadline")
    assert any(i.kind == "link-down" and i.end is not None for i in s05.intervals)
    # the board already had this build (installed by the previous test or now): installed at most once
    assert sum("installed" in m for m in said) <= 1
    # the link is up again: the board reaches the service's address through its own path
    board = boards.open_board(inventory.boards["bench-1"])
    try:
        assert isinstance(board, Board)
        assert Capability.PAUSE not in board.capabilities and Capability.LINK in board.capabilities
        out, code = board.console.run("ip route show dev eth0")
        assert code == 0 and "default via 10.0.2.2" in out, out
    finally:
        board.close()


PAUSE_SCENARIO = """\
name: pause-on-a-real-board
groups:
  DW100/Field: {allow_crash_dumps: true}
fleet:
  b: {boards: 1, group: DW100/Field, apps: [crashapp]}
steps:
  - sync: all
  - pause: b-1
  - resume: b-1
expect:
  - dumps: {count: 0}
"""


def test_a_step_the_board_cannot_do_fails_before_boot(standin, tmp_path):
    inventory = load_inventory(write_inventory(tmp_path / "inventory.yaml", standin))
    opened: list[str] = []

    class Counting(InventoryBoards):
        def open_board(self, entry):
            opened.append(entry.name)
            return super().open_board(entry)

    path = tmp_path / "pause.yaml"
    path.write_text(PAUSE_SCENARIO)
    with pytest.raises(ScenarioError) as refused:
        run_scenarios(load_scenarios([str(path)]), RunOptions(parallel=1, board_factory=Counting(inventory)))
    text = str(refused.value)
    assert text.startswith(f"{path}:8: "), text
    assert "refused before any board booted: board bench-1 (the scenario's b-1) cannot pause (step 2)" in text, text
    assert "'pause' capability" in text, text
    assert opened == []  # no board was opened, let alone booted
    # the same through the command line
    proc = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "scenario", "run", "--boards-file", str(tmp_path / "inventory.yaml"),
         str(path), "--report", str(tmp_path / "r.html")],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ("refused before any board booted: board bench-1 (the scenario's b-1) cannot pause (step 2): "
            "it lacks the 'pause' capability") in proc.stderr, proc.stderr  # fmt: skip


REBOOT_SCENARIO = """\
name: reboot-a-real-board
groups:
  DW100/Field: {allow_crash_dumps: true}
fleet:
  b: {boards: 1, group: DW100/Field, apps: [crashapp]}
steps:
  - sync: all
  - reboot: {boards: b-1, timeout: 240s}
  - sync: all
  - crash: b-1
  - wait: {boards: b-1, event: upload-ok, timeout: 20s}
expect:
  - dumps: {count: 1}
"""


def test_reboot_from_the_boards_own_shell(standin, tmp_path):
    """`reset: shell`: `reboot` typed on its shell, boot-ready again, the firmware back (the stand-in's
    root is in RAM, so the reboot lost it: installed again), provisioned, and it uploads."""
    inventory = load_inventory(write_inventory(tmp_path / "inventory.yaml", standin, reset=True))
    fresh = _board_build(standin) is None
    said: list[str] = []
    path = tmp_path / "reboot.yaml"
    path.write_text(REBOOT_SCENARIO)
    boards = InventoryBoards(inventory, log_dir=tmp_path / "logs", say=said.append)
    (result,) = run_scenarios(load_scenarios([str(path)]), RunOptions(parallel=1, board_factory=boards))
    assert result.passed, f"{result.error or [e.detail for e in result.failures]}\n" + "\n".join(said)
    assert any(i.kind == "reboot" and i.end is not None for i in result.intervals)
    assert [e.name for e in result.boards[0].events].count("boot-ready") >= 1
    # installed after the reboot (and before it when the stand-in had no firmware yet)
    assert sum("installed over SSH" in m for m in said) == (2 if fresh else 1), said


def test_firmware_install_through_the_console_when_there_is_no_ssh(standin, tmp_path):
    """Without SSH in the inventory, the firmware is typed through the console (checked by sha256)."""
    from testbed.board.install import firmware_bundle, install_firmware

    inventory = load_inventory(write_inventory(tmp_path / "inventory.yaml", standin, ssh=False))
    boards = InventoryBoards(inventory, log_dir=tmp_path / "logs")
    board = boards.open_board(inventory.boards["bench-1"])
    try:
        board.console.run_check(f"rm -f {FIRMWARE_BUILD_FILE} /usr/bin/tb-tool")
        assert board.firmware.status().build is None
        bundle = firmware_bundle()
        started = time.monotonic()
        assert install_firmware(board, bundle, ssh=None) is True
        took = time.monotonic() - started
        assert board.firmware.status().build == bundle.build
        assert board.console.run("tb-tool 2>&1; true")[1] == 0
        assert install_firmware(board, bundle, ssh=None) is False  # same build: nothing to do
        print(f"console install of {bundle.total_bytes} bytes: {took:.1f} s")
    finally:
        board.close()
