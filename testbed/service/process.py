"""``ServiceProcess``: the real service in a subprocess, for tests, scenarios and load runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from testbed.deadline import Deadline
from testbed.service.settings import BY_KEYWORD


class ServiceStartError(RuntimeError):
    pass


class ServiceProcess:
    """Runs ``python -m testbed.service run`` on 127.0.0.1 and waits until it answers.

    ``port=0`` lets the service pick a free port (it reports it through a ready
    file, so there is no race). Use as a context manager, or call ``start()``
    and ``stop()``. ``data_dir=None`` uses a fresh temporary directory.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        port: int = 0,
        enable_control: bool = True,
        *,
        extra_args: list[str] | None = None,
        startup_timeout: float = 20.0,
        log_path: Path | str | None = None,
        **settings: Any,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="testbed-service-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir).resolve()
        self.requested_port = port
        self.enable_control = enable_control
        unknown = sorted(set(settings) - set(BY_KEYWORD))
        if unknown:
            raise TypeError(f"unknown service setting(s) {', '.join(unknown)}; one of {', '.join(sorted(BY_KEYWORD))}")
        #: flag -> value of every setting given (None: the service's default)
        self.options: dict[str, Any] = {BY_KEYWORD[k].flag: v for k, v in settings.items()}
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else self.data_dir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self.control_token: str | None = None
        self.pid = 0

    # ------------------------------------------------------------------------------
    def command(self, ready_file: Path) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "testbed.service",
            "run",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.requested_port),
            "--ready-file",
            str(ready_file),
            "--exit-with-parent",
            str(os.getpid()),
        ]
        if self.enable_control:
            cmd += ["--enable-control", "--control-token-file", str(self.data_dir / "control.token")]
        for flag, value in self.options.items():
            if value is None or value is False:
                continue
            cmd += [flag] if value is True else [flag, str(value)]
        return cmd + self.extra_args

    def start(self) -> ServiceProcess:
        if self.proc is not None and self.proc.poll() is None:
            raise ServiceStartError("the service is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ready_file = self.data_dir / "ready.json"
        ready_file.unlink(missing_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(ready_file),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = Deadline(self.startup_timeout)
        info = None
        while not deadline.expired:
            if self.proc.poll() is not None:
                raise ServiceStartError(
                    f"the service exited with {self.proc.returncode} while starting:\n{self.log_tail()}"
                )
            if ready_file.exists():
                try:
                    info = json.loads(ready_file.read_text())
                    break
                except ValueError:
                    pass
            deadline.sleep(0.02)
        if info is None:
            self.kill()
            raise ServiceStartError(
                f"the service did not get ready within {self.startup_timeout} s:\n{self.log_tail()}"
            )
        self.url = info["url"]
        self.port = int(info["port"])
        self.pid = int(info["pid"])
        self.control_token = info.get("controlToken")
        self._wait_healthy(deadline)
        return self

    def _wait_healthy(self, deadline: Deadline) -> None:
        last: Exception | None = None
        with httpx.Client(timeout=2.0) as client:
            while not deadline.expired:
                try:
                    if client.get(self.url + "/healthz").status_code == 200:
                        return
                except httpx.HTTPError as exc:
                    last = exc
                deadline.sleep(0.02)
        self.kill()
        raise ServiceStartError(f"the service at {self.url} never answered /healthz: {last}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait: the service finishes its batch, fsyncs every blob file and removes
        its journals. SIGKILL after ``timeout``. Returns the exit status (-15 after a clean
        stop: uvicorn re-raises the SIGTERM it handled)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL at once: a crash, for durability tests."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        return self.proc.returncode

    def restart(self) -> ServiceProcess:
        """Stop (if running) and start again on the same data directory (a new port if 0)."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"ServiceProcess(url={self.url!r}, data_dir={str(self.data_dir)!r}, pid={self.pid})"
