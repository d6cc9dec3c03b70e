"""The firmware's command lines that the host types on a board's shell.

The firmware driver is the only caller; the names of the programs and their
options are the firmware's (firmware_stubs/src, docs/firmware.md).
"""

from __future__ import annotations

import shlex

#: Where the firmware keeps its state (identity, sync state, spool) on the board.
STATE_DIR = "/var/lib/testbed"
#: Where the firmware keeps its run-time files (sockets, locks) on the board.
RUN_DIR = "/run/testbed"
#: The crash reporter, as core_pattern names it.
REPORTER_PATH = "/usr/sbin/crash-reporter"
#: Crash modes of ``crashapp --mode``.
CRASH_MODES: tuple[str, ...] = ("segv", "abort", "fpe", "stack")


def provision(device_id: str, secret: str, service: str, allow_remote: bool = False) -> str:
    """Give the board its identity and the service address it dials (then it syncs).

    ``allow_remote``: the address may be any IPv4 host (a real board dialling the host's LAN
    address); without it the firmware takes only 10.0.2.2 or 127.x."""
    cmd = f"tb-provision --device-id {device_id} --secret {shlex.quote(secret)} --service {service}"
    return cmd + " --allow-remote-service" if allow_remote else cmd


def sync_now() -> str:
    """One sync, now; exit code 0 when it succeeded."""
    return "syncd --now"


def crash(app: str, mode: str, heap_kib: int | None = None, crash_id: str | None = None) -> str:
    """Make the running app (or the OS component) crash (crashapp.c)."""
    cmd = f"crashapp --app {shlex.quote(app)} --mode {shlex.quote(mode)}"
    if heap_kib is not None:
        cmd += f" --heap-kib {int(heap_kib)}"
    if crash_id:
        cmd += f" --id {shlex.quote(crash_id)}"
    return cmd


def set_clock(epoch: int) -> str:
    """Set the board's wall clock."""
    return f"date -s @{int(epoch)} >/dev/null"


def warp_clock(seconds: int) -> str:
    """Move the board's wall clock by ``seconds`` (negative: back)."""
    return f"date -s @$(( $(date +%s) + {int(seconds)} )) >/dev/null"


def reseed(seed: str) -> str:
    """Fresh randomness after a snapshot restore (restored boards would draw the same bytes)."""
    q = shlex.quote(seed)
    return f"if command -v tb-reseed >/dev/null; then tb-reseed {q}; else echo {q} > /dev/urandom; fi"


def has_program(name: str) -> str:
    """Exit code 0 when ``name`` is on the board's PATH."""
    return f"command -v {shlex.quote(name)} >/dev/null"


def clear_state() -> str:
    """Forget identity, sync state and spool (a fresh device)."""
    return f"rm -rf {STATE_DIR}/* {RUN_DIR}/spool 2>/dev/null; true"
