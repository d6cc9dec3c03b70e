"""The Locust side of a testbed load run: configuration, device identities, counters.

Imported by the locustfiles in ``scenarios/load/`` (and only there: it
registers Locust event listeners at import). A run is described by one JSON
file, written by ``testbed load run`` and named by Locust's custom option
``--tb-config``. The master (or the single local process) reads it; each
worker asks the master for it (``tb_config_request``) once its handler is in place
and gets it in a ``tb_config`` message, so
a worker on another machine needs nothing but ``--master-host``.

Counters that Locust's request statistics do not hold (skips, bytes saved,
exact give-up times) are summed across workers with Locust's own
``report_to_master``/``worker_report`` events and written by the master (or
the local process) as ``tb_counters.json`` in the run's output directory when
Locust quits, after the workers' final reports.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import gevent
import locust.stats
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from testbed.load import counters as C

log = logging.getLogger("testbed.load")

# The progress lines of `testbed load run` read the stats history CSV while Locust runs: write it
# out every second (Locust's default is every 5 s, which leaves a short run's progress empty).
locust.stats.CSV_STATS_FLUSH_INTERVAL_SEC = 1

#: keep at most this many raw samples per key per process (memory bound on long runs)
MAX_SAMPLES = 200_000


class Counters:
    """Sums and raw samples, mergeable across processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sums: dict[str, float] = defaultdict(float)
        self.samples: dict[str, list[Any]] = defaultdict(list)

    def add(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self.sums[key] += amount

    def sample(self, key: str, value: Any) -> None:
        """Keep a raw value (a number, or a small JSON list such as [wall time, seconds])."""
        with self._lock:
            bucket = self.samples[key]
            if len(bucket) < MAX_SAMPLES:
                bucket.append(value)

    def take(self) -> dict[str, Any]:
        """The counts since the last take, and reset (a worker's report)."""
        with self._lock:
            out = {"sums": dict(self.sums), "samples": {k: list(v) for k, v in self.samples.items()}}
            self.sums.clear()
            self.samples.clear()
        return out

    def merge(self, report: dict[str, Any]) -> None:
        with self._lock:
            for key, value in report.get("sums", {}).items():
                self.sums[key] += value
            for key, values in report.get("samples", {}).items():
                room = MAX_SAMPLES * 16 - len(self.samples[key])
                self.samples[key].extend(values[: max(room, 0)])

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"sums": dict(self.sums), "samples": {k: list(v) for k, v in self.samples.items()}}


class RunContext:
    """What the users of this process need: the config and their device identities."""

    def __init__(self) -> None:
        self.config: dict[str, Any] | None = None
        self.counters = Counters()
        self.worker_index = 0
        self.worker_count = 1
        self.is_worker = False
        self.lag_monitor_started = False
        #: time.monotonic() when this process's test started (users pace phases from it)
        self.test_started: float | None = None
        self._device_seq = itertools.count()
        self._slot_seq = itertools.count()
        self._ready = threading.Event()

    def set_config(self, config: dict[str, Any]) -> None:
        self.config = config
        self._ready.set()

    def require_config(self) -> dict[str, Any]:
        if self.config is None:
            raise RuntimeError(
                "no testbed load configuration: run through `testbed load run` "
                "(or pass --tb-config FILE to locust)"
            )
        return self.config

    @property
    def params(self) -> dict[str, Any]:
        return self.require_config().get("params", {})

    def devices(self) -> list[list[str]]:
        """This process's share of the device identities ([id, secret] pairs)."""
        all_devices = self.require_config()["devices"]
        mine = all_devices[self.worker_index :: self.worker_count]
        if not mine:
            raise RuntimeError(
                f"worker {self.worker_index} of {self.worker_count} has no devices "
                f"({len(all_devices)} provisioned): provision at least one device per worker"
            )
        return mine

    def next_device(self) -> tuple[str, str]:
        """The next identity for a new simulated device, round robin over this process's share."""
        mine = self.devices()
        device_id, secret = mine[next(self._device_seq) % len(mine)]
        return device_id, secret

    def next_slot(self) -> int:
        """0, 1, 2, ... for the users of this process (a fleet user takes one slice each)."""
        return next(self._slot_seq)

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the service's control API (needs ``control_token`` in the config)."""
        config = self.require_config()
        token = config.get("control_token")
        if not token:
            raise RuntimeError("this scenario needs the service's control API (no control_token in the config)")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            config["service_url"].rstrip("/") + path, data=data, method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def acked_journal(self) -> Path | None:
        """Per-process file of acknowledged uploads (local runs only: the output dir must exist)."""
        out = self.require_config().get("output_dir")
        if not out or not Path(out).is_dir():
            return None
        return Path(out) / C.acked_journal_name(self.worker_index, os.getpid())


