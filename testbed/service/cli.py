"""``testbed service``: run the mock Security Service and manage its tenants and tokens."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from testbed import settings

DEFAULT_DATA_DIR = Path("./service-data")


def _data_dir_option(f):
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DATA_DIR,
        show_default=True,
        envvar=settings.SERVICE_DATA,
        help="Directory of the service's database and blob stores.",
    )(f)


@click.group()
def service() -> None:
    """The mock Security Service (public, device, support and control APIs)."""


def _setting_options(f):
    """One click option per setting of the defaults table (testbed.service.settings)."""
    from testbed.service.settings import SETTINGS

    for setting in reversed(SETTINGS):
        if setting.type is bool:
            f = click.option(setting.flag, setting.keyword, is_flag=True, default=setting.default, help=setting.help)(f)
            continue
        kind = click.IntRange(min=setting.minimum) if setting.type is int else click.FloatRange(min=setting.minimum)
        f = click.option(setting.flag, setting.keyword, type=kind, default=setting.default, show_default=True, help=setting.help)(f)
    return f


@service.command("run")
@_data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback only unless forced).")
@click.option("--port", type=click.IntRange(0, 65535), default=8443, show_default=True, help="TCP port; 0 picks a free one.")
@click.option("--allow-non-loopback", is_flag=True, help="Allow a --host outside 127.0.0.0/8 (not for the testbed).")
@click.option("--listen", default=None, metavar="ADDRESS", help="Listen on ADDRESS, the one an inventory's real boards dial (its `service:`); outside loopback only with --allow-remote-boards.")
@click.option("--allow-remote-boards", is_flag=True, help="Let --listen be an address real boards reach over a LAN (never the default).")
@click.option("--enable-control", is_flag=True, help="Enable the /testbed/v1 control API (clock, faults, tenants, evidence).")
@click.option("--control-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Where to write the control token [default: <data-dir>/control.token].")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write {url, port, pid, controlToken} as JSON here once listening.")
@_setting_options
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning", show_default=True)
@click.option("--exit-with-parent", "parent_pid", type=int, default=None, hidden=True, help="Stop when this parent process is gone (ServiceProcess sets it).")
def run(
    data_dir: Path,
    host: str,
    port: int,
    allow_non_loopback: bool,
    listen: str | None,
    allow_remote_boards: bool,
    enable_control: bool,
    control_token_file: Path | None,
    ready_file: Path | None,
    log_level: str,
    parent_pid: int | None,
    **settings: object,
) -> None:
    """Run the service in the foreground until interrupted."""
    from testbed.service.recovery import DataDirError
    from testbed.service.server import HostError, serve
    from testbed.service.settings import BY_KEYWORD, ServiceConfig

    if listen is not None or allow_remote_boards:
        host = _listen_address(listen, allow_remote_boards, host)
        allow_non_loopback = allow_non_loopback or allow_remote_boards

    config = ServiceConfig(
        data_dir=data_dir.resolve(),
        enable_control=enable_control,
        **{BY_KEYWORD[keyword].name: value for keyword, value in settings.items()},
    )
    try:
        serve(
            config,
            host=host,
            port=port,
            ready_file=ready_file,
            control_token_file=control_token_file,
            force_host=allow_non_loopback,
            log_level=log_level,
            parent_pid=parent_pid,
        )
    except (HostError, DataDirError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:  # Ctrl-C is how a user stops it: not an error
        click.echo("testbed service stopped", err=True)


def _listen_address(listen: str | None, allow_remote_boards: bool, host: str) -> str:
    """--listen ADDRESS: loopback, or any address with --allow-remote-boards (never by default)."""
    from testbed.service.listen import LOOPBACK, check_listen

    if listen is None:
        raise click.UsageError("--allow-remote-boards needs --listen ADDRESS (the address the boards dial)")
    if host != LOOPBACK:
        raise click.UsageError("give --listen or --host, not both")
    try:
        return check_listen(listen, allow_remote_boards)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@service.group("tenant")
def tenant() -> None:
    """Tenants (directly in the data directory; the service may be running)."""


@tenant.command("create")
@_data_dir_option
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tenant_create(data_dir: Path, name: str, as_json: bool) -> None:
    """Create tenant NAME and print its id and an Administrator token (shown once)."""
    import sqlite3

    from testbed.service.store import Store

    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(data_dir / "service.db")
    try:
        now = int(time.time())
        try:
            t = store.create_tenant(name, now)
        except sqlite3.IntegrityError:
            raise click.ClickException(f"a tenant named {name!r} already exists") from None
        token = store.create_token(t["Id"], "Administrator", now, "cli")
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"Id": t["Id"], "Name": name, "Token": token}))
    else:
        click.echo(f"tenant {name} id {t['Id']}")
        click.echo(f"Administrator token (shown once): {token}")


@tenant.command("list")
@_data_dir_option
def tenant_list(data_dir: Path) -> None:
    """List tenants as JSON."""
    from testbed.service.store import Store

    if not (data_dir / "service.db").exists():
        raise click.ClickException(f"no service database in {data_dir}")
    store = Store(data_dir / "service.db")
    try:
        rows = store.tenants()
    finally:
        store.close()
    click.echo(json.dumps([{"Id": r["id"], "Name": r["name"]} for r in rows], indent=2))


@service.group("token")
def token() -> None:
    """Bearer tokens (stored hashed; printed once)."""


@token.command("create")
@_data_dir_option
@click.option("--tenant", "tenant_ref", default=None, help="Tenant name or id (not for --role Support).")
@click.option("--role", type=click.Choice(["Administrator", "Contributor", "Reader", "Support"]), required=True)
@click.option("--label", default="", help="Who holds the token (shows in audit rows).")
def token_create(data_dir: Path, tenant_ref: str | None, role: str, label: str) -> None:
    """Create a token and print it (only this once; the service keeps only its hash)."""
    from testbed.service.store import Store

    if role == "Support" and tenant_ref:
        raise click.UsageError("a Support token belongs to no tenant; omit --tenant")
    if role != "Support" and not tenant_ref:
        raise click.UsageError(f"--tenant is required for role {role}")
    if not (data_dir / "service.db").exists():
        raise click.ClickException(f"no service database in {data_dir} (start the service or create a tenant first)")
    store = Store(data_dir / "service.db")
    try:
        tenant_id = None
        if tenant_ref:
            row = store.find_tenant(tenant_ref)
            if row is None:
                raise click.ClickException(f"no tenant {tenant_ref!r} (see `testbed service tenant list`)")
            tenant_id = row["id"]
        secret = store.create_token(tenant_id, role, int(time.time()), label)
    finally:
        store.close()
    click.echo(secret)
    print(f"{role} token for {tenant_ref or 'support'} (shown once; store it now)", file=sys.stderr)


@service.command("upload")
@click.option("--service-url", envvar=settings.SERVICE_URL, required=True, help=f"Service root URL [env {settings.SERVICE_URL}].")
@click.option("--device-id", required=True, help="The claimed device's id (128 hex).")
@click.option("--secret", envvar=settings.DEVICE_SECRET, required=True, help=f"Its DeviceSecret [env {settings.DEVICE_SECRET}].")
@click.option("--core", "core_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="A gzip'd ELF core file (or a raw core: it is gzipped first).")
@click.option("--signature", default=None, help="Crash signature (32 hex) [default: from the core's content hash].")
@click.option("--component", default="app", show_default=True)
def upload(service_url: str, device_id: str, secret: str, core_path: Path, signature: str | None, component: str) -> None:
    """Act as a device: sync, ask intent, upload one core; prints the service's answers as JSON."""
    import gzip
    import hashlib

    from testbed.service.client import DeviceClient, ServiceError

    data = core_path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        data = gzip.compress(data, 6)
    signature = signature or hashlib.sha256(data).hexdigest()[:32]
    with DeviceClient(service_url, device_id, secret) as dev:
        try:
            sync = dev.sync()
            intent = dev.intent(signature, len(data), component=component)
        except ServiceError as exc:
            raise click.ClickException(str(exc)) from None
        result: dict[str, object] = {"sync": sync, "intent": intent}
        if intent.get("action") == "upload":
            r = dev.upload_raw(data, signature, component=component)
            result["upload"] = {"status": r.status_code, "body": r.json() if r.content else None}
    click.echo(json.dumps(result, indent=2))
    upload_result = result.get("upload")
    if isinstance(upload_result, dict) and upload_result["status"] >= 400:
        sys.exit(1)
