"""What the ingest writer works on: an upload, what became of it, and where it goes."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from testbed.contract.device_api import SkipReason
from testbed.service.errors import ApiError


def region_for(boundary: str, device_id: str) -> str:
    """The store a dump goes to: EU for EU groups; EastUS or WestUS by device id otherwise."""
    if boundary == "EU":
        return "EU"
    digest = hashlib.sha256(device_id.encode()).digest()
    return "EastUS" if digest[0] % 2 == 0 else "WestUS"


@dataclass
class Upload:
    tenant_id: str
    device_id: str
    signature: str
    body: bytes
    inflated_size: int  # filled by the writer's check when it has ``max_inflated``
    component_class: str
    component_name: str
    crash_time: int | None
    #: the device's id of this dump (X-Upload-Id): a repeat is answered with the first answer
    upload_id: str | None = None
    future: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    # filled by the writer
    dump_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    region: str = ""
    group_id: str = ""


class Kind(StrEnum):
    """What became of an upload (compares equal to its value)."""

    STORED = "stored"
    THROTTLED = SkipReason.THROTTLED.value
    OPTOUT = SkipReason.OPTOUT.value
    INVALID = "invalid"  # not a whole gzip'd ELF core, or inflates past the cap
    ERROR = "error"  # the batch could not be made durable


@dataclass
class Outcome:
    """What the writer answers for an upload."""

    kind: Kind
    dump_id: str = ""
    region: str = ""
    detail: str = ""
    #: for "invalid": the 400/413 to answer (not a gzip'd ELF core, or inflates past the cap)
    error: ApiError | None = None
    #: "stored" earlier: this upload repeated a stored upload id (the first answer again)
    repeat: bool = False
