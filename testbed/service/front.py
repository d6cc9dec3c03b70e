"""The service's HTTP front: uvicorn's httptools protocol with the limits it lacks.

uvicorn with httptools has no limit on the request header block (httptools
accumulates a header as it arrives, so one huge header costs memory and
super-linear parse time), no timeout for a connection that never finishes its
headers or its body, and its ``limit_concurrency`` answers 503 per request but
still holds every idle connection. :class:`GuardedProtocol` adds, per connection:

- **header block**: the bytes of a request's header block (request line and every
  header, as received) are counted while it arrives; past ``max_header_bytes`` the
  service answers ``431`` and closes, without parsing further;
- **header timeout**: from the connection's start (or a request's first byte on a
  kept-alive connection) the request's headers must be complete within
  ``header_timeout`` seconds, else the connection is closed (``408`` when part of a
  request came);
- **body timeout**: from the end of its headers the request's body must be complete
  within ``body_timeout`` seconds, else the connection is closed (the app sees a
  disconnect: one log line, nothing stored);
- **connections**: at most ``max_connections`` open at once; one more is answered
  ``503`` and closed at once (the listen backlog holds those not yet accepted).

Idle kept-alive connections close after ``keep_alive_timeout`` (uvicorn's own
timer). The request scope carries ``extensions["testbed.close"]``: the ``drop``
fault uses it to close the connection instead of answering.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from testbed.contract.errors import error_body
from testbed.service.faults import CLOSE_EXTENSION
from testbed.service.settings import ServiceConfig

log = logging.getLogger("testbed.service.front")

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def raw_error(status: int, code: str, detail: str) -> bytes:
    """A complete HTTP/1.1 error response with the service's JSON error body; the connection closes."""
    body = json.dumps(error_body(code, REASONS[status].decode(), detail)).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, REASONS[status], len(body))
    )
    return head + body


class GuardedProtocol(HttpToolsProtocol):
    """One connection, with the limits of :func:`guarded_protocol`'s config."""

    max_header_bytes = 16 * 1024
    header_timeout = 10.0
    body_timeout = 30.0
    max_connections = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True
        self._header_bytes = 0  # of the current request's header block, as received
        self._seen_request_bytes = False
        self._timer: asyncio.TimerHandle | None = None
        self._rejected = False

    # connection --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._reject(503, "TooManyConnections", f"the service holds {self.max_connections} connections at most")
            return
        self._arm(self.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._awaiting_headers and self._header_bytes > self.max_header_bytes and not self._rejected:
            self._reject(431, "HeadersTooLarge", f"the request header block is over {self.max_header_bytes} bytes")

    # parser callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._seen_request_bytes = True
        if self._timer is None:  # a kept-alive connection's next request
            self._arm(self.header_timeout, self._header_timed_out)
        # uvicorn types an extension as a dict (as ASGI's own ones are); this one is the callable itself
        self.scope["extensions"] = {CLOSE_EXTENSION: self._close}  # type: ignore[dict-item]

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._disarm()
        # The exact size of the block (the raw count may include body bytes of the same chunk).
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) + 32
        if size > self.max_header_bytes:
            self._rejected = True
            self.transport.write(
                raw_error(431, "HeadersTooLarge", f"the request header block is over {self.max_header_bytes} bytes")
            )
            self.transport.close()
            return
        self._header_bytes = 0
        self._arm(self.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        self._disarm()
        self._seen_request_bytes = False
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._rejected and not self.transport.is_closing():
            self._rejected = True
            super().send_400_response(msg)

    # timers and closing -------------------------------------------------------------------
    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_timed_out(self) -> None:
        self._timer = None
        if self._seen_request_bytes:
            self._reject(408, "HeaderTimeout", f"the request headers did not arrive within {self.header_timeout} s")
        else:
            self._close()

    def _body_timed_out(self) -> None:
        self._timer = None
        log.debug(
            "%s:%s: the request body did not arrive within %s s; connection closed",
            *(self.client or ("?", "?")),
            self.body_timeout,
        )
        self._close()

    def _reject(self, status: int, code: str, detail: str) -> None:
        self._rejected = True
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(raw_error(status, code, detail))
            self.transport.close()

    def _close(self) -> None:
        """Close the connection now (nothing more is sent)."""
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(config: ServiceConfig) -> type[GuardedProtocol]:
    """The protocol class with ``config``'s limits (uvicorn makes one instance per connection)."""
    return type(
        "ServiceProtocol",
        (GuardedProtocol,),
        {
            "max_header_bytes": config.max_header_bytes,
            "header_timeout": config.header_timeout,
            "body_timeout": config.body_timeout,
            "max_connections": config.max_connections,
        },
    )
