"""`testbed board ...` and `testbed doctor`."""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from testbed.board import cli_provision
from testbed.board.errors import BoardError

if TYPE_CHECKING:
    from testbed.board.identity import Identity
    from testbed.board.qemu import QemuBoard


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _image(image_dir: str | None):
    from testbed.image.build import Image, ImageError, ensure_image

    try:
        return Image.from_dir(Path(image_dir)) if image_dir else ensure_image(progress=lambda m: _progress(f"[image] {m}"))
    except ImageError as exc:
        raise click.ClickException(str(exc)) from exc


def _start_boards(count: int, snapshot: bool, image_dir: str | None, timeout: float):
    from testbed.board.qemu import QemuBoard
    from testbed.board.snapshot import ensure_snapshot

    img = _image(image_dir)
    snap = ensure_snapshot(img, boot_timeout=timeout, progress=lambda m: _progress(f"[snapshot] {m}")) if snapshot else None
    boards = [QemuBoard(img, name=f"board-{i + 1}", boot_timeout=timeout) for i in range(count)]

    def start(b: QemuBoard) -> QemuBoard:
        t0 = time.monotonic()
        _progress(f"{b.name}: {'restoring from snapshot' if snap else 'cold booting'}...")
        if snap:
            b.restore(snap)
        else:
            b.boot()
        _progress(f"{b.name}: ready in {time.monotonic() - t0:.2f} s")
        return b

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(count, 4))) as pool:
            list(pool.map(start, boards))
    except BaseException:
        for b in boards:
            b.close()
        raise
    return boards


@click.group()
def board() -> None:
    """Emulated MT3620-like boards (QEMU, Cortex-A7, 64 MiB)."""


@board.command()
@click.option("--snapshot", is_flag=True, help="Start from the cached snapshot (~0.5 s) instead of a cold boot.")
@click.option("--count", type=click.IntRange(1, 64), default=1, show_default=True, help="How many boards.")
@click.option("--image", "image_dir", type=click.Path(exists=True, file_okay=False), help="A built image directory.")
@click.option("--timeout", type=float, default=90, show_default=True, help="Seconds a cold boot may take.")
@click.option("--attach/--no-attach", default=True, show_default=True,
              help="Attach the terminal to board 1's console (Ctrl-] leaves); else wait for Ctrl-C.")
@click.option("--pty", is_flag=True, help="Serve each console as a /dev/pts tty instead of a TCP port.")
@cli_provision.provision_options
def boot(snapshot: bool, count: int, image_dir: str | None, timeout: float, attach: bool, pty: bool,
         **provision: Any) -> None:  # fmt: skip
    """Boot boards and attach an interactive console. All boards power off when you leave.

    Each board's console is served at the address printed (socket://127.0.0.1:PORT, or a
    /dev/pts/N with --pty): `testbed board console ADDRESS` from another terminal attaches to it,
    with echo, while this process keeps the board's log; Ctrl-] leaves.
    """
    from testbed.board.console_share import ConsoleShare

    identities = _identities(provision, count)
    try:
        boards = _start_boards(count, snapshot, image_dir, timeout)
    except BoardError as exc:
        raise click.ClickException(str(exc)) from exc
    shares: list[ConsoleShare] = []
    try:
        _provision(boards, identities)
        for b in boards:
            assert b.console is not None  # started
            shares.append(ConsoleShare(b.console, "pty" if pty else "socket"))
            click.echo(f"{b.name}: console {shares[-1].address}  ssh -p {b.ssh_port} root@127.0.0.1  "
                       f"log {b.log_path}", err=True)  # fmt: skip
        if attach and sys.stdin.isatty():
            click.echo(f"attached to {boards[0].name}'s console; Ctrl-] leaves (and powers all boards off)", err=True)
            boards[0].console.interact()
        else:
            click.echo("boards are up; attach with `testbed board console ADDRESS` (Ctrl-] leaves); "
                       "Ctrl-C powers them off", err=True)  # fmt: skip
            while all(b.alive for b in boards):
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except BoardError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        for share in shares:
            share.close()
        for b in boards:
            b.close()
        click.echo("boards powered off", err=True)