CONTEXT = RunContext()


@events.init_command_line_parser.add_listener
def _add_options(parser) -> None:
    parser.add_argument(
        "--tb-config", type=str, default="", help="testbed load run configuration (JSON file)"
    )


def _load_config_file(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise SystemExit(f"--tb-config {path}: no such file") from exc
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--tb-config {path}: not valid JSON: {exc}") from exc


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Stop this Locust process (as on SIGTERM: its reports written) once the process that started
    it is gone: `testbed load run` starts Locust in a session of its own (so that it gets Ctrl-C only
    through testbed), so a kill of testbed's process group no longer reaches it."""
    while os.getppid() == parent:
        gevent.sleep(every)
    log.warning("the process that started Locust (pid %d) is gone: stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    runner = environment.runner
    options = environment.parsed_options
    gevent.spawn(_exit_with_parent, os.getppid())
    if isinstance(runner, WorkerRunner):
        CONTEXT.is_worker = True

        def on_config(environment, msg, **_kw) -> None:
            data = msg.data
            CONTEXT.worker_index = int(data["worker_index"])
            CONTEXT.worker_count = max(1, int(data["worker_count"]))
            CONTEXT.set_config(data["config"])
            log.info("worker %d of %d got the run configuration", CONTEXT.worker_index, CONTEXT.worker_count)

        runner.register_message("tb_config", on_config)
        # Ask only now that the answer has a handler (the worker connected before init fired).
        runner.send_message("tb_config_request", {})

        @events.report_to_master.add_listener
        def _report(client_id, data, **_kw) -> None:
            data["tb"] = CONTEXT.counters.take()
            data["tb"]["worker"] = CONTEXT.worker_index

        return

    path = getattr(options, "tb_config", "") if options else ""
    if path:
        CONTEXT.set_config(_load_config_file(path))

    if isinstance(runner, MasterRunner):
        expected = max(1, int(getattr(options, "expect_workers", 1) or 1))
        indexes: dict[str, int] = {}

        def _send_config(environment, msg, **_kw) -> None:
            config = CONTEXT.require_config()
            index = indexes.setdefault(msg.node_id, len(indexes))
            runner.send_message(
                "tb_config",
                {"config": config, "worker_index": index % expected, "worker_count": expected},
                client_id=msg.node_id,
            )

        runner.register_message("tb_config_request", _send_config)

        @events.worker_report.add_listener
        def _merge(client_id, data, **_kw) -> None:
            if "tb" in data:
                CONTEXT.counters.merge(data["tb"])
                # which worker did how much: the summary shows that every worker's share arrived
                worker = str(data["tb"].get("worker", client_id))
                total = data.get("stats_total") or {}
                CONTEXT.counters.add(C.keyed(C.WORKER_REQUESTS, worker), float(total.get("num_requests", 0)))


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    CONTEXT.test_started = time.monotonic()
    if not isinstance(environment.runner, MasterRunner) and not CONTEXT.lag_monitor_started:
        CONTEXT.lag_monitor_started = True
        gevent.spawn(_watch_loop_lag)


def _watch_loop_lag(interval: float = 0.05) -> None:
    """Record how late this process's event loop wakes up (CPU starvation of the load generator).

    A device's measured time includes any stall of the process that measures
    it; the stalls are recorded so that a summary can tell them apart.
    """
    while True:
        before = time.monotonic()
        gevent.sleep(interval)
        lag = time.monotonic() - before - interval
        if lag > 0.02:
            CONTEXT.counters.sample(C.LOOP_LAG, [round(time.time(), 3), round(lag, 4)])


@events.quit.add_listener
def _write_counters(exit_code, **_kwargs) -> None:
    # Every process fires quit; only the master or the local runner writes.
    config = CONTEXT.config
    if config is None or CONTEXT.is_worker:
        return
    out = config.get("output_dir")
    if not out:
        return
    path = Path(out) / C.COUNTERS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(CONTEXT.counters.snapshot()))
    tmp.replace(path)
