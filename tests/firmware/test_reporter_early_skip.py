"""A crash the device will not send costs only the start of its core.

The reporter reads as far as the signature needs (notes and the executable's first page),
decides on the device (consent, freshness, throttling) and, on a skip, closes the pipe at
once so the kernel stops writing. A writer that offers far more than the core shows how
much was taken.
"""

from __future__ import annotations

import gzip
import subprocess
import threading
import time

import pytest
from fw_helpers import FakeDeviceApi, FwEnv

from testbed.contract.events import DumpSkipReason, EventName
from testbed.crash.signature import signature_of_core
from testbed.paths import REPO_ROOT

BOARD_CORE = REPO_ROOT / "testbed" / "load" / "cores" / "segv-200k.core.gz"
PAD = 4 << 20  # what the writer offers after the core (a bigger dump)
PIPE_AND_SLACK = 256 * 1024  # the pipe's buffer and the reporter's first read, generously


@pytest.fixture(scope="module")
def core() -> bytes:
    return gzip.decompress(BOARD_CORE.read_bytes())


def feed(fw: FwEnv, data: bytes) -> tuple[int, subprocess.CompletedProcess]:
    """Run the reporter with ``data`` written into its stdin as the kernel would; (bytes taken, process)."""
    proc = subprocess.Popen([str(fw.bin / "crash-reporter"), "4242", "crashapp", "11", "1790000000"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=fw.env())
    assert proc.stdin is not None
    taken = 0

    def write() -> None:
        nonlocal taken
        try:
            for at in range(0, len(data), 4096):
                proc.stdin.write(data[at:at + 4096])
                proc.stdin.flush()
                taken += len(data[at:at + 4096])
            proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    proc.wait(timeout=30)
    writer.join(timeout=10)
    return taken, subprocess.CompletedProcess(proc.args, proc.returncode)


def test_a_locally_throttled_crash_reads_only_the_start_of_the_core(fw, api: FakeDeviceApi, core):
    api.throttled = [signature_of_core(core)]
    assert fw.provision(api.port).returncode == 0
    api.requests.clear()
    t0 = time.monotonic()
    taken, proc = feed(fw, core + b"\0" * PAD)
    assert proc.returncode == 0
    ev = fw.wait_event(EventName.DUMP_SKIPPED)
    assert ev["reason"] == DumpSkipReason.THROTTLED and ev["sig"] == signature_of_core(core)
    assert fw.wait_event(EventName.CRASH)["sig"] == ev["sig"]
    assert taken < PIPE_AND_SLACK < len(core)  # the pipe was closed long before the core's end
    assert api.requests == []
    assert time.monotonic() - t0 < 10


def test_an_upload_still_reads_the_whole_core(fw, api: FakeDeviceApi, core):
    assert fw.provision(api.port).returncode == 0
    api.requests.clear()
    taken, proc = feed(fw, core)
    assert proc.returncode == 0
    assert taken == len(core)
    fw.wait_event(EventName.UPLOAD_OK)
    assert gzip.decompress(api.requests[-1].body) == core


@pytest.mark.parametrize("name", sorted(p.name for p in BOARD_CORE.parent.glob("*.core.gz")))
def test_the_signature_from_the_start_is_the_whole_cores(fw, api: FakeDeviceApi, name):
    """Every recorded board core: the signature decided from its start is that of the whole core
    (the device skips it as throttled, which it can only do with the same signature)."""
    whole = gzip.decompress((BOARD_CORE.parent / name).read_bytes())
    api.throttled = [signature_of_core(whole)]
    assert fw.provision(api.port).returncode == 0
    api.requests.clear()
    taken, proc = feed(fw, whole)
    assert proc.returncode == 0
    assert fw.wait_event(EventName.DUMP_SKIPPED)["reason"] == DumpSkipReason.THROTTLED
    assert api.requests == []