def _identities(options: dict[str, Any], count: int) -> list[Identity]:
    """The identities --provision asks for (checked, the service reached, devices claimed) or []."""
    plan = cli_provision.plan(**options, count=count)
    if plan is None:
        return []
    cli_provision.check_reachable(plan)
    return cli_provision.identities(plan, count, _progress)


def _provision(boards: list[QemuBoard], identities: list[Identity]) -> None:
    for b, identity in zip(boards, identities, strict=False):
        cli_provision.provision(b, identity, _progress)


@board.command("run")
@click.argument("command")
@click.option("--cold", is_flag=True, help="Cold boot instead of restoring the snapshot.")
@click.option("--ssh", "over_ssh", is_flag=True, help="Run the command over SSH instead of the console.")
@click.option("--image", "image_dir", type=click.Path(exists=True, file_okay=False), help="A built image directory.")
@click.option("--timeout", type=float, default=60, show_default=True, help="Seconds the command may take.")
@cli_provision.provision_options
def run_command(command: str, cold: bool, over_ssh: bool, image_dir: str | None, timeout: float,
                **provision: Any) -> None:  # fmt: skip
    """Start a board, run COMMAND in its shell, print the output and exit with its exit code."""
    identities = _identities(provision, 1)
    try:
        (b,) = _start_boards(1, not cold, image_dir, 90)
    except BoardError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        _progress(f"{b.name}: console log {b.log_path}")
        _provision([b], identities)
        if over_ssh:
            with b.ssh() as ssh:
                output, code = ssh.run(command, timeout=timeout)
        else:
            output, code = b.console.run(command, timeout=timeout, subshell=True)
    except BoardError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        b.close()
    if output:
        click.echo(output)
    sys.exit(code)


@board.command("console")
@click.argument("port", metavar="ADDRESS")
@click.option("--baudrate", type=int, default=115200, show_default=True)
@click.option("--log", "log_path", type=click.Path(dir_okay=False),
              help="Also write the console log here (rendered, with times; the raw transcript beside it).")
@click.option("--echo", is_flag=True,
              help="Turn the board's tty echo on for the session and off after: for a console a testbed "
                   "left with echo off that no `board boot` serves (those turn it on themselves).")
def console_command(port: str, baudrate: int, log_path: str | None, echo: bool) -> None:
    """Attach to a board's console: the ADDRESS `testbed board boot` printed (socket://127.0.0.1:PORT
    or /dev/pts/N), a device (/dev/ttyUSB0) or a pyserial URL (socket://host:port, rfc2217://host:port).
    Ctrl-] leaves; @tb events are listed on leaving."""
    from testbed.board.console import Console

    try:
        console = Console(port, log_path=log_path, baudrate=baudrate, name=port)
    except Exception as exc:  # pyserial raises SerialException, ValueError, OSError
        raise click.ClickException(f"cannot open {port}: {exc}") from exc
    from testbed.board.console_interact import LEFT, PORT_CLOSED

    click.echo(f"attached to {port}; Ctrl-] leaves", err=True)
    try:
        why = console.interact(manage_echo=echo)
    except BoardError as exc:
        raise click.ClickException(f"{port}: {exc}") from exc
    finally:
        console.close()
    if console.reader.contended_reads:
        click.echo(f"\nanother process reads {port} too ({console.reader.contended_reads} read(s) lost to it): "
                   "the output was split between you; attach to the address `board boot` printed", err=True)
    if why == PORT_CLOSED:
        click.echo(f"\n{port} closed (the board powered off, or its `board boot` ended)", err=True)
    click.echo(f"\n{'left' if why == LEFT else 'detached from'} {port}; {len(console.events)} @tb event(s) seen",
               err=True)  # fmt: skip
    for event in console.events[-20:]:
        click.echo(f"  {event.name} {event.fields}", err=True)


