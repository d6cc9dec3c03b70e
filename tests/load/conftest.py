"""A lab of network namespaces on this machine, made and removed by the test that uses it.

Each host of a distributed load run (the service, the Locust master, each
worker) gets a network namespace of its own with one veth interface on a
private /24 (10.77.0.0/24 by default); the veths' other ends sit on a bridge
in a hub namespace of the lab's own. Nothing is attached to the machine's own
network: traffic stays between the lab's namespaces. Everything (processes
started in the namespaces, namespaces, veths, the bridge) is removed on exit,
also when the test failed. Needs root and iproute2 (``ip``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed.deadline import Deadline


class LabError(RuntimeError):
    pass


def _ip(*args: str) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


@dataclass
class Host:
    name: str  # the namespace
    address: str


@dataclass
class NetLab:
    """Namespaces ``<prefix>-<host>`` joined by a bridge in ``<prefix>-hub``."""

    subnet: str = "10.77.0"
    prefix: str = field(default_factory=lambda: f"tbl{secrets.token_hex(3)}")
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    made: list[str] = field(default_factory=list)

    @property
    def hub(self) -> str:
        return f"{self.prefix}-hub"

    def __enter__(self) -> NetLab:
        try:
            _ip("netns", "add", self.hub)
            self.made.append(self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_host(self, role: str) -> Host:
        """A namespace with loopback up and ``eth0`` at the next address of the subnet."""
        ns = f"{self.prefix}-{role}"
        address = f"{self.subnet}.{len(self.hosts) + 1}"
        _ip("netns", "add", ns)
        self.made.append(ns)
        # the veth's hub end is named after the lab (interface names are at most 15 characters)
        hub_end = f"{self.prefix}h{len(self.hosts) + 1}"
        _ip("link", "add", hub_end, "netns", self.hub, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.hub, "link", "set", hub_end, "master", "br0")
        _ip("-n", self.hub, "link", "set", hub_end, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        host = Host(ns, address)
        self.hosts[role] = host
        return host

    def popen(self, role: str, args: list[str], log: Path, **kw) -> subprocess.Popen:
        """Start ``args`` in ``role``'s namespace (``ip netns exec`` execs it: the pid is the command's)."""
        with open(log, "ab") as fh:
            proc = subprocess.Popen(["ip", "netns", "exec", self.hosts[role].name, *args], stdout=fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def run(self, role: str, args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.hosts[role].name, *args], capture_output=True, text=True,
                              timeout=timeout)

    @staticmethod
    def wait_for_file(path: Path, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
        """Wait for a process of the lab to write ``path`` (its ready file)."""
        deadline = Deadline(timeout)
        while not path.exists():
            if proc is not None and proc.poll() is not None:
                raise LabError(f"{proc.args!r} exited with {proc.returncode} before writing {path}:\n"
                               + (log.read_text()[-3000:] if log and log.exists() else ""))
            if not deadline.sleep(0.05):
                raise LabError(f"{path} did not appear within {timeout:g} s")

    def close(self) -> None:
        for proc in self.procs:
            _end(proc)
        for ns in reversed(self.made):
            # anything still running in a namespace of ours was started by this lab
            try:
                pids = [int(p) for p in _ip("netns", "pids", ns).split()]
            except LabError:
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                _ip("netns", "del", ns)  # takes its veths (and the hub's bridge) with it
            except LabError:
                pass
        self.made.clear()


def _end(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def lab_unavailable() -> str | None:
    """Why no lab can be made here (a testbed limit, not a failure), or None."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


@pytest.fixture
def netlab_class() -> type[NetLab]:
    """The lab class, for a test that manages the lab itself (skips where no lab can be made)."""
    why = lab_unavailable()
    if why:
        pytest.skip(f"no network namespace lab: {why}")
    return NetLab


@pytest.fixture
def netlab(netlab_class: type[NetLab]) -> Iterator[NetLab]:
    """A lab of network namespaces, removed after the test whatever its outcome."""
    with netlab_class() as lab:
        yield lab
