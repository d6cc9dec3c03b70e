"""``testbed scenario ...`` and ``testbed demo``."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import click

from testbed import settings
from testbed.scenario.progress import expectation_title
from testbed.scenario.results import Verdict
from testbed.scenario.scale import scale_fleet
from testbed.scenario.schema import ScenarioError, load_scenarios


def _default_report_dir() -> Path:
    return settings.REPORTS_DIR  # the same default place as `demo` and `load run`


def _load(files: tuple[str, ...], boards: int | None):
    try:
        scenarios = load_scenarios(files)
        if boards is not None:
            scenarios = [scale_fleet(sc, boards, warn=lambda m: click.echo(f"warning: {m}", err=True))
                         for sc in scenarios]  # fmt: skip
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    return scenarios


def _terminate_as_interrupt() -> dict:
    """SIGTERM/SIGHUP (a CI timeout, a closed terminal) tear down like Ctrl-C: boards and service stop."""
    previous = {}

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread
            pass
    return previous


def run_and_report(scenarios, *, parallel: int, junit: str | None, report: str | None,
                   workdir: str | None, results_json: str | None = None,
                   board_factory=None, listen: str | None = None) -> tuple[list, Path]:  # fmt: skip
    """Run, then always write the report (and JUnit), also after Ctrl-C; returns (results, report path)."""
    from testbed.scenario.report import write_html, write_junit
    from testbed.scenario.results import save_results
    from testbed.scenario.runner import RunOptions, ScenarioInterrupted, run_scenarios

    report_path = Path(report) if report else _default_report_dir() / f"report-{time.strftime('%Y%m%d-%H%M%S')}.html"
    options = RunOptions(parallel=parallel, workdir=Path(workdir) if workdir else None, board_factory=board_factory)
    if listen:
        options.listen = listen
    interrupted = False
    previous = _terminate_as_interrupt()
    try:
        results = run_scenarios(scenarios, options)
    except ScenarioInterrupted as exc:
        results = exc.args[0] if exc.args else []
        interrupted = True
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    write_html(results, report_path)
    if junit:
        write_junit(results, junit)
    if results_json:
        save_results(results, results_json)
    if interrupted:
        click.echo(f"interrupted; partial report: {report_path.resolve()}", err=True)
        sys.exit(130)
    return results, report_path


#: Exit codes of `scenario run` and `demo`: every expectation held; something failed (or a run
#: broke); nothing failed but some timing verdict is inconclusive (the host starved a board).
EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE = 0, 1, 3
_STYLE = {Verdict.PASS: "green", Verdict.FAIL: "red", Verdict.INCONCLUSIVE: "yellow"}


def exit_code(results) -> int:
    if not results or any(r.verdict == Verdict.FAIL for r in results):
        return EXIT_FAIL
    return EXIT_INCONCLUSIVE if any(r.verdict == Verdict.INCONCLUSIVE for r in results) else EXIT_PASS


def _summary(results, report_path: Path, junit: str | None) -> int:
    passed = sum(1 for r in results if r.passed)
    inconclusive = sum(1 for r in results if r.inconclusive)
    click.echo("")
    for r in results:
        mark = click.style(r.verdict, fg=_STYLE[r.verdict], bold=True)
        held = sum(1 for e in r.expectations if e.passed)
        counts = "".join(f", {len(es)} {what}" for es, what in ((r.failures, "failed"), (r.inconclusives, "inconclusive"),
                                                                (r.not_evaluated, "not evaluated")) if es)  # fmt: skip
        click.echo(f"{mark} {r.name}: {held}/{len(r.expectations)} expectations held{counts}, {len(r.dumps)} dump(s), "
                   f"{r.duration:.1f} s")  # fmt: skip
        if r.error:
            click.echo(f"     error: {r.error.splitlines()[0]}")
        for what, es in (("failed", r.failures), ("inconclusive", r.inconclusives)):
            for e in es:
                click.echo(f"     {what}: {expectation_title(e)} (line {e.line}): {e.detail}")
        by_reason: dict[str, list] = {}
        for e in r.not_evaluated:
            by_reason.setdefault(e.detail.removeprefix("not evaluated: "), []).append(e)
        for reason, es in by_reason.items():
            if len(es) == 1:
                click.echo(f"     not evaluated: {expectation_title(es[0])} (line {es[0].line}): {reason}")
            else:
                names = ", ".join(e.name for e in es[:3]) + (f" and {len(es) - 3} more" if len(es) > 3 else "")
                click.echo(f"     not evaluated ({len(es)}: {names}): {reason}")
    tail = f", {inconclusive} inconclusive (the host starved boards: not a verdict on the device)" if inconclusive else ""
    click.echo(f"\n{passed}/{len(results)} scenarios passed{tail}")
    if junit:
        click.echo(f"JUnit XML: {Path(junit).resolve()}")
    click.echo(f"report: {report_path.resolve()}")
    return exit_code(results)


@click.group()
def scenario() -> None:
    """Field crash scenarios: run YAML scenario files on emulated boards against the service."""


@scenario.command("run")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--boards", type=click.IntRange(1, 32), default=None,
              help="Resize each scenario's fleets to N boards in total: `all` and fleet names grow, a board's "
                   "name stays that one board.")
@click.option("--parallel", type=click.IntRange(1, 64), default=max(1, os.cpu_count() or 1), show_default=True,
              help="Boards restored at the same time.")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write JUnit XML here.")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help=f"Write the HTML report here (default: ./{settings.REPORTS_DIR}/report-<time>.html).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Keep each scenario's service data and logs under this directory.")
@click.option("--json", "results_json", type=click.Path(dir_okay=False), default=None,
              help="Also save the raw results as JSON.")
@click.option("--boards-file", type=click.Path(dir_okay=False), default=None, envvar=settings.BOARDS_FILE,
              help="Run on the real boards of this inventory file instead of emulated ones (docs/board.md).")
@click.option("--listen", default=None, metavar="ADDRESS",
              help="Where the boards reach the service (the run's wire tap): the address an inventory's boards "
                   "dial. Loopback by default; a LAN address only with --allow-remote-boards.")
@click.option("--allow-remote-boards", is_flag=True, help="Let --listen be a LAN address (never the default).")
def run_cmd(files, boards, parallel, junit, report, workdir, results_json, boards_file, listen,
            allow_remote_boards) -> None:  # fmt: skip
    """Run scenario FILES; exit 0 only if every expectation of every scenario held.

    Exit 1 when any failed (or a run broke); exit 3 when none failed but a timing verdict is
    INCONCLUSIVE (a board waited too long for a host CPU during the episode).

    Every file is validated before any board boots.
    """
    from testbed.service.listen import LOOPBACK, check_listen

    try:
        listen = check_listen(listen or LOOPBACK, allow_remote_boards)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    scenarios = _load(files, boards)
    factory = _inventory_factory(boards_file) if boards_file else None
    try:
        results, path = run_and_report(scenarios, parallel=parallel, junit=junit, report=report, workdir=workdir,
                                       results_json=results_json, board_factory=factory, listen=listen)  # fmt: skip
    except ScenarioError as exc:  # a step the boards cannot do: refused before any board boots
        raise click.ClickException(str(exc)) from None
    sys.exit(_summary(results, path, junit))


def _inventory_factory(boards_file: str):
    """The board factory over an inventory file's real boards (a bad file is a usage error)."""
    from testbed.board.inventory import InventoryError
    from testbed.board.inventory_boards import inventory_factory

    try:
        return inventory_factory(boards_file, say=lambda m: click.echo(f"  [boards] {m}", err=True))
    except InventoryError as exc:
        raise click.ClickException(str(exc)) from None


