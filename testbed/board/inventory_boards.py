"""Boards for a scenario run from an inventory file: a BoardFactory over real boards.

    boards = InventoryBoards(load_inventory("inventory.yaml"))
    boards.plan_scenario(scenario)           # maps scenario boards onto the inventory's
    board = boards("b-1", device_id, secret, port)   # installed, fresh, provisioned

A scenario's board takes the inventory board of the same name, else the next free one
(in the inventory's order). Handing a board out: attach to its console, install the
image's firmware when the board has another build (over SSH when the inventory gives
it, else through the console), stop the firmware, clear its state directory, start it
again, then provision it with the run's identity and the address the board dials.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.board.errors import BoardError
from testbed.board.identity import Identity, is_local_service
from testbed.board.install import firmware_bundle, install_firmware
from testbed.board.inventory import BoardEntry, Inventory, capabilities_of
from testbed.board.protocols import Capability
from testbed.board.real import RealBoard
from testbed.image.firmware_tree import FirmwareBundle

Say = Callable[[str], None]


class InventoryBoards:
    """A BoardFactory (name, device id, secret, port) -> a ready RealBoard, from an inventory."""

    def __init__(self, inventory: Inventory, *, bundle: FirmwareBundle | None = None, log_dir: Path | None = None,
                 say: Say | None = None, open_timeout: float = 60) -> None:  # fmt: skip
        self.inventory = inventory
        self._bundle = bundle
        self.log_dir = log_dir
        self.say = say or (lambda _m: None)
        self.open_timeout = open_timeout
        self._lock = threading.Lock()
        self._plan: dict[str, str] = {}
        self._in_use: set[str] = set()

    # -- before any board boots ------------------------------------------------------
    def plan(self, names: list[str]) -> dict[str, str]:
        """Scenario board -> inventory board: the same name, else the next free one in order."""
        entries = list(self.inventory.boards)
        plan = {n: n for n in names if n in self.inventory.boards}
        free = [e for e in entries if e not in plan.values()]
        for n in names:
            if n not in plan:
                if not free:
                    raise BoardError(f"the inventory {self.inventory.path} has {len(entries)} board(s); "
                                     f"the scenario needs {len(names)} ({', '.join(names)})")  # fmt: skip
                plan[n] = free.pop(0)
        return plan

    def entry_for(self, name: str) -> BoardEntry:
        return self.inventory.boards[self._plan.get(name) or self.plan([name])[name]]

    def capabilities(self, name: str) -> frozenset[Capability]:
        """What the inventory board that serves scenario board ``name`` can do."""
        return capabilities_of(self.entry_for(name))

    def plan_scenario(self, scenario: Any) -> None:
        """Map the scenario's boards onto the inventory (before the runner checks the steps
        against ``capabilities(name)`` and before any board boots)."""
        self._plan = self.plan(list(scenario.boards))

    def describe(self, name: str) -> str:
        """The inventory board behind scenario board ``name``, as errors name it."""
        real = self.entry_for(name).name
        return real if real == name else f"{real} (the scenario's {name})"

    # -- handing a board out ---------------------------------------------------------
    @property
    def bundle(self) -> FirmwareBundle:
        if self._bundle is None:
            self._bundle = firmware_bundle()
        return self._bundle

    def __call__(self, name: str, device_id: str, secret: str, port: int) -> RealBoard:
        entry = self.entry_for(name)
        with self._lock:
            if entry.name in self._in_use:
                raise BoardError(f"inventory board {entry.name} is already in use by this run")
            self._in_use.add(entry.name)
        try:
            board = self.open_board(entry)
        except BaseException:
            self._release(entry.name)
            raise
        board.on_close = lambda b: self._release(b.name)
        try:
            service = f"{entry.service}:{port}"
            try:  # a board on a lab network dials the host's LAN address: an explicit opt-in
                identity = Identity(device_id, secret, service, allow_remote=not is_local_service(service))
            except ValueError as exc:
                raise BoardError(f"{entry.name}: {exc}") from None
            self.prepare(board, identity)
        except BaseException:
            board.close()
            raise
        return board

    def _release(self, name: str) -> None:
        with self._lock:
            self._in_use.discard(name)

    def open_board(self, entry: BoardEntry) -> RealBoard:
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_dir / f"{entry.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        if entry.labgrid is None:
            return RealBoard(entry, log_path=log).open(timeout=self.open_timeout)
        from testbed.board.labgrid_place import LabgridPlace

        place = LabgridPlace(entry.labgrid, entry.name).acquire()
        try:
            board = RealBoard(entry, log_path=log, console_url=place.console_url(), place=place)
        except BaseException:
            place.close()
            raise
        self.say(f"{entry.name}: labgrid place {entry.labgrid.place} acquired, console {board.console_url}")
        return board.open(timeout=self.open_timeout)

    def install(self, board: RealBoard) -> None:
        """The image's firmware build on the board (nothing is copied when it has it already)."""
        t = time.monotonic()
        ssh = board.ssh() if board.entry.ssh is not None else None
        if install_firmware(board, self.bundle, ssh):
            self.say(f"{board.name}: firmware {self.bundle.build} installed over "
                     f"{'SSH' if ssh else 'the console'} in {time.monotonic() - t:.1f} s")  # fmt: skip

    def after_reset(self, board: RealBoard) -> None:
        """A reset board: its firmware installed again if the reset lost it (a RAM root file
        system), started if its init did not start it; its state is kept (the runner provisions)."""
        self.install(board)
        if not board.firmware.status().running:
            board.firmware.start(board.console)

    def prepare(self, board: RealBoard, identity: Identity) -> None:
        """Firmware of this build installed and running from a fresh state, then provisioned."""
        self.install(board)
        board.on_ready = self.after_reset
        board.fresh_start()
        output, code = board.provision(identity)
        if code != 0:
            self.say(f"{board.name}: provisioned, but the first sync failed: {output.strip()[-200:]}")


def inventory_factory(path: str | Path, say: Say | None = None) -> InventoryBoards:
    """The board factory of the inventory file at ``path`` (InventoryError when it is wrong);
    console logs go where the emulated boards' do."""
    from testbed.board.inventory import load_inventory
    from testbed.paths import cache_dir

    return InventoryBoards(load_inventory(path), log_dir=cache_dir() / "logs", say=say)
