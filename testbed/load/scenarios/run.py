"""Run one load scenario end to end: check its parameters, open a service, claim a fleet, run Locust, check.

``run_scenario()`` is the one entry point, used by ``testbed load run`` and by
the tests in ``tests/load/``. Every parameter is checked before a service is
started or a device claimed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testbed.contract.device_api import THROTTLE_LIMIT
from testbed.load import counters as C
from testbed.load import page, report
from testbed.load.provision import check_service_url, provision
from testbed.load.runner import SCENARIO_DIR, LocustPlan, progress_interval, write_private_json
from testbed.load.scenarios.base import (
    Figures,
    LoadScenario,
    RunOptions,
    ScenarioError,
    ScenarioRun,
    ServiceHandle,
    get,
    say,
)

SUMMARY_FILE = "summary.json"
MAX_USERS = 20_000
MAX_DURATION_S = 3600
MAX_WORKERS = 64
#: files of an earlier run in the same output directory that would mix into this one's figures
STALE = (C.ACKED_JOURNAL_GLOB, C.PHASES_FILE, C.COUNTERS_FILE, "locust_stats.json")
FILES = {
    "summary": SUMMARY_FILE, "summary_html": "summary.html", "locust_html": "locust.html",
    "locust_csv": "locust_stats.csv", "history_csv": "locust_stats_history.csv", "log": "locust.log",
}




def plan_run(opts: RunOptions) -> tuple[LoadScenario, dict[str, Any], int, int]:
    """The scenario, its parameters, users and devices, all checked; nothing is started."""
    scenario = get(opts.scenario)
    users = opts.users or scenario.users
    duration = opts.duration or scenario.duration
    if users < 1 or users > MAX_USERS:
        raise ScenarioError(f"--users must be 1..{MAX_USERS}, got {users}")
    if duration <= 0 or duration > MAX_DURATION_S:
        raise ScenarioError(f"--duration must be in (0, {MAX_DURATION_S}] seconds, got {duration}")
    if opts.workers < 0 or opts.workers > MAX_WORKERS:
        raise ScenarioError(f"--workers must be 0..{MAX_WORKERS}, got {opts.workers}")
    if opts.service_url:
        if scenario.needs_own_service:
            raise ScenarioError(f"{scenario.name} kills and restarts the service, so it starts its own: "
                                "drop --service-url")
        check_service_url(opts.service_url, allow_private=opts.allow_remote_service)
        if not opts.control_token:
            raise ScenarioError("--service-url needs --control-token (the service's control API token)")
        if scenario.needs_pid and not opts.service_pid:
            raise ScenarioError(f"{scenario.name} measures the service's memory and sockets: give --service-pid")
    if opts.spawn_rate < 0:
        raise ScenarioError(f"--spawn-rate must be >= 0, got {opts.spawn_rate}")
    if opts.spawn_rate and scenario.uses_shape:
        raise ScenarioError(f"{scenario.name} ramps its users with its own load shape: drop --spawn-rate")
    locustfile_of(scenario, opts)
    processes = opts.workers or opts.remote_workers or 1
    users = scenario.users_for(users, processes)
    params = scenario.resolve_params(dict(opts.params), users, duration, processes)
    n_devices = max(opts.devices or scenario.devices(users), processes)
    return scenario, params, users, n_devices


def locustfile_of(scenario: LoadScenario, opts: RunOptions) -> Path:
    """The locustfile the run uses: ``--locustfile``, else the scenario's own in scenarios/load/."""
    if opts.locustfile is not None:
        path = Path(opts.locustfile).resolve()
        if not path.is_file():
            raise ScenarioError(f"--locustfile {opts.locustfile}: no such file")
        return path
    if not scenario.locustfile:
        raise ScenarioError(f"the {scenario.name} scenario runs your own locustfile: give --locustfile PATH")
    return SCENARIO_DIR / scenario.locustfile


def run_scenario(opts: RunOptions) -> dict[str, Any]:
    """Run one scenario end to end; returns the summary (also written to ``out_dir/summary.json``)."""
    scenario, params, users, n_devices = plan_run(opts)
    duration = float(params["duration"])
    out = opts.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for pattern in STALE:
        for stale in out.glob(pattern):
            stale.unlink()

    service = _open_service(scenario, opts, out)
    try:
        say(opts, f"{scenario.name}: provisioning {n_devices} devices at {service.url}")
        fleet = provision(service.url, service.control_token, n_devices, name=scenario.name,
                          progress=opts.progress, allow_private=opts.allow_remote_service)
        run = ScenarioRun(opts, params, out, service, fleet)
        config = {**fleet.to_config(), "scenario": scenario.name, "control_token": service.control_token,
                  "output_dir": str(out), "params": params}
        config_path = out / "config.json"
        write_private_json(config_path, config)  # it holds the run's tokens and device secrets
        plan = LocustPlan(
            locustfile=locustfile_of(scenario, opts),
            host=service.url,
            out_dir=out,
            config_path=config_path,
            users=users,
            spawn_rate=opts.spawn_rate,
            run_time=None if scenario.uses_shape else duration,
            workers=opts.workers,
            hard_limit=duration + 120 + (600 if opts.remote_workers else 0),
            remote_workers=opts.remote_workers,
            master_bind_host=opts.master_bind_host,
            master_port=opts.master_port,
            progress=lambda line: run.say(f"{scenario.name}: {line}"),
            progress_every=progress_interval(duration),
        )
        scenario.prepare(run)
        run.say(f"{scenario.name}: {users} users for {duration:.0f} s"
                f"{f' on {opts.workers} workers' if opts.workers else ''}; output in {out}")
        result = scenario.execute(run, plan)
        summary = _summarize(scenario, run, Figures.read(result))
    finally:
        if service.process is not None:
            service.process.stop()
    summary["output_dir"] = str(out)
    summary["files"] = dict(FILES)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    write_summary_html(out, summary)
    return summary


