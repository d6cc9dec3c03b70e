"""``testbed bench ingest``: the durable ingest against a trivial sink, same load, same run.

Each round runs Locust four times with the same users, duration and body mix
(the gzip'd ARM core fixtures of every size bucket, no intent, every crash
a new signature so nothing is throttled): once against the sink of
``testbed.load.sink`` (drains the body, answers 201), once against the real
service (durable: blob and row fsynced before the 201), both as fast as
the users go (closed loop), then both again with the users paced to offer
half the sink's rate of that round: the load at which the p99 target
applies (the paced sink shows the harness's own latency at that load). Reported per run: uploads/s, p50 and p99 (medians
over the rounds), and the ratio durable / sink; plus an HTML page with
throughput and latency over time.

Both sides get the same client: the same Locust user class (``MixDevice`` of
``scenarios/load/mix.py``), the same users, Locust processes, duration and body
mix, in the same invocation. The JSON gives, per side, the server's CPU per
upload and which side (client, server, the machine) was the bottleneck, and
the cost ratio of the two servers' CPU per upload.

Targets: durable >= 50% of the sink's uploads/s; durable p99 <= 50 ms at half
the sink's rate; durable server CPU per upload at most 3x the sink's.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from testbed.deadline import Deadline
from testbed.load import page, report
from testbed.load.cores import load_cores
from testbed.load.provision import provision
from testbed.load.runner import (
    SCENARIO_DIR,
    LocustPlan,
    LocustResult,
    run_locust,
    write_private_json,
)

TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_CPU_COST_RATIO = 3.0
#: the Locust user class both sides are driven with
CLIENT_USER_CLASS = "MixDevice (scenarios/load/mix.py)"


class Sink:
    """The sink app in its own uvicorn process on 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.pid = 0

    def __enter__(self) -> Sink:
        ready = self.workdir / "sink-ready.json"
        ready.unlink(missing_ok=True)
        log = open(self.workdir / "sink.log", "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "testbed.load.sink", "--port", "0", "--ready-file", str(ready)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()
        deadline = Deadline(20.0)
        while not deadline.expired:
            if self.proc.poll() is not None:
                raise click.ClickException(f"the sink exited with {self.proc.returncode}; see {self.workdir / 'sink.log'}")
            if ready.exists():
                info = json.loads(ready.read_text())
                self.url, self.pid = info["url"], info["pid"]
                return self
            deadline.sleep(0.02)
        self.__exit__()
        raise click.ClickException("the sink did not start within 20 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _figures(result: LocustResult, warmup: float) -> dict[str, Any]:
    stats = result.stats()
    merged = report.merged_summary(stats, "upload ")
    if not merged:
        raise click.ClickException(f"no uploads were made; see {result.log_path}")
    # Steady-state throughput: upload rows of the history after the warm-up seconds.
    history = report.read_history(result.history_csv)
    series = [row for name, rows in history.items() if name.startswith("upload ") for row in rows]
    t_end = max((r["t"] for r in series), default=0.0)
    return {
        "uploads": merged["requests"],
        "failures": merged["failures"],
        "uploads_per_s": merged["per_second"],
        "p50_ms": merged["p50_ms"],
        "p99_ms": merged["p99_ms"],
        "max_ms": merged["max_ms"],
        "seconds": round(t_end, 1),
        "warmup_s": warmup,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a server: its process and every process under it (a multi-process service)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # gone between the listing and the reading
            continue
        total += float(times.user + times.system)
    return total


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes, all cores)."""
    import psutil

    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _children_cpu_seconds() -> float:
    """CPU of this process's waited-for children: the Locust processes of a run once it has ended."""
    t = os.times()
    return t.children_user + t.children_system


#: a CPU counts as saturated from this share of its capacity on
SATURATED = 0.85


def bottleneck(client_cores: float, server_cores: float, locust_processes: int, cpu_count: int,
               machine_cores: float | None = None) -> str:
    """Which side limited a run, from the CPU each used (in cores, averaged over the run).

    A Locust process runs its users on one core (gevent, one thread), so the
    client is saturated near one core per process; client and server share
    this machine's cores. ``machine_cores``, the whole machine's busy CPU,
    tells a machine filled by other processes apart from an idle one.
    """
    if client_cores >= SATURATED * locust_processes:
        return "client CPU"
    if client_cores + server_cores >= SATURATED * cpu_count:
        return "machine CPU (client and server together)"
    if server_cores >= SATURATED:
        return "server CPU"
    if machine_cores is not None and machine_cores >= SATURATED * cpu_count:
        return "machine CPU (other processes: the figures are not the harness's)"
    return "no CPU saturated (latency-bound or paced)"


def _series(result: LocustResult) -> dict[str, list[tuple[float, float | None]]]:
    """Per second: all upload buckets' uploads/s summed (from count deltas), and the worst bucket's p50/p99."""
    history = report.read_history(result.history_csv)
    by_t: dict[float, dict[str, float]] = {}
    for name, rows in history.items():
        if not name.startswith("upload "):
            continue
        for t, rate in report.interval_rates(rows):
            by_t.setdefault(round(t), {"rps": 0.0, "p50": 0.0, "p99": 0.0})["rps"] += rate
        for r in rows:
            slot = by_t.setdefault(round(r["t"]), {"rps": 0.0, "p50": 0.0, "p99": 0.0})
            slot["p50"] = max(slot["p50"], r["p50"] or 0.0)
            slot["p99"] = max(slot["p99"], r["p99"] or 0.0)
    ts = sorted(by_t)
    return {k: [(t, by_t[t][k]) for t in ts] for k in ("rps", "p50", "p99")}


def run_bench(out: Path, users: int, duration: float, rounds: int, workers: int,
              say=lambda m: print(m, file=sys.stderr, flush=True)) -> dict[str, Any]:
    from testbed.service.process import ServiceProcess

    out.mkdir(parents=True, exist_ok=True)
    cores = load_cores()
    mix = {c.bucket: c.size for c in cores}
    params = {"users": users, "duration": duration, "intent": False, "crash_interval": 0}
    runs: dict[str, list[dict[str, Any]]] = {"sink": [], "durable": [], "sink_paced": [], "durable_paced": []}
    last: dict[str, LocustResult] = {}
    n_devices = max(users, workers or 1)
    for r in range(rounds):
        for target in ("sink", "durable", "sink_paced", "durable_paced"):
            run_dir = out / f"round{r + 1}-{target}"
            run_dir.mkdir(parents=True, exist_ok=True)
            run_params = dict(params)
            if target.endswith("_paced"):
                # the durable ingest offered TARGET_RATIO of what the sink took this round, at a fixed pace
                offered = TARGET_RATIO * runs["sink"][-1]["uploads_per_s"]
                run_params["pace"] = offered / users
            say(f"bench ingest: round {r + 1}/{rounds}: {target}, {users} users, {duration:.0f} s"
                + (f", {run_params['pace'] * users:.0f} uploads/s offered" if "pace" in run_params else ""))
            if target.startswith("sink"):
                with Sink(run_dir) as sink:
                    devices = [[f"{i:0128x}", "sink"] for i in range(n_devices)]
                    cpu0, client0, busy0 = _cpu_seconds(sink.pid), _children_cpu_seconds(), _machine_busy_seconds()
                    result = _run(run_dir, sink.url, {"service_url": sink.url, "devices": devices}, run_params,
                                  users, duration, workers)
                    cpu, client = _cpu_seconds(sink.pid) - cpu0, _children_cpu_seconds() - client0
                    busy = _machine_busy_seconds() - busy0
            else:
                with ServiceProcess(run_dir / "service-data", rate_limit=0, log_path=run_dir / "service.log") as svc:
                    fleet = provision(svc.url, svc.control_token or "", n_devices, name="bench",
                                      progress=lambda m: None)
                    cpu0, client0, busy0 = _cpu_seconds(svc.pid), _children_cpu_seconds(), _machine_busy_seconds()
                    result = _run(run_dir, svc.url, fleet.to_config(), run_params, users, duration, workers)
                    cpu, client = _cpu_seconds(svc.pid) - cpu0, _children_cpu_seconds() - client0
                    busy = _machine_busy_seconds() - busy0
            figures = _figures(result, 0.0)
            # server CPU per upload (all its threads, user + system): a cost that machine load does not distort
            figures["server_cpu_ms_per_upload"] = round(1000 * cpu / max(figures["uploads"], 1), 3)
            # the Locust processes' CPU (all of it: start-up, users, stats, reports), per upload and in
            # cores; with the server's and the machine's, which side was the bottleneck
            figures["client_cpu_ms_per_upload"] = round(1000 * client / max(figures["uploads"], 1), 3)
            # in cores: CPU seconds over the measured window (the Locust run, its start-up included)
            wall = max(result.wall_seconds, 1e-9)
            figures["server_cpu_cores"] = round(cpu / wall, 2)
            figures["client_cpu_cores"] = round(client / wall, 2)
            # the whole machine over the same window, and what neither side used (other processes)
            figures["machine_cpu_cores"] = round(busy / wall, 2)
            figures["other_cpu_cores"] = round(max(0.0, busy - cpu - client) / wall, 2)
            figures["bottleneck"] = bottleneck(client / wall, cpu / wall, max(workers, 1), os.cpu_count() or 1,
                                               busy / wall)
            if "pace" in run_params:
                figures["offered_per_s"] = round(run_params["pace"] * users, 1)
            runs[target].append(figures)
            last[target] = result
    med: dict[str, dict[str, Any]] = {}
    for target, rs in runs.items():
        med[target] = {
            "uploads_per_s": statistics.median(x["uploads_per_s"] for x in rs),
            "p50_ms": statistics.median(x["p50_ms"] for x in rs),
            "p99_ms": statistics.median(x["p99_ms"] for x in rs),
            "failures": sum(x["failures"] for x in rs),
            "server_cpu_ms_per_upload": statistics.median(x["server_cpu_ms_per_upload"] for x in rs),
            "client_cpu_ms_per_upload": statistics.median(x["client_cpu_ms_per_upload"] for x in rs),
            "server_cpu_cores": statistics.median(x["server_cpu_cores"] for x in rs),
            "client_cpu_cores": statistics.median(x["client_cpu_cores"] for x in rs),
            "machine_cpu_cores": statistics.median(x["machine_cpu_cores"] for x in rs),
            "other_cpu_cores": statistics.median(x["other_cpu_cores"] for x in rs),
            # the most frequent verdict over the rounds
            "bottleneck": statistics.mode(x["bottleneck"] for x in rs),
            "rounds": rs,
        }
    for target in ("sink_paced", "durable_paced"):
        med[target]["offered_per_s"] = statistics.median(x["offered_per_s"] for x in runs[target])
    ratio = med["durable"]["uploads_per_s"] / med["sink"]["uploads_per_s"] if med["sink"]["uploads_per_s"] else 0.0
    paced = med["durable_paced"]
    sink_cpu, durable_cpu = med["sink"]["server_cpu_ms_per_upload"], med["durable"]["server_cpu_ms_per_upload"]
    cost_ratio = round(durable_cpu / sink_cpu, 2) if sink_cpu else None
    summary: dict[str, Any] = {
        "benchmark": "ingest",
        "users": users, "duration_s": duration, "rounds": rounds, "locust_workers": workers,
        "body_mix_bytes": mix,
        "sink": med["sink"],
        "durable": med["durable"],
        "durable_at_half_sink_rate": paced,
        # the harness's own latency at that load (Locust and uvicorn on this machine): what the
        # durable p99 is to be read against
        "sink_at_half_sink_rate": med["sink_paced"],
        "ratio_uploads_per_s": round(ratio, 3),
        # what one upload costs the server, each side's own process(es), user + system CPU
        "server_cpu_ms_per_upload": {"sink": sink_cpu, "durable": durable_cpu},
        "cpu_cost_ratio": cost_ratio,
        "bottleneck": {"sink": med["sink"]["bottleneck"], "durable": med["durable"]["bottleneck"]},
        "client": {"user_class": CLIENT_USER_CLASS, "users": users, "locust_processes": max(workers, 1),
                   "locust_workers": workers, "same_for_both_sides": True},
        "targets": {
            "ratio_at_least": TARGET_RATIO, "durable_p99_ms_at_most": TARGET_P99_MS,
            "ratio_met": ratio >= TARGET_RATIO,
            # p99 at the load the ratio target asks for: half the sink's rate, offered at a fixed pace,
            # and that rate actually achieved
            "p99_met": paced["p99_ms"] <= TARGET_P99_MS and paced["uploads_per_s"] >= 0.95 * paced["offered_per_s"],
            "cpu_cost_ratio_at_most": TARGET_CPU_COST_RATIO,
            "cpu_cost_met": cost_ratio is not None and cost_ratio <= TARGET_CPU_COST_RATIO,
        },
        "cpu_count": os.cpu_count(),
        "html": str(out / "bench-ingest.html"),
    }
    charts = []
    series = {t: _series(last[t]) for t in runs}
    labels = {"sink": "sink", "durable": "durable", "sink_paced": "sink paced", "durable_paced": "durable paced"}
    charts.append(page.svg_chart("Uploads per second (last round; paced: half the sink's rate offered)",
                                 "uploads per second", {labels[t]: series[t]["rps"] for t in runs}))
    charts.append(page.svg_chart("Upload latency p99 (last round, worst bucket, 10 s window)",
                                 "p99 response time (ms)", {labels[t]: series[t]["p99"] for t in runs}))
    charts.append(page.svg_chart("Upload latency p50 (last round, worst bucket, 10 s window)",
                                 "p50 response time (ms)", {labels[t]: series[t]["p50"] for t in runs}))
    links = {f"Locust report {labels[t]}": f"round{rounds}-{t}/locust.html" for t in runs}
    page.write_html(out / "bench-ingest.html", "testbed bench ingest", summary, charts, links)
    (out / "bench-ingest.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _run(run_dir: Path, url: str, base: dict[str, Any], params: dict[str, Any], users: int, duration: float,
         workers: int) -> LocustResult:
    config = {**base, "scenario": "bench", "output_dir": str(run_dir), "params": params}
    path = run_dir / "config.json"
    write_private_json(path, config)
    result = run_locust(LocustPlan(SCENARIO_DIR / "mix.py", url, run_dir, path, users=users, run_time=duration,
                                   workers=workers, hard_limit=duration + 90))
    if result.exit_code != 0:
        raise click.ClickException(f"Locust failed (exit {result.exit_code}); see {result.log_path}")
    return result


@click.command("ingest")
@click.option("--users", type=click.IntRange(1, 2000), default=32, show_default=True, help="Locust users (devices uploading back to back).")
@click.option("--duration", type=click.FloatRange(2, 600), default=10, show_default=True, help="Seconds per run.")
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True, help="Sink/durable pairs; figures are medians.")
@click.option("--workers", type=click.IntRange(0, 16), default=0, show_default=True, help="Locust worker processes (0: one process).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Output directory (default: a new temporary one).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def bench_ingest(users: int, duration: float, rounds: int, workers: int, out_dir: Path | None, as_json: bool) -> None:
    """Durable ingest vs a trivial sink: uploads/s, p50/p99, ratio; HTML with plots over time."""
    out = out_dir or Path(tempfile.mkdtemp(prefix="testbed-bench-ingest-"))
    summary = run_bench(out.resolve(), users, duration, rounds, workers)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        s, d = summary["sink"], summary["durable"]
        click.echo(f"sink:    {s['uploads_per_s']:.0f} uploads/s, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms")
        click.echo(f"durable: {d['uploads_per_s']:.0f} uploads/s, p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms")
        p = summary["durable_at_half_sink_rate"]
        click.echo(f"durable at half the sink's rate ({p['offered_per_s']:.0f}/s offered): "
                   f"{p['uploads_per_s']:.0f} uploads/s, p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms")
        click.echo(f"ratio:   {summary['ratio_uploads_per_s']:.2f} (target >= {TARGET_RATIO})")
        click.echo(f"server CPU per upload: sink {s['server_cpu_ms_per_upload']} ms, "
                   f"durable {d['server_cpu_ms_per_upload']} ms (cost ratio {summary['cpu_cost_ratio']}, "
                   f"target <= {TARGET_CPU_COST_RATIO:g})")
        click.echo(f"client (Locust) CPU per upload: sink run {s['client_cpu_ms_per_upload']} ms, "
                   f"durable run {d['client_cpu_ms_per_upload']} ms")
        click.echo(f"bottleneck: sink run {s['bottleneck']} (client {s['client_cpu_cores']} cores, "
                   f"server {s['server_cpu_cores']}, other processes {s['other_cpu_cores']}); durable run "
                   f"{d['bottleneck']} (client {d['client_cpu_cores']} cores, server {d['server_cpu_cores']}, "
                   f"other processes {d['other_cpu_cores']})")
    click.echo(f"HTML summary: {summary['html']}", err=True)
