"""syncd as a daemon (interval, on-demand sync, consent lapsing on the clock) and HTTP details."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from fw_helpers import FakeDeviceApi, FwEnv

from testbed.contract import device_api as api_c


@pytest.fixture
def syncd(fw: FwEnv, api: FakeDeviceApi) -> Iterator[subprocess.Popen]:
    assert fw.provision(api.port).returncode == 0
    proc = subprocess.Popen([str(fw.bin / "syncd"), "--interval", "1"], env=fw.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield proc
    proc.terminate()
    proc.wait(timeout=5)


def count_syncs(api: FakeDeviceApi) -> int:
    return api.paths().count(api_c.SYNC_PATH)


def wait_for(cond, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.02)


def test_syncs_on_its_interval(syncd, api):
    start = count_syncs(api)
    wait_for(lambda: count_syncs(api) >= start + 2, timeout=5, what="two periodic syncs")


def test_consent_lapses_on_the_clock_between_syncs(fw, api, syncd):
    syncd.terminate()
    syncd.wait(timeout=5)
    assert fw.core_pattern.read_text().startswith("|")
    # the last good sync was 48 h + 5 s ago on this clock, and the service now fails syncs
    state = fw.state / "sync.state"
    old = int(time.time()) - 172800 - 5
    lines = [f"last_ok={old}" if ln.startswith("last_ok=") else ln for ln in state.read_text().splitlines()]
    state.write_text("\n".join(lines) + "\n")
    api.sync_status = 503
    proc = subprocess.Popen([str(fw.bin / "syncd"), "--interval", "3600"], env=fw.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: fw.core_pattern.read_text().startswith("/nonexistent"), timeout=3,
                 what="core_pattern switched off")
        fw.wait_event("sync-fail", reason="http-503")
        # SIGUSR2: sync now; it succeeds and renews consent
        api.sync_status = 200
        proc.send_signal(signal.SIGUSR2)
        wait_for(lambda: fw.core_pattern.read_text().startswith("|"), timeout=3, what="core_pattern back on")
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_failed_sync_keeps_consent_until_it_lapses(fw, api):
    assert fw.provision(api.port).returncode == 0
    api.close()
    proc = fw.run("syncd", "--now")
    assert proc.returncode == 1
    fw.wait_event("sync-fail", reason="connect")
    status = fw.run("syncd", "--status").stdout.decode()
    assert "consent=upload" in status  # the last good sync is still within its validity


def test_unprovisioned_syncd_now_is_a_clear_error(fw):
    proc = fw.run("syncd", "--now")
    assert proc.returncode == 2
    assert b"not provisioned" in proc.stderr


def test_syncd_rejects_bad_interval(fw):
    proc = fw.run("syncd", "--interval", "0")
    assert proc.returncode == 2 and b"out of range" in proc.stderr


def one_shot_server(response: bytes) -> tuple[int, threading.Thread]:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(response)
        lsock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return lsock.getsockname()[1], t


def test_http_chunked_response(fw_bin):
    port, t = one_shot_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"7\r\n{\"a\": 1\r\n1\r\n}\r\n0\r\n\r\n"
    )
    proc = subprocess.run([str(fw_bin / "tb-tool"), "http", "127.0.0.1", str(port), "/x", "5000"],
                          capture_output=True, text=True, timeout=10)
    t.join(5)
    assert "status=200" in proc.stdout
    assert 'body={"a": 1}' in proc.stdout


def test_http_garbage_response_is_bad_response(fw_bin):
    port, t = one_shot_server(b"SSH-2.0-not-http\r\n\r\n")
    proc = subprocess.run([str(fw_bin / "tb-tool"), "http", "127.0.0.1", str(port), "/x", "5000"],
                          capture_output=True, text=True, timeout=10)
    t.join(5)
    assert "reason=bad-response" in proc.stdout
