"""A wire tap in front of the service: what reached the service's door, per device.

Boards dial ``10.0.2.2:<tap port>``; the tap (on 127.0.0.1) reads each
request's head (the device API uses one request per connection), records
who asked for what and how many body bytes came, and forwards everything
both ways unchanged to the real service. So "no request at the service" is
an observation, not an inference from log text, and faults the service
injects (hang, drip) reach the board untouched.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from testbed.contract.device_api import AUTHORIZATION, CRASHDUMPS_PREFIX, device_id_of_authorization


@dataclass
class TappedRequest:
    t: float  # host monotonic when the head was complete
    device_id: str
    method: str
    path: str
    content_length: int
    body_bytes: int = 0  # bytes after the head seen from the client (so far)
    status: int | None = None


class WireTap:
    """Run with ``start()`` / ``stop()`` (or as a context manager); ``port`` is where boards dial."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.requests: list[TappedRequest] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ public
    def start(self) -> WireTap:
        self._thread = threading.Thread(target=self._run, name="wire-tap", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the wire tap did not start within 10 s")
        if self._error:
            raise RuntimeError(f"the wire tap could not start: {self._error}")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> WireTap:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[TappedRequest]:
        with self._lock:
            return list(self.requests)

    def for_device(self, device_id: str, prefix: str = CRASHDUMPS_PREFIX) -> list[TappedRequest]:
        return [r for r in self.snapshot() if r.device_id == device_id and r.path.startswith(prefix)]

    # ------------------------------------------------------------------ internals
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, 0))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 (reported to start())
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            # let every cancelled connection run its cleanup before the loop closes
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        record: TappedRequest | None = None
        head = bytearray()

        async def client_to_service() -> None:
            nonlocal record
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    if record is None:
                        head.extend(data)
                        end = head.find(b"\r\n\r\n")
                        if end >= 0:
                            record = _parse_head(bytes(head[:end]))
                            record.body_bytes = len(head) - end - 4
                            with self._lock:
                                self.requests.append(record)
                        elif len(head) > 65536:
                            record = TappedRequest(time.monotonic(), "", "?", "?", 0, len(head))
                            with self._lock:
                                self.requests.append(record)
                    else:
                        record.body_bytes += len(data)
                    up_writer.write(data)
                    await up_writer.drain()
                if up_writer.can_write_eof():
                    up_writer.write_eof()
            except (OSError, asyncio.CancelledError):
                pass

        async def service_to_client() -> None:
            first = True
            try:
                while True:
                    data = await up_reader.read(65536)
                    if not data:
                        break
                    if first and record is not None and data.startswith(b"HTTP/"):
                        try:
                            record.status = int(data.split(b" ", 2)[1])
                        except (IndexError, ValueError):
                            pass
                    first = False
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.CancelledError):
                pass

        up = asyncio.ensure_future(client_to_service())
        down = asyncio.ensure_future(service_to_client())
        try:
            await down
            await asyncio.wait_for(up, 1.0)
        except (TimeoutError, asyncio.CancelledError, OSError):
            up.cancel()
        finally:
            for w in (writer, up_writer):
                try:
                    w.close()
                except OSError:
                    pass


def _parse_head(head: bytes) -> TappedRequest:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("?", "?")
    device = ""
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if name == AUTHORIZATION.lower():
            device = device_id_of_authorization(value) or ""
        elif name == "content-length" and value.isdigit():
            length = int(value)
    return TappedRequest(time.monotonic(), device, method, path, length)
