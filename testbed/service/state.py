"""The service's shared state: one small typed object, reached as ``request.app.state.service``."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from testbed.service.clock import Clock
from testbed.service.faults import Faults
from testbed.service.ingest import Ingest
from testbed.service.recovery import check_layout
from testbed.service.settings import ServiceConfig
from testbed.service.store import Store

if TYPE_CHECKING:
    from testbed.service.auth import DevicePrincipal, Principal


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


@dataclass
class ServiceState:
    config: ServiceConfig
    store: Store
    ingest: Ingest
    clock: Clock
    faults: Faults
    rate: RateLimiter
    #: bearer token -> its principal (tokens never change once made)
    principals: dict[str, Principal] = field(default_factory=dict)
    #: device id -> the device with its group's consent and boundary. Devices and groups
    #: change only through this process's API, which drops the entries it changes; the
    #: ingest writer re-checks consent in the database anyway.
    devices: dict[str, DevicePrincipal] = field(default_factory=dict)
    #: tenant -> (ingest version, its throttled signatures)
    throttled: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    sweeper: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, config: ServiceConfig) -> ServiceState:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        check_layout(config.data_dir)  # before the schema is made on an older database
        store = Store(config.data_dir / "service.db")
        store.disable_autocheckpoint()  # the ingest's checkpointer checkpoints
        offset = store.get_meta("clock_offset")
        clock = Clock(float(offset) if offset else 0.0)
        ingest = Ingest(
            config.data_dir,
            clock,
            config.throttle_limit,
            config.retention_seconds,
            max_inflated=config.max_inflated_bytes,
            machines=core_machines(config),
        )
        rate = RateLimiter(config.rate_limit_per_minute, config.rate_limit_burst)
        return cls(config, store, ingest, clock, Faults(), rate)

    def throttled_signatures(self, tenant_id: str) -> list[str]:
        """The tenant's throttled signatures, recomputed only after dump rows changed."""
        version = self.ingest.version
        cached = self.throttled.get(tenant_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        signatures = self.store.throttled_signatures(tenant_id, self.config.throttle_limit)
        if len(self.throttled) > 10_000:
            self.throttled.clear()
        self.throttled[tenant_id] = (version, signatures)
        return signatures

    def forget_devices(self, device_id: str | None = None) -> None:
        """Drop cached device principals (all, or one) after their group or device changed."""
        if device_id is None:
            self.devices.clear()
        else:
            self.devices.pop(device_id, None)


def core_machines(config: ServiceConfig) -> tuple[str, ...]:
    """The kinds of ELF core an upload may hold: the boards' ARM, and x86-64 when asked."""
    return ("arm", "x86_64") if config.accept_host_cores else ("arm",)


def state_of(request: Request) -> ServiceState:
    return request.app.state.service


async def read_dump(state: ServiceState, row: sqlite3.Row) -> bytes | None:
    """A dump's bytes from its segment (durable before its 201, so there is nothing to wait
    for); None when retention removed its segment after the row was read."""
    return await asyncio.to_thread(
        state.ingest.segments.read, row["segment"], row["seg_offset"], row["size"], row["id"]
    )
