"""``testbed dumps``: stored crash dumps through the audited support API (a Support token).

Every read leaves an audit row with its reason before any byte is sent, as for the
platform's own engineers; listing is audited too.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from testbed import settings
from testbed.admin import output
from testbed.admin.options import handle_errors, with_options
from testbed.admin.retry import RetryTransport
from testbed.crash.analysis import analyze_bytes
from testbed.crash.report import format_analysis
from testbed.crash.symbol_dirs import default_symbol_dirs
from testbed.service.client import Client

_connection = [
    click.option("--service-url", envvar=settings.SERVICE_URL, required=True, help=f"[env {settings.SERVICE_URL}]"),
    click.option("--token", envvar=settings.TOKEN, required=True, help=f"A Support token [env {settings.TOKEN}]."),
]
_reason = click.option("--reason", "-r", required=True, help="Why you read it (kept in the audit log).")


def _client(service_url: str, token: str) -> Client:
    return Client(service_url, token, transport=RetryTransport(log=lambda m: click.echo(m, err=True)))


@click.group()
def dumps() -> None:
    """Stored crash dumps, through the audited support API (Support token)."""


@dumps.command("list")
@with_options(_connection)
@click.option("--tenant", "tenant_id", default=None)
@click.option("--device", "device_id", default=None)
@click.option("--device-group", "-dg", "group_id", default=None, help="Device group id.")
@click.option("--signature", default=None)
@click.option("--region", type=click.Choice(["EU", "EastUS", "WestUS"]), default=None)
@click.option("--since", type=int, default=None, help="Stored at or after (epoch seconds).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--reason", "-r", default="", help="Kept in the audit log.")
@click.option("--output", "-o", "fmt", type=click.Choice(output.FORMATS), default="table", show_default=True)
@click.option("--query", default=None, help="JMESPath query.")
@handle_errors
def list_(service_url: str, token: str, tenant_id: str | None, device_id: str | None, group_id: str | None,
          signature: str | None, region: str | None, since: int | None, limit: int, reason: str, fmt: str,
          query: str | None) -> None:  # fmt: skip
    """The dumps' metadata (id, device, signature, region, size, times)."""
    with _client(service_url, token) as c:
        rows = c.support_dumps(reason or None, tenantId=tenant_id, deviceId=device_id, deviceGroupId=group_id,
                               signature=signature, region=region, since=since, limit=limit)  # fmt: skip
    text = output.render(rows, fmt, query)
    if text:
        click.echo(text)


@dumps.command("get")
@with_options(_connection)
@click.argument("dump_id")
@_reason
@click.option("--out", "-O", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the gzip'd core [default: <id>.core.gz].")  # fmt: skip
@handle_errors
def get(service_url: str, token: str, dump_id: str, reason: str, out: Path | None) -> None:
    """Download one dump (audited)."""
    with _client(service_url, token) as c:
        data = c.support_read(dump_id, reason)
    path = out or Path(f"{dump_id}.core.gz")
    path.write_bytes(data)
    click.echo(f"{path} ({len(data)} bytes)")


@dumps.command("analyze")
@with_options(_connection)
@click.argument("dump_id")
@_reason
@click.option("--symbols", "-s", multiple=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def analyze(service_url: str, token: str, dump_id: str, reason: str, symbols: tuple[Path, ...], as_json: bool) -> None:
    """Download one dump (audited) and analyse it: signal, function, call chain."""
    with _client(service_url, token) as c:
        data = c.support_read(dump_id, reason)
    result = analyze_bytes(data, [*symbols, *default_symbol_dirs()])
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_analysis(result, f"dump {dump_id}"))
