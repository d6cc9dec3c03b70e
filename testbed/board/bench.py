"""`testbed bench boot`: how fast boards start and how many fit, as JSON.

Medians over several runs of a cold boot to a working shell and of a
snapshot restore to a working shell (the cold boot is the baseline the
restore is compared with, in the same run), one console round trip, the
peak RSS per board, and how many boards fit in a memory budget: boards are
started side by side and measured, and the count that fits is extrapolated
from the measured per-board RSS (the JSON says which numbers are measured).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from testbed.board.errors import BoardError


def _say(message: str) -> None:
    click.echo(f"[bench] {message}", err=True)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4) if values else float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(runs: int, side_by_side: int, budget_gib: float, image_dir: str | None) -> dict:
    from testbed.board.profile import RSS_LIMIT_MB
    from testbed.board.qemu import QemuBoard
    from testbed.board.snapshot import ensure_snapshot
    from testbed.image.build import Image, ensure_image

    image = Image.from_dir(Path(image_dir)) if image_dir else ensure_image()
    snapshot = ensure_snapshot(image)
    load_before = round(os.getloadavg()[0], 2)

    cold, cold_kernel_ready, cold_rss, cold_cpu = [], [], [], []
    for i in range(runs):
        with QemuBoard(image, name=f"bench-cold-{i}") as b:
            t0 = time.monotonic()
            b.boot()  # to boot-ready, then a shell answering a command
            cold.append(time.monotonic() - t0)
            cold_kernel_ready.append(b.ready_seconds or 0.0)
            cold_rss.append(b.rss_bytes()[1])
            assert b.pid is not None  # booted
            cold_cpu.append(_cpu_seconds(b.pid))
        _say(f"cold boot {i + 1}/{runs}: {cold[-1]:.2f} s")

    restore, restore_rss, roundtrip = [], [], []
    for i in range(runs):
        with QemuBoard(image, name=f"bench-restore-{i}") as b:
            t0 = time.monotonic()
            b.restore(snapshot)  # QEMU start, state load, shell answering, clock set
            restore.append(time.monotonic() - t0)
            assert b.console is not None  # restored
            for _ in range(10):
                t1 = time.monotonic()
                b.console.run("true")
                roundtrip.append(time.monotonic() - t1)
            restore_rss.append(b.rss_bytes()[1])
        _say(f"snapshot restore {i + 1}/{runs}: {restore[-1]:.2f} s")

    # Boards side by side: start them all, make each do a little work, measure each RSS.
    boards = [QemuBoard(image, name=f"bench-fleet-{i}") for i in range(side_by_side)]
    avail_before = _mem_available()
    try:
        with ThreadPoolExecutor(max_workers=min(side_by_side, os.cpu_count() or 2)) as pool:
            list(pool.map(lambda b: b.restore(snapshot), boards))
        for b in boards:
            assert b.console is not None  # restored
            b.console.run_check("ls -R / >/dev/null 2>&1; true", timeout=60)
        fleet_rss = [b.rss_bytes()[1] for b in boards]
        all_alive = all(b.alive for b in boards)
        avail_after = _mem_available()
    finally:
        for b in boards:
            b.close()
    _say(f"{side_by_side} boards side by side: peak RSS {statistics.mean(fleet_rss) / 2**20:.0f} MiB each")

    per_board = max(statistics.median(fleet_rss), statistics.median(restore_rss))
    budget = int(budget_gib * 2**30)
    return {
        "benchmark": "boot",
        "runs": runs,
        "image": image.hash,
        "cold_boot_to_shell_s": {"median": _median(cold), "all": [round(x, 3) for x in cold]},
        "cold_boot_to_boot_ready_s": {"median": _median(cold_kernel_ready)},
        # QEMU's CPU time for a cold boot: barely moved by other load on the machine,
        # unlike the wall times above (compare with host.loadavg_*).
        "cold_boot_qemu_cpu_s": {"median": _median(cold_cpu)},
        "snapshot_restore_to_shell_s": {"median": _median(restore), "all": [round(x, 3) for x in restore]},
        "restore_vs_cold_ratio": round(_median(restore) / _median(cold), 4),
        "console_roundtrip_ms": {"median": round(_median(roundtrip) * 1000, 2), "samples": len(roundtrip)},
        "peak_rss_per_board_mib": {
            "cold_median": round(statistics.median(cold_rss) / 2**20, 1),
            "restored_median": round(statistics.median(restore_rss) / 2**20, 1),
            "side_by_side_median": round(statistics.median(fleet_rss) / 2**20, 1),
        },
        "boards_within_budget": {
            "budget_gib": budget_gib,
            "measured_side_by_side": side_by_side,
            "all_stayed_up": all_alive,
            "host_mem_available_drop_mib": round((avail_before - avail_after) / 2**20, 1),
            "extrapolated_count": int(budget // per_board),
            "method": f"{side_by_side} boards run side by side and measured; the count is the budget "
            "divided by the larger of their median peak RSS and a restored board's (extrapolated, not all started)",
        },
        "targets": {"snapshot_restore_median_s": 1.0, "cold_boot_median_s": 10.0, "rss_per_board_mb": RSS_LIMIT_MB},
        "host": {
            "cpus": os.cpu_count(),
            "mem_available_gib": round(_mem_available() / 2**30, 1),
            # Other work on the machine slows cold boots most: judge the medians with this.
            "loadavg_1m_before": load_before,
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
        },
    }


@click.command("boot")
@click.option("--runs", type=click.IntRange(1, 50), default=5, show_default=True, help="Runs per measurement.")
@click.option("--side-by-side", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Boards started at once for the memory measurement.")
@click.option("--budget-gib", type=float, default=8.0, show_default=True, help="Memory budget for the board count.")
@click.option("--image", "image_dir", type=click.Path(exists=True, file_okay=False), help="A built image directory.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only (progress goes to stderr either way).")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the JSON to this file.")
def bench_boot(runs: int, side_by_side: int, budget_gib: float, image_dir: str | None, as_json: bool,
               output: str | None) -> None:
    """Cold boot and snapshot restore to a shell (medians), RSS per board, boards per memory budget."""
    try:
        result = measure(runs, side_by_side, budget_gib, image_dir)
    except BoardError as exc:
        raise click.ClickException(str(exc)) from exc
    text = json.dumps(result, indent=2)
    if output:
        Path(output).write_text(text + "\n")
    if as_json:
        click.echo(text)
    else:
        click.echo(text)
        r = result
        click.echo(
            f"cold boot {r['cold_boot_to_shell_s']['median']} s, restore {r['snapshot_restore_to_shell_s']['median']} s, "
            f"{r['peak_rss_per_board_mib']['side_by_side_median']} MiB/board, "
            f"~{r['boards_within_budget']['extrapolated_count']} boards in {budget_gib} GiB",
            err=True,
        )
    sys.stdout.flush()
