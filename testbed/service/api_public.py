"""The public API (``/v2``), shapes as Azure Sphere's v2; tenant bearer tokens."""

from __future__ import annotations

import secrets
import sqlite3
import time
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testbed.contract import device_api
from testbed.service.auth import ADMINISTRATOR, WRITE_ROLES, Principal, tenant_principal
from testbed.service.errors import ApiError, bad_request, conflict, not_found
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
#: Settings only an Administrator may change (the gallery: consent needs Administrator).
ADMIN_ONLY_FIELDS = ("AllowCrashDumpsCollection", "RegionalDataBoundary")
#: The default device groups a product gets: (name, OsFeedType, UpdatePolicy).
DEFAULT_GROUPS = (
    ("Development", 0, 1),
    ("Field Test", 0, 0),
    ("Production", 0, 0),
    ("Field Test OS Evaluation", 1, 0),
    ("Production OS Evaluation", 1, 0),
)
OPERATION_CREATE_PRODUCT = 4
OPERATION_COMPLETE = 2


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
        "CurrentDeployment": None,
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


def _utc(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def operation_json(row: sqlite3.Row) -> dict[str, Any]:
    when = _utc(row["created_at"])
    return {
        "OperationId": row["id"],
        "OperationType": row["type"],
        "State": OPERATION_COMPLETE,
        "CreatedDateUTC": when,
        "StartedDateUTC": when,
        "CompletedDateUTC": when,
        "ResourceLocation": row["resource_location"],
        "DetailsLocation": f"/v2/tenants/{row['tenant_id']}/operations/{row['id']}",
        "Error": None,
        "TenantId": row["tenant_id"],
    }


def _admin_only(principal: Principal, fields: dict[str, Any]) -> None:
    changed = [k for k in ADMIN_ONLY_FIELDS if k in fields]
    if changed and principal.role != ADMINISTRATOR:
        raise ApiError(403, "Forbidden", "The caller may not do this.",
                       f"changing {', '.join(changed)} needs the Administrator role")  # fmt: skip


def _create_group(state: ServiceState, tenant_id: str, product_id: str, fields: dict[str, Any]) -> sqlite3.Row:
    try:
        return state.store.create_group(tenant_id, product_id, fields, state.clock.now_int())
    except sqlite3.IntegrityError:
        raise conflict(f"A device group named {fields['Name']!r} already exists in this product "
                       "(names are compared in any case).") from None  # fmt: skip


def create_default_groups(state: ServiceState, tenant_id: str, product_id: str) -> list[sqlite3.Row]:
    """The product's default groups, creating those missing."""
    out = []
    for name, feed, policy in DEFAULT_GROUPS:
        row = state.store.group_named(tenant_id, product_id, name)
        if row is None:
            row = _create_group(state, tenant_id, product_id, {"Name": name, "OsFeedType": feed, "UpdatePolicy": policy})
        out.append(row)
    return out


class Tenant(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        row = state_of(request).store.tenant(principal.tenant)
        if row is None:
            raise not_found(f"No tenant {principal.tenant}.")
        return JSONResponse({"Id": row["id"], "Name": row["name"], "Roles": [principal.role]})


class Products(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        items = [product_json(r) for r in state_of(request).store.products(principal.tenant)]
        return JSONResponse({"ContinuationToken": None, "Items": items})

    async def post(self, request: Request) -> Response:
        """Product - Create: 202 with a (finished) Operation whose ResourceLocation is the product."""
        principal = tenant_principal(request, WRITE_ROLES)
        state = state_of(request)
        body = await read_json(request)
        check_fields(body, {"Name", "Description", "CreateDefaultGroups"})
        if "Name" not in body:
            raise bad_request("Name is required.")
        name = want_str(body, "Name", 50) or ""
        description = want_str(body, "Description", 100, nullable=True) if "Description" in body else None
        defaults = body.get("CreateDefaultGroups", False)
        if not isinstance(defaults, bool):
            raise bad_request("CreateDefaultGroups must be true or false.")
        try:
            row = state.store.create_product(principal.tenant, name, description, state.clock.now_int())
        except sqlite3.IntegrityError:
            raise conflict(f"A product named {name!r} already exists in this tenant.") from None
        if defaults:
            create_default_groups(state, principal.tenant, row["id"])
        location = f"/v2/tenants/{principal.tenant}/products/{row['id']}"
        op = state.store.create_operation(principal.tenant, OPERATION_CREATE_PRODUCT, location, state.clock.now_int())
        return JSONResponse(operation_json(op), status_code=202, headers={"Location": location})


class Product(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        return JSONResponse(product_json(_product(state_of(request), principal.tenant, request.path_params["productId"])))


def _product_named(state: ServiceState, tenant_id: str, name: str) -> sqlite3.Row:
    row = state.store.product_named(tenant_id, name)
    if row is None:
        raise not_found(f"No product named {name!r}.")
    return row


class ProductByName(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        return JSONResponse(product_json(_product_named(state_of(request), principal.tenant, request.path_params["productName"])))


class GroupInProductByName(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        state = state_of(request)
        product = _product_named(state, principal.tenant, request.path_params["productName"])
        name = request.path_params["deviceGroupName"]
        row = state.store.group_named(principal.tenant, product["id"], name)
        if row is None:
            raise not_found(f"No device group named {name!r} in product {product['name']!r}.")
        return JSONResponse(group_json(row))


class ProductGroups(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        product_id = request.path_params["productId"]
        _product(state_of(request), principal.tenant, product_id)
        return _group_page(request, principal.tenant, product_id)

    async def post(self, request: Request) -> Response:
        """Device Group - Create Defaults (no body): 200 with the product's default groups.

        testbed extension: with a DeviceGroupV2 body it creates that one group (201), as
        testbed's first API did; the documented create is POST /devicegroups."""
        principal = tenant_principal(request, WRITE_ROLES)
        state = state_of(request)
        product_id = request.path_params["productId"]
        _product(state, principal.tenant, product_id)
        body = await read_json(request, required=False)
        if not body:
            rows = create_default_groups(state, principal.tenant, product_id)
            return JSONResponse({"ContinuationToken": None, "Items": [group_json(r) for r in rows]})
        fields = group_fields(body, creating=True)
        _admin_only(principal, fields)
        return JSONResponse(group_json(_create_group(state, principal.tenant, product_id, fields)), status_code=201)


class Groups(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        return _group_page(request, principal.tenant, None)

    async def post(self, request: Request) -> Response:
        """Device Group - Create: 200 with the DeviceGroupV2."""
        principal = tenant_principal(request, WRITE_ROLES)
        state = state_of(request)
        body = await read_json(request)
        product_id = body.pop("ProductId", None)
        if not isinstance(product_id, str) or not product_id:
            raise bad_request("ProductId is required.")
        _product(state, principal.tenant, product_id.lower())
        fields = group_fields(body, creating=True)
        _admin_only(principal, fields)
        return JSONResponse(group_json(_create_group(state, principal.tenant, product_id.lower(), fields)))


class GroupDevices(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        state = state_of(request)
        group = _group(state, principal.tenant, request.path_params["deviceGroupId"])
        rows = state.store.devices_in_group(principal.tenant, group["id"])
        return JSONResponse({"ContinuationToken": None, "Items": [device_json(state, r) for r in rows]})


class Operation(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        principal = tenant_principal(request)
        row = state_of(request).store.operation(principal.tenant, request.path_params["operationId"])
        if row is None:
            raise not_found(f"No operation {request.path_params['operationId']}.")
        return JSONResponse(operation_json(row))


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
        _admin_only(principal, fields)
        try:
            state.store.update_group(group_id, group_columns(fields))
            state.forget_devices()  # cached consent/boundary of this group's devices
        except sqlite3.IntegrityError:
            raise conflict(f"A device group named {fields.get('Name')!r} already exists in this product.") from None
        return JSONResponse(group_json(_group(state, principal.tenant, group_id)))


class Devices(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        """Claim a device (Administrator or Contributor): 201 with its DeviceSecret, shown once."""
        principal = tenant_principal(request, WRITE_ROLES)
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
        claimed = state.store.device(device_id)
        assert claimed is not None  # claimed just above
        out = device_json(state, claimed)
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
        moved = state.store.device(device_id)
        assert moved is not None  # owned by the tenant (checked above) and just moved
        return JSONResponse(device_json(state, moved))


#: Paths are matched in lower case (PublicPathCase lowers them: the API's paths and ids are
#: case-insensitive), so every literal segment here is lower case.
ROUTES = [
    Route("/v2/tenants", Tenants),
    Route(TENANT, Tenant),
    Route(TENANT + "/operations/{operationId}", Operation),
    Route(TENANT + "/products", Products),
    Route(TENANT + "/products/name/{productName}", ProductByName),
    Route(TENANT + "/products/name/{productName}/devicegroups/name/{deviceGroupName}", GroupInProductByName),
    Route(TENANT + "/products/{productId}", Product),
    Route(TENANT + "/products/{productId}/devicegroups", ProductGroups),
    Route(TENANT + "/devicegroups", Groups),
    Route(TENANT + "/devicegroups/{deviceGroupId}", Group),
    Route(TENANT + "/devicegroups/{deviceGroupId}/devices", GroupDevices),
    Route(TENANT + "/devices", Devices),
    Route(TENANT + "/devices/{deviceId}", Device),
    Route(TENANT + "/devices/{deviceId}/devicegroup", DeviceGroupOfDevice),
]
