"""The inventory file: real boards on a bench (or lent by a lab's labgrid places).

A YAML file like a labgrid environment file, one entry per board::

    boards:
      bench-1:
        console: /dev/ttyUSB0            # or socket://HOST:PORT, rfc2217://HOST:PORT
        baudrate: 115200                 # optional
        ssh: {address: 192.168.7.2, port: 22, user: root, key_file: ~/.ssh/bench}   # optional
        reset: shell                     # `reboot` from its own shell; or {command: "..."} on the host
        power_off: "relay 3 off"         # optional, host commands (or {command: ..., timeout: 60})
        power_on: "relay 3 on"
        service: 10.0.2.2                # the address the board dials to reach the service
        interface: eth0                  # what a link fault takes down (default eth0)
        boot_ready: "@tb event=boot-ready"   # what the console prints when a reset board is up

      lab-1:
        labgrid: {place: bench-3, coordinator: 127.0.0.1:20408}   # console/power from the place
        service: 10.0.2.2

Every error names the file and line; unknown keys are refused with a "did you mean".
What a board can do (:func:`capabilities_of`) follows from its entry alone, so a scenario
step a board cannot do is refused before any board boots.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.board.protocols import Capability
from testbed.scenario.yamlloc import LocMap, YamlSyntaxError, line_of, load_located

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,47}$")
_CONSOLE_URL = ("socket://", "rfc2217://")
_IFACE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
DEFAULT_BOOT_READY = r"@tb event=boot-ready"
DEFAULT_INTERFACE = "eth0"
DEFAULT_BAUDRATE = 115200

BOARD_KEYS = ("console", "baudrate", "ssh", "reset", "power_off", "power_on", "service", "interface", "boot_ready",
              "labgrid")
SSH_KEYS = ("address", "port", "user", "key_file", "password", "known_hosts")
RESET_KEYS = ("command", "timeout")
LABGRID_KEYS = ("place", "coordinator", "power")

#: What every board from an inventory can do: a shell, the firmware's events, link faults
#: from its own shell and clock warps with `date`. Never PAUSE, SNAPSHOT or HOST_CPU.
BASE_CAPABILITIES = frozenset({Capability.COMMANDS, Capability.EVENTS, Capability.LINK, Capability.CLOCK})


class InventoryError(ValueError):
    """The inventory file is wrong; ``str()`` reads ``file:line: what is wrong``."""

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


@dataclass(frozen=True)
class SshSpec:
    address: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    password: str | None = None
    known_hosts: Path | None = None  # verify the board's host key against this file


@dataclass(frozen=True)
class HostCommand:
    """A command run on the host (a relay, a PDU, a power switch's CLI)."""

    command: str
    timeout: float = 30.0


@dataclass(frozen=True)
class LabgridSpec:
    place: str
    coordinator: str | None = None  # host:port; None: labgrid's default, 127.0.0.1:20408
    power: bool = False  # the place has a power resource the testbed may switch (POWER, RESET)


@dataclass(frozen=True)
class BoardEntry:
    name: str
    service: str
    console: str | None = None
    baudrate: int = DEFAULT_BAUDRATE
    ssh: SshSpec | None = None
    reset: HostCommand | str | None = None  # HostCommand, "shell", or None (no reset)
    power_off: HostCommand | None = None
    power_on: HostCommand | None = None
    interface: str = DEFAULT_INTERFACE
    boot_ready: str = DEFAULT_BOOT_READY
    labgrid: LabgridSpec | None = None
    line: int = 0


@dataclass(frozen=True)
class Inventory:
    path: Path
    boards: dict[str, BoardEntry] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.boards.values())

    def __len__(self) -> int:
        return len(self.boards)


def capabilities_of(entry: BoardEntry) -> frozenset[Capability]:
    """What a board can do, from its inventory entry alone (known before it boots).

    RESET when the entry names a reset (a host command, or `shell`: `reboot` from its own
    shell) or a power cycle (power off and on); POWER when it names a power-off command,
    or a labgrid place whose power resource it declares (``power: true``: then also RESET,
    a power cycle). A scenario asks only for what the inventory promises.
    """
    caps = set(BASE_CAPABILITIES)
    place_power = entry.labgrid is not None and entry.labgrid.power
    if entry.reset is not None or (entry.power_off is not None and entry.power_on is not None) or place_power:
        caps.add(Capability.RESET)
    if entry.power_off is not None or place_power:
        caps.add(Capability.POWER)
    return frozenset(caps)


