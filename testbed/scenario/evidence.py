"""What expectations are evaluated against, and what an evaluation finds.

The runner takes an :class:`Evidence` snapshot from the service's control API (stored
dumps, the stores' contents), the support API (audit), the wire tap and the boards'
events; expectations are pure functions of it, so each is unit-tested without boards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.scenario.results import BoardEvent
from testbed.scenario.tap import TappedRequest


@dataclass(frozen=True)
class StoredDump:
    """One durable dump as the control API lists it (``GET /testbed/v1/dumps``)."""

    id: str
    device_id: str
    region: str
    size: int
    signature: str = ""
    component_name: str = ""
    created_at: float = 0.0  # the service's clock (warps included), epoch seconds
    upload_id: str = ""  # the device's X-Upload-Id ("" when it sent none)
    crash_time: float = 0.0  # the board's clock at the crash, as it sent it (0: not sent)

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> StoredDump:
        return cls(str(item["id"]), item["deviceId"], item["region"], int(item["size"]), item.get("signature") or "",
                   item.get("componentName") or "", float(item.get("createdAt") or 0),
                   item.get("uploadId") or "", float(item.get("crashTime") or 0))  # fmt: skip


@dataclass
class Evidence:
    """What the runner observed, at one moment."""

    device_ids: dict[str, str]  # board -> device id
    events: dict[str, list[BoardEvent]]  # board -> its @tb events so far
    dumps: list[StoredDump]  # the tenant's durable dumps, oldest first
    requests: list[TappedRequest] = field(default_factory=list)  # what reached the service's door
    audit: list[dict[str, Any]] = field(default_factory=list)  # support audit rows
    blobs: dict[str, int] = field(default_factory=dict)  # region -> dumps physically in its store
    tenant_probe: Callable[[list[str]], list[str]] | None = None  # dump ids -> problems found
    groups: Callable[[], dict[str, dict[str, Any]]] | None = None  # group key -> DeviceGroupV2 at the service
    now: float = 0.0  # the scenario time of the snapshot


@dataclass(frozen=True)
class Late:
    """A timing promise broken on one board between ``start`` and ``end`` (scenario seconds;
    ``end`` None: it never came before the evaluation)."""

    board: str
    start: float
    end: float | None
    what: str


@dataclass
class Finding:
    """An expectation's evaluation: held or not, what was seen. ``late`` lists the timing
    promises that were broken; ``timing_only`` says every reason for a failure is in ``late``."""

    passed: bool
    detail: str
    late: list[Late] = field(default_factory=list)
    timing_only: bool = False


def region_matches(wanted: str, region: str) -> bool:
    if wanted == "any":
        return True
    if wanted == "US":
        return region in ("EastUS", "WestUS")
    return region == wanted


def count_ok(n: int, count: int | None, lo: int | None, hi: int | None, default_min: int | None = 1) -> tuple[bool, str]:
    """Whether ``n`` satisfies exactly ``count`` or ``lo``..``hi`` (default: at least ``default_min``)."""
    if count is not None:
        return n == count, f"expected exactly {count}"
    if lo is None and hi is None:
        lo = default_min
    ok = (lo is None or n >= lo) and (hi is None or n <= hi)
    want = " and ".join(x for x in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else "") if x)
    return ok, f"expected {want}" if want else ""


def matches(event: BoardEvent, name: str, where: dict[str, str] | None) -> bool:
    return event.name == name and all(event.fields.get(k) == v for k, v in (where or {}).items())
