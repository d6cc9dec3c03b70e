"""This machine's measured crash-storm capacity, kept in the cache by ``testbed bench fleet``.

Emulated boards share the host's cores. ``testbed bench fleet`` finds the largest storm
(boards of one group crashing at once) this machine held with every restart inside the
deadline (and, beside it, the largest whose boards also waited for a host CPU at most
:data:`STARVED_SHARE` of the time), and saves it here with the machine's facts. The scenario runner asks :func:`capacity_warning` before a run:
a fleet or a step larger than the measured capacity gets a warning line (not a failure),
since its timing verdicts may come out INCONCLUSIVE (host starved).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.board.hostcpu import STARVED_SHARE
from testbed.paths import cache_dir

CAPACITY_FILE = "capacity.json"
#: The format of the saved file; a file of another version is ignored (measure again).
VERSION = 1


@dataclass
class Capacity:
    """The largest crash storm that held on this machine, and how it was measured."""

    boards: int  # the largest storm that held (0: not even the smallest tried)
    lower_bound: bool  # True when every size tried held (the search's cap or budget came first)
    cores: int
    loadavg_1m: float  # the host's load when the measurement began (other work on the machine)
    measured_at: str  # ISO 8601, UTC
    deadline_s: float
    starved_share: float = STARVED_SHARE
    tb_size_mib: int = 0
    image: str = ""
    per_board_rss_mib: float | None = None
    qemu_cpu_per_crash_s: dict[str, float | None] = field(default_factory=dict)  # median per kind
    tried: list[dict[str, Any]] = field(default_factory=list)  # {boards, held, why}
    unstarved_boards: int = 0  # the largest storm that also waited at most starved_share for a CPU
    require_unstarved: bool = False  # True when `boards` had to be unstarved too

    def describe(self) -> str:
        bound = "at least " if self.lower_bound else ""
        return (f"{bound}{self.boards} boards crashing at once held the {self.deadline_s:g} s deadline "
                f"(measured {self.measured_at[:16]} on {self.cores} cores, load {self.loadavg_1m:.1f})")  # fmt: skip


def capacity_path() -> Path:
    return cache_dir() / CAPACITY_FILE


def save_capacity(capacity: Capacity) -> Path:
    path = capacity_path()
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": VERSION, **asdict(capacity)}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def measured_capacity() -> Capacity | None:
    """The saved measurement for this machine, or None (never measured, unreadable, other core count)."""
    with contextlib.suppress(OSError, ValueError, TypeError):
        data = json.loads(capacity_path().read_text())
        if data.pop("version", None) != VERSION:
            return None
        capacity = Capacity(**data)
        if capacity.cores != os.cpu_count():
            return None  # measured on another machine (a shared cache dir)
        return capacity
    return None


def capacity_warning(n_boards: int, capacity: Capacity | None = None) -> str | None:
    """One line when ``n_boards`` crashing together is more than this machine was measured to hold."""
    capacity = capacity if capacity is not None else measured_capacity()
    if capacity is None or n_boards <= capacity.boards:
        return None
    if capacity.lower_bound:
        return (f"warning: {n_boards} boards is more than the largest storm measured on this machine "
                f"({capacity.describe()}); timing verdicts may be INCONCLUSIVE (host starved)")  # fmt: skip
    return (f"warning: {n_boards} boards may be more than this machine holds: {capacity.describe()}, "
            f"larger storms did not; timing verdicts may be INCONCLUSIVE (host starved)")  # fmt: skip


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
