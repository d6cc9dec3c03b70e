"""``testbed bench board-profile``: what the TCG translation cache size costs a board.

For each ``tb-size`` (MiB), one board restored from the cached snapshot (unprovisioned: no
consent, so a crash takes the collection-off path: no core, no reporter, the app manager
restarts the app at once) measures, in QEMU process CPU from its threads' schedstat
(testbed.board.hostcpu), with the board's idle CPU rate over the same time subtracted:

- one exec of ``busybox true`` (a shell loop of N execs, minus the same loop running the
  shell builtin ``:``);
- one crash and restart with collection off (``crashapp --mode segv`` from the console to
  the ``app-restart`` line, back to back, and the new app's start-up after the last one);
- the QEMU process's RSS (current and peak) after that work.

Each size gets a warm-up of the same work first (the translation of the code paths is paid
once per board, not per crash). The boards run one after another, never side by side.
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

from testbed.board.console import Console
from testbed.board.errors import BoardError
from testbed.board.hostcpu import HostCpuMonitor
from testbed.board.profile import RSS_LIMIT_MB, TRANSLATION_CACHE_MIB
from testbed.board.qemu import QemuBoard

#: The sizes the issue's table compared (MiB).
DEFAULT_SIZES = (12, 24, 32, 64)
IDLE_SECONDS = 2.0
#: After the last crash's app-restart line, the new app still starts up (exec, heap, FIFO).
RESTART_TAIL_SECONDS = 0.5


class ProfiledBoard(QemuBoard):
    """A QemuBoard with another translation cache size than the profile's (benchmarks only)."""

    def __init__(self, *args: Any, tb_size_mib: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tb_size_mib = tb_size_mib

    def _command(self, *args: Any, **kwargs: Any) -> list[str]:
        cmd = super()._command(*args, **kwargs)
        cmd[cmd.index("-accel") + 1] = f"tcg,tb-size={self.tb_size_mib}"
        return cmd


def _say(message: str) -> None:
    click.echo(f"[bench] {message}", err=True)


def _monitor(board: QemuBoard) -> HostCpuMonitor:
    assert board.host_cpu is not None, "a started QEMU board has its host-CPU monitor"
    return board.host_cpu


def _console(board: QemuBoard) -> Console:
    assert board.console is not None, "a started QEMU board has its console"
    return board.console


def _cpu_between(board: QemuBoard, t0: float, t1: float, idle_rate: float) -> float:
    """QEMU CPU seconds over [t0, t1] above the board's idle rate."""
    return _monitor(board).window(t0, t1).cpu_s - idle_rate * (t1 - t0)


def idle_rate(board: QemuBoard, seconds: float = IDLE_SECONDS) -> float:
    """The idle board's QEMU CPU per wall second (timers, syncd's one-second check)."""
    t0 = time.monotonic()
    time.sleep(seconds)  # a measurement of doing nothing, not a wait for the board
    t1 = time.monotonic()
    return _monitor(board).window(t0, t1).cpu_s / (t1 - t0)


def exec_cost(board: QemuBoard, rate: float, n: int) -> float:
    """QEMU CPU of one ``busybox true`` exec: the loop with it minus the loop with ``:``."""

    def loop(body: str) -> float:
        t0 = time.monotonic()
        _console(board).run_check(f"i=0; while [ $i -lt {n} ]; do {body}; i=$((i+1)); done", timeout=120)
        return _cpu_between(board, t0, time.monotonic(), rate)

    return (loop("busybox true") - loop(":")) / n


def crash_cost(board: QemuBoard, rate: float, n: int, timeout: float = 30) -> tuple[float, list[float]]:
    """QEMU CPU of one crash + restart with collection off, and the crash-to-restart times (after_ms)."""
    t0 = time.monotonic()
    restarts: list[float] = []
    last_event_t = t0
    for _ in range(n):
        since = time.monotonic()
        _, code = board.firmware.crash("crashapp", "segv", timeout=timeout)  # waits for the app to listen
        if code != 0:
            raise click.ClickException(f"{board.name}: the crash trigger exited {code}")
        event = board.wait_for_event("app-restart", timeout=timeout, since=since)
        restarts.append(int(event.fields.get("after_ms", "0")) / 1000)
        last_event_t = event.monotonic
    end = max(time.monotonic(), last_event_t + RESTART_TAIL_SECONDS)
    while time.monotonic() < end:
        time.sleep(0.05)
    return _cpu_between(board, t0, end, rate) / n, restarts


def measure_size(image, snapshot, tb_size: int, execs: int, crashes: int) -> dict[str, Any]:
    with ProfiledBoard(image, name=f"bench-tb{tb_size}", ssh=False, tb_size_mib=tb_size) as board:
        board.restore(snapshot)
        exec_cost(board, 0.0, max(5, execs // 4))  # warm-up: translate the paths once
        crash_cost(board, 0.0, 1)
        rate = idle_rate(board)
        per_exec = exec_cost(board, rate, execs)
        per_crash, restarts = crash_cost(board, rate, crashes)
        wait = _monitor(board).total()
        current, peak = board.rss_bytes()
    return {
        "tb_size_mib": tb_size,
        "idle_cpu_share": round(rate, 4),
        "exec_busybox_true_cpu_ms": round(per_exec * 1000, 2),
        "crash_restart_collection_off_cpu_s": round(per_crash, 4),
        "crash_to_restart_median_s": round(statistics.median(restarts), 3),
        "rss_mib": round(current / 2**20, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "board_wait_share": round(wait.wait_share, 4),  # high: the figures above are less sure
    }


def measure(sizes: list[int], execs: int, crashes: int) -> dict[str, Any]:
    from testbed.board.hostcpu import sampler_cost
    from testbed.board.snapshot import ensure_snapshot
    from testbed.image.build import ensure_image

    image = ensure_image()
    snapshot = ensure_snapshot(image)
    load_before = round(os.getloadavg()[0], 2)
    rows = []
    for size in sizes:
        rows.append(measure_size(image, snapshot, size, execs, crashes))
        r = rows[-1]
        _say(f"tb-size={size}: exec {r['exec_busybox_true_cpu_ms']} ms, crash {r['crash_restart_collection_off_cpu_s']} s, "
             f"RSS {r['rss_mib']} MiB (peak {r['peak_rss_mib']})")  # fmt: skip
    return {
        "benchmark": "board-profile",
        "image": image.hash,
        "profile_tb_size_mib": TRANSLATION_CACHE_MIB,
        "execs": execs,
        "crashes": crashes,
        "unit": "QEMU process CPU (all threads, schedstat), the board's idle rate subtracted",
        "sizes": rows,
        "limits": {"rss_per_board_mb": RSS_LIMIT_MB},
        "host_cpu_sampler": sampler_cost(),
        "host": {"cpus": os.cpu_count(), "loadavg_1m_before": load_before,
                 "loadavg_1m_after": round(os.getloadavg()[0], 2)},  # fmt: skip
    }


@click.command("board-profile")
@click.option("--sizes", default=",".join(map(str, DEFAULT_SIZES)), show_default=True,
              help="Translation cache sizes to compare (MiB, comma-separated).")
@click.option("--execs", type=click.IntRange(5, 500), default=40, show_default=True, help="Execs per measurement.")
@click.option("--crashes", type=click.IntRange(1, 50), default=5, show_default=True, help="Crashes per size.")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON (progress goes to stderr).")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the JSON to this file.")
def bench_board_profile(sizes: str, execs: int, crashes: int, as_json: bool, output: str | None) -> None:
    """QEMU CPU per exec and per crash + restart, and RSS, for each translation cache size."""
    try:
        wanted = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"not a list of integers: {sizes!r}", param_hint="--sizes") from None
    if not wanted or any(not 4 <= s <= 512 for s in wanted) or len(wanted) > 8:
        raise click.BadParameter("1 to 8 sizes, each 4 to 512 MiB", param_hint="--sizes")
    try:
        result = measure(wanted, execs, crashes)
    except BoardError as exc:
        raise click.ClickException(str(exc)) from exc
    text = json.dumps(result, indent=2)
    if output:
        Path(output).write_text(text + "\n")
    click.echo(text)
    if not as_json:
        for r in result["sizes"]:
            click.echo(f"tb-size={r['tb_size_mib']:>3}: exec {r['exec_busybox_true_cpu_ms']:>7} ms  "
                       f"crash {r['crash_restart_collection_off_cpu_s']:>6} s  RSS {r['rss_mib']} MiB", err=True)  # fmt: skip
    sys.stdout.flush()
