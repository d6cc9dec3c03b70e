"""The mock Security Service as a Starlette application.

Routes (see docs/service.md and docs/device-api.md):

- public API ``/v2/...`` (bearer token of a tenant role),
- device API ``/device/v1/...`` (``Authorization: Device <id>:<secret>``),
- support API ``/support/v1/...`` (bearer token of role Support),
- testbed control ``/testbed/v1/...`` (only with control enabled; its own token),
- ``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testbed.service.clock import Clock
from testbed.service.errors import (
    ApiError,
    bad_request,
    conflict,
    error_response,
    forbidden,
    not_found,
    unauthorized,
)
from testbed.service.faults import MODES, Fault, FaultMiddleware, Faults
from testbed.service.ingest import RETENTION_SECONDS, Ingest, Upload
from testbed.service.store import (
    TENANT_ROLES,
    Principal,
    Store,
    dump_json,
    group_json,
    hash_secret,
    product_json,
)

log = logging.getLogger("testbed.service")

VALIDITY_SECONDS = 172800
SIGNATURE_RE = re.compile(r"^[0-9a-f]{32}$")
DEVICE_ID_RE = re.compile(r"^[0-9a-f]{128}$")
COMPONENT_NAME_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
MAX_JSON_BODY = 64 * 1024
DEFAULT_PAGE = 100
MAX_PAGE = 1000
WRITE_ROLES = ("Administrator", "Contributor")
READ_ROLES = TENANT_ROLES


@dataclass
class ServiceConfig:
    data_dir: Path
    enable_control: bool = False
    control_token: str | None = None
    throttle_limit: int = 5
    max_upload_bytes: int = 256 * 1024
    max_inflated_bytes: int = 4 * 1024 * 1024
    rate_limit_per_minute: int = 120
    rate_limit_burst: int = 30
    sweep_interval: float = 10.0
    retention_seconds: int = RETENTION_SECONDS


class RateLimiter:
    """A token bucket per device on the host's monotonic clock (not the warpable one)."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(burst, 1))
        self.buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str) -> float:
        """0 if allowed (and consumed), else seconds until the next request would be."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self.buckets[key] = (tokens - 1.0, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


# ----------------------------------------------------------------------------- helpers


def _digits(text: str) -> bool:
    """ASCII digits only (str.isdigit() accepts "²", which int() refuses)."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


