"""Writing and running scenarios from Python, with the same steps and expectations as the YAML files.

    from testbed.scenario.api import ScenarioBuilder, run_scenario

    sc = (
        ScenarioBuilder("eu-upload")
        .group("DW100/Field", allow_crash_dumps=True, boundary="EU")
        .fleet("eu", boards=1, group="DW100/Field")
        .sync("all")
        .crash("eu-1", app="crashapp", mode="segv")
        .wait("eu-1", "upload-ok", timeout="10s")
        .expect("dump_stored", boards="eu-1", region="EU", count=1, name="the EU crash is stored")
        .build()
    )
    result = run_scenario(sc)
    result_ok(result)  # raises AssertionError listing what failed

Every step action of docs/scenarios.md is a method of the builder (``.link_down("eu-1")``,
``.service_fault(mode="hang")``, ``.warp(by="49h")``, ...); ``.step(action, ...)`` and
``.expect(kind, ...)`` take any of them by name; ``name=`` names an expectation (as
``name:`` does in a file). ``build()`` validates with the same
rules as a file; an error names the Python file and line of the offending call.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from testbed.scenario.progress import expectation_title
from testbed.scenario.registry import ACTIONS, EXPECTATIONS
from testbed.scenario.results import ScenarioResult
from testbed.scenario.schema import Scenario, ScenarioError, scenario_from_data


class ScenarioBuilder:
    def __init__(self, name: str, description: str = "", *, tenant: str | None = None,
                 timeout: str | float | None = None, throttle_limit: int | None = None) -> None:  # fmt: skip
        self.data: dict[str, Any] = {"name": name, "groups": {}, "fleet": {}, "steps": [], "expect": []}
        if description:
            self.data["description"] = description
        if tenant:
            self.data["tenant"] = tenant
        if timeout is not None:
            self.data["timeout"] = timeout
        if throttle_limit is not None:
            self.data["service"] = {"throttle_limit": throttle_limit}
        self._where: dict[str, tuple[str, int]] = {}
        self._file, self._line = _caller()

    # ---- declarations
    def group(self, key: str, *, allow_crash_dumps: bool | None = None, boundary: str | None = None) -> ScenarioBuilder:
        settings: dict[str, Any] = {}
        if allow_crash_dumps is not None:
            settings["allow_crash_dumps"] = allow_crash_dumps
        if boundary is not None:
            settings["boundary"] = boundary
        self.data["groups"][key] = settings
        self._where[f"groups.{key}"] = _caller()
        return self

    def fleet(self, name: str, *, boards: int = 1, group: str, apps: list[str] | None = None) -> ScenarioBuilder:
        spec: dict[str, Any] = {"boards": boards, "group": group}
        if apps is not None:
            spec["apps"] = list(apps)
        self.data["fleet"][name] = spec
        self._where[f"fleet.{name}"] = _caller()
        return self

    # ---- steps and expectations
    def step(self, action: str, boards: Any = None, *, at: str | float | None = None, name: str | None = None,
             **args: Any) -> ScenarioBuilder:  # fmt: skip
        """Append a step; ``boards`` may be given positionally, other fields by keyword."""
        if boards is not None:
            args["boards"] = boards
        if "for_" in args:  # `for` is a Python keyword (idle)
            args["for"] = args.pop("for_")
        item: dict[str, Any] = {action: args if args else None}
        if at is not None:
            item["at"] = at
        if name:
            item["name"] = name
        self._where[f"steps[{len(self.data['steps'])}]"] = _caller()
        self.data["steps"].append(item)
        return self

    def wait(self, boards: Any, event: str, *, timeout: str | float = "30s", count: int = 1,
             where: dict[str, str] | None = None) -> ScenarioBuilder:  # fmt: skip
        args: dict[str, Any] = {"boards": boards, "event": event, "timeout": timeout, "count": count}
        if where:
            args["where"] = where
        return self.step("wait", **args)

    def check(self, *expectations: tuple[str, dict[str, Any]]) -> ScenarioBuilder:
        """A check step: ``.check(("dumps", {"count": 1}), ...)``."""
        self._where[f"steps[{len(self.data['steps'])}]"] = _caller()
        self.data["steps"].append({"check": [{kind: args} for kind, args in expectations]})
        return self

    def expect(self, kind: str, **args: Any) -> ScenarioBuilder:
        self._where[f"expect[{len(self.data['expect'])}]"] = _caller()
        self.data["expect"].append({kind: args if args else None})
        return self

    def __getattr__(self, action: str):
        """Every registered action is a method: ``.link_down("eu-1")``, ``.warp(by="49h")``;
        ``.expect_<kind>(...)`` adds an expectation of a registered kind."""
        if action in ACTIONS:
            cls = ACTIONS[action]

            def add(boards: Any = None, **args: Any) -> ScenarioBuilder:
                return self.step(action, boards, **args)

            add.__name__, add.__doc__ = action, f"{cls.help} (fields: {', '.join(cls.specs())})"
            return add
        if action.startswith("expect_") and action[len("expect_"):] in EXPECTATIONS:
            kind = action[len("expect_"):]
            check = EXPECTATIONS[kind]

            def add_expectation(**args: Any) -> ScenarioBuilder:
                return self.expect(kind, **args)

            add_expectation.__name__ = action
            add_expectation.__doc__ = f"{check.help} (fields: {', '.join(check.specs())})"
            return add_expectation
        raise AttributeError(action)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *ACTIONS, *(f"expect_{k}" for k in EXPECTATIONS)]

    # ---- result
    def build(self) -> Scenario:
        file = f"<python {self._file}>"
        try:
            sc = scenario_from_data(self.data, file, default_name=self.data["name"])
        except ScenarioError as exc:
            raise ScenarioError.combine([self._at_call(e) for e in exc.errors]) from None
        # lines in the report and JUnit point at the builder calls
        for step in sc.steps:
            step.line = self._where.get(f"steps[{step.index}]", ("", 0))[1]
            for check in step.checks:
                check.line = step.line
        for i, exp in enumerate(sc.expect):
            exp.line = self._where.get(f"expect[{i}]", ("", 0))[1]
        sc.path = self._file
        return sc

    def _at_call(self, exc: ScenarioError) -> ScenarioError:
        """The mistake placed at the builder call that made it (file and line of the user's code)."""
        match = re.match(r"^((?:steps|expect)\[\d+\]|(?:groups|fleet)\.[^.]+)", exc.field)
        where = self._where.get(match.group(1)) if match else None
        src, line = where if where else (self._file, self._line)
        return ScenarioError(src, line, exc.field, exc.message, exc.totals)

    def to_yaml(self) -> str:
        """The same scenario as a YAML file's text."""
        import yaml

        return yaml.safe_dump(self.data, sort_keys=False)


def _caller(_depth: int = 1) -> tuple[str, int]:
    """File and line of the nearest caller outside this module (the user's builder call)."""
    frame = inspect.currentframe()
    try:
        f = frame.f_back if frame else None
        while f is not None and f.f_code.co_filename == __file__:
            f = f.f_back
        return (f.f_code.co_filename, f.f_lineno) if f is not None else ("<python>", 0)
    finally:
        del frame


def run_scenario(scenario: Scenario, *, workdir: str | Path | None = None, report: str | Path | None = None,
                 junit: str | Path | None = None, quiet: bool = False, parallel: int | None = None,
                 board_factory=None) -> ScenarioResult:  # fmt: skip
    """Run one scenario on real boards and a real service; write the report/JUnit if asked."""
    from testbed.crash.symbol_dirs import default_symbol_dirs
    from testbed.scenario.runner import (
        Progress,
        QuietProgress,
        RunOptions,
        ScenarioRun,
    )

    options = RunOptions(workdir=Path(workdir) if workdir else None, symbol_dirs=default_symbol_dirs(),
                         progress=QuietProgress() if quiet else Progress(), board_factory=board_factory)  # fmt: skip
    if parallel:
        options.parallel = parallel
    result = ScenarioRun(scenario, options).run()
    if report:
        from testbed.scenario.report import write_html

        write_html([result], report)
    if junit:
        from testbed.scenario.report import write_junit

        write_junit([result], junit)
    return result


class ScenarioInconclusive(Exception):
    """A run where nothing failed but a timing verdict is INCONCLUSIVE (the host starved a board).

    Under pytest (the testbed plugin) a test that raises it is reported as skipped with the
    reason: neither a pass nor a failure.
    """


def describe_failures(result: ScenarioResult) -> str:
    lines = [f"scenario {result.name} ({result.path}) {'is inconclusive' if result.inconclusive else 'failed'}:"]
    if result.error:
        lines.append(f"  error: {result.error}")
    for e in [*result.failures, *result.inconclusives, *result.not_evaluated]:
        lines.append(f"  {expectation_title(e)} (line {e.line}): {e.detail}")
    if not result.expectations and not result.error:
        lines.append("  no expectation was evaluated")
    return "\n".join(lines)


def result_ok(result: ScenarioResult) -> ScenarioResult:
    """Return the result when every expectation held. Raise AssertionError naming every failed
    expectation (or the run's error); raise :class:`ScenarioInconclusive` when nothing failed but
    a timing verdict is inconclusive (under pytest: a skip with the reason, never a pass)."""
    if result.inconclusive:
        raise ScenarioInconclusive(describe_failures(result))
    if not result.passed:
        raise AssertionError(describe_failures(result))
    return result
