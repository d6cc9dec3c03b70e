"""What the service stored, as the checks after a load run read it: through the service's control API.

The checks never open the service's database or its blob store, and do not use
the product's audited support access: they ask the running service's evidence
paths (``GET /testbed/v1/dumps``, ``.../dumps/{id}/blob``, docs/service.md) for
the run's tenant's durable dumps and their stored bytes. The listing waits
for the service's writer to settle, so nothing is polled.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from testbed.service.client import ControlClient, ServiceError


class Evidence:
    """The durable dumps of one tenant on the service, and their bytes."""

    def __init__(self, url: str, control_token: str, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self._client = ControlClient(url, control_token)

    def __enter__(self) -> Evidence:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def dumps(self) -> list[dict[str, Any]]:
        """Every durable dump of the tenant (``id``, ``signature``, ``size``, ``sha256``, ...)."""
        return self._client.dumps(tenantId=self.tenant_id)

    def blob(self, dump_id: str) -> bytes | None:
        """The stored bytes of one dump; None when the service does not know it."""
        try:
            return self._client.blob(dump_id)
        except ServiceError as exc:
            if exc.status == 404:
                return None
            raise

    def stored_per_signature(self) -> Counter[str]:
        return Counter(str(d["signature"]) for d in self.dumps())
