"""A slowloris probe of the service, run by hand (not a pytest module):

    python tests/service/slowloris_probe.py --connections 2000 --seconds 30

Starts a real service (default settings unless given), keeps ``--connections``
connections open that drip header bytes (a closed one is opened again), and
meanwhile uploads a real core once a second as a normal device. Prints JSON:
the uploads' latency (all must be stored), how many slow connections were
opened, how many the service closed, and whether any was left open once the
flood stopped (the service must close every one itself within its header timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_helpers import core_files, new_signature  # noqa: E402

from testbed.contract import device_api as api  # noqa: E402
from testbed.service.client import Client, ControlClient, DeviceClient  # noqa: E402
from testbed.service.process import ServiceProcess  # noqa: E402

HEAD = f"POST {api.UPLOAD_PATH} HTTP/1.1\r\nHost: x\r\n".encode()


class Flood:
    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self.connections = connections
        self.opened = 0
        self.closed_by_service = 0
        self.open_now = 0
        self.stopping = False
        self.refused = 0

    async def one(self) -> None:
        while not self.stopping:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.refused += 1
                await asyncio.sleep(0.5)
                continue
            self.opened += 1
            self.open_now += 1
            try:
                writer.write(HEAD)
                while True:
                    try:
                        data = await asyncio.wait_for(reader.read(4096), 1.0)
                    except TimeoutError:
                        writer.write(b"X")  # one more header byte a second
                        continue
                    if not data or reader.at_eof():
                        self.closed_by_service += 1
                        break
            except (ConnectionResetError, BrokenPipeError):
                self.closed_by_service += 1
            finally:
                self.open_now -= 1
                writer.close()

    async def run(self, seconds: float, drain: float) -> None:
        tasks = [asyncio.create_task(self.one()) for _ in range(self.connections)]
        await asyncio.sleep(seconds)
        self.stopping = True  # no new connections; the open ones keep dripping
        deadline = time.monotonic() + drain
        while self.open_now and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        self.left_open = self.open_now
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--header-timeout", type=float, default=None)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    core = min(core_files(), key=lambda p: p.stat().st_size).read_bytes()
    settings = {"rate_limit": 0}
    if args.header_timeout:
        settings["header_timeout"] = args.header_timeout
    with ServiceProcess(**settings) as svc:
        with ControlClient(svc.url, svc.control_token) as control:
            config = control.config()
            t = control.create_tenant("slowloris")
        with Client(svc.url, t["Token"]) as admin:
            p = admin.create_product(t["Id"], "P")
            g = admin.create_device_group(t["Id"], p["Id"], "G", AllowCrashDumpsCollection=True)
            d = admin.claim_device(t["Id"], g["Id"])
        flood = Flood(svc.port, args.connections)
        latencies: list[float] = []
        ids: list[str] = []
        failures: list[str] = []
        done = threading.Event()

        def uploader() -> None:
            time.sleep(3)  # let the flood build up
            with DeviceClient(svc.url, d["DeviceId"], d["DeviceSecret"], timeout=30) as c:
                while not done.is_set():
                    t0 = time.monotonic()
                    try:
                        ids.append(c.upload(core, new_signature())["id"])
                        latencies.append(time.monotonic() - t0)
                    except Exception as exc:  # noqa: BLE001 - reported
                        failures.append(repr(exc))
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))

        thread = threading.Thread(target=uploader)
        thread.start()
        asyncio.run(flood.run(args.seconds, config["header_timeout"] + 5))
        done.set()
        thread.join()
        with ControlClient(svc.url, svc.control_token) as control:
            stored = {x["id"] for x in control.dumps()}
    print(json.dumps({
        "connections": args.connections,
        "seconds": args.seconds,
        "header_timeout": config["header_timeout"],
        "slow_connections_opened": flood.opened,
        "closed_by_service": flood.closed_by_service,
        "left_open_after_flood": flood.left_open,
        "connect_failures": flood.refused,
        "uploads": len(latencies),
        "uploads_stored": len(set(ids) & stored),
        "upload_failures": failures,
        "upload_latency_s": {
            "median": round(statistics.median(latencies), 3) if latencies else None,
            "max": round(max(latencies), 3) if latencies else None,
        },
    }, indent=2))


if __name__ == "__main__":
    main()
