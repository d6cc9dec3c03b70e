"""The support API (``/support/v1``, Support tokens only): dump metadata, audited reads, the audit log."""

from __future__ import annotations

import sqlite3
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testbed.contract import device_api
from testbed.service.auth import support_principal
from testbed.service.errors import bad_request, not_found
from testbed.service.state import read_dump, state_of
from testbed.service.validation import digits

REASON_HEADER = "X-Support-Reason"
FILTERS = ("tenantId", "deviceId", "deviceGroupId", "signature", "region")
MAX_LIMIT = 10000
AUDIT_PAGE = 10000


def dump_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenantId": row["tenant_id"],
        "deviceId": row["device_id"],
        "deviceGroupId": row["group_id"],
        "signature": row["signature"],
        "region": row["region"],
        "size": row["size"],
        "inflatedSize": row["inflated_size"],
        "componentClass": row["component_class"],
        "componentName": row["component_name"],
        "crashTime": row["crash_time"],
        "createdAt": row["created_at"],
    }


class Crashdumps(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = support_principal(request)
        state = state_of(request)
        q = request.query_params
        filters: dict[str, Any] = {k: q.get(k) for k in FILTERS}
        since = q.get("since")
        if since is not None:
            if not digits(since):
                raise bad_request("since must be integer seconds since the epoch.")
            filters["since"] = int(since)
        limit_raw = q.get("limit", "1000")
        if not digits(limit_raw) or not 1 <= int(limit_raw) <= MAX_LIMIT:
            raise bad_request(f"limit must be an integer from 1 to {MAX_LIMIT}.")
        reason = request.headers.get(REASON_HEADER, "")
        state.store.add_audit(state.clock.now_int(), principal.label, "list", None, reason)
        rows = state.store.dumps(filters, int(limit_raw))
        return JSONResponse({"Items": [dump_json(r) for r in rows]})


class Crashdump(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = support_principal(request)
        state = state_of(request)
        reason = request.headers.get(REASON_HEADER, "").strip()
        if not reason:
            raise bad_request(f"{REASON_HEADER} is required to read a dump.", "ReasonRequired")
        dump_id = request.path_params["dumpId"]
        # The audit row is committed before anything about the dump is read or sent.
        audit_id = state.store.add_audit(state.clock.now_int(), principal.label, "read", dump_id, reason)
        row = state.store.dump(dump_id)
        if row is None:
            raise not_found(f"No crash dump {dump_id}.")
        data = await read_dump(state, row)
        if data is None:
            raise not_found(f"No crash dump {dump_id} (removed by retention).")
        return Response(
            data,
            media_type=device_api.GZIP_CONTENT_TYPE,
            headers={"X-Dump-Id": dump_id, "X-Audit-Id": str(audit_id), "X-Region": row["region"]},
        )


class Audit(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        support_principal(request)
        after = request.query_params.get("after", "0")
        if not digits(after):
            raise bad_request("after must be an audit row id.")
        rows = state_of(request).store.audit_rows(AUDIT_PAGE, int(after))
        items = [
            {"id": r["id"], "at": r["at"], "actor": r["actor"], "action": r["action"], "dumpId": r["dump_id"], "reason": r["reason"]}
            for r in rows
        ]
        return JSONResponse({"Items": items})


ROUTES = [
    Route("/support/v1/crashdumps", Crashdumps),
    Route("/support/v1/crashdumps/{dumpId}", Crashdump),
    Route("/support/v1/audit", Audit),
]