def _summarize(scenario: LoadScenario, run: ScenarioRun, figures: Figures) -> dict[str, Any]:
    params, stats, result = run.params, figures.stats, figures.result
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "users": params["users"],
        "duration_s": params["duration"],
        "workers": run.opts.workers or run.opts.remote_workers,
        "devices": len(run.fleet.devices),
        "locust_exit_code": result.exit_code,
        "wall_s": round(result.wall_seconds, 2),
        "params": {k: v for k, v in params.items() if k != "phases"},
        "requests": report.summarize_stats(stats),
        "counters": C.plain(figures.sums),
    }
    per_worker = C.per_key(figures.sums, C.WORKER_REQUESTS)
    if per_worker:  # master/worker runs: the requests each worker reported to the master
        summary["requests_per_worker"] = dict(sorted(per_worker.items()))
    total = report.merged_summary(stats, "")
    if total:
        summary["requests_total"] = total
    uploads = report.merged_summary(stats, C.UPLOAD_PREFIX)
    if uploads:
        summary["uploads"] = uploads
    checks: dict[str, Any] = {
        "locust_ran": {"ok": result.exit_code == 0 and sum(e["num_requests"] for e in stats) > 0,
                       "exit_code": result.exit_code},
    }
    if result.interrupted:  # a partial run proves nothing either way: its figures, no verdict
        summary["interrupted"] = True
        checks["scenario_checks"] = {"ok": False, "not_run": f"stopped by Ctrl-C after {result.wall_seconds:.0f} s"}
    else:
        checks.update(scenario.check(run, figures, summary))
        checks.update(limit_checks(run.opts, total))
    summary["checks"] = checks
    summary["ok"] = all(c.get("ok") for c in checks.values())
    return summary


def limit_checks(opts: RunOptions, total: dict[str, Any] | None) -> dict[str, Any]:
    """The user's own limits (``--check-p99-ms``, ``--check-failure-ratio``) over all requests together."""
    checks: dict[str, Any] = {}
    n = int(total["requests"]) if total else 0
    if opts.max_p99_ms is not None:
        p99 = total.get("p99_ms") if total else None
        checks["p99_within_limit"] = {"ok": p99 is not None and p99 <= opts.max_p99_ms, "p99_ms": p99,
                                      "limit_ms": opts.max_p99_ms}
    if opts.max_failure_ratio is not None:
        ratio = int(total["failures"]) / n if total and n else None
        checks["failure_ratio_within_limit"] = {
            "ok": ratio is not None and ratio <= opts.max_failure_ratio,
            "failure_ratio": None if ratio is None else round(ratio, 4),
            "failures": int(total["failures"]) if total else 0, "requests": n, "limit": opts.max_failure_ratio}
    return checks


def write_summary_html(out: Path, summary: dict[str, Any]) -> None:
    """``summary.html``: users, throughput and p99 per request name over time (inline SVG), and the summary."""
    history = report.read_history(out / "locust_stats_history.csv")
    named = {k: v for k, v in history.items() if k != "Aggregated"}
    # many names (the deadline scenario's phases) make an unreadable chart: keep the busiest six
    busiest = sorted(named, key=lambda k: -(named[k][-1]["count"] if named[k] else 0))[:6]
    charts = [
        page.svg_chart("Simulated devices running", "users",
                       {"users": [(r["t"], r["users"]) for r in history.get("Aggregated", [])]}),
        page.svg_chart("Throughput per request kind", "requests per second",
                       {k: report.interval_rates(named[k]) for k in busiest}),
        page.svg_chart("Latency per request kind: p99 over Locust's last 10 s", "p99 response time (ms)",
                       {k: [(r["t"], r["p99"]) for r in named[k]] for k in busiest}),
    ]
    checks = summary.get("checks", {})
    title = f"testbed load run {summary['scenario']}: " + (
        "interrupted (Ctrl-C): figures until then, checks not run" if summary.get("interrupted")
        else "all checks passed" if summary.get("ok")
        else "FAILED " + ", ".join(k for k, c in checks.items() if not c.get("ok")))
    page.write_html(out / "summary.html", title, summary, charts, {"Locust report": "locust.html"})


def _open_service(scenario: LoadScenario, opts: RunOptions, out: Path) -> ServiceHandle:
    limit = opts.throttle_limit or THROTTLE_LIMIT
    if opts.service_url:
        url = check_service_url(opts.service_url, allow_private=opts.allow_remote_service)
        return ServiceHandle(url, opts.control_token or "", opts.service_pid, limit)
    from testbed.service.process import ServiceProcess

    options = dict(scenario.service_options)
    if opts.throttle_limit:
        options["throttle_limit"] = opts.throttle_limit
    proc = ServiceProcess(out / "service-data", **options, log_path=out / "service.log")
    proc.start()
    say(opts, f"{scenario.name}: started the service at {proc.url} (pid {proc.pid}, data in {proc.data_dir})")
    return ServiceHandle(proc.url, proc.control_token or "", proc.pid, limit, proc)