@scenario.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--boards", type=click.IntRange(1, 32), default=None,
              help="Check them resized to N boards in total, as `run --boards N` would run them.")
def check_cmd(files, boards) -> None:
    """Validate scenario FILES without running them."""
    scenarios = _load(files, boards)
    for sc in scenarios:
        n_exp = len(sc.all_expectations())
        click.echo(f"ok  {sc.path}: {sc.name}, {len(sc.boards)} board(s), {len(sc.steps)} steps, {n_exp} expectations")


@scenario.command("report")
@click.argument("results_json", type=click.Path(exists=True, dir_okay=False))
@click.option("--report", type=click.Path(dir_okay=False), required=True)
def report_cmd(results_json, report) -> None:
    """Rebuild the HTML report from results saved with `run --json`."""
    from testbed.scenario.report import write_html
    from testbed.scenario.results import load_results

    click.echo(write_html(load_results(results_json), report).resolve())


@scenario.command("reference")
@click.option("--write-docs", is_flag=True, help="Rewrite the tables of docs/scenarios.md from the registry.")
def reference_cmd(write_docs: bool) -> None:
    """List every step action and expectation with its fields (the registry's tables)."""
    from testbed.scenario import reference

    if write_docs:
        changed = reference.write_docs()
        click.echo(f"{'updated' if changed else 'up to date'}: {reference.docs_path()}")
        return
    click.echo("steps:\n" + reference.steps_table() + "\n\nexpectations:\n" + reference.expectations_table())


DEMO_SCENARIO = "demo-eu-field-story.yaml"
DEMO_REPORT = "demo-report.html"


@click.command()
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help=f"Where to write the report (default: ./{settings.REPORTS_DIR}/{DEMO_REPORT}).")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Also write JUnit XML.")
@click.option("--scenario", "scenario_file", type=click.Path(dir_okay=False), default=None,
              help="Run another story instead of the default one.")
def demo(report, junit, scenario_file) -> None:
    """Run the default field story on 2 boards and print where the report is.

    Crash dumps are enabled with the EU boundary, apps crash, dumps upload,
    a repeat crash is throttled and a crash with the network down restarts
    its app at the 5 s deadline.
    """
    from testbed.paths import REPO_ROOT

    path = Path(scenario_file) if scenario_file else REPO_ROOT / "scenarios" / DEMO_SCENARIO
    scenarios = _load((str(path),), None)
    report = report or str(_default_report_dir() / DEMO_REPORT)
    results, report_path = run_and_report(scenarios, parallel=max(1, os.cpu_count() or 1), junit=junit,
                                          report=report, workdir=None)  # fmt: skip
    code = _summary(results, report_path, junit)
    click.echo(f"\nopen the report in a browser: file://{report_path.resolve()}")
    sys.exit(code)
