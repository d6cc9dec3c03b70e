"""The inventory file: strict validation with file:line errors, capabilities from the entry alone,
the scenario check before any board boots, and the link / install command lines."""

from __future__ import annotations

import base64
import gzip
import hashlib
import lzma
from pathlib import Path

import pytest

from testbed.board.install import ConsoleUploader
from testbed.board.inventory import InventoryError, capabilities_of, load_inventory, parse_inventory
from testbed.board.inventory_boards import InventoryBoards
from testbed.board.protocols import Capability
from testbed.board.real import link_down_command, link_up_command
from testbed.scenario.schema import scenario_from_data
from testbed.scenario.yamlloc import load_located

GOOD = """\
boards:
  bench-1:
    console: /dev/ttyUSB0
    ssh: {address: 192.168.7.2, user: root}
    reset: shell
    service: 10.0.2.2
  bench-2:
    console: rfc2217://127.0.0.1:4000
    power_off: "true"
    power_on: {command: "true", timeout: 5}
    service: 10.0.2.2
    interface: usb0
  bench-3:
    console: socket://127.0.0.1:4001
    service: 127.0.0.1
"""


def test_a_good_inventory_and_the_capabilities_it_declares():
    inv = parse_inventory(GOOD, "inv.yaml")
    assert list(inv.boards) == ["bench-1", "bench-2", "bench-3"]
    b1, b2, b3 = inv.boards.values()
    assert b1.ssh is not None and b1.ssh.address == "192.168.7.2" and b1.ssh.port == 22
    assert b1.reset == "shell" and b2.interface == "usb0" and b3.interface == "eth0"
    base = {Capability.COMMANDS, Capability.EVENTS, Capability.LINK, Capability.CLOCK}
    assert capabilities_of(b1) == base | {Capability.RESET}
    assert capabilities_of(b2) == base | {Capability.RESET, Capability.POWER}
    assert capabilities_of(b3) == base
    for entry in inv:
        caps = capabilities_of(entry)
        assert not caps & {Capability.PAUSE, Capability.SNAPSHOT, Capability.HOST_CPU}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n    servce: 10.0.2.2\n", 4, "did you mean 'service'"),
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n", 3, "'service' is required"),
        ("boards:\n  b:\n    service: 10.0.2.2\n", 3, "'console' is required"),
        ("boards:\n  b:\n    console: ttyUSB0\n    service: 10.0.2.2\n", 3, "absolute device path"),
        ("boards:\n  b:\n    console: telnet://x:1\n    service: 10.0.2.2\n", 3, "socket:// or rfc2217://"),
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2:8443\n", 4, "without a port"),
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n    reset: shel\n", 5, "did you mean 'shell'"),
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n    ssh: {addres: x}\n", 5, "did you mean 'address'"),
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n    ssh: {address: x, port: 70000}\n", 5, "from 1 to 65535"),
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n    power_on: x\n", 5, "power_on without power_off"),
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n    power_off: {comand: x}\n", 5, "did you mean 'command'"),
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n    interface: 'eth0; reboot'\n", 5, "not a network interface"),
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n    boot_ready: '('\n", 5, "not a regular expression"),
        ("boards:\n  b:\n    labgrid: {place: p}\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n", 4, "drop 'console'"),
        ("boards:\n  b:\n    labgrid: {plac: p}\n    service: 10.0.2.2\n", 3, "did you mean 'place'"),
        ("board:\n  b: {}\n", 1, "did you mean 'boards'"),
        ("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n  c:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n",
         6, "also board 'b'"),
        ("boards: [\n", 2, "not valid YAML"),
        ("", 0, "empty"),
    ],
)
def test_bad_inventories_name_file_and_line(text, line, words):
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "lab/inv.yaml")
    assert info.value.line == line, str(info.value)
    assert words in str(info.value)
    assert str(info.value).startswith(f"lab/inv.yaml:{line}:" if line else "lab/inv.yaml:")


def test_key_files_are_relative_to_the_inventory_and_must_exist(tmp_path: Path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "bench").write_text("key")
    inv = tmp_path / "inv.yaml"
    inv.write_text("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n    ssh: {address: x, key_file: keys/bench}\n")
    assert load_inventory(inv).boards["b"].ssh.key_file == tmp_path / "keys" / "bench"
    inv.write_text("boards:\n  b:\n    console: /dev/ttyUSB0\n    service: 10.0.2.2\n    ssh: {address: x, key_file: keys/nope}\n")
    with pytest.raises(InventoryError, match=r"inv.yaml:5: .*no such file"):
        load_inventory(inv)


