"""The ``testbed`` command.

Each area of the package owns its own click commands; this module only wires
them together, importing an area when its command is used so that one area's
heavy imports (Locust, uvicorn, QEMU bindings) do not slow down the others.
"""

from __future__ import annotations

import importlib

import click


def first_sentence(text: str) -> str:
    """The first sentence of a help text's first paragraph, whole (a period followed by a capital ends it)."""
    words = text.partition("\n\n")[0].split()
    if words and words[0] == "\b":  # click's no-rewrap marker
        words = words[1:]
    for i, word in enumerate(words):
        if word.endswith(".") and (i == len(words) - 1 or not words[i + 1][0].islower()):
            return " ".join(words[: i + 1])
    return " ".join(words)


def whole_summaries(command: click.Command) -> click.Command:
    """Give ``command`` and every command under it a summary that ``--help`` lists whole.

    Click cuts a command's first sentence to fit the terminal and ends it with "..."; a
    ``short_help`` is listed as it is (wrapped, never cut), so each command without one gets its
    help's first sentence as its ``short_help``. Lazily loaded groups do the same for their own.
    """
    if not command.short_help and command.help:
        command.short_help = first_sentence(command.help)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            whole_summaries(sub)
    return command


class LazyGroup(click.Group):
    """A click group whose subcommands are ``"module:attribute"`` strings, imported on use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise click.ClickException(f"{self.lazy[cmd_name]} is not a click command")
            return whole_summaries(command)
        command = super().get_command(ctx, cmd_name)
        return whole_summaries(command) if command is not None else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List subcommands; one that fails to import is listed with its error, not fatal to --help."""
        rows = []
        for name in self.list_commands(ctx):
            try:
                command = self.get_command(ctx, name)
            except Exception as exc:  # noqa: BLE001 - shown to the user, not swallowed
                rows.append((name, f"(unavailable: {type(exc).__name__}: {exc})"))
                continue
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str()))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy={
        "image": "testbed.image.cli:image",
        "board": "testbed.board.cli:board",
        "doctor": "testbed.board.cli:doctor",
        "service": "testbed.service.cli:service",
        "sphere": "testbed.admin.sphere:sphere",
        "crashdumps": "testbed.admin.crashdumps:crashdumps",
        "dumps": "testbed.admin.dumps:dumps",
        "crash": "testbed.crash.cli:crash",
        "scenario": "testbed.scenario.cli:scenario",
        "demo": "testbed.scenario.cli:demo",
        "load": "testbed.load.cli:load",
    },
)
@click.version_option(package_name="testbed")
def main() -> None:
    """Emulated MT3620-like boards, a mock Security Service, and the crash-dump pipeline between them."""


@main.group(
    cls=LazyGroup,
    lazy={
        "boot": "testbed.board.bench:bench_boot",
        "board-profile": "testbed.board.profile_bench:bench_board_profile",
        "ingest": "testbed.load.bench:bench_ingest",
        "crash": "testbed.scenario.bench:bench_crash",
        "fleet": "testbed.scenario.fleet_bench:bench_fleet",
    },
)
def bench() -> None:
    """Benchmarks: medians and ratios against a baseline measured in the same run, as JSON."""


if __name__ == "__main__":
    main()
