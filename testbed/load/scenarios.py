"""The load scenarios, host side: service options, parameters, what runs alongside, and the checks after.

A scenario's Locust part is a locustfile in ``scenarios/load/``; this module
prepares its run (fleet, parameters), does what must happen in the service's
neighbourhood during it (faults are driven from the locustfile; SIGKILLs and
memory samples from here) and checks its invariants afterwards against the
service's own records (support API, the process's RSS and sockets).

``run_scenario()`` is the one entry point, used by ``testbed load run`` and
by the tests in ``tests/load/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from testbed.load import report
from testbed.load.cores import check_core_gzip, load_cores
from testbed.load.provision import Fleet, check_loopback_url, provision
from testbed.load.runner import (
    SCENARIO_DIR,
    LocustPlan,
    LocustResult,
    run_locust,
    write_private_json,
)

SUMMARY_FILE = "summary.json"


class ScenarioError(RuntimeError):
    """A scenario cannot run as asked (bad option, missing service facility)."""


@dataclass
class ScenarioSpec:
    name: str
    locustfile: str
    summary: str
    users: int
    duration: float
    devices: Callable[[int], int]  # devices to provision for N users
    service_options: dict[str, Any] = field(default_factory=dict)
    needs_own_service: bool = False
    needs_pid: bool = False
    uses_shape: bool = False


SCENARIOS: dict[str, ScenarioSpec] = {
    "sizes": ScenarioSpec(
        "sizes", "sizes.py", "(a) devices and upload sizes ramp in steps; throughput and latency per size bucket",
        users=40, duration=40, devices=lambda u: u, service_options={"rate_limit": 0}, uses_shape=True,
    ),
    "throttling": ScenarioSpec(
        "throttling", "throttling.py",
        "(b) many devices, few crash signatures: skipped at intent, bytes saved, exactly N stored per signature",
        users=100, duration=20, devices=lambda u: u, service_options={"rate_limit": 0},
    ),
    "deadline": ScenarioSpec(
        "deadline", "deadline.py",
        "(c) the service delayed, hung, dripping: every device gives up at its 5 s deadline; memory and sockets recover",
        users=30, duration=39, devices=lambda u: u, service_options={"rate_limit": 0}, needs_pid=True,
    ),
    "fleet": ScenarioSpec(
        "fleet", "fleet.py", "(d) 10,000 devices syncing once per compressed day (sync_period seconds)",
        users=40, duration=90, devices=lambda u: 10_000,
    ),
    "durability": ScenarioSpec(
        "durability", "mix.py",
        "uploads under SIGKILLs of the service: every acknowledged upload survives, nothing half-written shows",
        users=20, duration=20, devices=lambda u: u, service_options={"rate_limit": 0}, needs_own_service=True,
    ),
}


@dataclass
class RunOptions:
    scenario: str
    out_dir: Path
    users: int | None = None
    duration: float | None = None
    workers: int = 0
    devices: int | None = None
    service_url: str | None = None
    control_token: str | None = None
    service_pid: int | None = None
    throttle_limit: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] | None = None
    remote_workers: int = 0  # --master: workers on other machines
    master_bind_host: str = "127.0.0.1"
    master_port: int = 5557


@dataclass
class ServiceHandle:
    url: str
    control_token: str
    pid: int | None
    throttle_limit: int
    process: Any = None  # ServiceProcess when we started it


def _say(opts: RunOptions, msg: str) -> None:
    (opts.progress or (lambda m: print(m, file=sys.stderr, flush=True)))(msg)


# ----------------------------------------------------------------------------- process facts
def rss_bytes(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def open_connections(pid: int, port: int) -> int:
    """TCP connections of ``pid`` on its service ``port`` other than the listening socket."""
    import psutil

    n = 0
    for conn in psutil.Process(pid).net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN:
            continue
        if conn.laddr and conn.laddr.port == port:
            n += 1
    return n


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread: [(wall time, bytes), ...]."""

    def __init__(self, pid: int | None, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.pid:
            try:
                self.samples.append((time.time(), rss_bytes(self.pid)))
            except Exception:  # the process is gone: nothing more to sample
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def wait_connections_drained(pid: int, port: int, timeout: float) -> tuple[int, float]:
    """Poll until the service holds no client connections; (count left, seconds waited)."""
    start = time.monotonic()
    left = open_connections(pid, port)
    while left and time.monotonic() - start < timeout:
        time.sleep(0.2)
        left = open_connections(pid, port)
    return left, round(time.monotonic() - start, 2)


# ----------------------------------------------------------------------------- params
_DEVICE_PARAMS = {"crash_interval", "pace", "intent", "sync_every"}
PARAMS: dict[str, set[str]] = {
    "sizes": _DEVICE_PARAMS | {"stages", "spawn_rate"},
    "throttling": _DEVICE_PARAMS | {"signatures", "rotate_seconds", "run_id"},
    "deadline": {"deadline", "crash_interval", "phases"},
    "fleet": {"sync_period"},
    "durability": _DEVICE_PARAMS | {"kills"},
}


def default_params(spec: ScenarioSpec, users: int, duration: float, extra: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(extra) - PARAMS[spec.name])
    if unknown:
        raise ScenarioError(f"unknown parameter(s) for {spec.name}: {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(PARAMS[spec.name]))}")
    cores = load_cores()
    p: dict[str, Any] = {"users": users, "duration": duration}
    if spec.name == "sizes":
        p.update(stages=len({c.bucket for c in cores}), crash_interval=0.5, intent=True)
    elif spec.name == "throttling":
        p.update(signatures=3, rotate_seconds=5.0, sync_every=3, crash_interval=0.2, run_id=secrets.token_hex(6))
    elif spec.name == "deadline":
        p.update(deadline=5.0, crash_interval=0.2)
    elif spec.name == "fleet":
        p.update(sync_period=60.0)
    elif spec.name == "durability":
        p.update(kills=3, intent=False, journal=True, crash_interval=0.05)
    p.update(extra)
    if spec.name == "throttling":
        p["rounds"] = max(1, math.ceil(float(p["duration"]) / float(p["rotate_seconds"])))
    if spec.name == "fleet" and float(p["duration"]) < float(p["sync_period"]):
        raise ScenarioError(f"the fleet scenario needs --duration >= sync_period ({p['sync_period']} s) "
                            "so that every device syncs at least once")
    if spec.name == "deadline" and "phases" not in extra:
        p["phases"] = deadline_phases(float(p["duration"]), float(p["deadline"]))
    return p


def min_deadline_duration(deadline: float) -> float:
    return 3.0 + 4 * (deadline + 2.0)


def deadline_phases(duration: float, deadline: float) -> list[dict[str, Any]]:
    """Baseline (3 s), hang, delay past the deadline, drip (a third each of the rest), recovery.

    A delayed or dripping request keeps its fault after the phase ends, but
    clearing ``hang`` releases the held requests (503): so ``hang`` comes
    first, while devices are quick, and its crashes reach the deadline.
    Recovery lasts the deadline + 2 s: crashes begun under the last fault end
    within the deadline, and then devices must be answered again.
    """
    if duration < min_deadline_duration(deadline):
        raise ScenarioError(
            f"the deadline scenario needs --duration >= {min_deadline_duration(deadline):.0f} s "
            f"(3 s baseline, three fault phases and a recovery of at least the deadline + 2 s each)"
        )
    recovery = deadline + 2.0
    fault_s = (duration - 3.0 - recovery) / 3
    return [
        {"name": "baseline", "seconds": 3.0, "fault": None},
        {"name": "hang", "seconds": fault_s, "fault": {"mode": "hang"}},
        {"name": "delay", "seconds": fault_s, "fault": {"mode": "delay", "delayMs": int((deadline + 2) * 1000)}},
        {"name": "drip", "seconds": fault_s, "fault": {"mode": "drip", "delayMs": 400}},
        {"name": "recovery", "seconds": recovery, "fault": None},
    ]


# ----------------------------------------------------------------------------- the run
def run_scenario(opts: RunOptions) -> dict[str, Any]:
    """Run one scenario end to end; returns the summary (also written to ``out_dir/summary.json``)."""
    if opts.scenario not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {opts.scenario!r}; one of {', '.join(SCENARIOS)}")
    spec = SCENARIOS[opts.scenario]
    users = opts.users or spec.users
    duration = opts.duration or spec.duration
    if users < 1 or users > 20_000:
        raise ScenarioError(f"--users must be 1..20000, got {users}")
    if duration <= 0 or duration > 3600:
        raise ScenarioError(f"--duration must be in (0, 3600] seconds, got {duration}")
    if opts.workers < 0 or opts.workers > 64:
        raise ScenarioError(f"--workers must be 0..64, got {opts.workers}")
    processes = opts.workers or opts.remote_workers or 1
    if spec.name == "fleet" and processes > 1:
        users = processes * math.ceil(max(users, processes) / processes)  # same users on every worker
    params = default_params(spec, users, duration, opts.params)
    if spec.name == "fleet":
        params["fleet_users_per_process"] = users // processes
    n_devices = opts.devices or spec.devices(users)
    n_devices = max(n_devices, processes)
    out = opts.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for pattern in ("acked-*.jsonl", "phases.jsonl", "tb_counters.json", "locust_stats.json"):
        for stale in out.glob(pattern):
            stale.unlink()

    service = _open_service(spec, opts, out)
    try:
        _say(opts, f"{spec.name}: provisioning {n_devices} devices at {service.url}")
        fleet = provision(service.url, service.control_token, n_devices, name=spec.name, progress=opts.progress)
        config = {
            **fleet.to_config(),
            "scenario": spec.name,
            "control_token": service.control_token,
            "output_dir": str(out),
            "params": params,
        }
        config_path = out / "config.json"
        write_private_json(config_path, config)  # it holds the run's tokens and device secrets
        plan = LocustPlan(
            locustfile=SCENARIO_DIR / spec.locustfile,
            host=service.url,
            out_dir=out,
            config_path=config_path,
            users=users,
            run_time=None if spec.uses_shape else duration,
            workers=opts.workers,
            hard_limit=duration + 120 + (600 if opts.remote_workers else 0),
            remote_workers=opts.remote_workers,
            master_bind_host=opts.master_bind_host,
            master_port=opts.master_port,
            progress=lambda line: _say(opts, f"{spec.name}: {line}"),
        )
        before: dict[str, Any] = {}
        if spec.name == "deadline":
            before = _deadline_warmup(service, fleet)
        _say(opts, f"{spec.name}: {users} users for {duration:.0f} s"
                   f"{f' on {opts.workers} workers' if opts.workers else ''}; output in {out}")
        extra: dict[str, Any] = {}
        if spec.name == "durability":
            result, kills = _run_with_kills(plan, service, int(params["kills"]), duration, opts)
            extra = {"kills": kills}
        elif spec.name == "deadline":
            with RssSampler(service.pid) as sampler:
                result = run_locust(plan)
            extra = {"rss_samples": sampler.samples}
        else:
            result = run_locust(plan)
        summary = _summarize(spec, params, result, service, fleet, before, extra, opts)
    finally:
        if service.process is not None:
            service.process.stop()
    summary["output_dir"] = str(out)
    summary["files"] = {
        "summary": SUMMARY_FILE, "locust_html": "locust.html", "locust_csv": "locust_stats.csv",
        "history_csv": "locust_stats_history.csv", "log": "locust.log",
    }
    summary["files"]["summary_html"] = "summary.html"
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    write_summary_html(out, summary)
    return summary


def write_summary_html(out: Path, summary: dict[str, Any]) -> None:
    """``summary.html``: users, throughput and p99 per request name over time (inline SVG), and the summary."""
    history = report.read_history(out / "locust_stats_history.csv")
    named = {k: v for k, v in history.items() if k != "Aggregated"}
    # many names (the deadline scenario's phases) make an unreadable chart: keep the busiest six
    busiest = sorted(named, key=lambda k: -(named[k][-1]["count"] if named[k] else 0))[:6]
    charts = [
        report.svg_chart("Users", "users", {"users": [(r["t"], r["users"]) for r in history.get("Aggregated", [])]}),
        report.svg_chart("Requests per second", "req/s", {k: report.interval_rates(named[k]) for k in busiest}),
        report.svg_chart("p99 latency (Locust's 10 s window)", "ms",
                         {k: [(r["t"], r["p99"]) for r in named[k]] for k in busiest}),
    ]
    checks = summary.get("checks", {})
    title = f"testbed load run {summary['scenario']}: " + ("all checks passed" if summary.get("ok") else
                                                            "FAILED " + ", ".join(k for k, c in checks.items() if not c.get("ok")))
    report.write_html(out / "summary.html", title, summary, charts, {"Locust report": "locust.html"})


def _open_service(spec: ScenarioSpec, opts: RunOptions, out: Path) -> ServiceHandle:
    if opts.service_url:
        if spec.needs_own_service:
            raise ScenarioError(f"{spec.name} kills and restarts the service, so it starts its own: drop --service-url")
        url = check_loopback_url(opts.service_url)
        if not opts.control_token:
            raise ScenarioError("--service-url needs --control-token (the service's control API token)")
        if spec.needs_pid and not opts.service_pid:
            raise ScenarioError(f"{spec.name} measures the service's memory and sockets: give --service-pid")
        return ServiceHandle(url, opts.control_token, opts.service_pid, opts.throttle_limit or 5)
    from testbed.service.process import ServiceProcess

    options = dict(spec.service_options)
    if opts.throttle_limit:
        options["throttle_limit"] = opts.throttle_limit
    proc = ServiceProcess(out / "service-data", **options, log_path=out / "service.log")
    proc.start()
    _say(opts, f"{spec.name}: started the service at {proc.url} (pid {proc.pid}, data in {proc.data_dir})")
    return ServiceHandle(proc.url, proc.control_token or "", proc.pid, opts.throttle_limit or 5, proc)


def _deadline_warmup(service: ServiceHandle, fleet: Fleet) -> dict[str, Any]:
    """Exercise the device API once per code path, then take the 'before' memory figure."""
    cores = load_cores()
    device_id, secret = fleet.devices[0]
    auth = {"Authorization": f"Device {device_id}:{secret}"}
    with httpx.Client(base_url=service.url, timeout=10) as c:
        for i in range(60):
            fixture = cores[i % len(cores)]
            sig = secrets.token_hex(16)
            c.post("/device/v1/sync", json={}, headers=auth)
            c.post("/device/v1/crashdumps/intent", json={"signature": sig, "size": fixture.size}, headers=auth)
            c.post("/device/v1/crashdumps", content=fixture.body,
                   headers={**auth, "Content-Type": "application/gzip", "X-Crash-Signature": sig})
    assert service.pid is not None
    return {"rss_before": rss_bytes(service.pid)}


def _run_with_kills(
    plan: LocustPlan, service: ServiceHandle, kills: int, duration: float, opts: RunOptions
) -> tuple[LocustResult, list[dict[str, Any]]]:
    """Run Locust in a thread while SIGKILLing the service ``kills`` times and restarting it."""
    proc = service.process
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(result=run_locust(plan)), name="locust")
    thread.start()
    history: list[dict[str, Any]] = []
    try:
        interval = duration / (kills + 1)
        t0 = time.monotonic()
        for k in range(kills):
            target = t0 + interval * (k + 1)
            while time.monotonic() < target and thread.is_alive():
                time.sleep(0.05)
            if not thread.is_alive():
                break
            port = proc.port
            killed_at = time.monotonic() - t0
            proc.kill()
            proc.requested_port = port  # come back where the devices dial
            started = time.monotonic()
            proc.start()
            service.pid = proc.pid
            history.append({"at_s": round(killed_at, 2), "restart_s": round(time.monotonic() - started, 2)})
            _say(opts, f"durability: SIGKILL {k + 1}/{kills} at {killed_at:.1f} s; back in {history[-1]['restart_s']} s")
    finally:
        thread.join()
    return box["result"], history


