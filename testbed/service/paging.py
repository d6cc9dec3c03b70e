"""Paging of the public API's listings: page size and continuation tokens bound to a tenant."""

from __future__ import annotations

import base64
import json

from starlette.requests import Request

from testbed.service.errors import bad_request
from testbed.service.validation import digits

DEFAULT_PAGE = 100
MAX_PAGE = 1000
PAGE_SIZE_PARAM = "maxPageSize"
CONTINUATION_HEADER = "Sphere-Continuation"


def encode_continuation(tenant_id: str, seq: int) -> str:
    raw = json.dumps({"t": tenant_id, "s": seq}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continuation(token: str, tenant_id: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        seq = value["s"]
        if value["t"] != tenant_id or not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**62:
            raise ValueError
        return seq
    except (ValueError, KeyError, TypeError, UnicodeEncodeError, RecursionError):
        raise bad_request("The Sphere-Continuation token is not valid for this listing.") from None


def page_size(request: Request) -> int:
    raw = request.query_params.get(PAGE_SIZE_PARAM)
    if raw is None:
        return DEFAULT_PAGE
    if not digits(raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise bad_request(f"{PAGE_SIZE_PARAM} must be an integer from 1 to {MAX_PAGE}.")
    return int(raw)


def after_seq(request: Request, tenant_id: str) -> int:
    """Where the requested page starts (0: the first page)."""
    token = request.headers.get(CONTINUATION_HEADER)
    return decode_continuation(token, tenant_id) if token else 0
