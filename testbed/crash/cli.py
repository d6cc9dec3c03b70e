"""``testbed crash analyze CORE``: a core file from the field, read offline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from testbed.crash.analysis import analyze_bytes
from testbed.crash.elfcore import CoreFormatError
from testbed.crash.report import format_analysis
from testbed.crash.symbol_dirs import default_symbol_dirs


@click.group()
def crash() -> None:
    """Crash cores read offline."""


@crash.command("analyze")
@click.argument("core", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--symbols", "-s", "symbols", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="A folder (or file) with the crashed program unstripped; repeat for many. "
                   "Default: TESTBED_SYMBOLS, then the built images' symbols.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="The analysis as JSON.")
def analyze(core: Path, symbols: tuple[Path, ...], as_json: bool) -> None:
    """Signal, registers, the faulting function and its probable call chain, from an ELF core
    (raw, or gzip'd as a device uploads it)."""
    try:
        result = analyze_bytes(core.read_bytes(), [*symbols, *default_symbol_dirs()])
    except (CoreFormatError, ValueError, OSError) as exc:
        raise click.ClickException(f"{core}: {exc}") from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(format_analysis(result, str(core)))