# ----------------------------------------------------------------------------- checks and summary
def _summarize(
    spec: ScenarioSpec, params: dict[str, Any], result: LocustResult, service: ServiceHandle, fleet: Fleet,
    before: dict[str, Any], extra: dict[str, Any], opts: RunOptions,
) -> dict[str, Any]:
    stats = result.stats()
    counters_path = result.out_dir / "tb_counters.json"
    counters = json.loads(counters_path.read_text()) if counters_path.exists() else {"sums": {}, "samples": {}}
    sums: dict[str, float] = counters["sums"]
    samples: dict[str, list[float]] = counters["samples"]
    summary: dict[str, Any] = {
        "scenario": spec.name,
        "users": params["users"],
        "duration_s": params["duration"],
        "workers": opts.workers,
        "devices": len(fleet.devices),
        "locust_exit_code": result.exit_code,
        "wall_s": round(result.wall_seconds, 2),
        "params": {k: v for k, v in params.items() if k not in ("phases",)},
        "requests": report.summarize_stats(stats),
        "counters": {k: v for k, v in sums.items() if ":" not in k},
    }
    checks: dict[str, Any] = {}
    uploads = report.merged_summary(stats, "upload ")
    if uploads:
        summary["uploads"] = uploads
    checks["locust_ran"] = {"ok": result.exit_code == 0 and sum(e["num_requests"] for e in stats) > 0,
                            "exit_code": result.exit_code}
    if spec.name == "sizes":
        checks["no_failed_uploads"] = {"ok": bool(uploads) and uploads["failures"] == 0,
                                       "failures": uploads["failures"] if uploads else None}
        summary["per_bucket"] = {e["name"].removeprefix("upload "): report.entry_summary(e)
                                 for e in stats if e["name"].startswith("upload ")}
    elif spec.name == "throttling":
        checks.update(_throttling_checks(params, sums, service, fleet, summary))
    elif spec.name == "deadline":
        checks.update(_deadline_checks(params, sums, samples, service, before, summary,
                                       extra.get("rss_samples", []), result.out_dir / "phases.jsonl"))
    elif spec.name == "fleet":
        checks.update(_fleet_checks(params, sums, samples, stats, summary, len(fleet.devices)))
    elif spec.name == "durability":
        summary["kills"] = extra["kills"]
        checks.update(_durability_checks(result.out_dir, service, fleet, summary, int(params["kills"])))
    summary["checks"] = checks
    summary["ok"] = all(c.get("ok") for c in checks.values())
    return summary


