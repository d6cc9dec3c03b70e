"""Measure the firmware on a real board with the real service; print JSON.

    .venv/bin/python firmware_stubs/tools/measure.py restart [--crashes 10]
        crash-to-restart medians in phases on one board, same run:
        baseline (crash dumps disabled: no upload), link_up (upload to the
        service), link_down (NIC unplugged), and with --hung service_hung (the
        service accepts and never answers); ratios to the baseline.
    .venv/bin/python firmware_stubs/tools/measure.py cost [--crashes 10] [--image DIR]
        QEMU process CPU seconds per crash (utime + stime of the QEMU process from the
        crash command to the app's restart, idle CPU for the same span subtracted) for a
        crash with collection off, a crash whose signature the device knows is throttled,
        and an uploaded crash; --image measures a given built image (e.g. an older one
        from the cache) instead of the one for the current sources.
    .venv/bin/python firmware_stubs/tools/measure.py sizes [--record DIR]
        raw and gzip'd core sizes per mode and heap size (from the dumps the
        service stored); --record writes each gzip'd core as DIR/<mode>-<heap>k.core.gz

Times: ``after_ms`` is the app manager's own figure (board clock, from the
crash reporter's start to the restart); ``host_s`` is seen from the host,
from the console command to the app-restart line (includes the console round trip).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from testbed.board.identity import Identity
from testbed.board.qemu import QemuBoard
from testbed.board.snapshot import ensure_snapshot
from testbed.image.build import Image, ensure_image
from testbed.service.client import Client, ControlClient
from testbed.service.process import ServiceProcess


def log(msg: str) -> None:
    print(f"[measure] {msg}", file=sys.stderr, flush=True)


def first_event(board: QemuBoard, names: tuple[str, ...], since: float, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while True:
        for e in board.events:
            if e.name in names and e.monotonic >= since:
                return e
        if time.monotonic() > deadline:
            raise TimeoutError(f"none of {names} within {timeout} s")
        time.sleep(0.01)


class Rig:
    def __init__(self, throttle_limit: int = 1000, image: Image | None = None) -> None:
        self.image = image
        self.tmp = tempfile.TemporaryDirectory(prefix="fw-measure-")
        self.service = ServiceProcess(Path(self.tmp.name), enable_control=True, throttle_limit=throttle_limit,
                                      rate_limit=100000, rate_burst=10000)
        self.board: QemuBoard | None = None

    def __enter__(self) -> Rig:
        image = self.image or ensure_image()
        snapshot = ensure_snapshot(image)
        self.service.start()
        with ControlClient(self.service.url, self.service.control_token or "") as c:
            tenant = c.create_tenant("measure")
            self.support_token = c.create_token("Support", label="measure")
        self.admin = Client(self.service.url, tenant["Token"], tenant_id=tenant["Id"])
        self.tenant_id = tenant["Id"]
        product = self.admin.create_product(self.tenant_id, "DW100")["Id"]
        self.group = self.admin.create_device_group(self.tenant_id, product, "measure",
                                                    AllowCrashDumpsCollection=False, RegionalDataBoundary="EU")
        device = self.admin.claim_device(self.tenant_id, self.group["Id"], None)
        self.board = QemuBoard(image, name="fw-measure")
        self.board.restore(snapshot)
        self.board.provision(Identity.for_port(device["DeviceId"], device["DeviceSecret"], self.service.port))
        self.device_id = device["DeviceId"]
        return self

    def enable(self, enabled: bool) -> None:
        self.admin.update_device_group(self.tenant_id, self.group["Id"], AllowCrashDumpsCollection=enabled)
        assert self.board
        self.board.console.run_check("syncd --now", timeout=20)

    def crash(self, args: str) -> dict[str, Any]:
        assert self.board
        t0 = time.monotonic()
        self.board.console.run_check(f"crashapp {args}", timeout=15)
        outcome = first_event(self.board, ("upload-ok", "upload-fail", "dump-skipped"), t0)
        restart = self.board.wait_for_event("app-restart", since=t0, timeout=15)
        return {"outcome": outcome, "after_ms": int(restart["after_ms"]), "host_s": restart.monotonic - t0}

    def __exit__(self, *exc: object) -> None:
        if self.board:
            self.board.close()
        self.service.cleanup()
        self.tmp.cleanup()


def med(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def cmd_restart(crashes: int, hung: bool) -> dict[str, Any]:
    phases: dict[str, list[dict[str, Any]]] = {}
    with Rig() as rig:
        assert rig.board
        names = ["baseline", "link_up", "link_down"] + (["service_hung"] if hung else [])
        for phase in names:
            if phase == "link_up":
                rig.enable(True)
            if phase == "link_down":
                rig.board.link_down()
            if phase == "service_hung":
                rig.board.link_up()
                with ControlClient(rig.service.url, rig.service.control_token or "") as c:
                    c.set_fault("hang")
            runs = []
            for i in range(crashes):
                r = rig.crash("--mode segv --heap-kib 64")
                runs.append(r)
                log(f"{phase} {i + 1}/{crashes}: {r['outcome'].name} after_ms={r['after_ms']} host={r['host_s']:.3f}s")
            phases[phase] = runs
        rig.board.link_up()
    result: dict[str, Any] = {"crashes_per_phase": crashes, "mode": "segv --heap-kib 64", "phases": {}}
    base = med([r["after_ms"] for r in phases["baseline"]])
    for name, runs in phases.items():
        after = [r["after_ms"] for r in runs]
        host = [r["host_s"] for r in runs]
        result["phases"][name] = {
            "outcomes": sorted({r["outcome"].name + ":" + r["outcome"].get("reason", "") for r in runs}),
            "after_ms_median": med(after),
            "after_ms_max": max(after),
            "host_s_median": med(host),
            "host_s_max": round(max(host), 4),
            "ratio_to_baseline": round(med(after) / base, 2) if base else None,
        }
    return result


def qemu_cpu_s(board: QemuBoard) -> float:
    """utime + stime of the board's QEMU process, seconds."""
    fields = Path(f"/proc/{board.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_rate(board: QemuBoard, seconds: float = 3.0) -> float:
    """QEMU CPU seconds per second with nothing happening on the board (its daemons tick)."""
    c0, t0 = qemu_cpu_s(board), time.monotonic()
    time.sleep(seconds)
    return (qemu_cpu_s(board) - c0) / (time.monotonic() - t0)


def cmd_cost(crashes: int, image_dir: Path | None) -> dict[str, Any]:
    image = Image.from_dir(image_dir) if image_dir else None
    kinds: dict[str, list[dict[str, Any]]] = {"collection_off": [], "throttled": [], "uploaded": []}
    with Rig(throttle_limit=1, image=image) as rig:
        assert rig.board
        board = rig.board
        idle = idle_rate(board)

        def measure(kind: str, args: str, want: str) -> None:
            c0, t0 = qemu_cpu_s(board), time.monotonic()
            r = rig.crash(args)
            c1, t1 = qemu_cpu_s(board), time.monotonic()
            got = r["outcome"].name + ":" + r["outcome"].get("reason", "")
            if not got.startswith(want):
                raise RuntimeError(f"{kind}: expected {want}, got {r['outcome'].line}")
            cpu = max(0.0, (c1 - c0) - idle * (t1 - t0))
            kinds[kind].append({"cpu_s": cpu, "after_ms": r["after_ms"]})
            log(f"{kind}: {got} cpu={cpu:.3f}s after_ms={r['after_ms']}")

        for _ in range(crashes):
            measure("collection_off", "--mode segv --heap-kib 64", "dump-skipped:optout")
        rig.enable(True)
        # the service's N is 1: one stored, one told "throttled" at the intent; from then on the
        # device knows the signature and skips it itself
        rig.crash("--mode segv --heap-kib 64 --id thr")
        rig.crash("--mode segv --heap-kib 64 --id thr")
        for _ in range(crashes):
            measure("throttled", "--mode segv --heap-kib 64 --id thr", "dump-skipped:throttled")
        for i in range(crashes):
            measure("uploaded", f"--mode segv --heap-kib 64 --id u{i}", "upload-ok")
        rss = board.rss_bytes()
    out: dict[str, Any] = {"crashes_per_kind": crashes, "mode": "segv --heap-kib 64",
                           "image": (image or ensure_image()).hash, "idle_cpu_s_per_s": round(idle, 4),
                           "rss_bytes": {"current": rss[0], "peak": rss[1]}, "kinds": {}}
    for kind, runs in kinds.items():
        out["kinds"][kind] = {"qemu_cpu_s_median": med([r["cpu_s"] for r in runs]),
                              "qemu_cpu_s_max": round(max(r["cpu_s"] for r in runs), 4),
                              "restart_after_ms_median": med([r["after_ms"] for r in runs])}
    return out


SIZES = [("segv", 0), ("segv", 16), ("segv", 64), ("segv", 128), ("segv", 200), ("abort", 64), ("fpe", 64),
         ("stack", 0), ("stack", 64)]


def cmd_sizes(record: Path | None) -> dict[str, Any]:
    rows = []
    with Rig() as rig:
        rig.enable(True)
        support = Client(rig.service.url, rig.support_token)
        for mode, heap in SIZES:
            r = rig.crash(f"--mode {mode} --heap-kib {heap}")
            ev = r["outcome"]
            if ev.name != "upload-ok":
                raise RuntimeError(f"{mode} {heap}: {ev.line}")
            dump = next(d for d in support.support_dumps(reason="measure sizes", deviceId=rig.device_id)
                        if d["id"] == ev["id"])
            rows.append({"mode": mode, "heap_kib": heap, "raw_bytes": dump["inflatedSize"],
                         "gzip_bytes": dump["size"], "upload_ms": int(ev["ms"]), "restart_after_ms": r["after_ms"]})
            log(f"{rows[-1]}")
            if record:
                record.mkdir(parents=True, exist_ok=True)
                body = support.support_read(ev["id"], reason="record board cores for load fixtures")
                (record / f"{mode}-{heap}k.core.gz").write_bytes(body)
    return {"sizes": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("restart")
    r.add_argument("--crashes", type=int, default=10)
    r.add_argument("--hung", action="store_true", help="add the service_hung phase (about 5 s a crash)")
    c = sub.add_parser("cost")
    c.add_argument("--crashes", type=int, default=10)
    c.add_argument("--image", type=Path, help="a built image directory (default: the current sources' image)")
    s = sub.add_parser("sizes")
    s.add_argument("--record", type=Path)
    args = ap.parse_args()
    if args.cmd == "restart":
        if not 1 <= args.crashes <= 200:
            ap.error("--crashes must be 1..200")
        out = cmd_restart(args.crashes, args.hung)
    elif args.cmd == "cost":
        if not 1 <= args.crashes <= 200:
            ap.error("--crashes must be 1..200")
        out = cmd_cost(args.crashes, args.image)
    else:
        out = cmd_sizes(args.record)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
