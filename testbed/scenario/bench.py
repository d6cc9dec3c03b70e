"""``testbed bench crash``: crash-to-stored and crash-to-restart on a real board, as JSON medians.

Three phases on one board restored from the snapshot, in the same run:

- ``baseline``: crash dumps disabled for the group (opt-out): the app manager
  restarts the app with no upload at all; this is what the others are
  compared with (ratios);
- ``link_up``: collection enabled (EU): crash -> dump stored at the service
  (upload-ok) and crash -> app restarted;
- ``link_down``: the board's NIC is unplugged: crash -> restart, which the
  5 s deadline bounds.

The service runs with a throttle limit above the crash count, so identical
crashes are all uploaded.
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


def bench_scenario(crashes: int, app: str = "crashapp") -> dict[str, Any]:
    def repeat(n: int, wait_event: str, timeout: str) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        for _ in range(n):
            steps.append({"crash": {"boards": "b-1", "app": app}})
            steps.append({"wait": {"boards": "b-1", "event": str(wait_event), "timeout": timeout}})
            if wait_event != EventName.APP_RESTART:
                steps.append({"wait": {"boards": "b-1", "event": EventName.APP_RESTART.value, "timeout": "15s"}})
        return steps

    steps: list[dict[str, Any]] = [{"sync": "all", "name": "phase baseline"}]
    steps += repeat(crashes, EventName.APP_RESTART, "15s")
    steps += [{"set_group": {"group": "Bench/Fleet", "allow_crash_dumps": True, "boundary": "EU"}},
              {"sync": "all", "name": "phase link_up"}]  # fmt: skip
    steps += repeat(crashes, EventName.UPLOAD_OK, "15s")
    steps += [{"link_down": "all", "name": "phase link_down"}]
    steps += repeat(crashes, EventName.APP_RESTART, "15s")
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


def summarize(result, crashes: int) -> dict[str, Any]:
    from testbed.scenario.timeline import crash_episodes

    board = result.boards[0]
    starts = {s.text: s.start for s in result.steps if s.text.startswith("phase ")}
    up_at = starts.get("phase link_up", float("inf"))
    down_at = starts.get("phase link_down", float("inf"))
    phases: dict[str, list] = {"baseline": [], "link_up": [], "link_down": []}
    for ep in crash_episodes(board.events):
        if ep.crash.t < 0:
            continue
        phase = "baseline" if ep.crash.t < up_at else "link_up" if ep.crash.t < down_at else "link_down"
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
    base = out["phases"]["baseline"]["crash_to_restart_median"]
    for name in ("link_up", "link_down"):
        med = out["phases"][name]["crash_to_restart_median"]
        out["phases"][name]["restart_ratio_to_baseline"] = round(med / base, 2) if med and base else None
    out["dump_bytes_median"] = _median([float(d.size) for d in result.dumps])
    out["passed"] = result.passed
    out["error"] = result.error or None
    return out


@click.command("crash")
@click.option("--crashes", type=click.IntRange(1, 200), default=10, show_default=True, help="Crashes per phase.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON result.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Also write the HTML report.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
def bench_crash(crashes: int, as_json: bool, report: str | None, out: str | None) -> None:
    """Medians of crash-to-stored and crash-to-restart, link up and link down, on a real board."""
    from testbed.crash.symbol_dirs import default_symbol_dirs
    from testbed.scenario.runner import (
        Progress,
        QuietProgress,
        RunOptions,
        ScenarioRun,
    )

    sc = scenario_from_data(bench_scenario(crashes), "<bench crash>")
    options = RunOptions(parallel=1, progress=QuietProgress() if as_json else Progress(),
                         symbol_dirs=default_symbol_dirs(), service_options={"throttle_limit": crashes * 10 + 10})  # fmt: skip
    result = ScenarioRun(sc, options).run()
    summary = summarize(result, crashes)
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
