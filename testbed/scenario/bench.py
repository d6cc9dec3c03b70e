"""``testbed bench crash``: crash-to-stored and crash-to-restart on a real board, as JSON medians.

Phases on one board restored from the snapshot, in the same run:

- ``idle``: nothing happens for a while: the board's idle QEMU CPU rate, which
  the CPU figures below have subtracted;
- ``baseline``: crash dumps disabled for the group (opt-out): the app manager
  restarts the app with no upload at all; this is what the others are
  compared with (ratios);
- ``link_up``: collection enabled (EU): crash -> dump stored at the service
  (upload-ok) and crash -> app restarted;
- ``throttled``: the same crash again: the service's throttle limit (the crash
  count) is reached, so the reporter skips it (``dump-skipped reason=throttled``);
- ``link_down``: the board's NIC is unplugged, another crash signature:
  crash -> restart, which the 5 s deadline bounds.

Per crash, the board's QEMU process CPU (testbed.board.hostcpu, idle rate
subtracted) by kind (collection off, uploaded, throttled, failed), and the skip
decision's latency (crash command -> ``dump-skipped``). ``--tb-size`` runs the
board with another translation cache, to compare profiles in the same code.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import click

from testbed.contract.events import EventName
from testbed.scenario.schema import scenario_from_data

#: The idle phase that gives the board's idle CPU rate.
IDLE_SECONDS = 3
PHASES = ("baseline", "link_up", "throttled", "link_down")


def bench_scenario(crashes: int, app: str = "crashapp") -> dict[str, Any]:
    def repeat(n: int, wait_event: str, timeout: str, crash_id: str | None = None) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        for _ in range(n):
            crash: dict[str, Any] = {"boards": "b-1", "app": app}
            if crash_id:
                crash["id"] = crash_id  # another signature: not throttled
            steps.append({"crash": crash})
            steps.append({"wait": {"boards": "b-1", "event": str(wait_event), "timeout": timeout}})
            if wait_event != EventName.APP_RESTART:
                steps.append({"wait": {"boards": "b-1", "event": EventName.APP_RESTART.value, "timeout": "15s"}})
        return steps

    steps: list[dict[str, Any]] = [{"sync": "all"}, {"idle": {"for": f"{IDLE_SECONDS}s"}, "name": "phase idle"},
                                   {"sync": "all", "name": "phase baseline"}]  # fmt: skip
    steps += repeat(crashes, EventName.APP_RESTART, "15s")
    steps += [{"set_group": {"group": "Bench/Fleet", "allow_crash_dumps": True, "boundary": "EU"}},
              {"sync": "all", "name": "phase link_up"}]  # fmt: skip
    steps += repeat(crashes, EventName.UPLOAD_OK, "15s")
    steps += [{"sync": "all", "name": "phase throttled"}]
    steps += repeat(crashes, EventName.DUMP_SKIPPED, "15s")
    steps += [{"link_down": "all", "name": "phase link_down"}]
    steps += repeat(crashes, EventName.APP_RESTART, "15s", crash_id="down")
    steps += [{"link_up": "all"}]
    return {
        "name": "bench-crash",
        "groups": {"Bench/Fleet": {"allow_crash_dumps": False}},
        "fleet": {"b": {"boards": 1, "group": "Bench/Fleet", "apps": [app]}},
        "steps": steps,
        "expect": [{"dump_stored": {"boards": "b-1", "count": crashes}}],
        "timeout": "30m",
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _phase_of(t: float, starts: dict[str, float]) -> str | None:
    """The phase a time falls in: the latest phase started before it."""
    started = [(at, name) for name, at in starts.items() if at <= t]
    return max(started)[1] if started else None


def summarize(result, crashes: int, sc=None, factory=None) -> dict[str, Any]:
    from testbed.scenario.timeline import crash_episodes

    board = result.boards[0]
    starts = {s.text.removeprefix("phase "): s.start for s in result.steps if s.text.startswith("phase ")}
    crash_starts = {name: at for name, at in starts.items() if name in PHASES}
    phases: dict[str, list] = {name: [] for name in PHASES}
    for ep in crash_episodes(board.events):
        phase = _phase_of(ep.crash.t, crash_starts)
        if ep.crash.t >= 0 and phase is not None:
            phases[phase].append(ep)
    out: dict[str, Any] = {
        "benchmark": "crash",
        "crashes_per_phase": crashes,
        "unit": "seconds",
        "clocks": {
            "crash_to_restart": "the board's app manager (after_ms): from the crash to the app running again",
            "crash_to_restart_host": "host clock, from the console's crash line to its restart line",
            "crash_to_stored_host": "host clock, from the console's crash line to upload-ok (the service's 201 received)",
            "upload": "the crash reporter's own timing of intent + upload (upload-ok ms=)",
        },
        "phases": {},
    }
    for name, eps in phases.items():
        restart = [e.to_restart for e in eps if e.to_restart is not None]
        restart_host = [e.restart.t - e.crash.t for e in eps if e.restart is not None]
        stored = [e for e in eps if e.outcome is not None and e.outcome.name == EventName.UPLOAD_OK]
        upload_ms = [int(e.outcome.fields["ms"]) / 1000 for e in stored if e.outcome.fields.get("ms", "").isdigit()]
        out["phases"][name] = {
            "crashes": len(eps),
            "crash_to_restart_median": _median(restart),
            "crash_to_restart_max": round(max(restart), 4) if restart else None,
            "crash_to_restart_host_median": _median(restart_host),
            "crash_to_stored_host_median": _median([e.to_outcome for e in stored]) if stored else None,
            "upload_median": _median(upload_ms) if upload_ms else None,
            "outcomes": sorted({e.outcome_name for e in eps}),
        }
    if sc is not None and factory is not None and factory.boards:
        out.update(host_cpu_summary(result, sc, factory, starts))
    base = out["phases"]["baseline"]["crash_to_restart_median"]
    for name in ("link_up", "throttled", "link_down"):
        med = out["phases"][name]["crash_to_restart_median"]
        out["phases"][name]["restart_ratio_to_baseline"] = round(med / base, 2) if med and base else None
    out["dump_bytes_median"] = _median([float(d.size) for d in result.dumps])
    out["passed"] = result.passed
    out["error"] = result.error or None
    return out


def host_cpu_summary(result, sc, factory, starts: dict[str, float]) -> dict[str, Any]:
    """QEMU CPU per crash by kind and per phase, the skip decision's latency (testbed.scenario.crashcost)."""
    from testbed.board.hostcpu import sampler_cost
    from testbed.scenario.crashcost import (
        episode_costs,
        idle_rate_between,
        run_offset,
        summarize_kinds,
    )

    name = result.boards[0].name
    board = factory.boards.get(name)
    if board is None or getattr(board, "host_cpu", None) is None:
        return {}
    zero = run_offset(result, factory.boards)
    idle = next(s for s in result.steps if s.text == "phase idle")
    rate = idle_rate_between(board, zero + idle.start, zero + idle.end)
    crash_at = factory.crash_sent.get(name) or [zero + r.start for r in result.steps if sc.steps[r.index].action == "crash"]
    costs = episode_costs(name, board, crash_at, rate, until=zero + result.steps[-1].end)
    per_phase: dict[str, list[float]] = {}
    for c in costs:
        phase = _phase_of(c.started - zero, {k: v for k, v in starts.items() if k in PHASES})
        per_phase.setdefault(phase or "?", []).append(c.cpu_s)
    return {
        "host_cpu": {
            "what": "QEMU process CPU (all threads, schedstat) from the crash command to the app's restart "
                    "line + 0.5 s, minus the board's idle rate; skip_decision_s: crash command to dump-skipped",
            "idle_cpu_share": round(rate, 4),
            "by_kind": summarize_kinds(costs),
            "qemu_cpu_per_crash_median_by_phase": {p: _median(v) for p, v in per_phase.items()},
            "sampler": sampler_cost(),
        },
    }