def test_labgrid_power_declares_power_and_reset():
    inv = parse_inventory("boards:\n  l:\n    labgrid: {place: p, coordinator: '127.0.0.1:20408', power: true}\n    service: 10.0.2.2\n")
    assert {Capability.POWER, Capability.RESET} <= capabilities_of(inv.boards["l"])
    inv = parse_inventory("boards:\n  l:\n    labgrid: {place: p}\n    service: 10.0.2.2\n")
    assert Capability.POWER not in capabilities_of(inv.boards["l"])


SCENARIO = """\
name: faults
groups:
  G/F: {allow_crash_dumps: true}
fleet:
  b: {boards: 2, group: G/F, apps: [crashapp]}
steps:
  - link_down: b-1
  - link_up: b-1
  - reboot: b-2
  - pause: b-1
  - resume: b-1
expect:
  - dumps: {count: 0}
"""


def test_the_scenario_check_names_board_step_and_capability_before_any_board():
    from testbed.scenario.boards import (
        check_capabilities,
        declared_capabilities,
        describe_board,
        prepare_factory,
    )
    from testbed.scenario.model import ScenarioError

    boards = InventoryBoards(parse_inventory(GOOD, "inv.yaml"))
    sc = scenario_from_data(load_located(SCENARIO), "faults.yaml", default_name="faults")
    prepare_factory(boards, sc)
    with pytest.raises(ScenarioError) as info:
        check_capabilities(sc, lambda b: declared_capabilities(boards, b), describe=lambda b: describe_board(boards, b))
    text = str(info.value)
    assert text.startswith("faults.yaml:10: ")
    assert "board bench-1 (the scenario's b-1) cannot pause (step 4): it lacks the 'pause' capability" in text
    # the reboot of b-2 (bench-2 can reset) and the link faults (every board has LINK) came first and passed
    assert "reboot" not in text and "link" not in text.split("declares")[0]


def test_scenario_boards_take_the_same_name_else_the_next_free_one():
    boards = InventoryBoards(parse_inventory(GOOD, "inv.yaml"))
    assert boards.plan(["x", "bench-3", "y"]) == {"bench-3": "bench-3", "x": "bench-1", "y": "bench-2"}
    with pytest.raises(Exception, match="has 3 board"):
        boards.plan(["a", "b", "c", "d"])


def test_link_commands_keep_the_routes_and_need_no_network():
    down, up = link_down_command("eth0"), link_up_command("eth0")
    assert down.startswith("ip route show dev eth0 > ") and down.endswith("ip link set eth0 down")
    assert up.startswith("ip link set eth0 up") and "ip route add $r dev eth0" in up


class FakeShell:
    """A shell that runs the uploader's printf / base64 lines into a dict of files (unit test only)."""

    def __init__(self, unpack: str) -> None:
        self.unpack = unpack
        self.files: dict[str, bytes] = {}
        self.commands = 0

    def run(self, cmd: str, timeout: float = 30) -> tuple[str, int]:
        self.commands += 1
        for line in cmd.split("\n"):
            if line.startswith(": > "):
                self.files[line[4:]] = b""
            elif line.startswith("printf '%s\\n' '"):
                data, _, target = line[len("printf '%s\\n' '"):].partition("' >> ")
                assert len(line) < 4096
                self.files[target] += data.encode() + b"\n"
            elif line.startswith("base64 -d "):
                src, _, rest = line[len("base64 -d "):].partition(f" | {self.unpack} > ")
                dest = rest.split(";")[0]
                unpack = gzip.decompress if self.unpack == "gunzip" else lzma.decompress
                self.files[dest] = unpack(base64.b64decode(self.files.pop(src)))
            elif line == "command -v unxz >/dev/null":
                return "", 0 if self.unpack == "unxz" else 1
        return "", 0


@pytest.mark.parametrize("unpack", ["unxz", "gunzip"])
def test_console_upload_round_trips_a_file(tmp_path: Path, unpack: str):
    data = bytes(range(256)) * 700 + b"tail"
    local = tmp_path / "prog"
    local.write_bytes(data)
    shell = FakeShell(unpack)
    ConsoleUploader(shell).__call__(local, "/tmp/prog")
    assert hashlib.sha256(shell.files["/tmp/prog"]).digest() == hashlib.sha256(data).digest()
    assert shell.commands >= 3


def test_a_console_that_cannot_be_opened_names_the_board(tmp_path: Path):
    from testbed.board.errors import BoardError
    from testbed.board.real import RealBoard

    inv = parse_inventory(f"boards:\n  b:\n    console: {tmp_path}/ttyUSB9\n    service: 10.0.2.2\n")
    with pytest.raises(BoardError, match=r"^b: cannot open the console .*ttyUSB9"):
        RealBoard(inv.boards["b"]).open(timeout=1)
