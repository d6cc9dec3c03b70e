"""HTTP/1.1 as the firmware speaks it, with one total deadline (no Locust import: usable anywhere).

Under Locust (gevent-patched sockets) the same code is cooperative.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from testbed.deadline import Deadline


class BoardHttpError(Exception):
    """The exchange failed before the deadline (refused, reset, bad response)."""


class DeadlineExceeded(Exception):
    """The device's total deadline passed; the connection was closed."""


class BoardHttp:
    """HTTP/1.1 as the firmware speaks it: a new connection per request, Connection: close.

    Every step (connect, send, each read) is bounded by the time left until
    ``deadline`` (one :class:`testbed.deadline.Deadline` per crash), so the whole exchange ends
    at the deadline however the server behaves (slow, hung, dripping bytes).
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"BoardHttp needs an http:// URL, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes, deadline: Deadline
    ) -> tuple[int, dict[str, str], bytes]:
        def left() -> float:
            remaining = deadline.remaining
            if remaining is None:
                raise ValueError("a device's deadline must have a timeout")
            if remaining <= 0:
                raise DeadlineExceeded(f"{method} {path}: deadline passed")
            return remaining

        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: close",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        sock: socket.socket | None = None
        try:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=left())
                sock.settimeout(left())
                sock.sendall(data)
                buf = b""
                while b"\r\n\r\n" not in buf:
                    sock.settimeout(left())
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise BoardHttpError(f"{method} {path}: connection closed before the response head")
                    buf += chunk
                head_raw, rest = buf.split(b"\r\n\r\n", 1)
                lines = head_raw.decode("latin-1").split("\r\n")
                try:
                    status = int(lines[0].split(" ", 2)[1])
                except (IndexError, ValueError) as exc:
                    raise BoardHttpError(f"{method} {path}: bad status line {lines[0]!r}") from exc
                resp_headers = {}
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    resp_headers[key.strip().lower()] = value.strip()
                length = int(resp_headers.get("content-length", "-1"))
                while length < 0 or len(rest) < length:
                    sock.settimeout(left())
                    chunk = sock.recv(65536)
                    if not chunk:
                        if length < 0:
                            break
                        raise BoardHttpError(f"{method} {path}: connection closed mid-body")
                    rest += chunk
                return status, resp_headers, rest
            except TimeoutError as exc:  # socket.timeout: a step used up the time left
                raise DeadlineExceeded(f"{method} {path}: deadline passed") from exc
            except OSError as exc:
                raise BoardHttpError(f"{method} {path}: {exc}") from exc
        finally:
            if sock is not None:
                sock.close()
