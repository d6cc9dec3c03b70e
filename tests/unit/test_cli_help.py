"""`testbed ... --help` lists every command with its whole summary: nothing cut with "...", nothing unavailable."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from testbed.cli import LazyGroup, first_sentence, main, whole_summaries


def _groups(group: click.Group, ctx: click.Context | None, path: list[str]):
    """Every group of the command tree, with its path, as ``testbed --help`` reaches it."""
    yield path, group
    with click.Context(group, info_name=path[-1], parent=ctx) as sub:
        for name in group.list_commands(sub):
            command = group.get_command(sub, name)
            if isinstance(command, click.Group) and not command.hidden:
                yield from _groups(command, sub, [*path, name])


def _listed(help_text: str) -> dict[str, str]:
    """The Commands section of a help page: name -> its summary (wrapped lines joined)."""
    rows: dict[str, str] = {}
    section, name = False, ""
    for line in help_text.splitlines():
        if line.strip() == "Commands:":
            section = True
            continue
        if not section or not line.strip():
            continue
        if not line.startswith("  "):
            break
        if line.startswith("  ") and not line.startswith("   "):  # a new command row
            name, _, summary = line.strip().partition(" ")
            rows[name] = summary.strip()
        else:
            rows[name] += " " + line.strip()
    return rows


GROUPS = list(_groups(main, None, ["testbed"]))


def test_the_tree_is_walked():
    paths = {" ".join(p) for p, _ in GROUPS}
    assert {"testbed", "testbed bench", "testbed load", "testbed scenario", "testbed service", "testbed sphere"} <= paths


@pytest.mark.parametrize("width", [80, 60])
@pytest.mark.parametrize("path", [p for p, _ in GROUPS], ids=[" ".join(p) for p, _ in GROUPS])
def test_every_listed_summary_is_whole(path, width):
    result = CliRunner().invoke(main, [*path[1:], "--help"], terminal_width=width, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = _listed(result.output)
    group = dict((" ".join(p), g) for p, g in GROUPS)[" ".join(path)]
    with click.Context(group) as ctx:
        expected = {n for n in group.list_commands(ctx) if not group.get_command(ctx, n).hidden}
    assert set(rows) == expected, result.output
    for name, summary in rows.items():
        assert summary, f"{' '.join(path)} {name}: no summary"
        assert not summary.endswith("..."), f"{' '.join(path)} {name}: summary cut: {summary!r}"
        assert "(unavailable" not in summary, f"{' '.join(path)} {name}: {summary}"


def test_every_command_summary_is_its_help_first_sentence_uncut():
    for path, group in GROUPS:
        with click.Context(group) as ctx:
            for name in group.list_commands(ctx):
                command = group.get_command(ctx, name)
                assert command is not None
                short = command.get_short_help_str(limit=20)  # a narrow terminal: still whole
                assert not short.endswith("..."), f"{' '.join(path)} {name}: {short!r}"
                if command.help:
                    assert short == first_sentence(command.help)


def test_whole_summaries_is_what_keeps_a_long_first_sentence_whole():
    @click.group(cls=LazyGroup)
    def top() -> None:
        """Top."""

    @top.group()
    def sub() -> None:
        """A group whose first sentence is far longer than any terminal's summary column would allow.

        More text.
        """

    @sub.command()
    def leaf() -> None:
        """A command whose first sentence, also long, ends here. Not this one."""

    cut = CliRunner().invoke(top, ["--help"], terminal_width=60).output
    assert sub.short_help is not None  # the root's get_command filled it while listing
    assert _listed(cut)["sub"].endswith("would allow.")
    assert leaf.short_help == "A command whose first sentence, also long, ends here."
    plain = click.Command("plain", help="A long first sentence that click cuts when there is no room left for it.")
    assert plain.get_short_help_str(limit=30).endswith("...")  # click's own behaviour, which the above avoids
    assert whole_summaries(plain).get_short_help_str(limit=30).endswith("for it.")


def test_first_sentence():
    assert first_sentence("Run it. Then more.") == "Run it."
    assert first_sentence("Durable ingest vs. a sink: uploads/s.\n\nMore.") == "Durable ingest vs. a sink: uploads/s."
    assert first_sentence("\b\nNo period") == "No period"
