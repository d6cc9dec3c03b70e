"""Helpers for the host-built firmware tests: build, isolated dirs, events, a stand-in device API.

The stand-in server is the firmware tier's HTTP peer: it records every request (so a
test can assert that nothing was sent) and misbehaves on demand (hang, drip, garbage
answers), which the real service does not do. Every path, header and field it speaks
comes from testbed.contract, and tests/contract/test_fake_device_api.py checks its
answers against the real service's: the real service meets the firmware in tests/contract.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from testbed.contract import device_api as api_c
from testbed.contract.device_api import IntentAction, IntentResponse, SyncResponse, UploadResponse
from testbed.contract.errors import error_body
from testbed.contract.events import EVENT_PREFIX
from testbed.paths import REPO_ROOT

FW_DIR = REPO_ROOT / "firmware_stubs"
HOST_BIN = FW_DIR / "build" / "host"
DEVICE_ID = "ab" * 64
SECRET = "s3cr3t-Secret_value"


SAN_BIN = FW_DIR / "build" / "host-san"


def sanitizing() -> bool:
    """``TB_FW_SANITIZE=1``: run the firmware tests on the AddressSanitizer + UBSan build."""
    return os.environ.get("TB_FW_SANITIZE") == "1"


def build_host() -> Path:
    """``make -C firmware_stubs host`` (and ``host-san`` when sanitizing); returns the bin dir to test.

    Cores are always made with the plain build's crashapp (a sanitizer turns a crash into a report).
    """
    targets = ["host", "host-san"] if sanitizing() else ["host"]
    if sanitizing():
        # memory errors and UB abort the program (a failed test); the one-shot programs free
        # little before exit, which is not what is being checked here
        os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=0")
    proc = subprocess.run(
        ["make", "-C", str(FW_DIR), *targets], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"make {' '.join(targets)} failed:\n{proc.stdout}\n{proc.stderr}")
    return SAN_BIN if sanitizing() else HOST_BIN


@dataclass
class FwEnv:
    """An isolated state/run dir, console file and core_pattern file for one test."""

    root: Path
    bin: Path

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def console(self) -> Path:
        return self.root / "console.log"

    @property
    def core_pattern(self) -> Path:
        return self.root / "core_pattern"

    @property
    def spool(self) -> Path:
        return self.state / "spool"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TB_STATE_DIR=str(self.state),
            TB_RUN_DIR=str(self.run_dir),
            TB_CONSOLE=str(self.console),
            TB_CORE_PATTERN_FILE=str(self.core_pattern),
            TB_REPORTER=str(self.bin / "crash-reporter"),
            TB_NET_IF="tb-no-such-if",
        )
        env.pop("TB_COMPONENT", None)
        env.update(extra)
        return env

    def run(self, prog: str, *args: str, input: bytes | None = None, timeout: float = 20, **extra: str):
        return subprocess.run(
            [str(self.bin / prog), *args],
            input=input,
            capture_output=True,
            env=self.env(**extra),
            timeout=timeout,
        )

    def events(self) -> list[dict[str, str]]:
        if not self.console.exists():
            return []
        out = []
        for line in self.console.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith(EVENT_PREFIX):
                fields = dict(re.findall(r"(\S+?)=(\S*)", line[4:]))
                out.append(fields)
        return out

    def wait_event(self, name: str, timeout: float = 10.0, after: int = 0, **match: str) -> dict[str, str]:
        """The first event ``name`` (index >= after) whose fields match; polls the console file."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events()[after:]:
                if ev.get("event") == name and all(ev.get(k) == v for k, v in match.items()):
                    return ev
            if time.monotonic() > deadline:
                raise AssertionError(f"no event {name} {match} within {timeout}s; events: {self.events()}")
            time.sleep(0.02)

    def provision(self, port: int, sync: bool = True) -> subprocess.CompletedProcess:
        args = ["--device-id", DEVICE_ID, "--secret", SECRET, "--service", f"127.0.0.1:{port}"]
        if not sync:
            args.append("--no-sync")
        return self.run("tb-provision", *args)

    def spool_files(self) -> list[Path]:
        return sorted(self.spool.glob("*")) if self.spool.exists() else []


def make_env(tmp_path: Path, bin_dir: Path) -> FwEnv:
    fw = FwEnv(tmp_path / "fw", bin_dir)
    fw.root.mkdir(parents=True, exist_ok=True)
    fw.core_pattern.write_text("core\n")
    return fw


