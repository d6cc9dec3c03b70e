"""The public API (``/v2``), shapes as Azure Sphere's v2; tenant bearer tokens."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testbed.contract import device_api
from testbed.service.auth import ADMINISTRATOR, WRITE_ROLES, tenant_principal
from testbed.service.errors import bad_request, conflict, not_found
from testbed.service.paging import after_seq, encode_continuation, page_size
from testbed.service.state import ServiceState, state_of
from testbed.service.validation import (
    check_fields,
    group_columns,
    group_fields,
    read_json,
    want_str,
)

TENANT = "/v2/tenants/{tenantId}"


def group_json(row: sqlite3.Row) -> dict[str, Any]:
    """A device group as Azure Sphere's DeviceGroupV2."""
    return {
        "Id": row["id"],
        "Name": row["name"],
        "Description": row["description"],
        "ProductId": row["product_id"],
        "TenantId": row["tenant_id"],
        "OsFeedType": row["os_feed_type"],
        "UpdatePolicy": row["update_policy"],
        "AllowCrashDumpsCollection": bool(row["allow_crash_dumps"]),
        "RegionalDataBoundary": row["boundary"],
    }


def product_json(row: sqlite3.Row) -> dict[str, Any]:
    return {"Id": row["id"], "TenantId": row["tenant_id"], "Name": row["name"], "Description": row["description"]}


def device_json(state: ServiceState, row: sqlite3.Row) -> dict[str, Any]:
    group = state.store.group(row["tenant_id"], row["group_id"])
    return {
        "DeviceId": row["id"],
        "TenantId": row["tenant_id"],
        "DeviceGroupId": row["group_id"],
        "ProductId": group["product_id"] if group else None,
    }


def _product(state: ServiceState, tenant_id: str, product_id: str) -> sqlite3.Row:
    row = state.store.product(tenant_id, product_id)
    if row is None:
        raise not_found(f"No product {product_id}.")
    return row


def _group(state: ServiceState, tenant_id: str, group_id: Any) -> sqlite3.Row:
    row = state.store.group(tenant_id, group_id)
    if row is None:
        raise not_found(f"No device group {group_id}.")
    return row


def _group_page(request: Request, tenant_id: str, product_id: str | None) -> Response:
    limit = page_size(request)
    after = after_seq(request, tenant_id)
    rows = state_of(request).store.groups_page(tenant_id, after, limit + 1, product_id)
    more = len(rows) > limit
    rows = rows[:limit]
    cont = encode_continuation(tenant_id, rows[-1]["seq"]) if more and rows else None
    return JSONResponse({"ContinuationToken": cont, "Items": [group_json(r) for r in rows]})