def _support(service: ServiceHandle, fleet: Fleet):
    from testbed.service.client import Client

    return Client(service.url, fleet.support_token)


def _throttling_checks(params, sums, service, fleet, summary) -> dict[str, Any]:
    limit = service.throttle_limit
    crashes = sums.get("crashes", 0)
    at_intent = sums.get("skipped_intent", 0)
    local = sums.get("skipped_local", 0)
    summary["throttling"] = {
        "throttle_limit": limit,
        "crashes": int(crashes),
        "share_skipped_at_intent": round(at_intent / crashes, 4) if crashes else None,
        "share_skipped_on_device": round(local / crashes, 4) if crashes else None,
        "share_uploaded": round((sums.get("stored", 0) + sums.get("throttled_at_upload", 0)) / crashes, 4)
        if crashes else None,
        "throttled_at_upload": int(sums.get("throttled_at_upload", 0)),
        "bytes_saved": int(sums.get("bytes_saved", 0)),
        "bytes_sent_then_throttled": int(sums.get("bytes_sent_throttled", 0)),
        "bytes_stored": int(sums.get("stored_bytes", 0)),
    }
    sent = {k.split(":", 1)[1]: int(v) for k, v in sums.items() if k.startswith("upload_sent:")}
    acked = {k.split(":", 1)[1]: int(v) for k, v in sums.items() if k.startswith("stored:")}
    wrong: list[dict[str, Any]] = []
    exact = 0
    with _support(service, fleet) as client:
        for sig, n_sent in sorted(sent.items()):
            stored = len(client.support_dumps(reason="load throttling check", tenantId=fleet.tenant_id,
                                              signature=sig, limit=10000))
            # N+1 must never get through; with at least N bodies sent, exactly N are stored;
            # every 201 a client saw is a stored dump. The client-side counts are lower
            # bounds: a request in flight when the run stops can be stored after its user
            # is gone, and a worker's last counters can miss the master's final report, so
            # a stored dump without a counted 201 is not an error (the reverse is).
            expect_exact = n_sent >= limit and sums.get("upload_failed", 0) == 0
            if stored > limit or (expect_exact and stored != limit) or acked.get(sig, 0) > stored:
                wrong.append({"signature": sig, "stored": stored, "acknowledged": acked.get(sig, 0),
                              "bodies_sent": n_sent})
            elif stored == limit:
                exact += 1
    summary["throttling"]["signatures"] = len(sent)
    summary["throttling"]["signatures_at_exactly_n"] = exact
    return {
        "exactly_n_per_signature": {"ok": not wrong and exact > 0, "limit": limit, "signatures": len(sent),
                                    "at_exactly_n": exact, "wrong": wrong[:20]},
        "no_failed_uploads": {"ok": sums.get("upload_failed", 0) == 0, "failed": int(sums.get("upload_failed", 0))},
    }


