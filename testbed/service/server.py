"""Running the service: bind 127.0.0.1, start uvicorn, announce readiness in a file."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from testbed.service.app import create_app
from testbed.service.front import guarded_protocol
from testbed.service.settings import ServiceConfig
from testbed.service.uvicorn_choice import UVICORN_HTTP, UVICORN_LOOP


class HostError(ValueError):
    pass


def check_host(host: str, force: bool) -> None:
    """Refuse to listen beyond loopback unless forced (boards reach the host's loopback)."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost":
            return
        raise HostError(f"--host must be an IP address, got {host!r}") from None
    if not addr.is_loopback and not force:
        raise HostError(
            f"refusing to listen on {host}: only loopback (127.0.0.0/8, ::1) is allowed; "
            "pass --allow-non-loopback to force it"
        )


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def take_data_dir_lock(data_dir: Path):
    """One service per data directory: the ingest writer must be the only writer of dumps."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "service.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise HostError(f"another service is already running on {data_dir}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_ready()


def serve(
    config: ServiceConfig,
    host: str = "127.0.0.1",
    port: int = 8443,
    ready_file: Path | None = None,
    control_token_file: Path | None = None,
    force_host: bool = False,
    log_level: str = "warning",
    parent_pid: int | None = None,
) -> None:
    check_host(host, force_host)
    # The ingest writer thread makes many short blocking calls (SQLite, file I/O); with the
    # default 5 ms switch interval it waits that long for the GIL after each one while the
    # event loop is busy. A shorter interval lets it hand the GIL back and forth promptly.
    sys.setswitchinterval(0.0005)
    lock = take_data_dir_lock(config.data_dir)  # noqa: F841 (held until the process exits)
    if config.enable_control:
        config.control_token = config.control_token or ("tbc_" + secrets.token_urlsafe(32))
        token_file = control_token_file or (config.data_dir / "control.token")
        write_private(token_file, config.control_token + "\n")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP; without it every response waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise HostError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    bound_port = sock.getsockname()[1]
    url = f"http://{host if family == socket.AF_INET else '[' + host + ']'}:{bound_port}"
    app = create_app(config)

    def announce() -> None:
        info = {"url": url, "port": bound_port, "pid": os.getpid(), "dataDir": str(config.data_dir)}
        if config.enable_control:
            info["controlToken"] = config.control_token
        if ready_file is not None:
            write_private(ready_file, json.dumps(info))
        print(f"testbed service listening on {url} (data in {config.data_dir})", file=sys.stderr, flush=True)
        if config.enable_control:
            print(f"control API enabled; token in {control_token_file or config.data_dir / 'control.token'}", file=sys.stderr, flush=True)

    raise_open_file_limit()
    http: Any = guarded_protocol(config) if UVICORN_HTTP == "httptools" else UVICORN_HTTP
    uv_config = uvicorn.Config(
        app,
        log_level=log_level,
        # one line per request at --log-level info or debug; none at the default (warning)
        access_log=log_level in ("info", "debug"),
        lifespan="on",
        timeout_keep_alive=config.keep_alive_timeout,
        # uvloop and httptools (both dependencies) when installed: less CPU per request than
        # asyncio's loop and h11. The bench's sink (testbed.load.sink) uses the same choice.
        # With httptools the protocol is the service's front (testbed.service.front: header
        # block limit, header and body timeouts, connection cap).
        loop=UVICORN_LOOP,
        http=http,
        h11_max_incomplete_event_size=config.max_header_bytes,
        # Only loopback clients, no proxy in front: no X-Forwarded-* rewriting per request.
        proxy_headers=False,
        # Requests held by a "hang" fault never end by themselves: give up on them at shutdown.
        timeout_graceful_shutdown=3,
        backlog=2048,
    )
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = _Server(uv_config, announce)
    if parent_pid:
        _exit_with_parent(server, parent_pid)
    server.run(sockets=[sock])


def raise_open_file_limit() -> None:
    """Raise the soft limit of open files to the hard one: each connection is a descriptor,
    and the connection cap (``max_connections``) should be what limits them."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # not on this platform, or not allowed: keep it
        pass


def _exit_with_parent(server: uvicorn.Server, parent_pid: int) -> None:
    """Stop (cleanly) when the process that started us is gone, so that a test runner
    killed with SIGKILL leaves no service behind."""
    import threading
    import time

    def watch() -> None:
        while not server.should_exit:
            if os.getppid() != parent_pid:
                print(f"parent process {parent_pid} is gone; stopping", file=sys.stderr, flush=True)
                server.should_exit = True
                return
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