@board.command("snapshot")
@click.option("--force", is_flag=True, help="Make it again even if one is cached.")
@click.option("--image", "image_dir", type=click.Path(exists=True, file_okay=False), help="A built image directory.")
def snapshot_command(force: bool, image_dir: str | None) -> None:
    """Make (or show) the cached snapshot of a booted, unprovisioned board for the image."""
    from testbed.board.snapshot import ensure_snapshot

    img = _image(image_dir)
    try:
        snap = ensure_snapshot(img, force=force, progress=lambda m: _progress(f"[snapshot] {m}"))
    except BoardError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"snapshot {snap.path} (image {snap.image_hash}, {snap.meta.get('state_bytes', 0) / 1e6:.1f} MB)")


# -- doctor ------------------------------------------------------------------------------


def _check_command(name: str, package: str, version_args: tuple[str, ...] = ("--version",)) -> tuple[bool, str]:
    path = shutil.which(name)
    if not path:
        return False, f"{name} not found: apt-get install {package}"
    try:
        out = subprocess.run([name, *version_args], capture_output=True, text=True, timeout=10).stdout
        first = out.strip().splitlines()[0] if out.strip() else path
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{name} does not run: {exc}"
    return True, first


def doctor_checks() -> list[tuple[str, bool, str, bool]]:
    """(what, ok, detail, required) for each thing the boards need."""
    rows: list[tuple[str, bool, str, bool]] = []
    ok, detail = _check_command("qemu-system-arm", "qemu-system-arm")
    rows.append(("QEMU (qemu-system-arm)", ok, detail, True))
    from testbed.image.toolchain import ToolchainError, check_cross_toolchain

    try:  # compiles and links for real: a compiler without its C library fails here, named
        ok, detail = True, check_cross_toolchain()
    except ToolchainError as exc:
        ok, detail = False, str(exc).replace("\n", "\n      ")
    rows.append(("armhf cross compiler", ok, detail, True))
    ok, detail = _check_command("make", "make")
    rows.append(("make", ok, detail, True))
    for tool, pkg in (("apt-get", "apt"), ("dpkg-deb", "dpkg")):
        ok, detail = _check_command(tool, pkg)
        rows.append((f"{tool} (image downloads)", ok, detail, True))
    for module, pip_name in (("qemu.qmp", "qemu.qmp"), ("pexpect", "pexpect"), ("serial", "pyserial"),
                             ("paramiko", "paramiko")):
        try:
            importlib.import_module(module)
            rows.append((f"Python module {module}", True, "importable", True))
        except ImportError as exc:
            rows.append((f"Python module {module}", False, f"{exc}: pip install -e '.[dev]' (or pip install {pip_name})", True))
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        rows.append(("free ports on 127.0.0.1", True, f"e.g. {port}", True))
    except OSError as exc:
        rows.append(("free ports on 127.0.0.1", False, f"cannot bind 127.0.0.1: {exc}", True))
    try:
        from testbed.image.build import content_hash, images_dir

        digest = content_hash()
        built = (images_dir() / digest / "image.json").exists()
        rows.append(("board image", built, f"{images_dir() / digest}" if built else
                     f"image {digest} not built yet: run `testbed image build`", False))
        if built:
            from testbed.board.snapshot import snapshot_key, snapshots_dir
            from testbed.image.build import Image

            key = snapshot_key(Image.from_dir(images_dir() / digest))
            have = (snapshots_dir() / key / "snapshot.json").exists()
            rows.append(("board snapshot", have, str(snapshots_dir() / key) if have else
                         "not made yet: `testbed board snapshot` (the first test using `board` makes it too)", False))
    except Exception as exc:  # a broken lock file and the like: show it, do not crash
        rows.append(("board image", False, str(exc).splitlines()[0], False))
    return rows


@click.command()
def doctor() -> None:
    """Check what the boards need (QEMU, cross compiler, image, ports) and say what to install."""
    rows = doctor_checks()
    width = max(len(r[0]) for r in rows)
    for what, ok, detail, required in rows:
        mark = "ok  " if ok else ("FAIL" if required else "todo")
        click.echo(f"[{mark}] {what:<{width}}  {detail}")
    missing = [r for r in rows if not r[1] and r[3]]
    if missing:
        click.echo(f"\n{len(missing)} required item(s) missing; on Debian 12 `./bootstrap.sh setup` installs everything.")
        sys.exit(1)
    click.echo("\nall required items present")
