"""Scenario files: the loader that turns YAML (or Python dicts) into a validated :class:`Scenario`.

A scenario file (YAML) names device groups, a fleet of boards, a timeline of steps and
the expectations that make the verdict. The fields of every step and expectation come
from their classes in the registry (:mod:`testbed.scenario.registry`); every error names
the file, the line and the field, and is raised before any board boots. The format is
documented in docs/scenarios.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from testbed.contract import public_api
from testbed.scenario.fields import KNOWN_EVENTS as KNOWN_EVENTS
from testbed.scenario.fields import (
    App,
    Bool,
    Duration,
    FieldError,
    FieldErrors,
    Group,
    Int,
    OneOf,
    Scope,
    Text,
    firmware_apps,
    suggest,
    suggest_other,
    type_name,
)
from testbed.scenario.model import Expectation, FleetSpec, GroupSpec, Scenario, ScenarioError, Step
from testbed.scenario.model import format_duration as format_duration
from testbed.scenario.model import parse_duration as parse_duration
from testbed.scenario.registry import ACTIONS, EXPECTATIONS, Op, load_all
from testbed.scenario.yamlloc import (
    LocList,
    LocMap,
    YamlSyntaxError,
    line_of,
    load_located,
    locate_plain,
)

load_all()


#: A scenario may only name these (docs/firmware.md): the app `crashapp`, the OS component `crashsvc`.
KNOWN_APPS: tuple[str, ...] = firmware_apps()
BOUNDARIES: tuple[str, ...] = ("None", "EU")
MAX_BOARDS_PER_FLEET = 16
TOP_FIELDS = ("name", "description", "tenant", "timeout", "service", "groups", "fleet", "steps", "expect")
SERVICE_FIELDS = ("throttle_limit",)
STEP_MODIFIERS = ("at", "name")

#: An action or expectation class (what :meth:`_Loader.op` builds).
OpT = TypeVar("OpT", bound=Op)
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,47}$")
_DURATION, _TEXT, _BOOL = Duration(), Text(), Bool()


class _Loader:
    """Reads one scenario's parsed data and notes every mistake (``errors``) instead of stopping at
    the first: each part that is wrong is left out, and what other parts refer to (a group, a
    fleet's boards) is still declared, so one mistake does not bring others that are not."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.scope = Scope({}, {}, KNOWN_APPS)
        self.errors: list[ScenarioError] = []
        self.totals: dict[str, int] = {}  # steps and expectations in the file, for "step 3/12"

    def fail(self, line: int, fld: str, message: str) -> ScenarioError:
        return ScenarioError(self.file, line, fld, message, self.totals)

    def note(self, line: int, fld: str, message: str) -> None:
        self.errors.append(self.fail(line, fld, message))

    def check_keys(self, mapping: LocMap, allowed: Iterable[str], where: str) -> bool:
        """Note each unknown key; False when there was one."""
        allowed = list(allowed)
        unknown = [key for key in mapping if key not in allowed]
        for key in unknown:
            self.note(mapping.key_lines[key], f"{where}{key}",
                      f"unknown field{suggest(key, allowed)}; allowed: {', '.join(allowed)}")  # fmt: skip
        return not unknown

    def value(self, kind: Any, raw: Any, line: int, fld: str, default: Any = None) -> Any:
        """``raw`` converted, or ``default`` with the mistake noted."""
        try:
            return kind.convert(raw, self.scope)
        except FieldError as exc:
            self.note(line, fld + ("." + exc.field if exc.field else ""), str(exc))
            return default

    def _fields(self, errors: list[FieldError], lines: dict[str, int], line: int, where: str) -> None:
        for exc in errors:
            key = exc.field.split(".")[0]
            self.note(lines.get(key, line), where + exc.field if exc.field else where.rstrip("."), str(exc))

    # ---- a step's action or an expectation: an instance of its registered class (None: noted)
    def op(self, cls: type[OpT], raw: Any, line: int, where: str) -> OpT | None:
        specs = cls.specs()
        lines: dict[str, int] = {}
        known = True
        if isinstance(raw, LocMap):
            known = self.check_keys(raw, specs, where)
            values: dict[str, Any] = {k: v for k, v in raw.items() if k in specs}
            lines = raw.value_lines
        elif not specs or (raw is None and not any(s.required for s in specs.values())):
            values = {}
        elif cls.shorthand is None:
            self.note(line, where.rstrip("."), f"expected a mapping with fields {', '.join(specs)}, got {type_name(raw)}")
            return None
        else:
            values = {cls.shorthand: raw}
        if not known:  # the other fields are still checked; a required one may be the misspelt one
            self._fields(cls.convert_fields(values, self.scope, required=False)[1], lines, line, where)
            return None
        try:
            return cls.build(values, self.scope)
        except FieldErrors as exc:
            self._fields(exc.errors, lines, line, where)
        except FieldError as exc:
            self._fields([exc], lines, line, where)
        return None

    def expectation(self, raw: Any, line: int, where: str) -> Expectation | None:
        kinds = [k for k in raw if k != "name"] if isinstance(raw, LocMap) else []
        if not isinstance(raw, LocMap) or len(kinds) != 1:
            self.note(line, where.rstrip("."), "an expectation is a mapping with exactly one of: "
                      + ", ".join(EXPECTATIONS) + " (and optionally its name)")  # fmt: skip
            return None
        kind = kinds[0]
        if kind not in EXPECTATIONS:
            if kind in ACTIONS:
                hint = (f"'{kind}' is a step (an action), not an expectation: it belongs under `steps:`; "
                        f"expectations: {', '.join(EXPECTATIONS)}")  # fmt: skip
            else:
                near = suggest(kind, EXPECTATIONS) or suggest_other(kind, ACTIONS, "step", "steps")
                hint = f"unknown expectation{near}; known: {', '.join(EXPECTATIONS)}"
            self.note(raw.key_lines[kind], where + kind, hint)
            return None
        check = self.op(EXPECTATIONS[kind], raw[kind], raw.value_lines[kind], f"{where}{kind}.")
        if check is None:
            return None
        if "name" in raw:  # `- {name: ..., <kind>: ...}`, the way a step is named
            if check.label is not None:
                self.note(raw.key_lines["name"], where + "name", f"the expectation is named twice (also in "
                          f"{kind}.name); give its name once")  # fmt: skip
                return None
            name = self.value(_TEXT, raw["name"], raw.value_lines["name"], where + "name")
            if name is None:
                return None
            check = check.replace(name=name)  # type: ignore[assignment]
        return Expectation(check, line=raw.line, text=check.text())

    def step(self, index: int, raw: Any, line: int) -> Step | None:
        where = f"steps[{index}]."
        if not isinstance(raw, LocMap):
            self.note(line, f"steps[{index}]", f"a step is a mapping with one action, got {type_name(raw)}")
            return None
        actions = [k for k in raw if k not in STEP_MODIFIERS]
        if not actions:
            self.note(raw.line, f"steps[{index}]", f"no action; one of: {', '.join(ACTIONS)}")
            return None
        if len(actions) > 1:
            self.note(raw.key_lines[actions[1]], f"steps[{index}].{actions[1]}",
                      f"one action per step (this step also has '{actions[0]}')")  # fmt: skip
            return None
        name = actions[0]
        if name not in ACTIONS:
            if name in EXPECTATIONS:
                hint = (f"'{name}' is an expectation, not an action: it belongs under `expect:` (checked at the "
                        f"end), or in a `check:` step to check it at this point: `- check: [{{{name}: ...}}]`")  # fmt: skip
            else:
                near = suggest(name, ACTIONS) or suggest_other(name, EXPECTATIONS, "expectation", "expect")
                hint = f"unknown action{near}; actions: {', '.join(ACTIONS)}"
            self.note(raw.key_lines[name], where + name, hint)
            return None
        op = self.op(ACTIONS[name], raw[name], raw.value_lines[name], f"{where}{name}.")
        at = self.value(_DURATION, raw["at"], raw.value_lines["at"], where + "at") if "at" in raw else None
        label = self.value(_TEXT, raw["name"], raw.value_lines["name"], where + "name", "") if "name" in raw else ""
        if op is None:
            return None
        step = Step(index, op, at=at, label=label, line=raw.line)
        if name == "check":
            items = op.expect  # type: ignore[attr-defined]
            checks = [self.expectation(item, line_of(items, i), f"{where}check[{i}].") for i, item in enumerate(items)]
            step.checks = [c for c in checks if c is not None]
        return step

    # ---- sections
    def groups(self, raw: Any, line: int) -> None:
        if not isinstance(raw, LocMap) or not raw:
            self.note(line, "groups", "expected a mapping of 'Product/Group' to settings")
            return
        for key, settings in raw.items():
            kline = raw.key_lines[key]
            product, _, name = key.partition("/") if isinstance(key, str) else ("", "", "")
            spec = GroupSpec(key, product, name, line=kline)
            self.scope.groups[key] = spec  # declared even when wrong: steps may name it
            if key.count("/") != 1 or not _NAME_RE.match(product) or not public_api.is_group_name(name):
                self.note(kline, f"groups.{key}", "a group is named 'Product/Group': the product letters, digits, "
                          f"'-', '_', '.'; the group {public_api.GROUP_NAME_RULE}")  # fmt: skip
            if settings is None:
                continue
            if not isinstance(settings, LocMap):
                self.note(kline, f"groups.{key}", f"expected a mapping of settings, got {type_name(settings)}")
                continue
            self.check_keys(settings, ("allow_crash_dumps", "boundary"), f"groups.{key}.")
            if "allow_crash_dumps" in settings:
                spec.allow_crash_dumps = self.value(_BOOL, settings["allow_crash_dumps"],
                                                    settings.value_lines["allow_crash_dumps"],
                                                    f"groups.{key}.allow_crash_dumps", False)  # fmt: skip
            if "boundary" in settings:
                spec.boundary = self.value(OneOf(BOUNDARIES), settings["boundary"], settings.value_lines["boundary"],
                                           f"groups.{key}.boundary", "None")  # fmt: skip

    def fleet(self, raw: Any, line: int) -> None:
        if not isinstance(raw, LocMap) or not raw:
            self.note(line, "fleet", "expected a mapping of fleet names to {boards, group, apps}")
            return
        for name, spec in raw.items():
            kline = raw.key_lines[name]
            if not isinstance(name, str) or not _NAME_RE.match(name) or re.search(r"-\d+$", name) or name == "all":
                self.note(kline, f"fleet.{name}", "a fleet name is letters, digits, '_' or '-', "
                          "not ending in -<number>, and not 'all'")  # fmt: skip
                continue
            # declared even when wrong (the most boards, every app), so steps naming its boards are still checked
            fleet = self.scope.fleet[name] = FleetSpec(name, MAX_BOARDS_PER_FLEET, "", list(KNOWN_APPS), line=kline)
            if not isinstance(spec, LocMap):
                self.note(kline, f"fleet.{name}", f"expected a mapping, got {type_name(spec)}")
                continue
            self.check_keys(spec, ("boards", "group", "apps"), f"fleet.{name}.")
            count_line = line_of(spec, "boards", value=True)
            count = self.value(Int(1), spec.get("boards", 1), count_line, f"fleet.{name}.boards")
            if count is not None and count > MAX_BOARDS_PER_FLEET:
                self.note(count_line, f"fleet.{name}.boards", f"at most {MAX_BOARDS_PER_FLEET} boards per fleet")
            elif count is not None:
                fleet.count = count
            if "group" not in spec:
                self.note(kline, f"fleet.{name}.group", "missing (required)")
            else:
                fleet.group = self.value(Group(), spec["group"], spec.value_lines["group"], f"fleet.{name}.group", "")
            apps_raw = spec.get("apps", list(KNOWN_APPS))
            if not isinstance(apps_raw, list) or not apps_raw:
                self.note(line_of(spec, "apps", value=True), f"fleet.{name}.apps", "expected a non-empty list of apps")
                continue
            apps = [self.value(App(), app, line_of(apps_raw, i), f"fleet.{name}.apps[{i}]") for i, app in enumerate(apps_raw)]
            if all(a is not None for a in apps):
                fleet.apps = apps

    def service(self, data: LocMap) -> dict[str, Any]:
        raw = data["service"]
        if not isinstance(raw, LocMap):
            self.note(data.value_lines["service"], "service", f"expected a mapping with {', '.join(SERVICE_FIELDS)}")
            return {}
        self.check_keys(raw, SERVICE_FIELDS, "service.")
        return {key: self.value(Int(1), raw[key], raw.value_lines[key], f"service.{key}") for key in raw
                if key in SERVICE_FIELDS}  # fmt: skip


def scenario_from_data(data: Any, file: str, default_name: str = "scenario") -> Scenario:
    """Validate parsed data (a LocMap from a file, or a plain dict from Python) into a Scenario.

    Every mistake is reported at once: the ScenarioError raised carries them all (``errors``)."""
    loader = _Loader(file)
    if isinstance(data, dict) and not isinstance(data, LocMap):
        data = locate_plain(data)
    if not isinstance(data, LocMap):
        raise loader.fail(line_of(data) or 1, "", f"a scenario is a mapping with fields {', '.join(TOP_FIELDS)}")
    steps_raw, expect_raw = data.get("steps"), data.get("expect", LocList())
    loader.totals = {"steps": len(steps_raw) if isinstance(steps_raw, list) else 0,
                     "expect": len(expect_raw) if isinstance(expect_raw, list) else 0}  # fmt: skip
    loader.check_keys(data, TOP_FIELDS, "")
    for req in ("groups", "fleet", "steps"):
        if req not in data:
            loader.note(data.line, req, "missing (required)")
    if "groups" in data:
        loader.groups(data["groups"], data.value_lines["groups"])
    if "fleet" in data:
        loader.fleet(data["fleet"], data.value_lines["fleet"])
    steps: list[Step | None] = []
    if "steps" in data and (not isinstance(steps_raw, LocList) or not steps_raw):
        loader.note(data.value_lines["steps"], "steps", "expected a non-empty list of steps")
    elif isinstance(steps_raw, LocList):
        steps = [loader.step(i, item, line_of(steps_raw, i)) for i, item in enumerate(steps_raw)]
    expect: list[Expectation | None] = []
    if not isinstance(expect_raw, LocList):
        loader.note(data.value_lines["expect"], "expect", "expected a list of expectations")
    else:
        expect = [loader.expectation(item, line_of(expect_raw, i), f"expect[{i}].") for i, item in enumerate(expect_raw)]
        if not expect_raw and not any(s.checks for s in steps if s is not None) and "steps" in data:
            loader.note(data.line, "expect", "a scenario needs at least one expectation")
    last_at = 0.0
    for step in steps:
        if step is not None and step.at is not None:
            if step.at < last_at:
                loader.note(step.line, f"steps[{step.index}].at", f"at {format_duration(step.at)} is before an "
                            f"earlier step's at {format_duration(last_at)}")  # fmt: skip
            last_at = max(last_at, step.at)

    def top(key: str, kind: Any, default: Any) -> Any:
        return loader.value(kind, data[key], data.value_lines[key], key, default) if key in data else default

    service = loader.service(data) if "service" in data else {}
    name, tenant, timeout = top("name", _TEXT, default_name), top("tenant", _TEXT, "Contoso"), top("timeout", _DURATION, 300.0)
    if loader.errors:
        raise ScenarioError.combine(loader.errors)
    return Scenario(name, str(data.get("description") or "").strip(), file, loader.scope.groups, loader.scope.fleet,
                    [s for s in steps if s is not None], [e for e in expect if e is not None], tenant=tenant,
                    timeout=timeout, service=service)  # fmt: skip


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file; raises ScenarioError naming file, line and field."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(file, 0, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(file, 0, "", f"cannot read: {exc}") from None
    duplicates: list[YamlSyntaxError] = []
    try:
        data = load_located(text, duplicates)
    except YamlSyntaxError as exc:
        raise ScenarioError(file, exc.line, "", str(exc)) from None
    if data is None:
        raise ScenarioError(file, 1, "", "the file is empty")
    errors = [ScenarioError(file, d.line, "", str(d)) for d in duplicates]
    try:
        scenario = scenario_from_data(data, file, default_name=path.stem)
    except ScenarioError as exc:
        errors.append(exc)
    if errors:
        raise ScenarioError.combine(errors)
    return scenario


def load_scenarios(paths: Iterable[str | Path]) -> list[Scenario]:
    """Load every file first, so a bad file stops the run before any board boots; the error
    raised names every mistake of every file."""
    scenarios: list[Scenario] = []
    errors: list[ScenarioError] = []
    for p in paths:
        try:
            scenarios.append(load_scenario(p))
        except ScenarioError as exc:
            errors.append(exc)
    names: dict[str, str] = {}
    for sc in scenarios:
        if sc.name in names:
            errors.append(ScenarioError(sc.path, 0, "name", f"scenario name {sc.name!r} is also used by {names[sc.name]}"))
        names[sc.name] = sc.path
    if errors:
        raise ScenarioError.combine(errors)
    return scenarios


__all__ = [
    "KNOWN_APPS", "KNOWN_EVENTS", "Expectation", "FleetSpec", "GroupSpec", "Scenario", "ScenarioError", "Step",
    "format_duration", "load_scenario", "load_scenarios", "parse_duration", "scenario_from_data",
]  # fmt: skip