def _deadline_checks(params, sums, samples, service, before, summary, rss_samples, phases_path) -> dict[str, Any]:
    limit = float(params["deadline"]) + 0.2
    handled = samples.get("handled_s", [])
    gave_up = samples.get("gave_up_s", [])
    per_phase = {}
    for phase in [p["name"] for p in params["phases"]] + ["after"]:
        hs = samples.get(f"handled_s:{phase}", [])
        if not hs:
            continue
        per_phase[phase] = {
            "crashes": len(hs), "gave_up": int(sums.get(f"gave_up:{phase}", 0)),
            "answered": int(sums.get(f"answered:{phase}", 0)), "errors": int(sums.get(f"errors:{phase}", 0)),
            "p50_s": _r(report.exact_percentile(hs, 0.5)), "p99_s": _r(report.exact_percentile(hs, 0.99)),
            "max_s": _r(max(hs)),
        }
    pid, port = service.pid, int(service.url.rsplit(":", 1)[1])
    left, waited = wait_connections_drained(pid, port, timeout=30.0)
    rss_after = rss_bytes(pid)
    # "before": the service warmed up under the same load, just before the first fault (end of the
    # baseline phase, from the phase marks the Locust master writes); else after the host-side warm-up.
    rss_before = before["rss_before"]
    before_source = "after warm-up uploads"
    marks = [json.loads(line) for line in phases_path.read_text().splitlines()] if phases_path.exists() else []
    first_fault = next((m["at"] for m in marks if m["phase"] not in ("baseline",)), None)
    if first_fault is not None:
        prior = [rss for at, rss in rss_samples if at <= first_fault]
        if prior:
            rss_before, before_source = prior[-1], "end of the baseline phase (under load)"
    peak = max((rss for _, rss in rss_samples), default=rss_after)
    ratio = rss_after / rss_before if rss_before else None
    summary["deadline"] = {
        "deadline_s": params["deadline"],
        "crashes": len(handled),
        "gave_up": len(gave_up),
        "time_to_give_up_s": {
            "p50": _r(report.exact_percentile(gave_up, 0.5)), "p90": _r(report.exact_percentile(gave_up, 0.9)),
            "p99": _r(report.exact_percentile(gave_up, 0.99)),
            "min": _r(min(gave_up)) if gave_up else None, "max": _r(max(gave_up)) if gave_up else None,
            "histogram_0_1s": _histogram(gave_up, 0.1),
        },
        "max_crash_handling_s": _r(max(handled)) if handled else None,
        "phases": per_phase,
        "service_rss_before": rss_before,
        "service_rss_before_taken": before_source,
        "service_rss_after_warmup": before["rss_before"],
        "service_rss_peak": peak,
        "service_rss_after": rss_after,
        "rss_ratio": round(ratio, 3) if ratio else None,
        "connections_left": left,
        "connections_drained_after_s": waited,
    }
    faulted = [p for p in per_phase if p not in ("baseline", "recovery", "after")]
    # A crash measured past the limit is the client's fault unless the load generator's own event
    # loop was stalled (CPU starvation of the Locust process) for at least the overshoot during it.
    lags = samples.get("loop_lag", [])
    late = samples.get("late", [])
    unexplained = []
    for end, took in late:
        stall = max((lag for at, lag in lags if end - took <= at <= end + 0.1), default=0.0)
        if took - limit > stall:
            unexplained.append({"took_s": took, "stall_s": stall})
    summary["deadline"]["late_crashes"] = len(late)
    summary["deadline"]["late_explained_by_load_generator_stalls"] = len(late) - len(unexplained)
    summary["deadline"]["max_load_generator_stall_s"] = _r(max((lag for _, lag in lags), default=0.0))
    return {
        "no_client_past_deadline": {"ok": bool(handled) and not unexplained, "limit_s": limit,
                                    "max_s": _r(max(handled)) if handled else None,
                                    "past_limit": len(late), "past_limit_unexplained": unexplained[:20]},
        "clients_gave_up_under_faults": {"ok": all(per_phase[p]["gave_up"] > 0 for p in faulted) and bool(faulted),
                                         "phases": {p: per_phase[p]["gave_up"] for p in faulted}},
        "service_answers_after_faults": {"ok": per_phase.get("recovery", {}).get("answered", 0) > 0,
                                         "answered_in_recovery": per_phase.get("recovery", {}).get("answered", 0)},
        "memory_within_20_percent": {"ok": ratio is not None and 0.8 <= ratio <= 1.2, "ratio": _r(ratio)},
        "no_leaked_connections": {"ok": left == 0, "left": left, "waited_s": waited},
    }


