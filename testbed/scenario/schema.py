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
    Group,
    Int,
    OneOf,
    Scope,
    Text,
    suggest,
    type_name,
)
from testbed.scenario.model import Expectation, FleetSpec, GroupSpec, Scenario, ScenarioError, Step
from testbed.scenario.model import format_duration as format_duration
from testbed.scenario.model import parse_duration as parse_duration
from testbed.scenario.registry import ACTIONS, EXPECTATIONS, Op, load_all
from testbed.scenario.yamlloc import LocList, LocMap, YamlSyntaxError, line_of, load_located

load_all()


def firmware_apps() -> tuple[str, ...]:
    """What the board image runs: the apps of firmware_stubs/etc/apps (under appmgr) and the OS
    components its init script starts (``TB_COMPONENT=<name>``); crashapp and crashsvc if unreadable."""
    from testbed.paths import REPO_ROOT

    names: list[str] = []
    try:
        for line in (REPO_ROOT / "firmware_stubs" / "etc" / "apps").read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                names.append(line.split()[0])
        for script in sorted((REPO_ROOT / "firmware_stubs" / "rc.d").glob("*")):
            names += re.findall(r"TB_COMPONENT=([A-Za-z0-9_.-]+)", script.read_text())
    except OSError:
        pass
    return tuple(dict.fromkeys(names)) or ("crashapp", "crashsvc")


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
    """Reads one scenario's parsed data; ``fail`` makes the ScenarioError of a place."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.scope = Scope({}, {}, KNOWN_APPS)

    def fail(self, line: int, fld: str, message: str) -> ScenarioError:
        return ScenarioError(self.file, line, fld, message)

    def check_keys(self, mapping: LocMap, allowed: Iterable[str], where: str) -> None:
        allowed = list(allowed)
        for key in mapping:
            if key not in allowed:
                raise self.fail(mapping.key_lines[key], f"{where}{key}",
                                f"unknown field{suggest(key, allowed)}; allowed: {', '.join(allowed)}")  # fmt: skip

    def value(self, kind: Any, raw: Any, line: int, fld: str) -> Any:
        try:
            return kind.convert(raw, self.scope)
        except FieldError as exc:
            raise self.fail(line, fld + ("." + exc.field if exc.field else ""), str(exc)) from None

    # ---- a step's action or an expectation: an instance of its registered class
    def op(self, cls: type[OpT], raw: Any, line: int, where: str) -> OpT:
        specs = cls.specs()
        lines: dict[str, int] = {}
        if isinstance(raw, LocMap):
            self.check_keys(raw, specs, where)
            values: dict[str, Any] = dict(raw)
            lines = raw.value_lines
        elif not specs or (raw is None and not any(s.required for s in specs.values())):
            values = {}
        elif cls.shorthand is None:
            raise self.fail(line, where.rstrip("."), f"expected a mapping with fields {', '.join(specs)}, "
                            f"got {type_name(raw)}")  # fmt: skip
        else:
            values = {cls.shorthand: raw}
        try:
            return cls.build(values, self.scope)
        except FieldError as exc:
            key = exc.field.split(".")[0]
            raise self.fail(lines.get(key, line), where + exc.field if exc.field else where.rstrip("."),
                            str(exc)) from None  # fmt: skip

    def expectation(self, raw: Any, line: int, where: str) -> Expectation:
        kinds = [k for k in raw if k != "name"] if isinstance(raw, LocMap) else []
        if not isinstance(raw, LocMap) or len(kinds) != 1:
            raise self.fail(line, where.rstrip("."), "an expectation is a mapping with exactly one of: "
                            + ", ".join(EXPECTATIONS) + " (and optionally its name)")  # fmt: skip
        kind = kinds[0]
        if kind not in EXPECTATIONS:
            raise self.fail(raw.key_lines[kind], where + kind,
                            f"unknown expectation{suggest(kind, EXPECTATIONS)}; known: {', '.join(EXPECTATIONS)}")
        check = self.op(EXPECTATIONS[kind], raw[kind], raw.value_lines[kind], f"{where}{kind}.")
        if "name" in raw:  # `- {name: ..., <kind>: ...}`, the way a step is named
            if check.label is not None:
                raise self.fail(raw.key_lines["name"], where + "name", f"the expectation is named twice (also in "
                                f"{kind}.name); give its name once")  # fmt: skip
            name = self.value(_TEXT, raw["name"], raw.value_lines["name"], where + "name")
            check = check.replace(name=name)  # type: ignore[assignment]
        return Expectation(check, line=raw.line, text=check.text())

    def step(self, index: int, raw: Any, line: int) -> Step:
        where = f"steps[{index}]."
        if not isinstance(raw, LocMap):
            raise self.fail(line, f"steps[{index}]", f"a step is a mapping with one action, got {type_name(raw)}")
        actions = [k for k in raw if k not in STEP_MODIFIERS]
        if not actions:
            raise self.fail(raw.line, f"steps[{index}]", f"no action; one of: {', '.join(ACTIONS)}")
        if len(actions) > 1:
            raise self.fail(raw.key_lines[actions[1]], f"steps[{index}].{actions[1]}",
                            f"one action per step (this step also has '{actions[0]}')")
        name = actions[0]
        if name not in ACTIONS:
            raise self.fail(raw.key_lines[name], where + name,
                            f"unknown action{suggest(name, ACTIONS)}; actions: {', '.join(ACTIONS)}")
        op = self.op(ACTIONS[name], raw[name], raw.value_lines[name], f"{where}{name}.")
        at = self.value(_DURATION, raw["at"], raw.value_lines["at"], where + "at") if "at" in raw else None
        label = self.value(_TEXT, raw["name"], raw.value_lines["name"], where + "name") if "name" in raw else ""
        step = Step(index, op, at=at, label=label, line=raw.line)
        if name == "check":
            items = op.expect  # type: ignore[attr-defined]
            step.checks = [self.expectation(item, line_of(items, i), f"{where}check[{i}].") for i, item in enumerate(items)]
        return step

    # ---- sections
    def groups(self, raw: Any, line: int) -> None:
        if not isinstance(raw, LocMap) or not raw:
            raise self.fail(line, "groups", "expected a mapping of 'Product/Group' to settings")
        for key, settings in raw.items():
            kline = raw.key_lines[key]
            product, _, name = key.partition("/") if isinstance(key, str) else ("", "", "")
            if key.count("/") != 1 or not _NAME_RE.match(product) or not public_api.is_group_name(name):
                raise self.fail(kline, f"groups.{key}", "a group is named 'Product/Group': the product letters, digits, "
                                f"'-', '_', '.'; the group {public_api.GROUP_NAME_RULE}")  # fmt: skip
            spec = GroupSpec(key, product, name, line=kline)
            if settings is not None:
                if not isinstance(settings, LocMap):
                    raise self.fail(kline, f"groups.{key}", f"expected a mapping of settings, got {type_name(settings)}")
                self.check_keys(settings, ("allow_crash_dumps", "boundary"), f"groups.{key}.")
                if "allow_crash_dumps" in settings:
                    spec.allow_crash_dumps = self.value(_BOOL, settings["allow_crash_dumps"],
                                                        settings.value_lines["allow_crash_dumps"],
                                                        f"groups.{key}.allow_crash_dumps")  # fmt: skip
                if "boundary" in settings:
                    spec.boundary = self.value(OneOf(BOUNDARIES), settings["boundary"], settings.value_lines["boundary"],
                                               f"groups.{key}.boundary")  # fmt: skip
            self.scope.groups[key] = spec

    def fleet(self, raw: Any, line: int) -> None:
        if not isinstance(raw, LocMap) or not raw:
            raise self.fail(line, "fleet", "expected a mapping of fleet names to {boards, group, apps}")
        for name, spec in raw.items():
            kline = raw.key_lines[name]
            if not isinstance(name, str) or not _NAME_RE.match(name) or re.search(r"-\d+$", name) or name == "all":
                raise self.fail(kline, f"fleet.{name}", "a fleet name is letters, digits, '_' or '-', "
                                "not ending in -<number>, and not 'all'")  # fmt: skip
            if not isinstance(spec, LocMap):
                raise self.fail(kline, f"fleet.{name}", f"expected a mapping, got {type_name(spec)}")
            self.check_keys(spec, ("boards", "group", "apps"), f"fleet.{name}.")
            if "group" not in spec:
                raise self.fail(kline, f"fleet.{name}.group", "missing (required)")
            count_line = line_of(spec, "boards", value=True)
            count = self.value(Int(1), spec.get("boards", 1), count_line, f"fleet.{name}.boards")
            if count > MAX_BOARDS_PER_FLEET:
                raise self.fail(count_line, f"fleet.{name}.boards", f"at most {MAX_BOARDS_PER_FLEET} boards per fleet")
            group = self.value(Group(), spec["group"], spec.value_lines["group"], f"fleet.{name}.group")
            apps_raw = spec.get("apps", list(KNOWN_APPS))
            if not isinstance(apps_raw, list) or not apps_raw:
                raise self.fail(line_of(spec, "apps", value=True), f"fleet.{name}.apps", "expected a non-empty list of apps")
            apps = [self.value(App(), app, line_of(apps_raw, i), f"fleet.{name}.apps[{i}]") for i, app in enumerate(apps_raw)]
            self.scope.fleet[name] = FleetSpec(name, count, group, apps, line=kline)



def scenario_from_data(data: Any, file: str, default_name: str = "scenario") -> Scenario:
    """Validate parsed data (a LocMap from a file, or a plain dict from Python) into a Scenario."""
    loader = _Loader(file)
    if isinstance(data, dict) and not isinstance(data, LocMap):
        data = _locate_plain(data)
    if not isinstance(data, LocMap):
        raise loader.fail(line_of(data) or 1, "", f"a scenario is a mapping with fields {', '.join(TOP_FIELDS)}")
    loader.check_keys(data, TOP_FIELDS, "")
    for req in ("groups", "fleet", "steps"):
        if req not in data:
            raise loader.fail(data.line, req, "missing (required)")
    loader.groups(data["groups"], data.value_lines["groups"])
    loader.fleet(data["fleet"], data.value_lines["fleet"])
    steps_raw = data["steps"]
    if not isinstance(steps_raw, LocList) or not steps_raw:
        raise loader.fail(data.value_lines["steps"], "steps", "expected a non-empty list of steps")
    steps = [loader.step(i, item, line_of(steps_raw, i)) for i, item in enumerate(steps_raw)]
    expect_raw = data.get("expect", LocList())
    if not isinstance(expect_raw, LocList):
        raise loader.fail(data.value_lines["expect"], "expect", "expected a list of expectations")
    expect = [loader.expectation(item, line_of(expect_raw, i), f"expect[{i}].") for i, item in enumerate(expect_raw)]
    if not expect and not any(s.checks for s in steps):
        raise loader.fail(data.line, "expect", "a scenario needs at least one expectation")
    last_at = 0.0
    for step in steps:
        if step.at is not None:
            if step.at < last_at:
                raise loader.fail(step.line, f"steps[{step.index}].at", f"at {format_duration(step.at)} is before an "
                                  f"earlier step's at {format_duration(last_at)}")  # fmt: skip
            last_at = step.at

    def top(key: str, kind: Any, default: Any) -> Any:
        return loader.value(kind, data[key], data.value_lines[key], key) if key in data else default

    service: dict[str, Any] = {}
    if "service" in data:
        raw = data["service"]
        if not isinstance(raw, LocMap):
            raise loader.fail(data.value_lines["service"], "service", f"expected a mapping with {', '.join(SERVICE_FIELDS)}")
        loader.check_keys(raw, SERVICE_FIELDS, "service.")
        service = {key: loader.value(Int(1), raw[key], raw.value_lines[key], f"service.{key}") for key in raw}
    return Scenario(top("name", _TEXT, default_name), str(data.get("description") or "").strip(), file,
                    loader.scope.groups, loader.scope.fleet, steps, expect, tenant=top("tenant", _TEXT, "Contoso"),
                    timeout=top("timeout", _DURATION, 300.0), service=service)  # fmt: skip


def _locate_plain(value: Any) -> Any:
    """Wrap plain Python dicts/lists (the Python API) as LocMap/LocList with line 0."""
    if isinstance(value, dict):
        out = LocMap((str(k), _locate_plain(v)) for k, v in value.items())
        out.line = 0
        out.key_lines = {str(k): 0 for k in value}
        out.value_lines = dict(out.key_lines)
        return out
    if isinstance(value, list | tuple):
        items = LocList(_locate_plain(v) for v in value)
        items.line = 0
        items.item_lines = [0] * len(items)
        return items
    return value


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
    try:
        data = load_located(text)
    except YamlSyntaxError as exc:
        raise ScenarioError(file, exc.line, "", str(exc)) from None
    if data is None:
        raise ScenarioError(file, 1, "", "the file is empty")
    return scenario_from_data(data, file, default_name=path.stem)


def load_scenarios(paths: Iterable[str | Path]) -> list[Scenario]:
    """Load every file first, so one bad file stops the run before any board boots."""
    scenarios = [load_scenario(p) for p in paths]
    names: dict[str, str] = {}
    for sc in scenarios:
        if sc.name in names:
            raise ScenarioError(sc.path, 0, "name", f"scenario name {sc.name!r} is also used by {names[sc.name]}")
        names[sc.name] = sc.path
    return scenarios


__all__ = [
    "KNOWN_APPS", "KNOWN_EVENTS", "Expectation", "FleetSpec", "GroupSpec", "Scenario", "ScenarioError", "Step",
    "format_duration", "load_scenario", "load_scenarios", "parse_duration", "scenario_from_data",
]  # fmt: skip
