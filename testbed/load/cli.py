"""``testbed load``: headless Locust runs of the load scenarios against the service on loopback."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import click

from testbed import settings
from testbed.load.params import ParamError, parse_cli
from testbed.load.runner import ctrl_c_stops_locust
from testbed.load.scenarios import SCENARIOS, RunOptions, ScenarioError, plan_run, run_scenario
from testbed.load.table import figures, stats_table


class RunTime(click.ParamType):
    """Seconds, or Locust's run-time notation: ``90``, ``90s``, ``2m``, ``1h30m``, ``1m30s``."""

    name = "duration"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            text = str(value).strip().lower()
            try:
                seconds = float(text)
            except ValueError:
                parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
                if not text or parts is None:
                    self.fail(f"{value!r} is not a duration: seconds (90) or e.g. 90s, 2m, 1h30m", param, ctx)
                h, m, s = (float(x) if x else 0.0 for x in parts.groups())
                seconds = h * 3600 + m * 60 + s
        if not 1 <= seconds <= 3600:
            self.fail(f"{value!r} is {seconds:g} s: a run lasts 1 s to 1 h", param, ctx)
        return seconds


#: the files of a run's output directory a user looks at, in that order
RESULT_FILES = ("summary.html", "summary.json", "locust.html", "locust_stats.csv", "locust_stats_history.csv",
                "locust.log", "service.log")


@click.group()
def load() -> None:
    """Locust load scenarios: simulated devices against the mock Security Service (127.0.0.1 only)."""


@load.command("list")
def list_scenarios() -> None:
    """The scenarios and their defaults."""
    for spec in SCENARIOS.values():
        click.echo(f"{spec.name:<11} {spec.summary}")
        where = f"scenarios/load/{spec.locustfile}" if spec.locustfile else "yours (--locustfile PATH)"
        click.echo(f"{'':<11} default: {spec.users} users, {spec.duration:.0f} s, locustfile {where}")
        for p in spec.params:
            default = "(computed)" if p.default is None else json.dumps(p.default)
            click.echo(f"{'':<11}   --param {p.name}={default}  {p.expected()}: {p.help}")
        if spec.accepts_other_params:
            click.echo(f"{'':<11}   --param KEY=VALUE  any other: a JSON value or text, in CONTEXT.params for "
                       "your locustfile")


@load.command("run")
@click.argument("scenario", type=click.Choice(sorted(SCENARIOS)))
@click.option("--users", type=click.IntRange(1, 20_000), help="Simulated devices (Locust users); the scenario's default if unset.")
@click.option("--duration", "-t", "--run-time", type=RunTime(), metavar="DURATION",
              help="How long the load lasts: seconds or Locust's notation (90, 90s, 2m, 1h); the scenario's default "
                   "if unset; at most 1 h.")
@click.option("--spawn-rate", type=click.FloatRange(0, 10_000), default=0, show_default=True,
              help="Users started per second, as Locust's; 0 starts them all at once (not for sizes: its shape ramps).")
