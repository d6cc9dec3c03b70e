"""The device API requests a simulated device makes, built from ``testbed.contract`` (no Locust import).

The Locust users, the sink, the deadline warm-up and the benchmark build their
requests here, so the paths, headers and body fields are the contract's.
"""

from __future__ import annotations

import json
import time
from typing import Any

from testbed.contract import device_api as api

#: What a simulated device reports as its firmware version on sync.
FIRMWARE_VERSION = "load-0.1"
#: The crashing app of every simulated crash.
COMPONENT_NAME = "crashapp"


def auth_headers(device_id: str, secret: str) -> dict[str, str]:
    return api.DeviceCredential(device_id, secret).headers()


def sync_body(spooled: int | None = 0) -> dict[str, Any]:
    body: dict[str, Any] = {api.SyncRequest.FIRMWARE_VERSION: FIRMWARE_VERSION,
                            api.SyncRequest.DEVICE_TIME: int(time.time())}
    if spooled is not None:
        body[api.SyncRequest.SPOOLED] = spooled
    return body


def intent_body(signature: str, size: int) -> dict[str, Any]:
    return {api.IntentRequest.SIGNATURE: signature, api.IntentRequest.SIZE: size,
            api.IntentRequest.COMPONENT_CLASS: api.ComponentClass.APP, api.IntentRequest.COMPONENT: COMPONENT_NAME}


def upload_headers(authorization: str, signature: str, crash_time: int | None = None) -> dict[str, str]:
    """The headers of an upload; ``authorization`` is the device's Authorization value."""
    headers = {
        api.AUTHORIZATION: authorization,
        api.CONTENT_TYPE: api.GZIP_CONTENT_TYPE,
        api.SIGNATURE_HEADER: signature,
        api.COMPONENT_CLASS_HEADER: api.ComponentClass.APP.value,
        api.COMPONENT_NAME_HEADER: COMPONENT_NAME,
    }
    if crash_time is not None:
        headers[api.CRASH_TIME_HEADER] = str(crash_time)
    return headers


def json_or_none(content: bytes | None) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def intent_says_upload(body: Any) -> bool:
    return isinstance(body, dict) and body.get(api.IntentResponse.ACTION) == api.IntentAction.UPLOAD


def intent_skip_reason(body: Any) -> str:
    """The reason of a skip answer (``skip`` when the service gave none)."""
    reason = body.get(api.IntentResponse.REASON) if isinstance(body, dict) else None
    return str(reason or api.IntentAction.SKIP)


def stored_id(body: Any) -> str | None:
    """The dump id of a 201 answer, or None."""
    if isinstance(body, dict) and body.get(api.UploadResponse.ID):
        return str(body[api.UploadResponse.ID])
    return None


def upload_skipped(body: Any) -> bool:
    return isinstance(body, dict) and bool(body.get(api.UploadResponse.SKIPPED))