def make_core(bin_dir: Path, workdir: Path, *args: str, name: str = "crashapp") -> bytes:
    """Crash the host build of crashapp with ``args`` and return the kernel's core file.

    Uses the host's file core_pattern (``core`` in the cwd); raises RuntimeError
    when the host cannot write cores that way (pipe handler, or not allowed).
    """
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith("|") or "/" in pattern:
        raise RuntimeError(f"host core_pattern {pattern!r} does not write a core into the cwd")
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("core*"):
        old.unlink()
    exe = HOST_BIN / "crashapp"  # the plain build, whatever bin_dir is tested
    if name != "crashapp":
        link = workdir / name
        if not link.exists():
            link.symlink_to(exe)
        exe = link

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    env = {k: v for k, v in os.environ.items() if k != "TB_COMPONENT"}
    proc = subprocess.run(
        [str(exe), "--direct", *args], cwd=workdir, preexec_fn=limits, env=env, capture_output=True, timeout=30
    )
    if proc.returncode >= 0:
        raise RuntimeError(f"crashapp did not crash: rc={proc.returncode} {proc.stderr!r}")
    cores = sorted(workdir.glob("core*"))
    if not cores:
        raise RuntimeError("the crash left no core file (core dumps disabled on this host?)")
    return cores[0].read_bytes()


def parse_kv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "map":
            continue
        out[key] = value
    return out


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeDeviceApi:
    """A device-API stand-in on 127.0.0.1 that records requests; behaviour set per test."""

    opt_in: bool = True
    validity: int = api_c.VALIDITY_SECONDS
    throttled: list[str] = field(default_factory=list)
    intent_action: dict = field(default_factory=lambda: {IntentResponse.ACTION: IntentAction.UPLOAD})
    upload_status: int = 201
    sync_status: int = 200
    max_upload: int = api_c.MAX_UPLOAD_BYTES
    # ok | hang | drip | hang-upload | drip-upload, and for the body's answer (the dump is taken):
    # garbage-201 (201, not JSON) | reset-201 (201 cut off by a reset) | huge-201 (201 over the read cap)
    # | drop-upload (no answer: the connection is closed)
    mode: str = "ok"
    requests: list[Request] = field(default_factory=list)
    on_request: Callable[[Request], None] | None = None

    def __post_init__(self) -> None:
        api = self
        self._stop = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length) if length else b""
                req = Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                api.requests.append(req)
                upload = self.path == api_c.UPLOAD_PATH
                if api.mode == "hang" or (api.mode == "hang-upload" and upload):
                    api._stop.wait(30)
                    return
                if api.mode == "drip" or (api.mode == "drip-upload" and upload):
                    self.wfile.write(b"HTTP/1.1 201 Created\r\nContent-Length: 100000\r\n\r\n")
                    while not api._stop.wait(0.2):
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return
                    return
                if upload and api.mode == "drop-upload":
                    self.close_connection = True  # taken, then no answer at all (the service's drop fault)
                    return
                if upload and api.mode in ("garbage-201", "reset-201", "huge-201"):
                    self._broken_201(api.mode)
                    return
                if self.path == api_c.SYNC_PATH and api.sync_status != 200:
                    self._json(api.sync_status, error_body("X", "t", "d"))
                elif self.path == api_c.SYNC_PATH:
                    self._json(200, {
                        SyncResponse.OPT_IN: api.opt_in, SyncResponse.BOUNDARY: "EU",
                        SyncResponse.VALIDITY_SECONDS: api.validity, SyncResponse.SERVER_TIME: int(time.time()),
                        SyncResponse.THROTTLED_SIGNATURES: api.throttled,
                        SyncResponse.MAX_UPLOAD_BYTES: api.max_upload,
                        SyncResponse.MAX_INFLATED_BYTES: api_c.MAX_INFLATED_BYTES,
                        SyncResponse.DEVICE_GROUP_ID: "g1",
                    })
                elif self.path == api_c.INTENT_PATH:
                    self._json(200, api.intent_action)
                elif upload:
                    if api.upload_status == 201:
                        gzip.decompress(body)
                        self._json(201, {UploadResponse.ID: f"d{len(api.requests)}", UploadResponse.REGION: "EU"})
                    elif api.upload_status == 200:
                        self._json(200, {UploadResponse.SKIPPED: api_c.SkipReason.THROTTLED})
                    else:
                        self._json(api.upload_status, error_body("X", "t", "d"))
                else:
                    self._json(404, error_body("NotFound", "no such path"))

            def _broken_201(self, mode: str) -> None:
                if mode == "garbage-201":
                    data = b"<html>stored?</html>"
                    head = f"HTTP/1.1 201 Created\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                    self.wfile.write(head.encode() + data)
                elif mode == "reset-201":
                    data = b'{"id": "d1", "reg'
                    head = "HTTP/1.1 201 Created\r\nContent-Length: 64\r\nConnection: close\r\n\r\n"
                    self.wfile.write(head.encode() + data)
                    self.wfile.flush()
                    # an abortive close: RST instead of FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                else:  # huge-201: a valid answer padded past the reporter's read cap
                    pad = " " * (300 * 1024)
                    data = json.dumps({UploadResponse.ID: "d1", UploadResponse.REGION: "EU"}).encode()[:-1]
                    data += f', "pad": "{pad}"}}'.encode()
                    head = f"HTTP/1.1 201 Created\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                    try:
                        self.wfile.write(head.encode() + data)
                    except OSError:
                        pass  # the reporter stops reading at its cap
                self.close_connection = True

            def _json(self, status: int, obj: object) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header(api_c.CONTENT_TYPE, api_c.JSON_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
