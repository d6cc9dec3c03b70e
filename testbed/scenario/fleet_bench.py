"""``testbed bench fleet``: the largest crash storm this machine holds, found by a bounded search.

A storm of N: N boards of one group (collection on, EU; the service's default throttle
limit, so a few dumps are uploaded and the rest throttled) restored from the snapshot
(staggered, ``parallel`` = cores at a time), provisioned and synced; after an idle spell
(each board's idle CPU rate), every board crashes at once and the run waits for every
restart; then the group turns collection off, and a second storm measures that kind.

A storm held when every restart (the firmware's ``after_ms``) is inside the deadline and no
upload failed. The fleet's wait for a host CPU over the crash episodes (summed over boards:
wait / wall) is measured for every storm; it is a condition too with ``--require-unstarved``.
By default it is not: a storm whose restarts all kept the deadline gives PASS verdicts however
long its boards waited, so the size past which verdicts turn INCONCLUSIVE (what the runner
warns about) is the largest that kept the deadline; the largest that also stayed under
STARVED_SHARE is reported beside it (``unstarved_boards``). The search doubles from ``--start`` while
storms hold (up to ``--max-boards``), then bisects between the last that held and the first
that did not (to within an eighth), and stops at the time budget (a try predicted to overrun
it is not started).
The result goes to the cache (testbed.board.capacity) for the scenario runner's warning.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import click

from testbed.board.capacity import Capacity, save_capacity, utc_now
from testbed.board.hostcpu import STARVED_SHARE, sampler_cost
from testbed.contract.device_api import UPLOAD_DEADLINE_MS
from testbed.scenario.crashcost import (
    EpisodeCost,
    RecordingFactory,
    episode_costs,
    idle_rate_between,
    run_offset,
    summarize_kinds,
)
from testbed.scenario.schema import MAX_BOARDS_PER_FLEET, scenario_from_data

GROUP = "Bench/Storm"
IDLE_SECONDS = 2
MAX_BOARDS = 48
DEADLINE_S = UPLOAD_DEADLINE_MS / 1000


def _say(message: str) -> None:
    click.echo(f"[bench fleet] {message}", err=True)


def storm_scenario(n: int, app: str = "crashapp") -> dict[str, Any]:
    # a scenario fleet holds at most MAX_BOARDS_PER_FLEET boards: a larger storm is several fleets
    # of one group (boards s0-1.., s1-1..), all crashing in the same step
    fleets: dict[str, dict[str, Any]] = {}
    for k, first in enumerate(range(0, n, MAX_BOARDS_PER_FLEET)):
        fleets[f"s{k}"] = {"boards": min(MAX_BOARDS_PER_FLEET, n - first), "group": GROUP, "apps": [app]}
    return {
        "name": f"bench-fleet-{n}",
        "groups": {GROUP: {"allow_crash_dumps": True, "boundary": "EU"}},
        "fleet": fleets,
        "steps": [
            {"sync": "all"},
            {"idle": {"for": f"{IDLE_SECONDS}s"}, "name": "phase idle"},
            {"crash": {"boards": "all", "app": app}, "name": "storm"},
            {"wait": {"boards": "all", "event": "app-restart", "timeout": "60s"}},
            {"set_group": {"group": GROUP, "allow_crash_dumps": False}},
            {"sync": {"boards": "all", "timeout": "60s"}},
            {"crash": {"boards": "all", "app": app, "id": "off"}, "name": "storm collection off"},
            {"wait": {"boards": "all", "event": "app-restart", "timeout": "60s"}},
        ],
        # judged by the bench itself (restarts, upload-fail, waiting); this one is for the record
        "expect": [{"app_restarted": {"within": f"{DEADLINE_S:g}s"}}],
        "timeout": "10m",
    }


def _host_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def run_storm(n: int, parallel: int, tb_size_mib: int | None = None, require_unstarved: bool = False) -> dict[str, Any]:
    """One storm of n boards; its figures and whether it held."""
    from testbed.scenario.runner import QuietProgress, RunOptions, ScenarioRun

    sc = scenario_from_data(storm_scenario(n), f"<bench fleet {n}>")
    factory = RecordingFactory(tb_size_mib=tb_size_mib)
    rss: dict[str, int] = {}
    make = factory.__call__

    def make_and_watch(name: str, device_id: str, secret: str, port: int) -> Any:
        board = make(name, device_id, secret, port)
        close = board.close

        def close_after_rss() -> None:  # peak RSS is gone once QEMU exits: read it first
            rss.setdefault(name, board.rss_bytes()[1])
            close()

        board.close = close_after_rss
        return board

    options = RunOptions(parallel=parallel, progress=QuietProgress(), board_factory=make_and_watch)
    load_before = os.getloadavg()[0]
    busy0 = _host_busy()
    own0 = os.times()
    started = time.monotonic()
    result = ScenarioRun(sc, options).run()
    own1 = os.times()
    busy1 = _host_busy()
    row: dict[str, Any] = {"boards": n, "loadavg_1m_before": round(load_before, 2),
                           "loadavg_1m_after": round(os.getloadavg()[0], 2),
                           "host_busy_share": round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3),
                           "wall_s": round(time.monotonic() - started, 1),
                           # this process: the runner, the wire tap, the consoles' readers, the sampler
                           "testbed_process_cpu_s": round(own1.user + own1.system - own0.user - own0.system, 2)}  # fmt: skip
    ready = list(factory.ready_s.values())
    if ready:
        row["fleet_up_s"] = round(factory.fleet_up_s or 0.0, 2)
        row["board_ready_s"] = {"median": round(statistics.median(ready), 2), "max": round(max(ready), 2)}
    if result.error or len(factory.boards) < n:
        row.update(held=False, deadline_held=False, unstarved=False,
                   why=f"run failed: {(result.error or 'boards missing')[:300]}")  # fmt: skip
        return row
    zero = run_offset(result, factory.boards)
    step = {r.text: r for r in result.steps}
    idle = step["phase idle"]
    storms = {"on": step["storm"], "off": step["storm collection off"]}
    costs: list[EpisodeCost] = []
    for name, board in factory.boards.items():
        rate = idle_rate_between(board, zero + idle.start, zero + idle.end)
        sent = [t for t in factory.crash_sent[name] if t >= zero + storms["on"].start]
        costs += episode_costs(name, board, sent, rate, until=zero + result.steps[-1].end)
    restarts = [c.restart_s for c in costs if c.restart_s is not None]
    late = [c for c in costs if c.restart_s is None or c.restart_s > DEADLINE_S]
    failed = [c for c in costs if c.kind == "failed"]
    main = [c for c in costs if c.started < zero + storms["off"].start]
    share = sum(c.host.wait_s for c in main) / max(1e-9, sum(c.host.wall_s for c in main))
    row.update({
        "crashes": len(costs),
        "slowest_restart_s": round(max(restarts), 3) if restarts else None,
        "late_restarts": len(late),
        "upload_fail": len(failed),
        "storm_wait_share": round(share, 3),
        "starved_boards": sorted({c.board for c in main if c.starved}),
        "max_board_wait_share": round(max((c.host.wait_share for c in main), default=0.0), 3),
        "rss_per_board_mib": {"median": round(statistics.median(rss.values()) / 2**20, 1),
                              "max": round(max(rss.values()) / 2**20, 1)} if rss else None,
        "by_kind": summarize_kinds(costs),
    })  # fmt: skip
    why = []
    if late:
        why.append(f"{len(late)} restart(s) past {DEADLINE_S:g} s")
    if failed:
        why.append(f"{len(failed)} upload-fail")
    if len(costs) < 2 * n:
        why.append(f"{2 * n - len(costs)} crash(es) without an episode")
    row["deadline_held"] = not why
    row["unstarved"] = share <= STARVED_SHARE
    starved = f"the fleet waited {share:.0%} of its crash episodes for a host CPU (over {STARVED_SHARE:.0%})"
    if not row["unstarved"]:
        why.append(starved)
    row["held"] = row["deadline_held"] and (row["unstarved"] or not require_unstarved)
    row["why"] = "; ".join(why) or "every restart inside the deadline, the fleet not starved"
    return row


def search(start: int, max_boards: int, budget_s: float, parallel: int,
           tb_size_mib: int | None = None, require_unstarved: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Doubling while storms hold, then bisection; every try's row, in order."""
    tried: dict[int, dict[str, Any]] = {}
    t_begin = time.monotonic()
    per_board_s = 3.0  # a first guess of a try's wall seconds per board; replaced by measurement

    def attempt(n: int) -> bool | None:
        nonlocal per_board_s
        spent = max(time.monotonic() - t_begin, sum(r["wall_s"] for r in tried.values()))
        left = budget_s - spent
        if n * per_board_s + 20 > left:
            _say(f"{n} boards would take ~{n * per_board_s + 20:.0f} s, {left:.0f} s of budget left: stopping")
            return None
        _say(f"storm of {n} boards (load {os.getloadavg()[0]:.1f})")
        row = run_storm(n, parallel, tb_size_mib, require_unstarved)
        tried[n] = row
        per_board_s = max(per_board_s * 0.5, row["wall_s"] / n)
        _say(f"{n} boards: {'held' if row['held'] else 'did not hold'} ({row['why']}); slowest restart "
             f"{row.get('slowest_restart_s')} s, fleet wait share {row.get('storm_wait_share')}, {row['wall_s']} s")  # fmt: skip
        return row["held"]

    n = max(1, min(start, max_boards))
    lo, hi = 0, None  # largest that held, smallest that did not
    while True:
        ok = attempt(n)
        if ok is None:
            break
        if not ok:
            hi = n
            break
        lo = n
        if n >= max_boards:
            break
        n = min(n * 2, max_boards)
    while hi is not None and hi - lo > max(1, lo // 8):
        mid = (lo + hi) // 2
        ok = attempt(mid)
        if ok is None:
            break
        lo, hi = (mid, hi) if ok else (lo, mid)
    return [tried[k] for k in sorted(tried)]


def issue_checks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the issue asks this bench to show, from the sizes tried (None: not measured)."""
    from testbed.board.profile import RSS_LIMIT_MB

    big = [r for r in rows if r["boards"] >= 32 and "late_restarts" in r]
    off = [r["by_kind"]["off"]["qemu_cpu_per_crash_s"]["median"] for r in rows
           if (r.get("by_kind", {}).get("off") or {}).get("qemu_cpu_per_crash_s")]  # fmt: skip
    rss = [r["rss_per_board_mib"]["max"] * 2**20 / 1e6 for r in rows if r.get("rss_per_board_mib")]
    return {
        "storm_of_32_inside_deadline": any(r["late_restarts"] == 0 and r["upload_fail"] == 0 for r in big)
        if big else None,
        "collection_off_qemu_cpu_per_crash_s_max_median": round(max(off), 4) if off else None,
        "collection_off_at_most_0_1_s": max(off) <= 0.1 if off else None,
        "rss_per_board_max_mb": round(max(rss), 1) if rss else None,
        f"rss_at_most_{RSS_LIMIT_MB}_mb": max(rss) <= RSS_LIMIT_MB if rss else None,
    }


def measure(start: int, max_boards: int, budget_s: float, parallel: int, save: bool = True,
            tb_size_mib: int | None = None, require_unstarved: bool = False) -> dict[str, Any]:  # fmt: skip
    from testbed.board.profile import RSS_LIMIT_MB, TRANSLATION_CACHE_MIB
    from testbed.image.build import ensure_image

    image = ensure_image()
    load_before = os.getloadavg()
    t0 = time.monotonic()
    rows = search(start, max_boards, budget_s, parallel, tb_size_mib, require_unstarved)
    tb_size = tb_size_mib or TRANSLATION_CACHE_MIB
    held = [r for r in rows if r["held"]]
    best = max(held, key=lambda r: r["boards"]) if held else None
    largest_tried = max((r["boards"] for r in rows), default=0)
    deadline_held = [r["boards"] for r in rows if r.get("deadline_held")]
    unstarved = [r["boards"] for r in rows if r.get("deadline_held") and r.get("unstarved")]
    capacity = Capacity(
        boards=best["boards"] if best else 0,
        lower_bound=best is not None and best["boards"] == largest_tried,
        cores=os.cpu_count() or 1,
        loadavg_1m=round(load_before[0], 2),
        measured_at=utc_now(),
        deadline_s=DEADLINE_S,
        tb_size_mib=tb_size,
        image=image.hash,
        per_board_rss_mib=(best or {}).get("rss_per_board_mib", {}).get("max") if best else None,
        qemu_cpu_per_crash_s={k: (v["qemu_cpu_per_crash_s"] or {}).get("median")
                              for k, v in (best or {}).get("by_kind", {}).items()},
        tried=[{"boards": r["boards"], "held": r["held"], "why": r["why"]} for r in rows],
        unstarved_boards=max(unstarved, default=0),
        require_unstarved=require_unstarved,
    )  # fmt: skip
    # another cache size than the profile's is a comparison, not this machine's capacity
    path = save_capacity(capacity) if rows and save and tb_size == TRANSLATION_CACHE_MIB else None
    return {
        "checks": issue_checks(rows),
        "benchmark": "fleet",
        "capacity_boards": capacity.boards,
        "capacity_is_lower_bound": capacity.lower_bound,
        "largest_storm_inside_deadline": max(deadline_held, default=0),
        "unstarved_boards": max(unstarved, default=0),
        "criteria": {"deadline_s": DEADLINE_S, "upload_fail": 0, "starved_share": STARVED_SHARE,
                     "starvation_is_a_condition": require_unstarved,
                     "storm_wait_share": "sum over the storm's crash episodes of the boards' run delay "
                                         "(schedstat) / sum of their wall time, crash command to restart"},  # fmt: skip
        "at_capacity": best,
        "tried": rows,
        "search": {"start": start, "max_boards": max_boards, "budget_s": budget_s, "parallel": parallel,
                   "took_s": round(time.monotonic() - t0, 1)},  # fmt: skip
        "tb_size_mib": tb_size,
        "limits": {"rss_per_board_mb": RSS_LIMIT_MB, "deadline_s": DEADLINE_S},
        "image": image.hash,
        "host_cpu_sampler": sampler_cost(),
        "host": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                 "loadavg_after": [round(x, 2) for x in os.getloadavg()]},  # fmt: skip
        "saved_to": str(path) if path else None,
    }


@click.command("fleet")
@click.option("--start", type=click.IntRange(1, MAX_BOARDS), default=4, show_default=True,
              help="The first storm's size (doubled while storms hold).")
@click.option("--max-boards", type=click.IntRange(1, MAX_BOARDS), default=MAX_BOARDS, show_default=True,
              help="The largest storm tried.")
@click.option("--budget", "budget_s", type=click.FloatRange(30, 7200), default=900, show_default=True,
              help="Seconds for the whole search; a try predicted to overrun it is not started.")
@click.option("--parallel", type=click.IntRange(1, 64), default=None,
              help="Boards restored at once (default: the number of cores).")
@click.option("--tb-size", type=click.IntRange(4, 512), default=None,
              help="Boards with this translation cache (MiB) instead of the profile's (a comparison: not saved).")
@click.option("--require-unstarved", is_flag=True,
              help="A storm holds only if the fleet also waited at most STARVED_SHARE for a host CPU.")
@click.option("--save/--no-save", default=True, show_default=True,
              help="Keep the capacity in the cache for the scenario runner's warning.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON (progress goes to stderr).")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the JSON to this file.")
def bench_fleet(start: int, max_boards: int, budget_s: float, parallel: int | None, tb_size: int | None,
                require_unstarved: bool, save: bool, as_json: bool, output: str | None) -> None:  # fmt: skip
    """The largest crash storm this machine holds inside the deadline (saved for the runner's warning)."""
    result = measure(start, max_boards, budget_s, parallel or os.cpu_count() or 1, save, tb_size, require_unstarved)
    text = json.dumps(result, indent=2)
    if output:
        Path(output).write_text(text + "\n")
    click.echo(text)
    if not as_json:
        _say(f"capacity: {result['capacity_boards']} boards (saved to {result['saved_to']})")
    sys.stdout.flush()
