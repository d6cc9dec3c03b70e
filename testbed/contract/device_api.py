"""The device API: what a board and the Security Service must agree on, written once.

Paths, header names, body fields, limits and defaults, identifier patterns and the
device credential. The service, the host-side clients (load users, tests), the wire
tap and, through the generated C header (``testbed.contract.cheader``), the firmware
all read these names from here. docs/device-api.md explains them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# ----------------------------------------------------------------------------- paths

PREFIX = "/device/v1"
SYNC_PATH = f"{PREFIX}/sync"
INTENT_PATH = f"{PREFIX}/crashdumps/intent"
UPLOAD_PATH = f"{PREFIX}/crashdumps"
#: Every request whose path starts with this concerns one crash dump (intent or body).
CRASHDUMPS_PREFIX = UPLOAD_PATH

# ----------------------------------------------------------------------------- headers

AUTHORIZATION = "Authorization"
CONTENT_TYPE = "Content-Type"
GZIP_CONTENT_TYPE = "application/gzip"
JSON_CONTENT_TYPE = "application/json"
SIGNATURE_HEADER = "X-Crash-Signature"
COMPONENT_CLASS_HEADER = "X-Component-Class"
COMPONENT_NAME_HEADER = "X-Component-Name"
CRASH_TIME_HEADER = "X-Crash-Time"
#: A device-made id per dump: a repeat of a stored id is answered with the first answer.
UPLOAD_ID_HEADER = "X-Upload-Id"
RETRY_AFTER_HEADER = "Retry-After"


class ComponentClass(StrEnum):
    APP = "App"
    OS = "OS"


# ----------------------------------------------------------------------------- body fields


class SyncRequest(StrEnum):
    """Informational fields a device may send with a sync (unknown keys are ignored)."""

    FIRMWARE_VERSION = "firmwareVersion"
    DEVICE_TIME = "deviceTime"
    SPOOLED = "spooled"


class SyncResponse(StrEnum):
    OPT_IN = "optIn"
    BOUNDARY = "regionalDataBoundary"
    VALIDITY_SECONDS = "validitySeconds"
    SERVER_TIME = "serverTime"
    THROTTLED_SIGNATURES = "throttledSignatures"
    MAX_UPLOAD_BYTES = "maxUploadBytes"
    MAX_INFLATED_BYTES = "maxInflatedBytes"
    DEVICE_GROUP_ID = "deviceGroupId"


class IntentRequest(StrEnum):
    SIGNATURE = "signature"
    SIZE = "size"
    COMPONENT_CLASS = "componentClass"
    COMPONENT = "component"


class IntentResponse(StrEnum):
    ACTION = "action"
    REASON = "reason"


class IntentAction(StrEnum):
    UPLOAD = "upload"
    SKIP = "skip"


class UploadResponse(StrEnum):
    ID = "id"
    REGION = "region"
    SKIPPED = "skipped"


class SkipReason(StrEnum):
    """Why the service tells a device not to send a dump (intent and upload answers)."""

    OPTOUT = "optout"
    THROTTLED = "throttled"
    TOO_LARGE = "too-large"


# ----------------------------------------------------------------------------- limits, defaults

#: The opt-in stays valid this long after the last successful sync (seed: 48 h).
VALIDITY_SECONDS = 48 * 3600
#: One total deadline from the crash to the app's restart (seed: 5 s).
UPLOAD_DEADLINE_MS = 5000
#: Default cap on one compressed upload.
MAX_UPLOAD_BYTES = 256 * 1024
#: Default cap on one upload's inflated size (the inflation stops when it is passed).
MAX_INFLATED_BYTES = 4 * 1024 * 1024
#: Default number of dumps of one signature stored per tenant before throttling.
THROTTLE_LIMIT = 5
#: Stored dumps are deleted this long after they were stored (seed: 29 days).
RETENTION_SECONDS = 29 * 86400
#: Largest JSON request body the device API accepts.
MAX_JSON_BODY = 64 * 1024
#: The MT3620-like memory limit of one app on the board.
APP_DATA_LIMIT_BYTES = 256 * 1024

# ----------------------------------------------------------------------------- identifiers

DEVICE_ID_HEX = 128
SIGNATURE_HEX = 32
UPLOAD_ID_HEX = 32
SECRET_MAX = 128
COMPONENT_NAME_MAX = 64
# \Z, not $: "$" also matches before a trailing newline.
DEVICE_ID_RE = re.compile(rf"[0-9a-f]{{{DEVICE_ID_HEX}}}\Z")
SIGNATURE_RE = re.compile(rf"[0-9a-f]{{{SIGNATURE_HEX}}}\Z")
UPLOAD_ID_RE = re.compile(rf"[0-9a-f]{{{UPLOAD_ID_HEX}}}\Z")
#: Besides letters and digits, the characters a device secret may hold.
SECRET_PUNCTUATION = "_-"
SECRET_RE = re.compile(rf"[A-Za-z0-9{re.escape(SECRET_PUNCTUATION)}]{{1,{SECRET_MAX}}}\Z")
COMPONENT_NAME_RE = re.compile(rf"[A-Za-z0-9._+-]{{1,{COMPONENT_NAME_MAX}}}\Z")


def is_device_id(text: str) -> bool:
    return DEVICE_ID_RE.match(text) is not None


def is_signature(text: str) -> bool:
    return SIGNATURE_RE.match(text) is not None


def is_upload_id(text: str) -> bool:
    return UPLOAD_ID_RE.match(text) is not None


# ----------------------------------------------------------------------------- the credential

DEVICE_SCHEME = "Device"


@dataclass(frozen=True)
class DeviceCredential:
    """``Authorization: Device <deviceId>:<secret>``; the secret is issued at claim."""

    device_id: str
    secret: str

    def header_value(self) -> str:
        return f"{DEVICE_SCHEME} {self.device_id}:{self.secret}"

    def headers(self) -> dict[str, str]:
        return {AUTHORIZATION: self.header_value()}


def device_authorization(device_id: str, secret: str) -> str:
    """The Authorization header value of a device."""
    return DeviceCredential(device_id, secret).header_value()


def parse_device_authorization(value: str) -> DeviceCredential | None:
    """The credential in an Authorization value, or None when it is not a well-formed one."""
    scheme, _, rest = value.partition(" ")
    if scheme != DEVICE_SCHEME:
        return None
    device_id, sep, secret = rest.partition(":")
    if not sep or not is_device_id(device_id) or SECRET_RE.match(secret) is None:
        return None
    return DeviceCredential(device_id, secret)


def device_id_of_authorization(value: str) -> str | None:
    """The device id an Authorization value names, without checking the secret's form."""
    scheme, _, rest = value.partition(" ")
    if scheme != DEVICE_SCHEME:
        return None
    return rest.partition(":")[0] or None