@click.command("crash")
@click.option("--crashes", type=click.IntRange(1, 200), default=10, show_default=True, help="Crashes per phase.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON result.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Also write the HTML report.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@click.option("--tb-size", type=click.IntRange(4, 512), default=None,
              help="Run the board with this translation cache (MiB) instead of the profile's (to compare).")
def bench_crash(crashes: int, as_json: bool, report: str | None, out: str | None, tb_size: int | None) -> None:
    """Medians of crash-to-stored and crash-to-restart, link up and link down, on a real board."""
    from testbed.board.profile import TRANSLATION_CACHE_MIB
    from testbed.crash.symbol_dirs import default_symbol_dirs
    from testbed.scenario.crashcost import RecordingFactory
    from testbed.scenario.runner import (
        Progress,
        QuietProgress,
        RunOptions,
        ScenarioRun,
    )

    sc = scenario_from_data(bench_scenario(crashes), "<bench crash>")
    factory = RecordingFactory(tb_size_mib=tb_size)
    # the throttle limit is the crash count: the link_up phase's crashes are all stored,
    # the throttled phase's (the same signature) are all skipped
    options = RunOptions(parallel=1, progress=QuietProgress() if as_json else Progress(), board_factory=factory,
                         symbol_dirs=default_symbol_dirs(), service_options={"throttle_limit": crashes})  # fmt: skip
    result = ScenarioRun(sc, options).run()
    summary = summarize(result, crashes, sc, factory)
    summary["tb_size_mib"] = tb_size or TRANSLATION_CACHE_MIB
    if report:
        from testbed.scenario.report import write_html

        summary["report"] = str(write_html([result], report).resolve())
    text = json.dumps(summary, indent=2)
    if out:
        Path(out).write_text(text + "\n")
    click.echo(text)
    if result.error:
        click.echo(f"bench crash: the run failed: {result.error}", err=True)
        sys.exit(1)
