"""The firmware's console events: ``@tb event=<name> key=value ...``, one a line.

The names, the reasons and the one parser. The firmware prints them (their names
reach C through the generated header), the board's console reader and the scenario
runner parse them with :func:`parse_event_line`, the scenario schema takes its
vocabulary from here. docs/device-api.md lists the keys of each event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

#: Every event line starts with this (after whatever the console put before it).
EVENT_PREFIX = "@tb event="


class EventName(StrEnum):
    BOOT_READY = "boot-ready"
    FIRMWARE_READY = "firmware-ready"
    BOOT_ERROR = "boot-error"
    PROVISIONED = "provisioned"
    SYNC_OK = "sync-ok"
    SYNC_FAIL = "sync-fail"
    CRASH = "crash"
    DUMP_SKIPPED = "dump-skipped"
    UPLOAD_OK = "upload-ok"
    UPLOAD_FAIL = "upload-fail"
    APP_START = "app-start"
    APP_RESTART = "app-restart"
    OS_RESTART = "os-restart"


class DumpSkipReason(StrEnum):
    """``dump-skipped reason=``: why no dump was sent for a crash."""

    OPTOUT = "optout"  # no valid opt-in (never synced with opt-in, or opted out)
    STALE_SYNC = "stale-sync"  # the last successful sync is older than the validity
    THROTTLED = "throttled"  # the signature already has its N dumps
    TOO_LARGE = "too-large"  # over the service's size limit
    RATELIMIT = "ratelimit"  # the service answered 429
    NO_REPORTER = "no-reporter"  # the app manager saw a crash that reached no reporter
    BAD_CORE = "bad-core"  # the core could not be parsed
    READ_ERROR = "read-error"  # the core could not be read from the pipe
    INTENT = "intent"  # the service said skip with a reason the firmware does not know


class UploadFailReason(StrEnum):
    """``upload-fail reason=``: the dump was not stored (it may be spooled)."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    GZIP = "gzip"
    BAD_RESPONSE = "bad-response"  # not an HTTP answer, cut off, over the read cap, or a 201 without a dump id
    BAD_REQUEST = "bad-request"  # the request could not be formed (headers too long)
    # Plus "http-NNN" for an unexpected status: see http_status_reason().


class SyncFailReason(StrEnum):
    CONNECT = "connect"
    TIMEOUT = "timeout"
    BAD_RESPONSE = "bad-response"
    BAD_REQUEST = "bad-request"
    STATE = "state"  # the answer was good but the sync state could not be saved
    # Plus "http-NNN" for an unexpected status.


class UploadStage(StrEnum):
    """``upload-fail stage=``: which request of the upload failed."""

    INTENT = "intent"
    BODY = "body"


class EventKey(StrEnum):
    """The ``key=`` names the firmware prints (docs/device-api.md lists them per event)."""

    APP = "app"
    CLASS = "class"
    PID = "pid"
    SIGNAL = "signal"
    SIG = "sig"
    PC = "pc"
    REASON = "reason"
    STAGE = "stage"
    BYTES = "bytes"
    MS = "ms"
    ID = "id"
    REGION = "region"
    SPOOLED = "spooled"
    UPLOAD_ID = "upload_id"
    DEVICE = "device"
    SERVICE = "service"
    OPTIN = "optin"
    BOUNDARY = "boundary"
    VALIDITY = "validity"
    THROTTLED = "throttled"
    AFTER_MS = "after_ms"
    UPLOAD = "upload"
    DATA_KIB = "data_kib"
    COMPONENT = "component"
    STATUS = "status"
    MODULE = "module"
    SCRIPT = "script"


class BootErrorReason(StrEnum):
    """``boot-error reason=``: what the image's init could not do (images/ init, firmware rc.d)."""

    INSMOD = "insmod"
    DHCP = "dhcp"
    NO_ETH0 = "no-eth0"
    DROPBEAR = "dropbear"
    RC_D = "rc.d"


class RestartReason(StrEnum):
    """``app-restart reason=``: why the app had stopped."""

    CRASH = "crash"
    EXIT = "exit"
    KILLED = "killed"


class RestartUpload(StrEnum):
    """``app-restart upload=``: what let the app manager restart a crashed app."""

    DONE = "done"  # the reporter said its upload (or skip) was done
    DEADLINE = "deadline"  # the 5 s deadline came first
    NONE = "none"  # no upload was pending (not a crash, or collection off)


HTTP_REASON_RE = re.compile(r"http-[1-5][0-9][0-9]\Z")


def http_status_reason(status: int) -> str:
    """The reason word of an unexpected HTTP status (``http-503``)."""
    return f"http-{status}"


#: Reasons per event that has a ``reason=`` key (http-NNN is allowed where noted).
REASONS: dict[EventName, tuple[str, ...]] = {
    EventName.DUMP_SKIPPED: tuple(DumpSkipReason),
    EventName.UPLOAD_FAIL: tuple(UploadFailReason),
    EventName.SYNC_FAIL: tuple(SyncFailReason),
    EventName.APP_RESTART: tuple(RestartReason),
    EventName.BOOT_ERROR: tuple(BootErrorReason),
}
HTTP_REASON_EVENTS: frozenset[EventName] = frozenset({EventName.UPLOAD_FAIL, EventName.SYNC_FAIL})

EVENT_RE = re.compile(r"@tb event=(?P<name>[A-Za-z0-9_.-]+)(?P<rest>(?: [^\s=]+=\S*)*)")


@dataclass(frozen=True)
class EventLine:
    """One parsed event line: its name and its ``key=value`` fields (all strings)."""

    name: str
    fields: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.fields.get(key, default)


def parse_event_line(line: str) -> EventLine | None:
    """The event in one console line, or None when the line holds none."""
    m = EVENT_RE.search(line)
    if m is None:
        return None
    fields: dict[str, str] = {}
    for part in m.group("rest").split():
        key, _, value = part.partition("=")
        fields[key] = value
    return EventLine(m.group("name"), fields)


def is_event_line(line: str) -> bool:
    return EVENT_RE.search(line) is not None


def reason_is_known(event: str, reason: str) -> bool:
    """Whether ``reason`` is one the firmware may print with ``event``."""
    try:
        name = EventName(event)
    except ValueError:
        return False
    if name in HTTP_REASON_EVENTS and HTTP_REASON_RE.match(reason):
        return True
    return reason in REASONS.get(name, ())
