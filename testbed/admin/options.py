"""The options every admin command shares: the service connection, az's scope options
(``--resource-group/-g``, ``--catalog/-c``), and ``--output/-o``, ``--query``, ``--api-shape``."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import click

from testbed import settings
from testbed.admin import output
from testbed.admin.azshape import Scope
from testbed.admin.retry import RetryTransport
from testbed.service.client import Client, ServiceError

#: az's rule for resource group names.
RESOURCE_GROUP_RE = re.compile(r"[-\w._()]{1,90}")
#: The reference's rule for catalog names.
CATALOG_RE = re.compile(r"[A-Za-z0-9_-]{1,50}")


def _check_resource_group(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (not RESOURCE_GROUP_RE.fullmatch(value) or value.endswith(".")):
        raise click.BadParameter(
            f"{value!r} is not a resource group name (1 to 90 letters, digits, _ - . ( ), not ending in .)"
        )
    return value


class AnyCaseChoice(click.Choice):
    """An enum option whose values are matched in any case, as az does; the value given to the
    command, and the one an error names, is the documented spelling."""

    def __init__(self, choices: Iterable[str]) -> None:
        super().__init__(list(choices), case_sensitive=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        for c in self.choices:
            if str(c).casefold() == str(value).casefold():
                return c
        self.fail(f"{value!r} is not one of {', '.join(repr(c) for c in self.choices)} (any case).", param, ctx)


def choice(values: Iterable[str]) -> click.Choice:
    return AnyCaseChoice(values)


def with_options(options: Iterable[Callable[..., Any]]) -> Callable[..., Any]:
    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(list(options)):
            f = option(f)
        return f

    return deco


CONNECTION = [
    click.option("--service-url", envvar=settings.SERVICE_URL, default=None,
                 help=f"Service root URL, e.g. http://127.0.0.1:8443 [env {settings.SERVICE_URL}]."),
    click.option("--token", envvar=settings.TOKEN, default=None, help=f"Bearer token [env {settings.TOKEN}]."),
    click.option("--catalog", "-c", "--tenant", "catalog", envvar=settings.TENANT, default=None,
                 help="The catalog, i.e. the tenant (name or id) [default: the token's only tenant; "
                      f"env {settings.TENANT}]."),
    click.option("--resource-group", "-g", "resource_group", default=None, callback=_check_resource_group,
                 help="Azure resource group: accepted and checked for form; the mock has none, it only "
                      "appears in the ids it prints."),
]  # fmt: skip

OUTPUT = [
    click.option("--output", "-o", "output_format", type=choice(output.FORMATS), default=output.DEFAULT_FORMAT,
                 show_default=True, help="Output format."),
    click.option("--query", default=None, help="JMESPath query applied to the output (az's --query)."),
    click.option("--api-shape", is_flag=True, help="Print the Public API's own JSON objects instead of az's resources."),
]  # fmt: skip


@dataclass
class Session:
    """A connected admin command: the client, the tenant, the ARM scope and the output choice."""

    client: Client
    tenant: dict[str, Any]
    scope: Scope
    output_format: str
    query: str | None
    api_shape: bool
    transport: RetryTransport

    @property
    def tenant_id(self) -> str:
        return str(self.tenant["Id"])

    def emit(self, api_value: Any, az_value: Any, row: output.TableRow | None = None) -> None:
        value = api_value if self.api_shape else az_value
        text = output.render(value, self.output_format, self.query, None if self.api_shape else row)
        if text is not None:
            click.echo(text)


def log_err(message: str) -> None:
    click.echo(message, err=True)


def connect(service_url: str | None, token: str | None, catalog: str | None, resource_group: str | None,
            output_format: str = output.DEFAULT_FORMAT, query: str | None = None,
            api_shape: bool = False) -> Session:  # fmt: skip
    url = service_url or settings.get(settings.SERVICE_URL)
    token = token or settings.get(settings.TOKEN)
    if not url:
        raise click.ClickException(f"no service URL: pass --service-url or set {settings.SERVICE_URL}")
    if not token:
        raise click.ClickException(f"no token: pass --token or set {settings.TOKEN}")
    if catalog is not None and not CATALOG_RE.fullmatch(catalog) and not _is_guid(catalog):
        raise click.BadParameter(f"{catalog!r} is not a catalog name or id", param_hint="'--catalog'")
    transport = RetryTransport(log=log_err)
    client = Client(url, token, transport=transport)
    tenants = client.tenants()
    if catalog:
        found = [t for t in tenants if catalog.lower() in (str(t["Id"]).lower(), str(t["Name"]).lower())]
        if not found:
            names = ", ".join(str(t["Name"]) for t in tenants) or "none"
            raise click.ClickException(f"no catalog {catalog!r} for this token (it sees: {names})")
        tenant = found[0]
    elif len(tenants) == 1:
        tenant = tenants[0]
    else:
        raise click.UsageError(f"the token sees {len(tenants)} catalogs; name one with --catalog/-c")
    scope = Scope(str(tenant["Id"]), str(tenant["Name"]), resource_group)
    return Session(client, tenant, scope, output_format, query, api_shape, transport)


GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _is_guid(text: str) -> bool:
    return GUID_RE.fullmatch(text) is not None


def is_guid(text: str) -> bool:
    return _is_guid(text)


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ServiceError as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


class MultiValueCommand(click.Command):
    """A command whose ``multiple`` options also take several values after one flag, as argparse's
    ``nargs='+'`` does (``-dg ID1 ID2``): each value becomes a repeat of the flag."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        multi: set[str] = set()
        for param in self.params:
            if isinstance(param, click.Option) and param.multiple:
                multi.update(param.opts)
        out: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            out.append(arg)
            i += 1
            if arg in multi:
                taken = 0
                while i < len(args) and not args[i].startswith("-"):
                    if taken:
                        out.append(arg)
                    out.append(args[i])
                    taken += 1
                    i += 1
        return super().parse_args(ctx, out)


def stdin_confirm(prompt: str) -> bool:
    """Ask on the terminal, or read one answer from a pipe (as the gallery's script does)."""
    if sys.stdin.isatty():
        return click.confirm(prompt, default=False)
    click.echo(f"{prompt} [y/N]: ", nl=False, err=True)
    answer = sys.stdin.readline().strip().lower()
    click.echo(answer, err=True)
    return answer in ("y", "yes")
