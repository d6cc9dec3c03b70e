"""Where the pytest plugin writes a test's outputs, and how it tells the user (docs/pytest.md).

Every test that uses a board or runs a scenario gets its own output folder,
``testbed_out``: the test's own ``tmp_path`` by default, or ``DIR/<test id>/`` with
``--testbed-out DIR`` (env ``TESTBED_REPORT_DIR``). The board fixtures write their
console logs there, ``scenario_runner`` its HTML report, JUnit XML and run files.

Each file a fixture writes is recorded with :func:`record_output`; the plugin then
shows the paths in three places: a "testbed outputs" section of the test's report
(printed with a failure, and for passed tests with ``-rP``), the test's JUnit
properties (``testbed_output``), and one line per test at the end of the run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator
from pathlib import Path

import pytest
from pluggy import Result

from testbed import settings

#: The outputs a test recorded: (what, path), in order.
OUTPUTS_KEY = pytest.StashKey[list[tuple[str, Path]]]()
#: Every test's output folder and outputs, for the end-of-run summary.
_SUMMARY_KEY = pytest.StashKey[dict[str, tuple[Path, list[tuple[str, Path]]]]]()
_DIR_KEY = pytest.StashKey[Path]()

#: Up to this many tests are listed one by one at the end of the run; more, their common folder.
SUMMARY_LINES = 30


def add_output_option(parser: pytest.Parser) -> None:
    parser.getgroup("testbed outputs").addoption(
        "--testbed-out",
        default=settings.get(settings.REPORT_DIR),
        metavar="DIR",
        help="write each test's board console logs and scenario reports to DIR/<test id>/ "
        f"(default: the test's own tmp_path; env {settings.REPORT_DIR})",
    )


def folder_name(nodeid: str) -> str:
    """A test id as one folder name: ``tests/test_a.py::test_b[x]`` -> ``tests_test_a.py__test_b_x``."""
    name = nodeid.replace("::", "__")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.")
    return name[:150] or "test"


def output_dir(request: pytest.FixtureRequest) -> Path:
    """The test's output folder (made on first use), the same for every fixture of the test."""
    node = request.node
    if _DIR_KEY in node.stash:
        return node.stash[_DIR_KEY]
    root = request.config.getoption("--testbed-out", None)
    if root:  # relative to where pytest was started, whatever a test's cwd is now
        base = Path(request.config.invocation_params.dir) / Path(root).expanduser()
        out = base.resolve() / folder_name(node.nodeid)
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = Path(request.getfixturevalue("tmp_path"))
    node.stash[_DIR_KEY] = out
    return out


def record_output(request: pytest.FixtureRequest, what: str, path: Path | str) -> None:
    """Note that the test wrote ``path`` (e.g. ``board x console log``): it is then printed with
    the test's report and at the end of the run. Call it from your own fixtures too."""
    request.node.stash.setdefault(OUTPUTS_KEY, []).append((what, Path(path)))
    request.node.user_properties.append(("testbed_output", f"{what}: {path}"))


@pytest.fixture
def testbed_out(request: pytest.FixtureRequest) -> Path:
    """This test's output folder: where the ``board`` / ``board_pool`` fixtures write the boards'
    console logs and ``scenario_runner`` its reports. It is the test's ``tmp_path`` (pytest keeps
    the last 3 runs under ``/tmp/pytest-of-$USER/``), or ``DIR/<test id>/`` with
    ``--testbed-out DIR`` (env ``TESTBED_REPORT_DIR``). Write your own files here too; their
    paths are listed after the run when you pass them to
    ``testbed.pytest_outputs.record_output(request, what, path)``."""
    return output_dir(request)


def _section(outputs: list[tuple[str, Path]], folder: Path | None) -> str:
    lines = [f"folder: {folder}"] if folder is not None else []
    lines += [f"{what}: {path}" for what, path in outputs]
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True, specname="pytest_runtest_makereport")
def pytest_runtest_makereport_outputs(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    outputs = item.stash.get(OUTPUTS_KEY, [])
    if not outputs:
        return
    folder = item.stash.get(_DIR_KEY, None)
    # The call report carries them (a passed test shows them with -rP); a failed setup or
    # teardown gets them too, so every failure shows where its logs are.
    if report.when == "call" or report.failed:
        report.sections.append(("testbed outputs", _section(outputs, folder)))
    if report.when == "teardown":
        summary = item.config.stash.setdefault(_SUMMARY_KEY, {})
        summary[item.nodeid] = (folder or outputs[0][1].parent, list(outputs))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line per test that wrote outputs: its folder (board logs, reports)."""
    summary = config.stash.get(_SUMMARY_KEY, {})
    if not summary:
        return
    terminalreporter.write_sep("=", "testbed outputs (board console logs, scenario reports)")
    if len(summary) > SUMMARY_LINES:  # one line for the lot: where they all are
        root = os.path.commonpath([str(folder) for folder, _ in summary.values()])
        terminalreporter.write_line(f"{len(summary)} tests, one folder each under {root} "
                                    "(each test's report section lists its files)")  # fmt: skip
        return
    for nodeid, (folder, outputs) in summary.items():
        kinds = ", ".join(what for what, _ in outputs)
        terminalreporter.write_line(f"{nodeid}: {folder} ({kinds})")