@click.option("--workers", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Locust worker processes on this machine (master/worker mode); 0 runs one process.")
@click.option("--devices", type=click.IntRange(1, 100_000), help="Devices to claim before the run (default per scenario).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help=f"Output directory (default ./{settings.REPORTS_DIR}/load-<scenario>-<time>).")
@click.option("--service-url", help="Use a running service (http://127.0.0.x:PORT) instead of starting one.")
@click.option("--control-token", envvar=settings.CONTROL_TOKEN, help="Its control API token (with --service-url).")
@click.option("--service-pid", type=int, help="Its process id (with --service-url; the deadline scenario measures its memory).")
@click.option("--throttle-limit", type=click.IntRange(1, 1000), help="Dumps stored per signature (the service's; default 5).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Scenario parameter (JSON value), e.g. sync_period=30, signatures=5, kills=4; repeatable.")
@click.option("--master", is_flag=True, help="Be the master of workers on other machines (with --expect-workers).")
@click.option("--expect-workers", type=click.IntRange(1, 1000), help="Workers the master waits for (with --master).")
@click.option("--master-bind-host", default="127.0.0.1", show_default=True, help="Where the master listens for workers.")
@click.option("--master-port", type=int, default=5557, show_default=True, help="The master's port for workers.")
@click.option("--worker", is_flag=True, help="Be a worker of a master on another machine (with --master-host).")
@click.option("--master-host", help="The master to join (with --worker).")
@click.option("--allow-private-service", is_flag=True,
              help="Accept a --service-url on a private address (10/8, 172.16/12, 192.168/16): only for a test "
                   "network of your own, e.g. network namespaces on this machine.")
@click.option("--locustfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Your own locustfile (its users subclass testbed.load.users.DeviceUser...); needed by 'custom'.")
@click.option("--check-p99-ms", "max_p99_ms", type=click.FloatRange(0, min_open=True), metavar="MS",
              help="Also check that the p99 of all requests together is at most MS (exit 1 if not).")
@click.option("--check-failure-ratio", "max_failure_ratio", type=click.FloatRange(0, 1), metavar="R",
              help="Also check that at most this share of all requests failed, e.g. 0.01 (exit 1 if not).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary JSON on stdout.")
def run(scenario, users, duration, spawn_rate, workers, devices, out_dir, service_url, control_token, service_pid,
        throttle_limit, params, master, expect_workers, master_bind_host, master_port, worker, master_host,
        allow_private_service, locustfile, max_p99_ms, max_failure_ratio, as_json) -> None:
    """Run SCENARIO headless, bounded in time and count, and check its invariants.

    Starts its own service on 127.0.0.1 (unless --service-url), claims the
    devices, runs Locust, then checks the scenario's invariants against the
    service. Prints progress while it runs and a table of the figures at the
    end; writes Locust's CSV and HTML report, our summary.json and
    summary.html into the output directory and prints where. Exits 1 if a
    check failed, naming it and its figures. Ctrl-C stops Locust and keeps
    its figures (the checks are not run; exit 130); a second Ctrl-C aborts.

    \b
    Examples:
      testbed load list
      testbed load run throttling --users 50 --duration 20
      testbed load run custom --locustfile mine.py --users 20 --param bodies=2
    """
    if master and worker:
        raise click.UsageError("--master and --worker exclude each other")
    if worker:
        _run_remote_worker(scenario, master_host, master_port, out_dir, locustfile)
        return
    if master and not expect_workers:
        raise click.UsageError("--master needs --expect-workers N")
    if master and workers:
        raise click.UsageError("--master runs with workers on other machines; --workers starts local ones")
    out = out_dir or settings.REPORTS_DIR / f"load-{scenario}-{time.strftime('%Y%m%d-%H%M%S')}"
    opts = RunOptions(
        scenario=scenario, out_dir=out, users=users, duration=duration, workers=workers, devices=devices,
        service_url=service_url, control_token=control_token, service_pid=service_pid,
        throttle_limit=throttle_limit, params=_parse_params(params),
        allow_remote_service=allow_private_service, locustfile=locustfile, spawn_rate=spawn_rate,
        max_p99_ms=max_p99_ms, max_failure_ratio=max_failure_ratio,
        remote_workers=expect_workers if master else 0, master_bind_host=master_bind_host,
        master_port=master_port,
    )
    try:
        plan_run(opts)  # every option and parameter checked before anything starts
        with ctrl_c_stops_locust(lambda m: click.echo(f"{scenario}: {m}", err=True)):
            summary = run_scenario(opts)
    except (ScenarioError, ValueError, FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo(f"{scenario}: aborted (Ctrl-C); Locust and the service it started are stopped; "
                   f"what was written is in {out.resolve()}", err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(stats_table(summary))
    failed = {name: c for name, c in summary["checks"].items() if not c.get("ok") and "not_run" not in c}
    out_abs = Path(summary["output_dir"])
    if summary.get("interrupted"):
        click.echo(f"{scenario}: interrupted (Ctrl-C) after {summary['wall_s']:.0f} s: the figures cover the time "
                   "it ran; the scenario's checks were not run", err=True)
    elif failed:
        click.echo(f"{scenario}: FAILED {len(failed)} of {len(summary['checks'])} checks:", err=True)
        for name, check in failed.items():
            click.echo(f"  {name}: {figures(check)}", err=True)
    else:
        click.echo(f"{scenario}: all {len(summary['checks'])} checks passed", err=True)
    written = [name for name in RESULT_FILES if (out_abs / name).exists()]
    click.echo(f"results in {out_abs}: {', '.join(written)}", err=True)
    click.echo(f"report: {out_abs / 'summary.html'}", err=True)
    if summary.get("interrupted"):
        sys.exit(130)
    if failed:
        sys.exit(1)


def _run_remote_worker(scenario: str, master_host: str | None, master_port: int, out_dir: Path | None,
                       locustfile: Path | None) -> None:
    from testbed.load.runner import run_external, worker_args
    from testbed.load.scenarios.run import locustfile_of

    if not master_host:
        raise click.UsageError("--worker needs --master-host")
    try:
        path = locustfile_of(SCENARIOS[scenario], RunOptions(scenario, Path("."), locustfile=locustfile))
    except ScenarioError as exc:
        raise click.UsageError(str(exc)) from exc
    out = out_dir or settings.REPORTS_DIR / f"load-{scenario}-worker-{time.strftime('%Y%m%d-%H%M%S')}"
    log = out / "locust-worker.log"
    click.echo(f"worker for {scenario}: joining {master_host}:{master_port}; log in {log}", err=True)
    try:
        code = run_external(worker_args(path, master_host, master_port), log, 3600 + 300)
    except KeyboardInterrupt:  # Locust got the same Ctrl-C; run_external stopped it
        click.echo(f"worker for {scenario}: stopped (Ctrl-C); log in {log}", err=True)
        sys.exit(130)
    sys.exit(code)


def _parse_params(values: tuple[str, ...]) -> dict[str, str]:
    try:
        return parse_cli(values)
    except ParamError as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from exc