# ----------------------------------------------------------------------------- loading


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, line: int, message: str) -> InventoryError:
        return InventoryError(self.file, line, message)

    def mapping(self, value: Any, line: int, what: str) -> LocMap:
        if not isinstance(value, LocMap):
            raise self.fail(line, f"{what} must be a mapping, got {type(value).__name__}")
        return value

    def keys(self, mapping: LocMap, allowed: tuple[str, ...], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                raise self.fail(
                    line_of(mapping, key),
                    f"unknown key '{key}' in {where}{_suggest(key, allowed)}; allowed: {', '.join(allowed)}",
                )

    def text(self, mapping: LocMap, key: str, where: str, required: bool = False) -> str | None:
        if key not in mapping or mapping[key] is None:
            if required:
                raise self.fail(line_of(mapping), f"{where}: '{key}' is required")
            return None
        value = mapping[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(line_of(mapping, key, value=True), f"{where}: '{key}' must be a non-empty string")
        return value.strip()

    def number(self, mapping: LocMap, key: str, where: str, default: float, low: float, high: float) -> float:
        if key not in mapping:
            return default
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.fail(line_of(mapping, key, value=True), f"{where}: '{key}' must be a number from {low:g} to {high:g}")
        return value

    def command(self, value: Any, line: int, where: str, allowed: tuple[str, ...] = RESET_KEYS) -> HostCommand:
        if isinstance(value, str) and value.strip():
            return HostCommand(value.strip())
        m = self.mapping(value, line, where)
        self.keys(m, allowed, where)
        return HostCommand(self.text(m, "command", where, required=True) or "",
                           float(self.number(m, "timeout", where, 30.0, 0.1, 3600)))  # fmt: skip


def _check_console(r: _Reader, value: str, line: int, where: str) -> str:
    if value.startswith(_CONSOLE_URL):
        rest = value.split("://", 1)[1]
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not port.split("?")[0].isdigit():
            raise r.fail(line, f"{where}: console {value!r} must be socket://HOST:PORT or rfc2217://HOST:PORT")
        return value
    if "://" in value:
        raise r.fail(line, f"{where}: console {value!r}: only a device path, socket:// or rfc2217:// is supported")
    if not value.startswith("/"):
        raise r.fail(line, f"{where}: console {value!r} must be an absolute device path (e.g. /dev/ttyUSB0)")
    return value


def _check_service(r: _Reader, value: str, line: int, where: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise r.fail(line, f"{where}: service {value!r} must be the IPv4 address the board dials "
                           "(without a port: the run picks it), e.g. 10.0.2.2") from None  # fmt: skip
    return value


def _file(r: _Reader, m: LocMap, key: str, where: str) -> Path | None:
    """A file named in the inventory: ~ expanded, relative to the inventory's folder; it must exist."""
    text = r.text(m, key, where)
    if text is None:
        return None
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (Path(r.file).parent / path).resolve()
    if not path.is_file():
        raise r.fail(line_of(m, key, value=True), f"{where}: {key} {text!r}: no such file ({path})")
    return path


def _board(r: _Reader, name: str, spec: Any, line: int) -> BoardEntry:
    where = f"board '{name}'"
    if not _NAME_RE.match(name):
        raise r.fail(line, f"{where}: a board name is a letter, then letters, digits, '_', '.' or '-' (48 at most)")
    m = r.mapping(spec, line, where)
    r.keys(m, BOARD_KEYS, where)
    kw: dict[str, Any] = {"name": name, "line": m.line}
    kw["service"] = _check_service(r, r.text(m, "service", where, required=True) or "",
                                   line_of(m, "service", value=True), where)  # fmt: skip
    console = r.text(m, "console", where)
    if "labgrid" in m:
        lm = r.mapping(m["labgrid"], line_of(m, "labgrid", value=True), f"{where} labgrid")
        r.keys(lm, LABGRID_KEYS, f"{where} labgrid")
        power = lm.get("power", False)
        if not isinstance(power, bool):
            raise r.fail(line_of(lm, "power", value=True), f"{where} labgrid: 'power' is true or false")
        kw["labgrid"] = LabgridSpec(r.text(lm, "place", f"{where} labgrid", required=True) or "",
                                    r.text(lm, "coordinator", f"{where} labgrid"), power)  # fmt: skip
        if console is not None:
            raise r.fail(line_of(m, "console"), f"{where}: a labgrid board takes its console from the place; drop 'console'")
    elif console is None:
        raise r.fail(m.line, f"{where}: 'console' is required (a serial device path, socket:// or rfc2217://), or 'labgrid'")
    else:
        kw["console"] = _check_console(r, console, line_of(m, "console", value=True), where)
    kw["baudrate"] = int(r.number(m, "baudrate", where, DEFAULT_BAUDRATE, 50, 4_000_000))
    if m.get("ssh") is not None:
        sm = r.mapping(m["ssh"], line_of(m, "ssh", value=True), f"{where} ssh")
        r.keys(sm, SSH_KEYS, f"{where} ssh")
        user = r.text(sm, "user", f"{where} ssh") or "root"
        if not _USER_RE.match(user):
            raise r.fail(line_of(sm, "user", value=True), f"{where} ssh: user {user!r} is not a user name")
        key_path = _file(r, sm, "key_file", f"{where} ssh")
        kw["ssh"] = SshSpec(
            address=r.text(sm, "address", f"{where} ssh", required=True) or "",
            port=int(r.number(sm, "port", f"{where} ssh", 22, 1, 65535)),
            user=user, key_file=key_path, password=r.text(sm, "password", f"{where} ssh"),
            known_hosts=_file(r, sm, "known_hosts", f"{where} ssh"),
        )  # fmt: skip
    reset = m.get("reset")
    if reset in ("shell",):
        kw["reset"] = "shell"
    elif reset in (None, "none"):
        kw["reset"] = None
    elif isinstance(reset, str):
        raise r.fail(line_of(m, "reset", value=True),
                     f"{where}: reset is `shell` (reboot from its own shell), `none`, or {{command: ...}} run on the host"
                     f"{_suggest(reset, ('shell', 'none'))}")  # fmt: skip
    else:
        kw["reset"] = r.command(reset, line_of(m, "reset", value=True), f"{where} reset")
    for key in ("power_off", "power_on"):
        if m.get(key) is not None:
            kw[key] = r.command(m[key], line_of(m, key, value=True), f"{where} {key}")
    if "power_on" in kw and "power_off" not in kw:
        raise r.fail(line_of(m, "power_on"), f"{where}: power_on without power_off (a power cycle needs both)")
    iface = r.text(m, "interface", where) or DEFAULT_INTERFACE
    if not _IFACE_RE.match(iface):
        raise r.fail(line_of(m, "interface", value=True), f"{where}: interface {iface!r} is not a network interface name")
    kw["interface"] = iface
    boot_ready = r.text(m, "boot_ready", where) or DEFAULT_BOOT_READY
    try:
        re.compile(boot_ready)
    except re.error as exc:
        raise r.fail(line_of(m, "boot_ready", value=True), f"{where}: boot_ready is not a regular expression: {exc}") from None
    kw["boot_ready"] = boot_ready
    return BoardEntry(**kw)


def parse_inventory(text: str, file: str = "<inventory>") -> Inventory:
    r = _Reader(file)
    try:
        doc = load_located(text)
    except YamlSyntaxError as exc:
        raise r.fail(exc.line, str(exc)) from None
    if doc is None:
        raise r.fail(0, "the inventory is empty; it needs `boards:` with at least one board")
    top = r.mapping(doc, 1, "the inventory")
    r.keys(top, ("boards",), "the inventory")
    if "boards" not in top:
        raise r.fail(top.line, "the inventory needs `boards:` (a mapping of board names to their entries)")
    boards_map = r.mapping(top["boards"], line_of(top, "boards", value=True), "boards")
    if not boards_map:
        raise r.fail(line_of(top, "boards"), "`boards:` names no board")
    boards = {name: _board(r, str(name), spec, line_of(boards_map, name)) for name, spec in boards_map.items()}
    consoles: dict[str, str] = {}
    for entry in boards.values():
        if entry.console and entry.console in consoles:
            raise r.fail(entry.line, f"board '{entry.name}': console {entry.console} is also board '{consoles[entry.console]}''s")
        if entry.console:
            consoles[entry.console] = entry.name
    return Inventory(Path(file), boards)


def load_inventory(path: str | Path) -> Inventory:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError(str(path), 0, f"cannot read the inventory: {exc.strerror or exc}") from None
    return parse_inventory(text, str(path))
