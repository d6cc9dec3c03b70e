"""Run Locust headless in its own processes: one local process, or a master and K workers.

Locust is always run as a subprocess (``python -m locust``): its gevent
monkey-patching stays out of the caller (the CLI, pytest). Every run is
bounded: by the scenario's time (``--run-time`` or a load shape that ends),
and by a hard wall-clock limit after which the processes are killed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.deadline import Deadline
from testbed.paths import REPO_ROOT

SCENARIO_DIR = REPO_ROOT / "scenarios" / "load"
STATS_JSON = "locust_stats.json"
HTML_REPORT = "locust.html"
CSV_PREFIX = "locust"


def write_private_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to a new file readable by its owner only (run configs hold secrets)."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
        fh.write(json.dumps(data))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocustPlan:
    """One headless Locust run."""

    locustfile: Path
    host: str
    out_dir: Path
    config_path: Path
    users: int = 1
    spawn_rate: float = 0.0  # 0: all at once
    run_time: float | None = None  # None: the locustfile's load shape ends the run
    workers: int = 0  # local worker processes (0: one local process)
    remote_workers: int = 0  # a master only, for workers on other machines
    master_bind_host: str = "127.0.0.1"
    master_port: int = 5557
    stop_timeout: float = 10.0
    hard_limit: float = 600.0
    user_classes: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    quiet: bool = True
    progress: Callable[[str], None] | None = None  # called with a status line every progress_every s
    progress_every: float = 10.0


@dataclass
class LocustResult:
    exit_code: int
    out_dir: Path
    wall_seconds: float
    log_path: Path
    #: stopped early by Ctrl-C (the figures cover the time it ran)
    interrupted: bool = False

    @property
    def stats_path(self) -> Path:
        return self.out_dir / STATS_JSON

    @property
    def html_path(self) -> Path:
        return self.out_dir / HTML_REPORT

    @property
    def history_csv(self) -> Path:
        return self.out_dir / f"{CSV_PREFIX}_stats_history.csv"

    def stats(self) -> list[dict[str, Any]]:
        if not self.stats_path.exists():
            raise RuntimeError(f"Locust wrote no stats ({self.stats_path}); see {self.log_path}")
        return json.loads(self.stats_path.read_text())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The locustfiles import testbed; make the checkout importable even without an install.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _common_args(plan: LocustPlan) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(plan.locustfile), "--tb-config", str(plan.config_path)]


#: how long a master waits for workers on other machines before it gives up
REMOTE_WORKERS_MAX_WAIT_S = 300


def master_args(plan: LocustPlan, *, expect_workers: int, bind_host: str, bind_port: int,
                max_wait: int | None = None) -> list[str]:
    args = _head_args(plan) + [
        "--master", "--expect-workers", str(expect_workers),
        "--master-bind-host", bind_host, "--master-bind-port", str(bind_port),
    ]
    if max_wait is not None:
        args += ["--expect-workers-max-wait", str(max_wait)]
    return args


def worker_args(locustfile: Path, master_host: str, master_port: int) -> list[str]:
    # A worker gets the run configuration from the master (testbed.load.runtime).
    return [sys.executable, "-m", "locust", "-f", str(locustfile), "--worker",
            "--master-host", master_host, "--master-port", str(master_port), "--loglevel", "WARNING"]


def _head_args(plan: LocustPlan) -> list[str]:
    out = plan.out_dir
    args = _common_args(plan) + [
        "--headless",
        "--host", plan.host,
        "--csv", str(out / CSV_PREFIX), "--csv-full-history",
        "--html", str(out / HTML_REPORT),
        "--json-file", str(out / STATS_JSON.removesuffix(".json")),
        "--stop-timeout", f"{max(1, round(plan.stop_timeout))}s",
        "--exit-code-on-error", "0",
        "--only-summary",
        "--loglevel", "WARNING" if plan.quiet else "INFO",
    ]
    if plan.run_time is not None:
        rate = plan.spawn_rate if plan.spawn_rate > 0 else max(plan.users, 1)
        args += ["--users", str(plan.users), "--spawn-rate", str(rate), "--run-time", f"{max(1, round(plan.run_time))}s"]
    args += plan.extra_args
    args += plan.user_classes
    return args


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _progress_line(plan: LocustPlan, elapsed: float) -> str | None:
    """``elapsed 30 s: 40 users, 1,234 requests (41.0/s now), 0 failures, p99 12 ms`` from Locust's live CSV.

    The rate and the p99 are Locust's current ones (its last seconds); counts are since the start.
    None before Locust has written a row.
    """
    path = plan.out_dir / f"{CSV_PREFIX}_stats_history.csv"
    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("Name") == "Aggregated"]
    except OSError:
        return None
    if not rows:
        return None
    last = rows[-1]

    def num(key: str) -> float:
        try:
            return float(last.get(key) or 0)
        except ValueError:  # Locust writes N/A before the first answer
            return 0.0

    # Locust's window p99 is N/A or 0 until answers come in its window
    p99_text = f"p99 {num('99%'):,.0f} ms" if num("99%") > 0 else "p99 -"
    return (f"elapsed {elapsed:.0f} s: {num('User Count'):,.0f} users, {num('Total Request Count'):,.0f} requests "
            f"({num('Requests/s'):,.1f}/s now), {num('Total Failure Count'):,.0f} failures, {p99_text}")


def progress_interval(duration: float) -> float:
    """Seconds between progress lines: about five lines in a short run, one every 10 s in a long one."""
    return min(10.0, max(2.0, duration / 5))


class _Interrupt:
    """Ctrl-C during a load run: the first one stops Locust the way Locust stops on Ctrl-C (its
    figures so far are written and kept); a second one, or one before Locust runs, aborts."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.locust_running = threading.Event()


