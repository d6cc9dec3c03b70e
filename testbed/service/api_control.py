"""The testbed control API (``/testbed/v1``, only with control enabled; its own token).

Tenants and tokens, the clock, faults, sweeps, stats, and the testbed's evidence:
the durable dumps, their bytes, what each region's store physically holds and the
effective settings (docs/service.md, "Control API"). These reads write no audit rows:
they are the testbed's own, not the product's support access.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testbed.contract import device_api
from testbed.service import auth
from testbed.service.errors import bad_request, conflict, error_response, not_found
from testbed.service.faults import APIS, MODES, Fault
from testbed.service.settings import effective
from testbed.service.state import ServiceState, read_dump, state_of
from testbed.service.store import ROLES
from testbed.service.validation import check_fields, read_json, want_name, want_str

PREFIX = "/testbed/v1"
DUMP_FILTERS = ("tenantId", "deviceId", "signature", "region")
SETTLE_TIMEOUT = 10.0


def clock_json(state: ServiceState) -> dict[str, Any]:
    return {"serverTime": state.clock.now_int(), "offsetSeconds": round(state.clock.offset, 3)}


def evidence_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenantId": row["tenant_id"],
        "deviceId": row["device_id"],
        "signature": row["signature"],
        "region": row["region"],
        "size": row["size"],
        "inflatedSize": row["inflated_size"],
        "createdAt": row["created_at"],
        "crashTime": row["crash_time"],
        "componentClass": row["component_class"],
        "componentName": row["component_name"],
        "uploadId": row["upload_id"],
        "sha256": row["sha256"],
    }


async def settled(state: ServiceState) -> bool:
    """Wait until the writer has finished every upload handed to it so far."""
    return await asyncio.to_thread(state.ingest.wait_written, SETTLE_TIMEOUT)


class Tenants(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        auth.control(request)
        state = state_of(request)
        body = await read_json(request)
        check_fields(body, {"name"})
        name = want_name(body.get("name"), "name", 100)
        now = state.clock.now_int()
        try:
            tenant = state.store.create_tenant(name, now)
        except sqlite3.IntegrityError:
            raise conflict(f"A tenant named {name!r} already exists.") from None
        token = state.store.create_token(tenant["Id"], auth.ADMINISTRATOR, now, "control")
        return JSONResponse({"Id": tenant["Id"], "Name": name, "Token": token, "Role": auth.ADMINISTRATOR}, status_code=201)


class Tokens(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        auth.control(request)
        state = state_of(request)
        body = await read_json(request)
        check_fields(body, {"tenantId", "role", "label"})
        role = body.get("role")
        tenant_id = body.get("tenantId")
        if role not in ROLES:
            raise bad_request(f"role must be {', '.join(ROLES[:-1])} or {ROLES[-1]}.")
        if role == auth.SUPPORT:
            if tenant_id is not None:
                raise bad_request("A Support token belongs to no tenant; omit tenantId.")
        elif not isinstance(tenant_id, str) or state.store.tenant(tenant_id) is None:
            raise not_found(f"No tenant {tenant_id}.")
        label = want_str({"label": body.get("label", "")}, "label", 100) or ""
        token = state.store.create_token(tenant_id, role, state.clock.now_int(), label)
        return JSONResponse({"token": token, "role": role, "tenantId": tenant_id}, status_code=201)


class Clock(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        auth.control(request)
        return JSONResponse(clock_json(state_of(request)))

    async def post(self, request: Request) -> Response:
        auth.control(request)
        state = state_of(request)
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
            state.clock.advance(value)
        else:
            state.clock.set(value)
        state.store.set_meta("clock_offset", repr(state.clock.offset))
        removed = await asyncio.to_thread(state.ingest.request_sweep, True)
        out = clock_json(state)
        out["expired"] = removed
        return JSONResponse(out)


class Faults(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        auth.control(request)
        current = state_of(request).faults.current
        return JSONResponse({"fault": current.to_json() if current else None})

    async def delete(self, request: Request) -> Response:
        auth.control(request)
        state_of(request).faults.clear()
        return JSONResponse({"fault": None})

    async def post(self, request: Request) -> Response:
        auth.control(request)
        body = await read_json(request)
        check_fields(body, {"mode", "delayMs", "status", "count", "api"})
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
        api = body.get("api", "device")
        if api not in APIS:
            raise bad_request(f"api must be one of {', '.join(APIS)}.")
        if api == "public" and mode not in ("delay", "status"):
            raise bad_request('The public API takes the "delay" and "status" faults.')
        fault = Fault(mode=mode, delayMs=delay, status=status, count=count, api=api)
        state_of(request).faults.set(fault)
        return JSONResponse({"fault": fault.to_json()})


class Sweep(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        auth.control(request)
        removed = await asyncio.to_thread(state_of(request).ingest.request_sweep, True)
        return JSONResponse({"expired": removed})


class Settle(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        """Wait until every acknowledged dump exists as its blob file."""
        auth.control(request)
        if not await settled(state_of(request)):
            return error_response(503, "NotSettled", "Blob files are still being written.", "retry")
        return JSONResponse({"settled": True})


class Reset(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        """Clear faults, the clock offset and rate-limit buckets (data stays: tests isolate by tenant)."""
        auth.control(request)
        state = state_of(request)
        state.faults.clear()
        state.clock.reset()
        state.store.set_meta("clock_offset", "0.0")
        state.rate.buckets.clear()
        return JSONResponse(clock_json(state))


class Stats(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        auth.control(request)
        ingest = state_of(request).ingest
        return JSONResponse(
            {
                "batches": ingest.batches,
                "stored": ingest.stored,
                "maxBatch": ingest.max_batch_seen,
                "writerBusySeconds": round(ingest.busy_seconds, 3),
                "segmentsDropped": ingest.segments_dropped,
                "lockWaitSeconds": round(ingest.lock_wait_seconds, 3),
                "commitSeconds": round(ingest.commit_seconds, 3),
                "recoveredAtStart": ingest.recovered.to_json(),
                "repeats": ingest.repeats,
            }
        )


class Dumps(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        """Every durable dump (optionally filtered), after the writer has settled."""
        auth.control(request)
        state = state_of(request)
        filters = {k: request.query_params.get(k) for k in DUMP_FILTERS}
        if not await settled(state):
            return error_response(503, "NotSettled", "Blob files are still being written.", "retry")
        rows = state.store.dumps(filters, None)
        return JSONResponse({"Items": [evidence_json(r) for r in rows]})


class DumpBlob(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        auth.control(request)
        state = state_of(request)
        dump_id = request.path_params["dumpId"]
        row = state.store.dump(dump_id)
        data = None
        if row is not None:
            data = await read_dump(state, row)
        if data is None:
            raise not_found(f"No crash dump {dump_id}.")
        return Response(data, media_type=device_api.GZIP_CONTENT_TYPE)


class Storage(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        """What each region's store physically holds (records in its segment files, not rows)."""
        auth.control(request)
        state = state_of(request)
        await settled(state)
        refs = state.store.segment_refs()
        return JSONResponse({"regions": await asyncio.to_thread(state.ingest.segments.storage, refs)})


class Config(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        auth.control(request)
        return JSONResponse(effective(state_of(request).config))


ROUTES = [
    Route(PREFIX + "/tenants", Tenants),
    Route(PREFIX + "/tokens", Tokens),
    Route(PREFIX + "/clock", Clock),
    Route(PREFIX + "/faults", Faults),
    Route(PREFIX + "/sweep", Sweep),
    Route(PREFIX + "/reset", Reset),
    Route(PREFIX + "/settle", Settle),
    Route(PREFIX + "/stats", Stats),
    Route(PREFIX + "/dumps", Dumps),
    Route(PREFIX + "/dumps/{dumpId}/blob", DumpBlob),
    Route(PREFIX + "/storage", Storage),
    Route(PREFIX + "/config", Config),
]
