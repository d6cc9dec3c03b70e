"""A board from a lab's labgrid place: a local labgrid-coordinator and labgrid-exporter on loopback.

The exporter exports a stand-in board's console (a TCP port: a NetworkSerialPort, raw) and a
power switch (a NetworkPowerPort of labgrid's `simplerest` model, served here on loopback:
switching it off ends the stand-in's QEMU). Through an inventory entry naming the place, the
testbed acquires it, runs s04 on its board, and releases it; then powers the board off
through labgrid's power driver.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("labgrid", reason="labgrid is not installed: pip install 'testbed[labgrid]'")

from testbed.board.inventory import load_inventory  # noqa: E402
from testbed.board.inventory_boards import InventoryBoards  # noqa: E402
from testbed.board.qemu_process import free_port  # noqa: E402
from testbed.board.standin import StandIn  # noqa: E402
from testbed.paths import REPO_ROOT  # noqa: E402
from testbed.scenario.runner import RunOptions, run_scenarios  # noqa: E402
from testbed.scenario.schema import load_scenarios  # noqa: E402

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
PLACE = "tb-standin"
EXPORTER = "tb-exporter"


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} in {timeout} s") from None
            time.sleep(0.2)


def _client(coordinator: str, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run([str(BIN / "labgrid-client"), "-x", coordinator, *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, f"labgrid-client {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


class PowerSwitch(BaseHTTPRequestHandler):
    """labgrid's simplerest power model on loopback: GET /relay/0/0 is off (the stand-in's QEMU ends)."""

    standin: StandIn | None = None
    calls: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        PowerSwitch.calls.append(self.path)
        if self.path.endswith("/0/0") and PowerSwitch.standin is not None and PowerSwitch.standin.process:
            PowerSwitch.standin.process.terminate()
        body = b"1"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lab(tmp_path):
    """A stand-in whose console is a TCP port, exported to a coordinator as a labgrid place."""
    procs: list[subprocess.Popen] = []
    standin = StandIn(console="tcp", name="standin-lab").start(timeout=300)
    switch = ThreadingHTTPServer(("127.0.0.1", 0), PowerSwitch)
    PowerSwitch.standin, PowerSwitch.calls = standin, []
    threading.Thread(target=switch.serve_forever, daemon=True).start()
    try:
        port = free_port()
        coordinator = f"127.0.0.1:{port}"
        log = (tmp_path / "coordinator.log").open("w")
        procs.append(subprocess.Popen([str(BIN / "labgrid-coordinator"), "--listen", coordinator],
                                      cwd=tmp_path, stdout=log, stderr=log))  # fmt: skip
        _wait_port(port, procs[-1], "labgrid-coordinator")
        (tmp_path / "exporter.yaml").write_text(
            "standin:\n"
            f"  NetworkSerialPort: {{host: 127.0.0.1, port: {standin.console_port}, speed: 115200, protocol: raw}}\n"
            "  NetworkPowerPort:\n"
            "    model: simplerest\n"
            f"    host: 'http://127.0.0.1:{switch.server_address[1]}/relay/{{index}}/{{value}}'\n"
            "    index: 0\n"
        )
        log = (tmp_path / "exporter.log").open("w")
        procs.append(subprocess.Popen(
            [str(BIN / "labgrid-exporter"), "--coordinator", coordinator, "--name", EXPORTER,
             "--hostname", "127.0.0.1", str(tmp_path / "exporter.yaml")],
            cwd=tmp_path, stdout=log, stderr=log))  # fmt: skip
        deadline = time.monotonic() + 60
        while "NetworkSerialPort" not in _client(coordinator, "resources"):
            assert procs[-1].poll() is None, (tmp_path / "exporter.log").read_text()
            assert time.monotonic() < deadline, "the exporter's resources never reached the coordinator"
            time.sleep(0.5)
        _client(coordinator, "-p", PLACE, "create")
        _client(coordinator, "-p", PLACE, "add-match", f"{EXPORTER}/standin/*")
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(
            "boards:\n  lab-1:\n"
            f"    labgrid: {{place: {PLACE}, coordinator: '{coordinator}', power: true}}\n"
            f"    ssh: {{address: 127.0.0.1, port: {standin.ssh_port}}}\n"
            "    service: 10.0.2.2\n"
        )
        yield coordinator, inventory, standin
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        switch.shutdown()
        switch.server_close()
        standin.close()


def test_s04_through_a_labgrid_place_then_power_off(lab, tmp_path):
    coordinator, inventory_path, standin = lab
    inventory = load_inventory(inventory_path)
    said: list[str] = []
    boards = InventoryBoards(inventory, log_dir=tmp_path / "logs", say=said.append)
    (s04,) = REPO_ROOT.joinpath("scenarios").glob("s04-*.yaml")
    (result,) = run_scenarios(load_scenarios([str(s04)]), RunOptions(parallel=1, board_factory=boards))
    assert result.passed, f"{result.error or [e.detail for e in result.failures]}\n" + "\n".join(said)
    assert len(result.dumps) == 3
    assert any(f"labgrid place {PLACE} acquired, console socket://127.0.0.1:{standin.console_port}" in m for m in said)
    # the run released the place
    assert "acquired: None" in _client(coordinator, "-p", PLACE, "show")

    board = boards.open_board(inventory.boards["lab-1"])
    try:
        assert "acquired: None" not in _client(coordinator, "-p", PLACE, "show")
        board.power_off()  # labgrid's NetworkPowerDriver -> the loopback switch -> QEMU ends
        assert any(c.endswith("/0/0") for c in PowerSwitch.calls), PowerSwitch.calls
        assert standin.process.wait(timeout=30) is not None
    finally:
        board.close()
    assert "acquired: None" in _client(coordinator, "-p", PLACE, "show")
