"""The one HTTP client (httpx) of the mock Security Service.

- ``Client``: the public API (``/v2``) with a tenant bearer token, and the
  support API with a Support token;
- ``DeviceClient``: the device API as a board speaks it;
- ``ControlClient``: the testbed control API (clock, faults, tenants, tokens).

Every non-2xx answer raises ``ServiceError`` carrying the status and the
service's error array, except where a method documents that it returns the
raw ``httpx.Response`` (uploads, whose 4xx are part of what tests look at).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from testbed import settings
from testbed.contract import device_api as api
from testbed.contract.device_api import IntentRequest
from testbed.contract.errors import ERROR_CODE, ERROR_DETAIL, ERROR_TITLE

DEFAULT_TIMEOUT = 30.0


class ServiceError(Exception):
    """A non-2xx answer (or no answer) from the service."""

    def __init__(self, status: int, errors: list[dict[str, Any]], method: str, url: str) -> None:
        self.status = status
        self.errors = errors
        self.method = method
        self.url = url
        details = "; ".join(
            f"{e.get(ERROR_CODE, '?')}: {e.get(ERROR_DETAIL) or e.get(ERROR_TITLE, '')}" for e in errors
        )
        super().__init__(f"{method} {url} -> {status}: {details or 'no error body'}")

    @property
    def code(self) -> str | None:
        return self.errors[0].get(ERROR_CODE) if self.errors else None


def _errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return [{"ErrorCode": "NonJson", "Title": response.text[:200], "Detail": ""}]
    if isinstance(body, list):
        return [e for e in body if isinstance(e, dict)]
    return [{"ErrorCode": "Unexpected", "Title": str(body)[:200], "Detail": ""}]


def check(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    raise ServiceError(
        response.status_code, _errors_of(response), response.request.method, str(response.request.url)
    )


class _Base:
    def __init__(
        self,
        url: str,
        auth_header: str | None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {api.AUTHORIZATION: auth_header} if auth_header else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceError(0, [{"ErrorCode": "Unreachable", "Title": str(exc) or type(exc).__name__, "Detail": f"is the service running at {self.url}?"}], method, self.url + path) from exc
        return check(response)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()


class Client(_Base):
    """Public API (tenant token) and support API (Support token)."""

    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        tenant_id: str | None = None,
    ) -> None:
        super().__init__(url, f"Bearer {token}", timeout, transport)
        self.token = token
        #: The tenant this client works in, when known (fixtures set it).
        self.tenant_id = tenant_id

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None) -> Client:
        url = url or settings.get(settings.SERVICE_URL)
        token = token or settings.get(settings.TOKEN)
        if not url:
            raise ValueError("no service URL: pass --service-url or set TESTBED_SERVICE_URL")
        if not token:
            raise ValueError("no token: pass --token or set TESTBED_TOKEN")
        return cls(url, token)

    # tenants and products -------------------------------------------------------------
    def tenants(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v2/tenants")

    def default_tenant_id(self) -> str:
        tenants = self.tenants()
        if len(tenants) != 1:
            raise ValueError(f"the token sees {len(tenants)} tenants; name one with --tenant")
        return tenants[0]["Id"]

    def resolve_tenant(self, ref: str | None) -> str:
        if not ref:
            return self.default_tenant_id()
        for t in self.tenants():
            if ref in (t["Id"], t["Name"]):
                return t["Id"]
        raise ValueError(f"no tenant {ref!r} for this token")

    def products(self, tenant_id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/v2/tenants/{tenant_id}/products")["Items"]

    def create_product(self, tenant_id: str, name: str, description: str | None = None,
                       create_default_groups: bool = False) -> dict[str, Any]:  # fmt: skip
        """Create a product; with ``create_default_groups``, also its five default device groups."""
        body: dict[str, Any] = {"Name": name}
        if description is not None:
            body["Description"] = description
        if create_default_groups:
            body["CreateDefaultGroups"] = True
        response = self._request("POST", f"/v2/tenants/{tenant_id}/products", json=body)
        answer = response.json()
        if response.status_code == 202:  # an Operation: the product is at its ResourceLocation
            return self._json("GET", answer["ResourceLocation"])
        return answer

    def create_default_device_groups(self, tenant_id: str, product_id: str) -> list[dict[str, Any]]:
        """The product's default device groups (those missing are created)."""
        return self._json("POST", f"/v2/tenants/{tenant_id}/products/{product_id}/devicegroups")["Items"]

    def resolve_product(self, tenant_id: str, ref: str) -> dict[str, Any]:
        for p in self.products(tenant_id):
            if ref in (p["Id"], p["Name"]):
                return p
        raise ValueError(f"no product {ref!r} in tenant {tenant_id}")

    # device groups ----------------------------------------------------------------------
    def create_device_group(self, tenant_id: str, product_id: str, name: str, **fields: Any) -> dict[str, Any]:
        return self._json("POST", f"/v2/tenants/{tenant_id}/devicegroups", json={"Name": name, "ProductId": product_id, **fields})

    def device_groups_page(
        self,
        tenant_id: str,
        max_page_size: int | None = None,
        continuation: str | None = None,
        product_id: str | None = None,
    ) -> dict[str, Any]:
        path = (
            f"/v2/tenants/{tenant_id}/products/{product_id}/devicegroups"
            if product_id
            else f"/v2/tenants/{tenant_id}/devicegroups"
        )
        params = {"maxPageSize": max_page_size} if max_page_size else None
        headers = {"Sphere-Continuation": continuation} if continuation else None
        return self._json("GET", path, params=params, headers=headers)

    def iter_device_groups(
        self, tenant_id: str, max_page_size: int | None = None, product_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every device group, following ContinuationToken pages to the end."""
        continuation = None
        seen: set[str] = set()
        while True:
            page = self.device_groups_page(tenant_id, max_page_size, continuation, product_id)
            yield from page["Items"]
            continuation = page.get("ContinuationToken")
            if not continuation:
                return
            if continuation in seen:
                raise ServiceError(0, [{"ErrorCode": "PagingLoop", "Title": "the service repeated a continuation token", "Detail": continuation}], "GET", self.url)
            seen.add(continuation)

    def device_groups(self, tenant_id: str, max_page_size: int | None = None, product_id: str | None = None) -> list[dict[str, Any]]:
        return list(self.iter_device_groups(tenant_id, max_page_size, product_id))

    def device_group(self, tenant_id: str, group_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v2/tenants/{tenant_id}/devicegroups/{group_id}")

    def update_device_group(self, tenant_id: str, group_id: str, **fields: Any) -> dict[str, Any]:
        return self._json("PATCH", f"/v2/tenants/{tenant_id}/devicegroups/{group_id}", json=fields)

    def resolve_device_group(self, tenant_id: str, ref: str, product: str | None = None) -> dict[str, Any]:
        """A group by id, or by name (within ``product`` if given; a name must then be unique)."""
        product_id = self.resolve_product(tenant_id, product)["Id"] if product else None
        matches = []
        for g in self.iter_device_groups(tenant_id, 1000, product_id):
            if g["Id"] == ref:
                return g
            if g["Name"] == ref:
                matches.append(g)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            where = f" in product {product!r}" if product else ""
            raise ValueError(f"no device group {ref!r}{where}")
        raise ValueError(f"{len(matches)} device groups are named {ref!r}; give --product or the group id")

    # devices ----------------------------------------------------------------------------
    def claim_device(self, tenant_id: str, group_id: str, device_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"DeviceGroupId": group_id}
        if device_id:
            body["DeviceId"] = device_id
        return self._json("POST", f"/v2/tenants/{tenant_id}/devices", json=body)

    def devices_in_group(self, tenant_id: str, group_id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/v2/tenants/{tenant_id}/devicegroups/{group_id}/devices")["Items"]

    def device(self, tenant_id: str, device_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v2/tenants/{tenant_id}/devices/{device_id}")

    def move_device(self, tenant_id: str, device_id: str, group_id: str) -> dict[str, Any]:
        return self._json("PUT", f"/v2/tenants/{tenant_id}/devices/{device_id}/devicegroup", json={"Id": group_id})

    # support API (Support token) ----------------------------------------------------------
    def support_dumps(self, reason: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        headers = {"X-Support-Reason": reason} if reason else None
        params = {k: v for k, v in filters.items() if v is not None}
        return self._json("GET", "/support/v1/crashdumps", params=params, headers=headers)["Items"]

    def support_read(self, dump_id: str, reason: str) -> bytes:
        return self._request("GET", f"/support/v1/crashdumps/{dump_id}", headers={"X-Support-Reason": reason}).content

    def audit(self, after: int = 0) -> list[dict[str, Any]]:
        return self._json("GET", "/support/v1/audit", params={"after": after})["Items"]


class DeviceClient(_Base):
    """The device API, authenticated with the secret issued at claim."""

    def __init__(self, url: str, device_id: str, secret: str, timeout: float = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, api.device_authorization(device_id, secret), timeout, transport)
        self.device_id = device_id

    def sync(self, **info: Any) -> dict[str, Any]:
        return self._json("POST", api.SYNC_PATH, json=info)

    def intent(self, signature: str, size: int, component_class: str = "App", component: str = "app") -> dict[str, Any]:
        return self._json(
            "POST",
            api.INTENT_PATH,
            json={
                IntentRequest.SIGNATURE: signature,
                IntentRequest.SIZE: size,
                IntentRequest.COMPONENT_CLASS: component_class,
                IntentRequest.COMPONENT: component,
            },
        )

    def upload_raw(
        self,
        body: bytes,
        signature: str,
        component_class: str = "App",
        component: str = "app",
        content_type: str = "application/gzip",
        crash_time: int | None = None,
        extra_headers: dict[str, str] | None = None,
        upload_id: str | None = None,
    ) -> httpx.Response:
        """POST a dump and return the response whatever its status."""
        headers = {
            api.CONTENT_TYPE: content_type,
            api.SIGNATURE_HEADER: signature,
            api.COMPONENT_CLASS_HEADER: component_class,
            api.COMPONENT_NAME_HEADER: component,
        }
        if crash_time is not None:
            headers[api.CRASH_TIME_HEADER] = str(crash_time)
        if upload_id is not None:
            headers[api.UPLOAD_ID_HEADER] = upload_id
        headers.update(extra_headers or {})
        return self.http.post(api.UPLOAD_PATH, content=body, headers=headers)

    def upload(self, body: bytes, signature: str, **kwargs: Any) -> dict[str, Any]:
        """POST a dump; returns ``{"id", "region"}`` or ``{"skipped": ...}``; raises on 4xx/5xx."""
        return check(self.upload_raw(body, signature, **kwargs)).json()


class ControlClient(_Base):
    """The testbed control API (service started with --enable-control)."""

    def __init__(self, url: str, control_token: str, timeout: float = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, f"Bearer {control_token}", timeout, transport)

    def create_tenant(self, name: str) -> dict[str, Any]:
        """A new tenant: ``{"Id", "Name", "Token", "Role": "Administrator"}``."""
        return self._json("POST", "/testbed/v1/tenants", json={"name": name})

    def create_token(self, role: str, tenant_id: str | None = None, label: str = "") -> str:
        body: dict[str, Any] = {"role": role, "label": label}
        if tenant_id is not None:
            body["tenantId"] = tenant_id
        return self._json("POST", "/testbed/v1/tokens", json=body)["token"]

    def clock(self) -> dict[str, Any]:
        return self._json("GET", "/testbed/v1/clock")

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the service clock forward (retention runs before this returns)."""
        return self._json("POST", "/testbed/v1/clock", json={"advance": seconds})

    def set_clock(self, epoch: float) -> dict[str, Any]:
        return self._json("POST", "/testbed/v1/clock", json={"set": epoch})

    def set_fault(self, mode: str, delay_ms: int = 0, status: int = 503, count: int | None = None,
                  api: str = "device") -> dict[str, Any]:  # fmt: skip
        """Inject a fault into the next ``count`` requests of the device (or the public) API."""
        body = {"mode": mode, "delayMs": delay_ms, "status": status, "count": count, "api": api}
        return self._json("POST", "/testbed/v1/faults", json=body)["fault"]

    def fault(self) -> dict[str, Any] | None:
        return self._json("GET", "/testbed/v1/faults")["fault"]

    def clear_faults(self) -> None:
        self._request("DELETE", "/testbed/v1/faults")

    def sweep(self) -> int:
        return self._json("POST", "/testbed/v1/sweep")["expired"]

    def settle(self) -> None:
        """Wait until every acknowledged dump's blob file exists (written just after the 201)."""
        self._request("POST", "/testbed/v1/settle")

    def reset(self) -> dict[str, Any]:
        """Clear faults, the clock offset and rate-limit buckets (data stays)."""
        return self._json("POST", "/testbed/v1/reset")

    def stats(self) -> dict[str, Any]:
        return self._json("GET", "/testbed/v1/stats")

    # the testbed's evidence (no audit rows: not the product's support access) ----------------
    def dumps(self, **filters: Any) -> list[dict[str, Any]]:
        """Every durable dump, oldest first; filters: tenantId, deviceId, signature, region."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._json("GET", "/testbed/v1/dumps", params=params)["Items"]

    def blob(self, dump_id: str) -> bytes:
        """A stored dump's bytes (the gzip as uploaded); ServiceError 404 when unknown."""
        return self._request("GET", f"/testbed/v1/dumps/{dump_id}/blob").content

    def storage(self) -> dict[str, dict[str, int]]:
        """Per region, what its store physically holds: ``{"dumps", "bytes", "otherFiles"}``."""
        return self._json("GET", "/testbed/v1/storage")["regions"]

    def config(self) -> dict[str, Any]:
        """The service's effective settings (every key of testbed.service.settings.SETTINGS)."""
        return self._json("GET", "/testbed/v1/config")
