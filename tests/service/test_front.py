"""Issue 10 items 4, 5 and 6: the HTTP front bounds the header block, closes slow
connections, caps connections, and a client leaving mid-body is one log line.

Raw sockets against a real service on 127.0.0.1 with short timeouts set by config.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from service_helpers import new_signature

from testbed.contract import device_api as api
from testbed.service.client import Client, ControlClient, DeviceClient
from testbed.service.process import ServiceProcess

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        tmp_path_factory.mktemp("front"),
        rate_limit=0,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        max_connections=600,
    )
    with svc:
        yield svc


@pytest.fixture(scope="module")
def device(front: ServiceProcess) -> dict:
    with ControlClient(front.url, front.control_token) as control:
        t = control.create_tenant("front")
    with Client(front.url, t["Token"]) as admin:
        p = admin.create_product(t["Id"], "P")
        g = admin.create_device_group(t["Id"], p["Id"], "G", AllowCrashDumpsCollection=True)
        return admin.claim_device(t["Id"], g["Id"])


def connect(svc: ServiceProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", svc.port), timeout=10)


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def status_of(raw: bytes) -> int | None:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else None


def test_settings_are_reported(front) -> None:
    with ControlClient(front.url, front.control_token) as control:
        config = control.config()
    assert (config["header_timeout"], config["body_timeout"], config["max_connections"]) == (HEADER_TIMEOUT, BODY_TIMEOUT, 600)
    assert config["max_header_bytes"] == 16 * 1024


def test_a_header_block_over_the_limit_is_431(front) -> None:
    with connect(front) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        raw, closed = read_until_closed(s, 5)
    assert status_of(raw) == 431 and closed
    assert b"HeadersTooLarge" in raw


def test_an_endless_header_is_cut_at_the_limit(front) -> None:
    """A header that never ends: 431 once the block passes the limit, without reading on."""
    with connect(front) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        raw = b""
        try:
            while sent < 64 << 20:  # would be 64 MiB; the service answers after ~16 KiB
                s.sendall(b"a" * 4096)
                sent += 4096
                ready, _, _ = select.select([s], [], [], 0)
                if ready:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw, closed = read_until_closed(s, 5)
    assert status_of(raw) == 431 and closed
    assert sent < 64 << 20  # answered before the header ended (the rest sat in socket buffers)


def test_headers_within_the_limit_are_served(front) -> None:
    with connect(front) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 12_000 + b"\r\nConnection: close\r\n\r\n")
        raw, _ = read_until_closed(s, 5)
    assert status_of(raw) == 200


@pytest.mark.parametrize(
    "sent,expect",
    [
        (b"", None),  # connects and says nothing
        (f"POST {api.SYNC_PATH[:-2]}".encode(), 408),  # partial request line
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 408),  # headers never finished
    ],
)
def test_slow_headers_are_closed_by_the_service(front, sent: bytes, expect: int | None) -> None:
    with connect(front) as s:
        s.sendall(sent)
        t0 = time.monotonic()
        raw, closed = read_until_closed(s, HEADER_TIMEOUT + 5)
    assert closed, "the service kept the connection open"
    assert time.monotonic() - t0 >= HEADER_TIMEOUT * 0.9
    assert status_of(raw) == expect


def upload_head(device: dict, length: int) -> bytes:
    """The request line and headers of a device's upload of ``length`` body bytes."""
    return (
        f"POST {api.UPLOAD_PATH} HTTP/1.1\r\nHost: x\r\n"
        f"{api.AUTHORIZATION}: {api.device_authorization(device['DeviceId'], device['DeviceSecret'])}\r\n"
        f"{api.CONTENT_TYPE}: {api.GZIP_CONTENT_TYPE}\r\n{api.SIGNATURE_HEADER}: {new_signature()}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_a_slow_body_is_closed_and_nothing_is_stored(front, device, core_gz: bytes) -> None:
    with ControlClient(front.url, front.control_token) as control:
        before = control.dumps()
    before_log = front.log_path.read_text(errors="replace")
    head = upload_head(device, len(core_gz))
    with connect(front) as s:
        s.sendall(head + core_gz[:100])
        raw, closed = read_until_closed(s, BODY_TIMEOUT + 5)
    assert closed and raw == b""
    with ControlClient(front.url, front.control_token) as control:
        assert control.dumps() == before
    new = _log_after(front, before_log)
    assert "went away after 100 of" in new and "Traceback" not in new


def _log_after(svc: ServiceProcess, before: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        new = svc.log_path.read_text(errors="replace")[len(before):]
        if new or time.monotonic() > deadline:
            return new
        time.sleep(0.05)


def test_a_client_leaving_mid_body_is_one_log_line(front, device, core_gz: bytes) -> None:
    with ControlClient(front.url, front.control_token) as control:
        before = control.dumps()
    before_log = front.log_path.read_text(errors="replace")
    head = upload_head(device, len(core_gz))
    with connect(front) as s:
        s.sendall(head + core_gz[:1000])
        time.sleep(0.2)  # let the service start reading the body; the client then leaves
    new = _log_after(front, before_log)
    lines = [line for line in new.splitlines() if line.strip()]
    assert len(lines) == 1, new
    assert device["DeviceId"] in lines[0] and f"after 1000 of {len(core_gz)} bytes" in lines[0]
    with ControlClient(front.url, front.control_token) as control:
        assert control.dumps() == before


def test_connections_over_the_cap_are_refused_at_once(tmp_path) -> None:
    with ServiceProcess(tmp_path / "svc", max_connections=20, header_timeout=30) as svc:
        held = [connect(svc) for _ in range(20)]
        try:
            time.sleep(0.3)
            with connect(svc) as extra:
                raw, closed = read_until_closed(extra, 5)
            assert status_of(raw) == 503 and closed and b"TooManyConnections" in raw
        finally:
            for s in held:
                s.close()
        deadline = time.monotonic() + 5
        while True:  # the held ones are gone: served again
            with connect(svc) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                raw, _ = read_until_closed(s, 5)
            if status_of(raw) == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status_of(raw) == 200


def test_a_slowloris_flood_does_not_stop_an_upload(front, device, core_gz: bytes) -> None:
    """300 connections dripping header bytes: an upload meanwhile is stored, and the service
    closes every slow connection itself (header timeout)."""
    n = 300
    socks = []
    for _ in range(n):
        s = connect(front)
        s.sendall(f"POST {api.UPLOAD_PATH} HTTP/1.1\r\nHost: x\r\n".encode())
        socks.append(s)
    closed_by_service: set[int] = set()
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            for i, s in enumerate(socks):
                if i in closed_by_service:
                    continue
                try:
                    s.send(b"X")
                except OSError:
                    closed_by_service.add(i)
            time.sleep(0.1)

    dripper = threading.Thread(target=drip)
    dripper.start()
    try:
        with DeviceClient(front.url, device["DeviceId"], device["DeviceSecret"], timeout=10) as c:
            answer = c.upload(core_gz, new_signature())
        assert "id" in answer
        with ControlClient(front.url, front.control_token) as control:
            assert answer["id"] in {d["id"] for d in control.dumps()}
        deadline = time.monotonic() + HEADER_TIMEOUT + 10
        for i, s in enumerate(socks):
            if i in closed_by_service:
                continue
            _, closed = read_until_closed(s, max(0.0, deadline - time.monotonic()))
            if closed:
                closed_by_service.add(i)
    finally:
        stop.set()
        dripper.join()
        for s in socks:
            s.close()
    assert len(closed_by_service) == n