def _fleet_checks(params, sums, samples, stats, summary, devices) -> dict[str, Any]:
    period = float(params["sync_period"])
    duration = float(params["duration"])
    syncs = int(sums.get("fleet_syncs", 0))
    failed = int(sums.get("fleet_sync_failed", 0))
    lateness = samples.get("lateness_s", [])
    target = devices / period
    # Every device has synced floor(duration / period) times by the end (its first sync is within one period).
    expected = devices * max(1, math.floor(duration / period))
    entry = next((e for e in stats if e["name"] == "fleet sync"), None)
    summary["fleet"] = {
        "devices": devices, "sync_period_s": period, "target_syncs_per_s": round(target, 1),
        "syncs": syncs, "failed": failed,
        "achieved_syncs_per_s": round(syncs / duration, 1),
        "lateness_s": {"p50": _r(report.exact_percentile(lateness, 0.5)),
                       "p99": _r(report.exact_percentile(lateness, 0.99)),
                       "max": _r(max(lateness)) if lateness else None},
        "sync_latency": report.entry_summary(entry) if entry else None,
    }
    p99_late = report.exact_percentile(lateness, 0.99) or 0.0
    rate = float(summary["fleet"]["sync_latency"]["per_second"]) if entry else 0.0
    synced = int(sums.get("fleet_devices_synced", 0))
    summary["fleet"]["devices_synced"] = synced
    summary["fleet"]["syncs_expected_about"] = expected
    return {
        "every_device_synced": {"ok": synced == devices, "synced": synced, "devices": devices},
        # the rate between the first and the last sync (start-up of distributed workers not counted)
        "rate_kept": {"ok": rate >= 0.9 * target, "syncs_per_s": round(rate, 1), "target_per_s": round(target, 1)},
        "no_failed_syncs": {"ok": failed == 0, "failed": failed},
        "schedule_kept": {"ok": p99_late <= 1.0, "lateness_p99_s": _r(p99_late)},
    }