INTERRUPT = _Interrupt()


@contextmanager
def ctrl_c_stops_locust(say: Callable[[str], None]) -> Iterator[None]:
    """Within: Ctrl-C while Locust runs asks it to stop (``INTERRUPT.requested``) instead of raising.

    The Locust processes run in sessions of their own, so the terminal's Ctrl-C reaches only this
    process; :func:`_wait` passes it on to Locust once. Main thread only.
    """

    def handler(signum, frame) -> None:
        if INTERRUPT.locust_running.is_set() and not INTERRUPT.requested.is_set():
            INTERRUPT.requested.set()
            say("Ctrl-C: stopping Locust; its figures so far are kept (Ctrl-C again aborts)")
            return
        raise KeyboardInterrupt

    INTERRUPT.requested.clear()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait(head: subprocess.Popen, plan: LocustPlan, started: float, log) -> int:
    """Wait for the head process, printing progress every ``progress_every`` s; stop it at the hard limit.

    A stop asked with Ctrl-C (:func:`ctrl_c_stops_locust`) is passed to Locust as its own Ctrl-C
    (SIGINT): it stops its users, writes its reports and exits; it is given ``stop_timeout`` + 30 s.
    """
    limit = Deadline(plan.hard_limit, start=started)
    report = Deadline(plan.progress_every, start=started)
    forwarded = False
    INTERRUPT.locust_running.set()
    try:
        while True:
            if INTERRUPT.requested.is_set() and not forwarded:
                forwarded = True
                log.write("\ntestbed: Ctrl-C; asking Locust to stop\n")
                log.flush()
                head.send_signal(signal.SIGINT)
                limit = Deadline(plan.stop_timeout + 30)
            if limit.expired:
                log.write(f"\ntestbed: Locust still running after {limit.timeout:.0f} s; stopping it\n")
                log.flush()
                _stop(head)
                return head.returncode if head.returncode is not None else -9
            try:
                return head.wait(timeout=limit.remaining_or(1.0))
            except subprocess.TimeoutExpired:
                pass
            if plan.progress is not None and report.expired:
                report = Deadline(plan.progress_every)
                line = _progress_line(plan, time.monotonic() - started)
                if line:
                    plan.progress(line)
    finally:
        INTERRUPT.locust_running.clear()


def run_locust(plan: LocustPlan) -> LocustResult:
    """Run ``plan`` to its end (or kill it at ``hard_limit``); the output files are in ``plan.out_dir``."""
    if not plan.locustfile.is_file():
        raise FileNotFoundError(f"no locustfile {plan.locustfile}")
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    log_path = plan.out_dir / "locust.log"
    started = time.monotonic()
    procs: list[subprocess.Popen] = []
    with open(log_path, "w") as log:
        try:
            if plan.remote_workers > 0:
                head = subprocess.Popen(
                    master_args(plan, expect_workers=plan.remote_workers, bind_host=plan.master_bind_host,
                                bind_port=plan.master_port, max_wait=REMOTE_WORKERS_MAX_WAIT_S),
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env(), cwd=plan.out_dir,
                    start_new_session=True,
                )
                procs.append(head)
            elif plan.workers > 0:
                port = free_port()
                master = subprocess.Popen(
                    master_args(plan, expect_workers=plan.workers, bind_host="127.0.0.1", bind_port=port),
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env(), cwd=plan.out_dir,
                    start_new_session=True,
                )
                procs.append(master)
                for _ in range(plan.workers):
                    procs.append(subprocess.Popen(
                        worker_args(plan.locustfile, "127.0.0.1", port),
                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env(), cwd=plan.out_dir,
                        start_new_session=True,
                    ))
                head = master
            else:
                head = subprocess.Popen(_head_args(plan), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env(),
                                        cwd=plan.out_dir, start_new_session=True)
                procs.append(head)
            code = _wait(head, plan, started, log)
            # Workers quit when the master tells them; give them a moment, then make sure.
            for proc in procs[1:]:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    _stop(proc, grace=5)
        finally:
            for proc in procs:
                _stop(proc, grace=5)
    return LocustResult(code, plan.out_dir, time.monotonic() - started, log_path, INTERRUPT.requested.is_set())


def run_external(args: list[str], log_path: Path, hard_limit: float) -> int:
    """Run one Locust process of a multi-machine run (master or worker) in the foreground."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env())
        try:
            return proc.wait(timeout=hard_limit)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return proc.returncode if proc.returncode is not None else -9
        finally:
            _stop(proc, grace=5)