class Tenants(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        row = state_of(request).store.tenant(principal.tenant)
        items = [{"Id": row["id"], "Name": row["name"], "Roles": [principal.role]}] if row else []
        return JSONResponse(items)


class Products(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        items = [product_json(r) for r in state_of(request).store.products(principal.tenant)]
        return JSONResponse({"ContinuationToken": None, "Items": items})

    async def post(self, request: Request) -> Response:
        principal = tenant_principal(request, WRITE_ROLES)
        state = state_of(request)
        body = await read_json(request)
        check_fields(body, {"Name", "Description"})
        if "Name" not in body:
            raise bad_request("Name is required.")
        name = want_str(body, "Name", 50) or ""
        description = want_str(body, "Description", 100, nullable=True) if "Description" in body else None
        try:
            row = state.store.create_product(principal.tenant, name, description, state.clock.now_int())
        except sqlite3.IntegrityError:
            raise conflict(f"A product named {name!r} already exists in this tenant.") from None
        return JSONResponse(product_json(row), status_code=201)


class Product(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        return JSONResponse(product_json(_product(state_of(request), principal.tenant, request.path_params["productId"])))


class ProductGroups(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        product_id = request.path_params["productId"]
        _product(state_of(request), principal.tenant, product_id)
        return _group_page(request, principal.tenant, product_id)

    async def post(self, request: Request) -> Response:
        principal = tenant_principal(request, WRITE_ROLES)
        state = state_of(request)
        product_id = request.path_params["productId"]
        _product(state, principal.tenant, product_id)
        fields = group_fields(await read_json(request), creating=True)
        try:
            row = state.store.create_group(principal.tenant, product_id, fields, state.clock.now_int())
        except sqlite3.IntegrityError:
            raise conflict(f"A device group named {fields['Name']!r} already exists in this product.") from None
        return JSONResponse(group_json(row), status_code=201)


class Groups(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        return _group_page(request, principal.tenant, None)


class Group(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        return JSONResponse(group_json(_group(state_of(request), principal.tenant, request.path_params["deviceGroupId"])))

    async def patch(self, request: Request) -> Response:
        principal = tenant_principal(request, WRITE_ROLES)
        state = state_of(request)
        group_id = request.path_params["deviceGroupId"]
        _group(state, principal.tenant, group_id)
        fields = group_fields(await read_json(request), creating=False)
        try:
            state.store.update_group(group_id, group_columns(fields))
            state.forget_devices()  # cached consent/boundary of this group's devices
        except sqlite3.IntegrityError:
            raise conflict(f"A device group named {fields.get('Name')!r} already exists in this product.") from None
        return JSONResponse(group_json(_group(state, principal.tenant, group_id)))


class Devices(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        """Claim a device (Administrator): 201 with its DeviceSecret, shown once."""
        principal = tenant_principal(request, (ADMINISTRATOR,))
        state = state_of(request)
        body = await read_json(request)
        check_fields(body, {"DeviceId", "DeviceGroupId"})
        group_id = body.get("DeviceGroupId")
        if not isinstance(group_id, str) or not group_id:
            raise bad_request("DeviceGroupId is required.")
        _group(state, principal.tenant, group_id)
        device_id = body.get("DeviceId")
        if device_id is None:
            device_id = secrets.token_hex(device_api.DEVICE_ID_HEX // 2)
        if not isinstance(device_id, str) or not device_api.is_device_id(device_id):
            raise bad_request(f"DeviceId must be {device_api.DEVICE_ID_HEX} lowercase hex characters.")
        try:
            secret = state.store.claim_device(device_id, principal.tenant, group_id, state.clock.now_int())
        except sqlite3.IntegrityError:
            raise conflict(f"Device {device_id} is already claimed.") from None
        out = device_json(state, state.store.device(device_id))
        out["DeviceSecret"] = secret
        return JSONResponse(out, status_code=201)


def _own_device(request: Request, tenant_id: str) -> sqlite3.Row:
    device_id = request.path_params["deviceId"]
    row = state_of(request).store.device(device_id)
    if row is None or row["tenant_id"] != tenant_id:
        raise not_found(f"No device {device_id}.")
    return row


class Device(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        return JSONResponse(device_json(state_of(request), _own_device(request, principal.tenant)))


class DeviceGroupOfDevice(HTTPEndpoint):
    async def put(self, request: Request) -> Response:
        principal = tenant_principal(request, WRITE_ROLES)
        state = state_of(request)
        device_id = _own_device(request, principal.tenant)["id"]
        body = await read_json(request)
        check_fields(body, {"Id", "DeviceGroupId"})
        group_id = body.get("Id", body.get("DeviceGroupId"))
        if not isinstance(group_id, str) or not group_id:
            raise bad_request("Id (the target device group) is required.")
        _group(state, principal.tenant, group_id)
        state.store.move_device(device_id, group_id)
        state.forget_devices(device_id)
        return JSONResponse(device_json(state, state.store.device(device_id)))


ROUTES = [
    Route("/v2/tenants", Tenants),
    Route(TENANT + "/products", Products),
    Route(TENANT + "/products/{productId}", Product),
    Route(TENANT + "/products/{productId}/devicegroups", ProductGroups),
    Route(TENANT + "/devicegroups", Groups),
    Route(TENANT + "/devicegroups/{deviceGroupId}", Group),
    Route(TENANT + "/devices", Devices),
    Route(TENANT + "/devices/{deviceId}", Device),
    Route(TENANT + "/devices/{deviceId}/devicegroup", DeviceGroupOfDevice),
]
