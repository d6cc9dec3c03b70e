"""The device API (docs/device-api.md): sync, intent, upload; written from testbed.contract."""

from __future__ import annotations

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testbed.contract import device_api as api
from testbed.contract.device_api import (
    IntentAction,
    IntentRequest,
    IntentResponse,
    SkipReason,
    SyncResponse,
    UploadResponse,
)
from testbed.service.auth import device_principal, rate_limit
from testbed.service.errors import ApiError, bad_request, error_response, forbidden
from testbed.service.ingest import Kind, Upload
from testbed.service.state import state_of
from testbed.service.validation import digits, read_json

COMPONENT_CLASSES = tuple(c.value for c in api.ComponentClass)
DEFAULT_COMPONENT_NAME = "unknown"
#: X-Crash-Time: seconds since the epoch, at most this many digits.
CRASH_TIME_DIGITS = 12


def skip(reason: SkipReason) -> JSONResponse:
    return JSONResponse({IntentResponse.ACTION: IntentAction.SKIP, IntentResponse.REASON: reason})


def skipped(reason: SkipReason) -> JSONResponse:
    return JSONResponse({UploadResponse.SKIPPED: reason})


def opted_out() -> ApiError:
    return forbidden("The device's group does not allow crash dump collection.")


class Sync(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        device = device_principal(request)
        state = state_of(request)
        await read_json(request, required=False)
        config = state.config
        return JSONResponse(
            {
                SyncResponse.OPT_IN: device.allow_crash_dumps,
                SyncResponse.BOUNDARY: device.boundary,
                SyncResponse.VALIDITY_SECONDS: config.validity_seconds,
                SyncResponse.SERVER_TIME: state.clock.now_int(),
                SyncResponse.THROTTLED_SIGNATURES: state.throttled_signatures(device.tenant_id),
                SyncResponse.MAX_UPLOAD_BYTES: config.max_upload_bytes,
                SyncResponse.MAX_INFLATED_BYTES: config.max_inflated_bytes,
                SyncResponse.DEVICE_GROUP_ID: device.group_id,
            }
        )


class Intent(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        device = device_principal(request)
        rate_limit(request, device.device_id)
        state = state_of(request)
        body = await read_json(request)
        signature = body.get(IntentRequest.SIGNATURE)
        if not isinstance(signature, str) or not api.is_signature(signature):
            raise bad_request(f"signature must be {api.SIGNATURE_HEX} lowercase hex characters.", "BadSignature")
        size = body.get(IntentRequest.SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad_request("size must be a non-negative integer (compressed bytes).")
        if body.get(IntentRequest.COMPONENT_CLASS, api.ComponentClass.APP) not in COMPONENT_CLASSES:
            raise bad_request('componentClass must be "App" or "OS".')
        if not device.allow_crash_dumps:
            return skip(SkipReason.OPTOUT)
        if size > state.config.max_upload_bytes:
            return skip(SkipReason.TOO_LARGE)
        if state.ingest.is_throttled(device.tenant_id, signature):
            return skip(SkipReason.THROTTLED)
        return JSONResponse({IntentResponse.ACTION: IntentAction.UPLOAD})


class Crashdumps(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        """Upload one gzip'd core: checked, then stored durably by the ingest writer (201)."""
        device = device_principal(request)
        rate_limit(request, device.device_id)
        state = state_of(request)
        headers = request.headers
        ctype = headers.get(api.CONTENT_TYPE, "").split(";")[0].strip().lower()
        if ctype != api.GZIP_CONTENT_TYPE:
            raise ApiError(415, "UnsupportedMediaType", "The body must be application/gzip.", f"got {ctype or 'none'!r}")
        length_header = headers.get("content-length")
        if length_header is None:
            raise ApiError(411, "LengthRequired", "Content-Length is required.", "send the body with a Content-Length")
        if not digits(length_header):
            raise bad_request("Content-Length must be a decimal integer.")
        length = int(length_header)
        limit = state.config.max_upload_bytes
        if length > limit:
            raise ApiError(413, "PayloadTooLarge", "The dump is too large.", f"{length} bytes compressed; at most {limit}")
        if length == 0:
            raise bad_request("The body is empty; send the gzip of one ELF core.", "BadGzip")
        signature = headers.get(api.SIGNATURE_HEADER, "")
        if not api.is_signature(signature):
            raise bad_request(f"{api.SIGNATURE_HEADER} must be {api.SIGNATURE_HEX} lowercase hex characters.", "BadSignature")
        cls = headers.get(api.COMPONENT_CLASS_HEADER, api.ComponentClass.APP)
        if cls not in COMPONENT_CLASSES:
            raise bad_request(f'{api.COMPONENT_CLASS_HEADER} must be "App" or "OS".')
        name = headers.get(api.COMPONENT_NAME_HEADER, DEFAULT_COMPONENT_NAME)
        if api.COMPONENT_NAME_RE.match(name) is None:
            raise bad_request(f"{api.COMPONENT_NAME_HEADER} must be 1 to {api.COMPONENT_NAME_MAX} of A-Z a-z 0-9 . _ + -.")
        crash_time_raw = headers.get(api.CRASH_TIME_HEADER)
        crash_time = None
        if crash_time_raw is not None:
            if not digits(crash_time_raw) or len(crash_time_raw) > CRASH_TIME_DIGITS:
                raise bad_request(f"{api.CRASH_TIME_HEADER} must be integer seconds since the epoch.")
            crash_time = int(crash_time_raw)
        if not device.allow_crash_dumps:
            raise opted_out()
        if state.ingest.is_throttled(device.tenant_id, signature):
            return skipped(SkipReason.THROTTLED)
        body = await read_body(request, length)
        outcome = await state.ingest.submit(
            Upload(
                tenant_id=device.tenant_id,
                device_id=device.device_id,
                signature=signature,
                body=body,
                inflated_size=0,
                component_class=cls,
                component_name=name,
                crash_time=crash_time,
            )
        )
        if outcome.kind == Kind.STORED:
            return JSONResponse({UploadResponse.ID: outcome.dump_id, UploadResponse.REGION: outcome.region}, status_code=201)
        if outcome.kind == Kind.INVALID and outcome.error is not None:
            raise outcome.error
        if outcome.kind == Kind.THROTTLED:
            return skipped(SkipReason.THROTTLED)
        if outcome.kind == Kind.OPTOUT:
            raise opted_out()
        return error_response(503, "StorageUnavailable", "The dump could not be stored durably.", outcome.detail)


async def read_body(request: Request, length: int) -> bytes:
    """Read the body: exactly ``length`` bytes (at most the upload cap, checked before).

    The gzip/ELF check (inflate with a cap: a gzip bomb stops at the inflated cap) runs in
    the ingest writer before it decides on the upload: zlib releases the GIL while it
    inflates, so the event loop is not held by it, and the upload crosses to the writer anyway.
    """
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        received += len(chunk)
        if received > length:
            raise bad_request("The body is longer than its Content-Length.")
        chunks.append(chunk)
    if received < length:
        raise bad_request("The body is shorter than its Content-Length.")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


ROUTES = [
    Route(api.UPLOAD_PATH, Crashdumps),
    Route(api.INTENT_PATH, Intent),
    Route(api.SYNC_PATH, Sync),
]
