"""What the service stored, as the checks after a load run read it: through the service's own API.

The checks never open the service's database or its blob store; they ask the
running service (its control API's evidence paths, docs/service.md) for the
run's tenant's durable dumps and their stored bytes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from testbed.service.client import Client, ServiceError

#: the reason the checks give for reading dumps
REASON = "load run checks"


class Evidence:
    """The dumps one tenant has on the service (durable ones only) and their bytes."""

    def __init__(self, url: str, support_token: str, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self._client = Client(url, support_token)

    def __enter__(self) -> Evidence:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def dumps(self) -> list[dict[str, Any]]:
        """Every stored dump of the tenant (``id``, ``signature``, ``size``, ...)."""
        return self._client.support_dumps(reason=REASON, tenantId=self.tenant_id, limit=10_000)

    def blob(self, dump_id: str) -> bytes | None:
        """The stored bytes of one dump; None when the service does not know it."""
        try:
            return self._client.support_read(dump_id, REASON)
        except ServiceError as exc:
            if exc.status == 404:
                return None
            raise

    def stored_per_signature(self) -> Counter[str]:
        return Counter(str(d["signature"]) for d in self.dumps())
