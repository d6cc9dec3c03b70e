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
#: Test-only switch of the app manager (in RUN_DIR): restart a crashed app this many ms after
#: its crash whatever its upload does, i.e. a device that breaks its deadline (verdict tests).
TEST_RESTART_DELAY_FILE = "test-restart-delay-ms"
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
    """Move the board's wall clock by ``seconds`` (negative: back); prints the new time (epoch seconds)."""
    return f"date -s @$(( $(date +%s) + {int(seconds)} )) >/dev/null && date +%s"


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


# -- installing and running the firmware on a running board (real boards) -------------

#: The firmware's build hash on a board where it is installed (written last by an install).
FIRMWARE_BUILD_FILE = "/etc/testbed/firmware.build"
#: The firmware's init script: starts the daemons, the app manager and the OS component.
FIRMWARE_INIT = "/etc/testbed/rc.d/50-firmware"
#: The firmware's long-running programs (what `stop_firmware` ends).
FIRMWARE_DAEMONS: tuple[str, ...] = ("syncd", "appmgr", "crashsvc", "crashapp")


def firmware_build() -> str:
    """Prints the installed build hash (nothing, exit 1, when the firmware is not installed)."""
    return f"cat {FIRMWARE_BUILD_FILE} 2>/dev/null"


def firmware_running() -> str:
    """Exit code 0 when the firmware's sync agent runs."""
    return "pidof syncd >/dev/null"


def stop_firmware() -> str:
    """End the init script's restart loop, then the daemons and apps (a fresh start follows).

    Few processes are started (one `ps`, a `pidof` per half second): on a slow board every
    fork counts."""
    daemons = " ".join(FIRMWARE_DAEMONS)
    return (f"ps -o pid,args | while read -r pid args; do case \"$args\" in *{FIRMWARE_INIT}*) kill $pid;; esac; done; "
            f"kill $(pidof {daemons}) 2>/dev/null; "
            f"n=0; while [ $n -lt 20 ] && pidof {daemons} >/dev/null; do sleep 0.5; n=$((n+1)); done; "
            f"kill -9 $(pidof {daemons}) 2>/dev/null; true")  # fmt: skip


def start_firmware() -> str:
    """Run the firmware's init script (it returns when the apps listen; firmware-ready follows)."""
    return f"{FIRMWARE_INIT} </dev/null"


def sha256_of(path: str) -> str:
    """The sha256 of a file on the board (first word of the output)."""
    return f"sha256sum {shlex.quote(path)}"


def install_file(tmp: str, path: str, mode: int) -> str:
    """Put an uploaded file in place: mode, then an atomic rename (a running program keeps its old copy)."""
    d = shlex.quote(path.rsplit("/", 1)[0] or "/")
    return f"mkdir -p {d} && chmod {mode:o} {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(path)}"


def copy_file(src: str, dest: str) -> str:
    """Copy a file on the board (an installed program that another name shares)."""
    return f"cp {shlex.quote(src)} {shlex.quote(dest)}"


def set_test_restart_delay(ms: int) -> str:
    """Test only: make the app manager restart crashed apps ``ms`` after the crash (0: normal)."""
    path = f"{RUN_DIR}/{TEST_RESTART_DELAY_FILE}"
    return f"echo {int(ms)} > {path}" if ms > 0 else f"rm -f {path}"
