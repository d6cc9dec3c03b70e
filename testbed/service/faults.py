"""Fault injection on the device API (control API only): delay, hang, drip, status.

A pure ASGI middleware in front of ``/device/``. A fault applies to the next
``count`` device requests (all of them while ``count`` is None) and then
clears itself.

- ``delay``: wait ``delayMs`` before handling the request normally.
- ``hang``: accept and never answer: the request is held until the client
  goes away (clearing or changing the fault affects only later requests).
  The request is not handled, so nothing is stored.
- ``drip``: handle the request normally, then send the response one byte at
  a time, ``delayMs`` (default 200) apart.
- ``status``: answer ``status`` (a 4xx or 5xx) with a JSON error at once,
  without handling the request.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from typing import Any

from testbed.contract import device_api
from testbed.contract.errors import error_body

MODES = ("delay", "hang", "drip", "status")


@dataclass
class Fault:
    mode: str
    delayMs: int = 0  # noqa: N815 (wire name)
    status: int = 503
    count: int | None = None
    applied: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    def __init__(self) -> None:
        self.current: Fault | None = None

    def set(self, fault: Fault) -> None:
        self.current = fault

    def clear(self) -> None:
        self.current = None

    def take(self) -> Fault | None:
        fault = self.current
        if fault is None:
            return None
        fault.applied += 1
        if fault.count is not None and fault.applied >= fault.count:
            self.current = None
        return fault


class FaultMiddleware:
    def __init__(self, app, faults: Faults, prefix: str = device_api.PREFIX + "/") -> None:
        self.app = app
        self.faults = faults
        self.prefix = prefix

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        fault = self.faults.take()
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.mode == "delay":
            await asyncio.sleep(fault.delayMs / 1000)
            await self.app(scope, receive, send)
        elif fault.mode == "status":
            await self._status(fault, send)
        elif fault.mode == "hang":
            await self._hang(receive, send)
        elif fault.mode == "drip":
            await self._drip(fault, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _status(self, fault: Fault, send) -> None:
        body = json.dumps(
            error_body("InjectedFault", "A fault injected by the testbed control API.", f"status {fault.status}")
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if fault.status == 429:
            headers.append((device_api.RETRY_AFTER_HEADER.lower().encode(), b"1"))
        await send({"type": "http.response.start", "status": fault.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _hang(self, receive, send) -> None:
        """Never answer: wait until the client goes away (clearing the fault later does not
        release requests already hung; service shutdown does, after its grace period)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    async def _drip(self, fault: Fault, scope, receive, send) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start.get("status", 200), "headers": headers})
        pause = (fault.delayMs or 200) / 1000
        for i in range(len(body)):
            await send({"type": "http.response.body", "body": body[i : i + 1], "more_body": True})
            await asyncio.sleep(pause)
        await send({"type": "http.response.body", "body": b""})