def _durability_checks(out: Path, service: ServiceHandle, fleet: Fleet, summary, kills: int) -> dict[str, Any]:
    acked: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob("acked-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                acked[entry["id"]] = entry
    bodies = {c.name: hashlib.sha256(c.body).hexdigest() for c in load_cores()}
    missing, differ, broken = [], [], []
    from testbed.service.client import ServiceError

    with _support(service, fleet) as client:
        listed = client.support_dumps(reason="load durability check", tenantId=fleet.tenant_id, limit=10000)
        listed_ids = {d["id"] for d in listed}
        for dump_id, entry in acked.items():
            # read each acknowledged dump by id (the listing is capped at 10,000 rows)
            try:
                data = client.support_read(dump_id, "load durability check")
            except ServiceError as exc:
                if exc.status == 404:
                    missing.append(dump_id)
                    continue
                raise
            if hashlib.sha256(data).hexdigest() != bodies.get(entry["fixture"]):
                differ.append(dump_id)
        # Everything visible must be whole: acknowledged or not (in flight at a kill), a complete core.
        for d in listed:
            if d["id"] in acked:
                continue
            try:
                check_core_gzip(client.support_read(d["id"], "load durability check"), name=d["id"])
            except ValueError as exc:
                broken.append(str(exc))
            except Exception as exc:  # unreadable is as bad as broken
                broken.append(f"{d['id']}: {exc}")
    summary["durability"] = {
        "acknowledged": len(acked), "listed": len(listed), "missing": len(missing),
        "content_differs": len(differ), "unacknowledged_but_stored": len(listed_ids - set(acked)),
        "listing_truncated": len(listed) >= 10000,
        "half_written_visible": len(broken),
    }
    return {
        "kills_done": {"ok": len(summary["kills"]) >= kills, "kills": len(summary["kills"]), "asked": kills},
        "uploads_acknowledged": {"ok": len(acked) > 0, "acknowledged": len(acked)},
        "zero_acknowledged_lost": {"ok": not missing and not differ, "missing": missing[:20], "differs": differ[:20]},
        "nothing_half_written": {"ok": not broken, "broken": broken[:20]},
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _histogram(values: list[float], width: float) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        lo = math.floor(v / width) * width
        key = f"{lo:.1f}-{lo + width:.1f}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: float(kv[0].split("-")[0])))
