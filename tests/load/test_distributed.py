"""Distributed load for real: the service, the Locust master and two workers each on a host of its own.

The hosts are network namespaces this test makes on this machine (see
conftest.NetLab): every process gets its own network stack and address on a
private /24 and reaches the others only through it, as on separate machines.
Each is started as a user would start it there: ``testbed service run`` on the
service's address, ``testbed load run --master`` and ``testbed load run --worker``.
The master gathers the summary from both workers and checks, on the service,
that exactly N dumps were stored per signature.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import settings

pytestmark = pytest.mark.load

THROTTLE_LIMIT = 3
MASTER_PORT = 5557
SERVICE_PORT = 8443


def _testbed() -> list[str]:
    """The ``testbed`` command of this environment."""
    script = Path(sys.executable).parent / "testbed"
    if script.exists():
        return [str(script)]
    found = shutil.which("testbed")
    return [found] if found else [sys.executable, "-m", "testbed.cli"]


def test_throttling_with_master_workers_and_service_on_separate_hosts(netlab, tmp_path):
    service, master = netlab.add_host("svc"), netlab.add_host("master")
    workers = ["w1", "w2"]
    for role in workers:
        netlab.add_host(role)

    # the service listens on its own host's address (not loopback): an explicit opt-in
    data = tmp_path / "service-data"
    data.mkdir()
    ready = data / "ready.json"
    svc_log = tmp_path / "service.log"
    svc = netlab.popen("svc", [sys.executable, "-m", "testbed.service", "run", "--host", service.address,
                               "--allow-non-loopback", "--port", str(SERVICE_PORT), "--data-dir", str(data),
                               "--enable-control", "--ready-file", str(ready), "--rate-limit", "0",
                               "--throttle-limit", str(THROTTLE_LIMIT)], svc_log)
    netlab.wait_for_file(ready, 30, svc, svc_log)
    info = json.loads(ready.read_text())
    assert info["url"] == f"http://{service.address}:{SERVICE_PORT}"

    out = tmp_path / "master"
    env = {**os.environ, settings.CONTROL_TOKEN: info["controlToken"]}
    master_log = tmp_path / "master.log"
    head = netlab.popen("master", [*_testbed(), "load", "run", "throttling", "--master", "--expect-workers", "2",
                                   "--master-bind-host", master.address, "--master-port", str(MASTER_PORT),
                                   "--service-url", info["url"], "--allow-private-service",
                                   "--throttle-limit", str(THROTTLE_LIMIT), "--users", "60", "--duration", "10",
                                   "--param", "rotate_seconds=3", "--param", "signatures=3", "--out", str(out)],
                        master_log, env=env)
    worker_procs = [
        netlab.popen(role, [*_testbed(), "load", "run", "throttling", "--worker", "--master-host", master.address,
                            "--master-port", str(MASTER_PORT), "--out", str(tmp_path / role)],
                     tmp_path / f"{role}.log")
        for role in workers
    ]
    try:
        code = head.wait(timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the master did not finish within 600 s:\n{master_log.read_text()[-3000:]}")
    summary_path = out / "summary.json"
    assert summary_path.exists(), master_log.read_text()[-3000:]
    s = json.loads(summary_path.read_text())
    failed = {k: v for k, v in s["checks"].items() if not v.get("ok")}
    assert code == 0 and not failed, (failed, master_log.read_text()[-3000:])
    for proc in worker_procs:
        assert proc.wait(timeout=60) == 0  # each worker quit when its master told it

    # the summary gathers both workers' shares
    assert s["workers"] == 2
    assert set(s["requests_per_worker"]) == {"0", "1"} and all(n > 0 for n in s["requests_per_worker"].values())
    assert sum(s["requests_per_worker"].values()) <= sum(r["requests"] for r in s["requests"].values())
    # the throttling invariant, checked by the master on the service: exactly N per signature
    t = s["throttling"]
    assert t["throttle_limit"] == THROTTLE_LIMIT
    assert t["signatures"] >= 6 and t["signatures_at_exactly_n"] == t["signatures"]
    assert 0 < s["counters"]["stored"] <= THROTTLE_LIMIT * t["signatures"]
    assert t["share_skipped_at_intent"] + t["share_skipped_on_device"] > 0.5


def test_the_lab_removes_its_namespaces_and_processes_even_when_the_test_fails(netlab_class, tmp_path):
    lab = netlab_class()
    with pytest.raises(RuntimeError, match="the test failed"), lab:
        a, _b = lab.add_host("a"), lab.add_host("b")
        server = ("import socket, time; s = socket.socket(); "
                  f"s.bind(('{a.address}', 7000)); s.listen(); c, _ = s.accept(); c.sendall(b'hi'); time.sleep(600)")
        proc = lab.popen("a", [sys.executable, "-c", server], tmp_path / "a.log")
        client = ("import socket, time\n"
                  "for _ in range(100):\n"
                  "    try:\n"
                  f"        print(socket.create_connection(('{a.address}', 7000), timeout=2).recv(2).decode()); break\n"
                  "    except ConnectionRefusedError:\n"
                  "        time.sleep(0.05)\n")
        # one host reaches the other through the lab's network
        assert lab.run("b", [sys.executable, "-c", client]).stdout.strip() == "hi"
        raise RuntimeError("the test failed")
    assert proc.poll() is not None  # ended by the lab
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert lab.prefix not in names
