"""Validation of request input: JSON bodies, fields, names, group settings."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from typing import Any

from starlette.requests import ClientDisconnect, Request

from testbed.contract import public_api
from testbed.service.errors import ApiError, bad_request
from testbed.service.state import state_of


def digits(text: str) -> bool:
    """ASCII digits only (str.isdigit() accepts "²", which int() refuses)."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


log = logging.getLogger("testbed.service")

#: The bytes that matter for JSON nesting: brackets, quotes and escapes.
_SPECIAL = re.compile(rb'[\[\]{}"\\]')


class ClientGone(Exception):
    """The client went away before its request body was complete (logged once, answered to no one)."""


def too_deep(body: bytes, limit: int) -> bool:
    """Whether arrays and objects in ``body`` nest deeper than ``limit`` (strings skipped)."""
    depth = 0
    in_string = False
    skip_to = -1
    for match in _SPECIAL.finditer(body):
        pos = match.start()
        if pos < skip_to:
            continue
        c = body[pos]
        if in_string:
            if c == 0x5C:  # backslash: the next byte is escaped
                skip_to = pos + 2
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif c in (0x5D, 0x7D):
            depth -= 1
    return False


def too_large(limit: int) -> ApiError:
    return ApiError(413, "PayloadTooLarge", "The request body is too large.", f"at most {limit} bytes")


async def read_json(request: Request, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object, read with a size bound (413 past it) and parsed with a
    nesting bound (400 past it: never a RecursionError)."""
    config = state_of(request).config
    limit = config.max_json_bytes
    length = request.headers.get("content-length")
    if length is not None and (not digits(length) or int(length) > limit):
        raise too_large(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large(limit)
    except ClientDisconnect:
        log.warning("%s %s: the client went away after %d bytes of its JSON body", request.method, request.url.path, len(body))
        raise ClientGone from None
    if not body.strip():
        if required:
            raise bad_request("A JSON object body is required.")
        return {}
    raw = bytes(body)
    if too_deep(raw, config.max_json_depth):
        raise bad_request(f"The JSON body nests deeper than {config.max_json_depth} levels.", "TooDeep")
    try:
        value = json.loads(raw, parse_constant=_no_constant)
        # Lone surrogates ("\ud800") parse but are not text; refuse them here.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise bad_request(f"The JSON body nests deeper than {config.max_json_depth} levels.", "TooDeep") from None
    except (ValueError, UnicodeError) as exc:
        raise bad_request(f"The body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise bad_request("The body must be a JSON object.")
    return value


def check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(f"Unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.")


def control_character(value: str) -> str | None:
    """The first control character (Unicode category Cc: C0, DEL, C1 such as NEL) of
    ``value`` as ``U+XXXX at position N``, or None."""
    for i, c in enumerate(value):
        if unicodedata.category(c) == "Cc":
            return f"U+{ord(c):04X} at position {i}"
    return None


def want_name(value: Any, key: str, max_len: int) -> str:
    """A non-empty name of at most ``max_len`` characters without control characters."""
    return want_str({key: value}, key, max_len, nonempty=True) or ""


def want_str(body: dict[str, Any], key: str, max_len: int, nullable: bool = False, nonempty: bool = False) -> str | None:
    value = body[key]
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string.")
    if (nonempty or key == "Name") and not value.strip():
        raise bad_request(f"{key} must not be empty.")
    if len(value) > max_len:
        raise bad_request(f"{key} must be at most {max_len} characters.")
    found = control_character(value)
    if found:
        raise bad_request(f"{key} must not contain control characters ({found}).")
    return value


def want_01(body: dict[str, Any], key: str) -> int:
    value = body[key]
    if isinstance(value, bool) or value not in (0, 1):
        raise bad_request(f"{key} must be 0 or 1.")
    return int(value)


GROUP_COLUMNS = {
    "Name": "name",
    "Description": "description",
    "OsFeedType": "os_feed_type",
    "UpdatePolicy": "update_policy",
    "AllowCrashDumpsCollection": "allow_crash_dumps",
    "RegionalDataBoundary": "boundary",
}
BOUNDARIES = ("None", "EU")
#: The reference's spelling in PATCH bodies (DeviceGroupV2 itself says OsFeedType): both are taken.
FIELD_ALIASES = {"OSFeedType": "OsFeedType"}


def check_group_name(name: str) -> None:
    """A device group's name by the reference's rule (testbed.contract.public_api)."""
    if public_api.is_group_name(name):
        return
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c == " "))})
    shown = f"; it has {', '.join(repr(c) for c in bad[:5])}" if bad else ""
    raise bad_request(f"Name may hold only {public_api.GROUP_NAME_RULE}{shown}.", "InvalidName")


def group_fields(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    """Validate a DeviceGroupV2 create or PATCH body; returns the fields given (under their
    DeviceGroupV2 names)."""
    for alias, name in FIELD_ALIASES.items():
        if alias in body:
            if name in body:
                raise bad_request(f"Give {name} or {alias}, not both.")
            body = {**{k: v for k, v in body.items() if k != alias}, name: body[alias]}
    check_fields(body, set(GROUP_COLUMNS))
    out: dict[str, Any] = {}
    if creating and "Name" not in body:
        raise bad_request("Name is required.")
    if "Name" in body:
        out["Name"] = want_str(body, "Name", public_api.GROUP_NAME_MAX)
        check_group_name(out["Name"] or "")
    if "Description" in body:
        out["Description"] = want_str(body, "Description", 100, nullable=True)
    for key in ("OsFeedType", "UpdatePolicy"):
        if key in body:
            out[key] = want_01(body, key)
    if "AllowCrashDumpsCollection" in body:
        if not isinstance(body["AllowCrashDumpsCollection"], bool):
            raise bad_request("AllowCrashDumpsCollection must be true or false.")
        out["AllowCrashDumpsCollection"] = body["AllowCrashDumpsCollection"]
    if "RegionalDataBoundary" in body:
        if body["RegionalDataBoundary"] not in BOUNDARIES:
            raise bad_request('RegionalDataBoundary must be "None" or "EU".')
        out["RegionalDataBoundary"] = body["RegionalDataBoundary"]
    return out


def group_columns(fields: dict[str, Any]) -> dict[str, Any]:
    """Validated group fields as the store's columns (booleans as 0/1)."""
    return {GROUP_COLUMNS[k]: (int(v) if isinstance(v, bool) else v) for k, v in fields.items()}