async def read_json(request: Request, required: bool = True) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and (not _digits(length) or int(length) > MAX_JSON_BODY):
        raise ApiError(413, "PayloadTooLarge", "The request body is too large.", f"at most {MAX_JSON_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BODY:
            raise ApiError(413, "PayloadTooLarge", "The request body is too large.", f"at most {MAX_JSON_BODY} bytes")
    if not body.strip():
        if required:
            raise bad_request("A JSON object body is required.")
        return {}
    try:
        value = json.loads(bytes(body), parse_constant=_no_constant)
        # Lone surrogates ("\ud800") parse but are not text; refuse them here.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError) as exc:
        raise bad_request(f"The body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise bad_request("The body must be a JSON object.")
    return value


def check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(f"Unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.")


def want_str(body: dict[str, Any], key: str, max_len: int, nullable: bool = False) -> str | None:
    value = body[key]
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string.")
    if key == "Name" and not value.strip():
        raise bad_request(f"{key} must not be empty.")
    if len(value) > max_len:
        raise bad_request(f"{key} must be at most {max_len} characters.")
    if any(ord(c) < 32 for c in value):
        raise bad_request(f"{key} must not contain control characters.")
    return value


def want_01(body: dict[str, Any], key: str) -> int:
    value = body[key]
    if isinstance(value, bool) or value not in (0, 1):
        raise bad_request(f"{key} must be 0 or 1.")
    return int(value)


def group_fields(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    """Validate a DeviceGroupV2 create or PATCH body; returns the fields given."""
    allowed = {
        "Name",
        "Description",
        "OsFeedType",
        "UpdatePolicy",
        "AllowCrashDumpsCollection",
        "RegionalDataBoundary",
    }
    check_fields(body, allowed)
    out: dict[str, Any] = {}
    if creating and "Name" not in body:
        raise bad_request("Name is required.")
    if "Name" in body:
        out["Name"] = want_str(body, "Name", 50)
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
        if body["RegionalDataBoundary"] not in ("None", "EU"):
            raise bad_request('RegionalDataBoundary must be "None" or "EU".')
        out["RegionalDataBoundary"] = body["RegionalDataBoundary"]
    return out


GROUP_COLUMNS = {
    "Name": "name",
    "Description": "description",
    "OsFeedType": "os_feed_type",
    "UpdatePolicy": "update_policy",
    "AllowCrashDumpsCollection": "allow_crash_dumps",
    "RegionalDataBoundary": "boundary",
}


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
    except (ValueError, KeyError, TypeError, UnicodeEncodeError):
        raise bad_request("The Sphere-Continuation token is not valid for this listing.") from None


def page_size(request: Request) -> int:
    raw = request.query_params.get("maxPageSize")
    if raw is None:
        return DEFAULT_PAGE
    if not _digits(raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise bad_request(f"maxPageSize must be an integer from 1 to {MAX_PAGE}.")
    return int(raw)


# ----------------------------------------------------------------------------- the service


class Service:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.data_dir / "service.db")
        self.store.conn.execute("PRAGMA wal_autocheckpoint=0")  # the ingest flusher checkpoints
        offset = self.store.get_meta("clock_offset")
        self.clock = Clock(float(offset) if offset else 0.0)
        self.ingest = Ingest(
            config.data_dir, self.clock, config.throttle_limit, config.retention_seconds,
            max_inflated=config.max_inflated_bytes,
        )
        self.faults = Faults()
        self.rate = RateLimiter(config.rate_limit_per_minute, config.rate_limit_burst)
        self._principals: dict[str, Principal] = {}
        # Device id -> its row joined with its group's consent and boundary. Devices and
        # groups change only through this process's API, which drops the entries it
        # changes; the ingest writer re-checks consent in the database anyway.
        self._devices: dict[str, sqlite3.Row] = {}
        self._throttled_cache: dict[str, tuple[int, list[str]]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # lifecycle -----------------------------------------------------------------
    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.ingest.start()
        self.ingest.request_sweep()
        self._sweeper = asyncio.create_task(self._sweep_loop())
        try:
            yield
        finally:
            self._sweeper.cancel()
            self.ingest.stop()
            self.store.close()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            self.ingest.request_sweep()

    # auth ----------------------------------------------------------------------------
    def bearer(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("Send Authorization: Bearer <token>.")
        token = token.strip()
        principal = self._principals.get(token)
        if principal is None:
            principal = self.store.principal(token)
            if principal is None:
                raise unauthorized("The token is not known.")
            self._principals[token] = principal
        return principal

    def tenant_principal(self, request: Request, roles: tuple[str, ...] = READ_ROLES) -> Principal:
        principal = self.bearer(request)
        if principal.role == "Support":
            raise forbidden("Support tokens cannot use the tenant API.")
        tenant_id = request.path_params.get("tenantId")
        if tenant_id is not None and tenant_id != principal.tenant_id:
            raise not_found(f"No tenant {tenant_id}.")
        if principal.role not in roles:
            raise forbidden(f"Role {principal.role} may not do this; needs one of {', '.join(roles)}.")
        return principal

    def device(self, request: Request) -> sqlite3.Row:
        header = request.headers.get("authorization", "")
        scheme, _, cred = header.partition(" ")
        device_id, _, secret = cred.strip().partition(":")
        if scheme != "Device" or not DEVICE_ID_RE.match(device_id) or not secret:
            raise unauthorized("Send Authorization: Device <deviceId>:<secret>.")
        row = self._devices.get(device_id)
        if row is None:
            row = self.store.device_with_group(device_id)
            if row is not None:
                if len(self._devices) >= 200_000:  # bound the memory of a huge fleet
                    self._devices.clear()
                self._devices[device_id] = row
        if row is None or not hmac.compare_digest(row["secret_hash"], hash_secret(secret)):
            raise unauthorized("Unknown device or wrong secret.")
        return row

    def control(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        expected = self.config.control_token or ""
        if scheme.lower() != "bearer" or not expected or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            raise unauthorized("The control API needs the control token.")

    def rate_limit(self, device_id: str) -> None:
        wait = self.rate.check(device_id)
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            raise ApiError(
                429,
                "TooManyRequests",
                "The device is over its rate limit.",
                f"Retry after {retry} s.",
                {"Retry-After": str(retry)},
            )

    # public API ------------------------------------------------------------------------
    async def list_tenants(self, request: Request) -> Response:
        principal = self.tenant_principal(request)
        row = self.store.tenant(principal.tenant_id or "")
        items = [{"Id": row["id"], "Name": row["name"], "Roles": [principal.role]}] if row else []
        return JSONResponse(items)

    async def list_products(self, request: Request) -> Response:
        principal = self.tenant_principal(request)
        items = [product_json(r) for r in self.store.products(principal.tenant_id or "")]
        return JSONResponse({"ContinuationToken": None, "Items": items})

    async def create_product(self, request: Request) -> Response:
        principal = self.tenant_principal(request, WRITE_ROLES)
        body = await read_json(request)
        check_fields(body, {"Name", "Description"})
        if "Name" not in body:
            raise bad_request("Name is required.")
        name = want_str(body, "Name", 50)
        description = want_str(body, "Description", 100, nullable=True) if "Description" in body else None
        try:
            row = self.store.create_product(principal.tenant_id or "", name or "", description, self.clock.now_int())
        except sqlite3.IntegrityError:
            raise conflict(f"A product named {name!r} already exists in this tenant.") from None
        return JSONResponse(product_json(row), status_code=201)

    async def get_product(self, request: Request) -> Response:
        principal = self.tenant_principal(request)
        row = self.store.product(principal.tenant_id or "", request.path_params["productId"])
        if row is None:
            raise not_found(f"No product {request.path_params['productId']}.")
        return JSONResponse(product_json(row))

    async def create_group(self, request: Request) -> Response:
        principal = self.tenant_principal(request, WRITE_ROLES)
        product_id = request.path_params["productId"]
        if self.store.product(principal.tenant_id or "", product_id) is None:
            raise not_found(f"No product {product_id}.")
        fields = group_fields(await read_json(request), creating=True)
        try:
            row = self.store.create_group(principal.tenant_id or "", product_id, fields, self.clock.now_int())
        except sqlite3.IntegrityError:
            raise conflict(f"A device group named {fields['Name']!r} already exists in this product.") from None
        return JSONResponse(group_json(row), status_code=201)

    def _group_listing(self, request: Request, tenant_id: str, product_id: str | None) -> Response:
        limit = page_size(request)
        token = request.headers.get("sphere-continuation")
        after = decode_continuation(token, tenant_id) if token else 0
        rows = self.store.groups_page(tenant_id, after, limit + 1, product_id)
        more = len(rows) > limit
        rows = rows[:limit]
        cont = encode_continuation(tenant_id, rows[-1]["seq"]) if more and rows else None
        return JSONResponse({"ContinuationToken": cont, "Items": [group_json(r) for r in rows]})

    async def list_groups(self, request: Request) -> Response:
        principal = self.tenant_principal(request)
        return self._group_listing(request, principal.tenant_id or "", None)

    async def list_product_groups(self, request: Request) -> Response:
        principal = self.tenant_principal(request)
        product_id = request.path_params["productId"]
        if self.store.product(principal.tenant_id or "", product_id) is None:
            raise not_found(f"No product {product_id}.")
        return self._group_listing(request, principal.tenant_id or "", product_id)

    async def get_group(self, request: Request) -> Response:
        principal = self.tenant_principal(request)
        row = self.store.group(principal.tenant_id or "", request.path_params["deviceGroupId"])
        if row is None:
            raise not_found(f"No device group {request.path_params['deviceGroupId']}.")
        return JSONResponse(group_json(row))

    async def patch_group(self, request: Request) -> Response:
        principal = self.tenant_principal(request, WRITE_ROLES)
        tenant_id = principal.tenant_id or ""
        group_id = request.path_params["deviceGroupId"]
        if self.store.group(tenant_id, group_id) is None:
            raise not_found(f"No device group {group_id}.")
        fields = group_fields(await read_json(request), creating=False)
        columns = {GROUP_COLUMNS[k]: (int(v) if isinstance(v, bool) else v) for k, v in fields.items()}
        try:
            self.store.update_group(group_id, columns)
            self._devices.clear()  # cached consent/boundary of this group's devices
        except sqlite3.IntegrityError:
            raise conflict(f"A device group named {fields.get('Name')!r} already exists in this product.") from None
        return JSONResponse(group_json(self.store.group(tenant_id, group_id)))

    def _device_json(self, row: sqlite3.Row) -> dict[str, Any]:
        group = self.store.group(row["tenant_id"], row["group_id"])
        return {
            "DeviceId": row["id"],
            "TenantId": row["tenant_id"],
            "DeviceGroupId": row["group_id"],
            "ProductId": group["product_id"] if group else None,
        }

    async def claim_device(self, request: Request) -> Response:
        principal = self.tenant_principal(request, ("Administrator",))
        tenant_id = principal.tenant_id or ""
        body = await read_json(request)
        check_fields(body, {"DeviceId", "DeviceGroupId"})
        group_id = body.get("DeviceGroupId")
        if not isinstance(group_id, str) or not group_id:
            raise bad_request("DeviceGroupId is required.")
        if self.store.group(tenant_id, group_id) is None:
            raise not_found(f"No device group {group_id}.")
        device_id = body.get("DeviceId")
        if device_id is None:
            device_id = secrets.token_hex(64)
        if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
            raise bad_request("DeviceId must be 128 lowercase hex characters.")
        try:
            secret = self.store.claim_device(device_id, tenant_id, group_id, self.clock.now_int())
        except sqlite3.IntegrityError:
            raise conflict(f"Device {device_id} is already claimed.") from None
        out = self._device_json(self.store.device(device_id))
        out["DeviceSecret"] = secret
        return JSONResponse(out, status_code=201)

    async def get_device(self, request: Request) -> Response:
        principal = self.tenant_principal(request)
        row = self.store.device(request.path_params["deviceId"])
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise not_found(f"No device {request.path_params['deviceId']}.")
        return JSONResponse(self._device_json(row))

    async def move_device(self, request: Request) -> Response:
        principal = self.tenant_principal(request, WRITE_ROLES)
        tenant_id = principal.tenant_id or ""
        device_id = request.path_params["deviceId"]
        row = self.store.device(device_id)
        if row is None or row["tenant_id"] != tenant_id:
            raise not_found(f"No device {device_id}.")
        body = await read_json(request)
        check_fields(body, {"Id", "DeviceGroupId"})
        group_id = body.get("Id", body.get("DeviceGroupId"))
        if not isinstance(group_id, str) or not group_id:
            raise bad_request("Id (the target device group) is required.")
        if self.store.group(tenant_id, group_id) is None:
            raise not_found(f"No device group {group_id}.")
        self.store.move_device(device_id, group_id)
        self._devices.pop(device_id, None)
        return JSONResponse(self._device_json(self.store.device(device_id)))

    # device API ----------------------------------------------------------------------
    async def sync(self, request: Request) -> Response:
        device = self.device(request)
        await read_json(request, required=False)
        throttled = self._throttled(device["tenant_id"])
        return JSONResponse(
            {
                "optIn": bool(device["allow_crash_dumps"]),
                "regionalDataBoundary": device["boundary"],
                "validitySeconds": VALIDITY_SECONDS,
                "serverTime": self.clock.now_int(),
                "throttledSignatures": throttled,
                "maxUploadBytes": self.config.max_upload_bytes,
                "maxInflatedBytes": self.config.max_inflated_bytes,
                "deviceGroupId": device["group_id"],
            }
        )

    def _throttled(self, tenant_id: str) -> list[str]:
        """The tenant's throttled signatures, recomputed only after dump rows changed."""
        version = self.ingest.version
        cached = self._throttled_cache.get(tenant_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        signatures = self.store.throttled_signatures(tenant_id, self.config.throttle_limit)
        if len(self._throttled_cache) > 10_000:
            self._throttled_cache.clear()
        self._throttled_cache[tenant_id] = (version, signatures)
        return signatures

    async def intent(self, request: Request) -> Response:
        device = self.device(request)
        self.rate_limit(device["device_id"])
        body = await read_json(request)
        signature = body.get("signature")
        if not isinstance(signature, str) or not SIGNATURE_RE.match(signature):
            raise bad_request("signature must be 32 lowercase hex characters.", "BadSignature")
        size = body.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad_request("size must be a non-negative integer (compressed bytes).")
        cls = body.get("componentClass", "App")
        if cls not in ("App", "OS"):
            raise bad_request('componentClass must be "App" or "OS".')
        if not device["allow_crash_dumps"]:
            return JSONResponse({"action": "skip", "reason": "optout"})
        if size > self.config.max_upload_bytes:
            return JSONResponse({"action": "skip", "reason": "too-large"})
        if self.ingest.is_throttled(device["tenant_id"], signature):
            return JSONResponse({"action": "skip", "reason": "throttled"})
        return JSONResponse({"action": "upload"})

    async def upload(self, request: Request) -> Response:
        device = self.device(request)
        self.rate_limit(device["device_id"])
        headers = request.headers
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/gzip":
            raise ApiError(415, "UnsupportedMediaType", "The body must be application/gzip.", f"got {ctype or 'none'!r}")
        length_header = headers.get("content-length")
        if length_header is None:
            raise ApiError(411, "LengthRequired", "Content-Length is required.", "send the body with a Content-Length")
        if not _digits(length_header):
            raise bad_request("Content-Length must be a decimal integer.")
        length = int(length_header)
        limit = self.config.max_upload_bytes
        if length > limit:
            raise ApiError(413, "PayloadTooLarge", "The dump is too large.", f"{length} bytes compressed; at most {limit}")
        if length == 0:
            raise bad_request("The body is empty; send the gzip of one ELF core.", "BadGzip")
        signature = headers.get("x-crash-signature", "")
        if not SIGNATURE_RE.match(signature):
            raise bad_request("X-Crash-Signature must be 32 lowercase hex characters.", "BadSignature")
        cls = headers.get("x-component-class", "App")
        if cls not in ("App", "OS"):
            raise bad_request('X-Component-Class must be "App" or "OS".')
        name = headers.get("x-component-name", "unknown")
        if not COMPONENT_NAME_RE.match(name):
            raise bad_request("X-Component-Name must be 1 to 64 of A-Z a-z 0-9 . _ + -.")
        crash_time_raw = headers.get("x-crash-time")
        crash_time = None
        if crash_time_raw is not None:
            if not _digits(crash_time_raw) or len(crash_time_raw) > 12:
                raise bad_request("X-Crash-Time must be integer seconds since the epoch.")
            crash_time = int(crash_time_raw)
        if not device["allow_crash_dumps"]:
            raise forbidden("The device's group does not allow crash dump collection.")
        if self.ingest.is_throttled(device["tenant_id"], signature):
            return JSONResponse({"skipped": "throttled"})
        body = await self._read_core(request, length)
        outcome = await self.ingest.submit(
            Upload(
                tenant_id=device["tenant_id"],
                device_id=device["device_id"],
                signature=signature,
                body=body,
                inflated_size=0,
                component_class=cls,
                component_name=name,
                crash_time=crash_time,
            )
        )
        if outcome.kind == "stored":
            return JSONResponse({"id": outcome.dump_id, "region": outcome.region}, status_code=201)
        if outcome.kind == "invalid" and outcome.error is not None:
            raise outcome.error
        if outcome.kind == "throttled":
            return JSONResponse({"skipped": "throttled"})
        if outcome.kind == "optout":
            raise forbidden("The device's group does not allow crash dump collection.")
        return error_response(503, "StorageUnavailable", "The dump could not be stored durably.", outcome.detail)

    async def _read_core(self, request: Request, length: int) -> bytes:
        """Read the body: exactly ``length`` bytes (at most the upload cap, checked before).

        The gzip/ELF check (inflate with a cap: a gzip bomb stops at 4 MiB inflated) runs in
        the ingest writer before it decides on the upload (``Ingest(max_inflated=...)``):
        zlib releases the GIL while it inflates, so the event loop is not held by it, and the
        upload crosses to the writer anyway.
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

    # support API ------------------------------------------------------------------------
    def support_principal(self, request: Request) -> Principal:
        principal = self.bearer(request)
        if principal.role != "Support":
            raise forbidden("Only Support tokens may use the support API.")
        return principal

    async def support_list(self, request: Request) -> Response:
        principal = self.support_principal(request)
        q = request.query_params
        filters: dict[str, Any] = {k: q.get(k) for k in ("tenantId", "deviceId", "deviceGroupId", "signature", "region")}
        since = q.get("since")
        if since is not None:
            if not _digits(since):
                raise bad_request("since must be integer seconds since the epoch.")
            filters["since"] = int(since)
        limit_raw = q.get("limit", "1000")
        if not _digits(limit_raw) or not 1 <= int(limit_raw) <= 10000:
            raise bad_request("limit must be an integer from 1 to 10000.")
        reason = request.headers.get("x-support-reason", "")
        self.store.add_audit(self.clock.now_int(), principal.label, "list", None, reason)
        rows = self.store.dumps(filters, int(limit_raw))
        return JSONResponse({"Items": [dump_json(r) for r in rows]})

    async def support_read(self, request: Request) -> Response:
        principal = self.support_principal(request)
        reason = request.headers.get("x-support-reason", "").strip()
        if not reason:
            raise bad_request("X-Support-Reason is required to read a dump.", "ReasonRequired")
        dump_id = request.path_params["dumpId"]
        # The audit row is committed before anything about the dump is read or sent.
        audit_id = self.store.add_audit(self.clock.now_int(), principal.label, "read", dump_id, reason)
        row = self.store.dump(dump_id)
        if row is None:
            raise not_found(f"No crash dump {dump_id}.")
        path = self.config.data_dir / "blobs" / row["blob"]
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            # Acknowledged a moment ago: its file is written just after the 201.
            await asyncio.to_thread(self.ingest.wait_materialized, 10.0)
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except FileNotFoundError:
                raise not_found(f"No crash dump {dump_id} (removed by retention).") from None
        return Response(
            data,
            media_type="application/gzip",
            headers={"X-Dump-Id": dump_id, "X-Audit-Id": str(audit_id), "X-Region": row["region"]},
        )

    async def support_audit(self, request: Request) -> Response:
        self.support_principal(request)
        after = request.query_params.get("after", "0")
        if not _digits(after):
            raise bad_request("after must be an audit row id.")
        rows = self.store.audit_rows(10000, int(after))
        return JSONResponse(
            {
                "Items": [
                    {"id": r["id"], "at": r["at"], "actor": r["actor"], "action": r["action"], "dumpId": r["dump_id"], "reason": r["reason"]}
                    for r in rows
                ]
            }
        )

    # control API ------------------------------------------------------------------------
    async def control_tenant(self, request: Request) -> Response:
        self.control(request)
        body = await read_json(request)
        check_fields(body, {"name"})
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise bad_request("name must be a non-empty string of at most 100 characters.")
        now = self.clock.now_int()
        try:
            tenant = self.store.create_tenant(name, now)
        except sqlite3.IntegrityError:
            raise conflict(f"A tenant named {name!r} already exists.") from None
        token = self.store.create_token(tenant["Id"], "Administrator", now, "control")
        return JSONResponse({"Id": tenant["Id"], "Name": name, "Token": token, "Role": "Administrator"}, status_code=201)

    async def control_token(self, request: Request) -> Response:
        self.control(request)
        body = await read_json(request)
        check_fields(body, {"tenantId", "role", "label"})
        role = body.get("role")
        tenant_id = body.get("tenantId")
        if role not in ("Administrator", "Contributor", "Reader", "Support"):
            raise bad_request("role must be Administrator, Contributor, Reader or Support.")
        if role == "Support":
            if tenant_id is not None:
                raise bad_request("A Support token belongs to no tenant; omit tenantId.")
        elif not isinstance(tenant_id, str) or self.store.tenant(tenant_id) is None:
            raise not_found(f"No tenant {tenant_id}.")
        label = body.get("label", "")
        if not isinstance(label, str) or len(label) > 100:
            raise bad_request("label must be a string of at most 100 characters.")
        token = self.store.create_token(tenant_id, role, self.clock.now_int(), label)
        return JSONResponse({"token": token, "role": role, "tenantId": tenant_id}, status_code=201)

    def _clock_json(self) -> dict[str, Any]:
        return {"serverTime": self.clock.now_int(), "offsetSeconds": round(self.clock.offset, 3)}

    async def control_clock(self, request: Request) -> Response:
        self.control(request)
        if request.method == "GET":
            return JSONResponse(self._clock_json())
        body = await read_json(request)
        check_fields(body, {"advance", "set"})
        if len(body) != 1:
            raise bad_request('Send exactly one of {"advance": seconds} or {"set": epoch}.')
        ((key, value),) = body.items()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) > 1e11:
            raise bad_request(f"{key} must be a number of seconds.")
        if key == "set" and value < 0:
            raise bad_request("set must be seconds since the epoch (>= 0).")
        if key == "advance":
            self.clock.advance(value)
        else:
            self.clock.set(value)
        self.store.set_meta("clock_offset", repr(self.clock.offset))
        removed = await asyncio.to_thread(self.ingest.request_sweep, True)
        out = self._clock_json()
        out["expired"] = removed
        return JSONResponse(out)

    async def control_faults(self, request: Request) -> Response:
        self.control(request)
        if request.method == "DELETE":
            self.faults.clear()
            return JSONResponse({"fault": None})
        if request.method == "GET":
            current = self.faults.current
            return JSONResponse({"fault": current.to_json() if current else None})
        body = await read_json(request)
        check_fields(body, {"mode", "delayMs", "status", "count"})
        mode = body.get("mode")
        if mode not in MODES:
            raise bad_request(f"mode must be one of {', '.join(MODES)}.")
        delay = body.get("delayMs", 0)
        if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= 600_000:
            raise bad_request("delayMs must be an integer from 0 to 600000.")
        status = body.get("status", 503)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise bad_request("status must be an HTTP status from 400 to 599.")
        count = body.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise bad_request("count must be a positive integer or null (until cleared).")
        fault = Fault(mode=mode, delayMs=delay, status=status, count=count)
        self.faults.set(fault)
        return JSONResponse({"fault": fault.to_json()})

    async def control_sweep(self, request: Request) -> Response:
        self.control(request)
        removed = await asyncio.to_thread(self.ingest.request_sweep, True)
        return JSONResponse({"expired": removed})

    async def control_settle(self, request: Request) -> Response:
        """Wait until every acknowledged dump exists as its blob file (they are written just
        after the 201); for tools that read ``blobs/`` directly."""
        self.control(request)
        done = await asyncio.to_thread(self.ingest.wait_materialized, 10.0)
        if not done:
            return error_response(503, "NotSettled", "Blob files are still being written.", "retry")
        return JSONResponse({"settled": True})

    async def control_reset(self, request: Request) -> Response:
        """Clear faults and the clock offset (data stays: tests isolate by tenant)."""
        self.control(request)
        self.faults.clear()
        self.clock.reset()
        self.store.set_meta("clock_offset", "0.0")
        self.rate.buckets.clear()
        return JSONResponse(self._clock_json())

    async def control_stats(self, request: Request) -> Response:
        self.control(request)
        return JSONResponse(
            {
                "batches": self.ingest.batches,
                "stored": self.ingest.stored,
                "maxBatch": self.ingest.max_batch_seen,
                "writerBusySeconds": round(self.ingest.busy_seconds, 3),
                "flushed": self.ingest.flushed,
                "lockWaitSeconds": round(self.ingest.lock_wait_seconds, 3),
                "commitSeconds": round(self.ingest.commit_seconds, 3),
            }
        )

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "serverTime": self.clock.now_int()})


def _wrap(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()

    endpoint.__name__ = handler.__name__
    return endpoint


def create_app(config: ServiceConfig) -> Starlette:
    svc = Service(config)
    T = "/v2/tenants/{tenantId}"
    # The device API first: Starlette tries routes in order (a regex match each), and the
    # device routes carry nearly all the traffic of a fleet.
    routes = [
        ("/device/v1/crashdumps", svc.upload, ["POST"]),
        ("/device/v1/crashdumps/intent", svc.intent, ["POST"]),
        ("/device/v1/sync", svc.sync, ["POST"]),
        ("/healthz", svc.health, ["GET"]),
        ("/v2/tenants", svc.list_tenants, ["GET"]),
        (T + "/products", svc.list_products, ["GET"]),
        (T + "/products", svc.create_product, ["POST"]),
        (T + "/products/{productId}", svc.get_product, ["GET"]),
        (T + "/products/{productId}/devicegroups", svc.create_group, ["POST"]),
        (T + "/products/{productId}/devicegroups", svc.list_product_groups, ["GET"]),
        (T + "/devicegroups", svc.list_groups, ["GET"]),
        (T + "/devicegroups/{deviceGroupId}", svc.get_group, ["GET"]),
        (T + "/devicegroups/{deviceGroupId}", svc.patch_group, ["PATCH"]),
        (T + "/devices", svc.claim_device, ["POST"]),
        (T + "/devices/{deviceId}", svc.get_device, ["GET"]),
        (T + "/devices/{deviceId}/devicegroup", svc.move_device, ["PUT"]),
        ("/support/v1/crashdumps", svc.support_list, ["GET"]),
        ("/support/v1/crashdumps/{dumpId}", svc.support_read, ["GET"]),
        ("/support/v1/audit", svc.support_audit, ["GET"]),
    ]
    if config.enable_control:
        routes += [
            ("/testbed/v1/tenants", svc.control_tenant, ["POST"]),
            ("/testbed/v1/tokens", svc.control_token, ["POST"]),
            ("/testbed/v1/clock", svc.control_clock, ["GET", "POST"]),
            ("/testbed/v1/faults", svc.control_faults, ["GET", "POST", "DELETE"]),
            ("/testbed/v1/sweep", svc.control_sweep, ["POST"]),
            ("/testbed/v1/reset", svc.control_reset, ["POST"]),
            ("/testbed/v1/settle", svc.control_settle, ["POST"]),
            ("/testbed/v1/stats", svc.control_stats, ["GET"]),
        ]
    # Merge methods per path so a wrong method is a 405, not a 404.
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for path, handler, methods in routes:
        for method in methods:
            by_path.setdefault(path, {})[method] = _wrap(handler)

    def dispatcher(handlers: dict[str, Callable[[Request], Awaitable[Response]]]):
        async def endpoint(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await handlers[method](request)

        return endpoint

    starlette_routes = [
        Route(path, dispatcher(handlers), methods=list(handlers)) for path, handlers in by_path.items()
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {404: "NotFound", 405: "MethodNotAllowed"}
        return error_response(
            exc.status_code,
            titles.get(exc.status_code, "HttpError"),
            str(exc.detail),
            f"{request.method} {request.url.path}",
            dict(exc.headers or {}),
        )

    app = Starlette(
        routes=starlette_routes,
        lifespan=svc.lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.service = svc
    return FaultMiddleware(app, svc.faults)  # type: ignore[return-value]
