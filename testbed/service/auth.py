"""Authentication and principals: who a request is, for every API.

- tenant and Support tokens (``Authorization: Bearer <token>``) -> :class:`Principal`;
- devices (the credential of :mod:`testbed.contract.device_api`) -> :class:`DevicePrincipal`;
- the control token (``Bearer``, compared in constant time);
- the per-device rate limit of the crash routes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.requests import Request

from testbed.contract import device_api
from testbed.service.errors import ApiError, forbidden, not_found, unauthorized
from testbed.service.state import ServiceState, state_of
from testbed.service.store import TENANT_ROLES, hash_secret

SUPPORT = "Support"
ADMINISTRATOR = "Administrator"
WRITE_ROLES = (ADMINISTRATOR, "Contributor")
READ_ROLES = TENANT_ROLES
#: Bound the memory of a huge fleet's cached device principals.
MAX_CACHED_DEVICES = 200_000


@dataclass(frozen=True)
class Principal:
    """Who a bearer token belongs to."""

    token_hash: str
    tenant_id: str | None
    role: str

    @property
    def label(self) -> str:
        return f"{self.role}:{self.token_hash[:12]}"

    @property
    def tenant(self) -> str:
        """The tenant of a tenant role ("" for Support, which has none)."""
        return self.tenant_id or ""


@dataclass(frozen=True)
class DevicePrincipal:
    """A claimed device with its group's consent and data boundary, as of the lookup."""

    device_id: str
    tenant_id: str
    group_id: str
    secret_hash: str
    allow_crash_dumps: bool
    boundary: str


def _authorization(request: Request) -> str:
    return request.headers.get(device_api.AUTHORIZATION, "")


def bearer(request: Request) -> Principal:
    scheme, _, token = _authorization(request).partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Send Authorization: Bearer <token>.")
    token = token.strip()
    state = state_of(request)
    principal = state.principals.get(token)
    if principal is None:
        token_hash = hash_secret(token)
        row = state.store.token(token_hash)
        if row is None:
            raise unauthorized("The token is not known.")
        principal = Principal(token_hash=token_hash, tenant_id=row["tenant_id"], role=row["role"])
        state.principals[token] = principal
    return principal


def tenant_principal(request: Request, roles: tuple[str, ...] = READ_ROLES) -> Principal:
    """A tenant role's principal; the ``tenantId`` path parameter must be its tenant (404 otherwise)."""
    principal = bearer(request)
    if principal.role == SUPPORT:
        raise forbidden("Support tokens cannot use the tenant API.")
    tenant_id = request.path_params.get("tenantId")
    if tenant_id is not None and tenant_id != principal.tenant_id:
        raise not_found(f"No tenant {tenant_id}.")
    if principal.role not in roles:
        raise forbidden(f"Role {principal.role} may not do this; needs one of {', '.join(roles)}.")
    return principal


def support_principal(request: Request) -> Principal:
    principal = bearer(request)
    if principal.role != SUPPORT:
        raise forbidden("Only Support tokens may use the support API.")
    return principal


def device_principal(request: Request) -> DevicePrincipal:
    credential = device_api.parse_device_authorization(_authorization(request))
    if credential is None:
        raise unauthorized(f"Send {device_api.AUTHORIZATION}: {device_api.device_authorization('<deviceId>', '<secret>')}.")
    state = state_of(request)
    device = state.devices.get(credential.device_id)
    if device is None:
        device = lookup_device(state, credential.device_id)
        if device is not None:
            if len(state.devices) >= MAX_CACHED_DEVICES:
                state.devices.clear()
            state.devices[credential.device_id] = device
    if device is None or not hmac.compare_digest(device.secret_hash, hash_secret(credential.secret)):
        raise unauthorized("Unknown device or wrong secret.")
    return device


def lookup_device(state: ServiceState, device_id: str) -> DevicePrincipal | None:
    row = state.store.device_with_group(device_id)
    if row is None:
        return None
    return DevicePrincipal(
        device_id=row["device_id"],
        tenant_id=row["tenant_id"],
        group_id=row["group_id"],
        secret_hash=row["secret_hash"],
        allow_crash_dumps=bool(row["allow_crash_dumps"]),
        boundary=row["boundary"],
    )


def control(request: Request) -> None:
    """The control API's token (a new one at every start)."""
    scheme, _, token = _authorization(request).partition(" ")
    expected = state_of(request).config.control_token or ""
    if scheme.lower() != "bearer" or not expected or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise unauthorized("The control API needs the control token.")


def rate_limit(request: Request, device_id: str) -> None:
    wait = state_of(request).rate.check(device_id)
    if wait > 0:
        retry = max(1, int(wait + 0.999))
        raise ApiError(
            429,
            "TooManyRequests",
            "The device is over its rate limit.",
            f"Retry after {retry} s.",
            {device_api.RETRY_AFTER_HEADER: str(retry)},
        )
