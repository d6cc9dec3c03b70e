"""Scenario files: the schema, the loader and the model the runner executes.

A scenario file (YAML) names device groups, a fleet of boards, a timeline of
steps and the expectations that make the verdict. Every error names the file,
the line and the field, and is raised before any board boots. The full format
is documented in docs/scenarios.md; :data:`STEP_SPECS` and
:data:`EXPECT_SPECS` below are the single source of truth for the fields.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.scenario.yamlloc import LocList, LocMap, YamlSyntaxError, line_of, load_located


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
#: How an app can be made to crash on demand (`crashapp --mode ...`).
CRASH_MODES: tuple[str, ...] = ("segv", "abort", "fpe", "stack")
#: The `@tb event=` names of docs/device-api.md.
KNOWN_EVENTS: tuple[str, ...] = (
    "boot-ready", "firmware-ready", "boot-error", "sync-ok", "sync-fail", "crash", "dump-skipped",
    "upload-ok", "upload-fail", "app-start", "app-restart", "os-restart", "provisioned",
)  # fmt: skip
SKIP_REASONS: tuple[str, ...] = ("optout", "stale-sync", "throttled", "too-large", "ratelimit", "no-reporter")
BOUNDARIES: tuple[str, ...] = ("None", "EU")
#: Regions an expectation may name; "US" means East US or West US.
REGIONS: tuple[str, ...] = ("EU", "EastUS", "WestUS", "US", "any")
FAULT_MODES: tuple[str, ...] = ("delay", "hang", "drip", "status")
MAX_BOARDS_PER_FLEET = 16

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,47}$")


class ScenarioError(ValueError):
    """A scenario file is wrong. ``str()`` reads ``file:line: field 'x': what is wrong``."""

    def __init__(self, file: str, line: int, fld: str, message: str) -> None:
        self.file = file
        self.line = line
        self.field = fld
        self.message = message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: field '{fld}': {message}" if fld else f"{where}: {message}")


def parse_duration(value: Any) -> float:
    """Seconds from ``5``, ``2.5``, ``"500ms"``, ``"5s"``, ``"2m"``, ``"48h"``, ``"29d"``, ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 5s, 500ms, 48h or 29d, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative ({value})")
        return float(value)
    if isinstance(value, str) and _DURATION_RE.match(value):
        return sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(value))
    raise ValueError(f"expected a duration like 5s, 500ms, 48h or 29d, got {value!r}")


def format_duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


# ---------------------------------------------------------------- the model


@dataclass
class GroupSpec:
    """A device group the runner creates: ``product/name`` with its settings."""

    key: str
    product: str
    name: str
    allow_crash_dumps: bool = False
    boundary: str = "None"
    line: int = 0


@dataclass
class FleetSpec:
    """Boards ``<name>-1 .. <name>-<count>`` in one group, running ``apps``."""

    name: str
    count: int
    group: str
    apps: list[str]
    line: int = 0

    def board_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(1, self.count + 1)]


@dataclass
class Step:
    """One timeline step: an action with normalised arguments."""

    index: int
    action: str
    args: dict[str, Any]
    at: float | None = None
    label: str = ""
    line: int = 0
    checks: list[Expectation] = field(default_factory=list)

    def describe(self) -> str:
        if self.label:
            return self.label
        parts = []
        for key, value in self.args.items():
            if value is None or value == [] or key == "timeout":
                continue
            if isinstance(value, list):
                value = ",".join(map(str, value))
            elif isinstance(value, float):
                value = format_duration(value)
            parts.append(f"{key}={value}")
        if self.action == "check":
            parts = [c.kind for c in self.checks]
        return f"{self.action} " + " ".join(parts) if parts else self.action


@dataclass
class Expectation:
    """One expectation: a kind with normalised arguments; ``text`` is how the report names it."""

    kind: str
    args: dict[str, Any]
    line: int = 0
    text: str = ""


@dataclass
class Scenario:
    name: str
    description: str
    path: str
    groups: dict[str, GroupSpec]
    fleet: dict[str, FleetSpec]
    steps: list[Step]
    expect: list[Expectation]
    tenant: str = "Contoso"
    timeout: float = 300.0
    service: dict[str, Any] = field(default_factory=dict)  # ServiceProcess options (throttle_limit)

    @property
    def boards(self) -> list[str]:
        return [name for spec in self.fleet.values() for name in spec.board_names()]

    def fleet_of(self, board: str) -> FleetSpec:
        for spec in self.fleet.values():
            if board in spec.board_names():
                return spec
        raise KeyError(board)

    def all_expectations(self) -> list[tuple[Step | None, Expectation]]:
        """Checks inside steps (in timeline order) followed by the final expectations."""
        out: list[tuple[Step | None, Expectation]] = []
        for step in self.steps:
            out.extend((step, c) for c in step.checks)
        out.extend((None, e) for e in self.expect)
        return out


# ---------------------------------------------------------------- field specs

# A field spec: (kind, required, default). Kinds: "boards", "board_opt" (default all),
# "duration", "int", "posint", "bool", "str", "group", "groups", "app", "event",
# "where", ("enum", values), "expectations".
FieldSpec = tuple[Any, bool, Any]

STEP_SPECS: dict[str, tuple[dict[str, FieldSpec], str | None, str]] = {
    # action: (fields, shorthand field for a scalar or list value, help)
    "sync": ({"boards": ("boards", True, None), "expect": (("enum", ("ok", "fail", "any")), False, "ok"),
              "timeout": ("duration", False, 20.0)}, "boards",
             "run `syncd --now` on the boards and wait for sync-ok (or sync-fail)"),
    "crash": ({"boards": ("boards", True, None), "app": ("app", False, "crashapp"),
               "mode": (("enum", CRASH_MODES), False, "segv"), "heap_kib": ("int", False, None),
               "id": ("crash_id", False, None)}, "boards",
              "make an app crash on the boards now (heap_kib: fill that much heap first, so the dump is "
              "bigger; id: crash as a different bug, so a different signature)"),
    "wait": ({"boards": ("boards", True, None), "event": ("event", True, None),
              "where": ("where", False, None), "count": ("posint", False, 1),
              "timeout": ("duration", False, 30.0)}, None,
             "wait until each board printed `count` new matching events since the actions before this wait began"),
    "link_down": ({"boards": ("boards", True, None)}, "boards", "unplug the boards' network (QMP set_link)"),
    "link_up": ({"boards": ("boards", True, None)}, "boards", "plug the boards' network back"),
    "pause": ({"boards": ("boards", True, None)}, "boards", "stop the boards' CPUs"),
    "resume": ({"boards": ("boards", True, None)}, "boards", "resume the boards' CPUs"),
    "reboot": ({"boards": ("boards", True, None), "timeout": ("duration", False, 60.0)}, "boards",
               "reset the boards, wait for boot-ready and provision them again"),
    "service_fault": ({"mode": (("enum", FAULT_MODES), True, None), "delay": ("duration", False, None),
                       "status": ("int", False, None), "count": ("posint", False, None)}, "mode",
                      "make the service's device API hang, delay, drip bytes or answer a status"),
    "service_clear": ({}, None, "remove all service faults"),
    "warp": ({"by": ("duration", True, None), "service": ("bool", False, True),
              "boards": ("board_opt", False, "all")}, "by",
             "move the service's clock and the boards' clocks forward"),
    "set_group": ({"group": ("groups", True, None), "allow_crash_dumps": ("bool", False, None),
                   "boundary": (("enum", BOUNDARIES), False, None),
                   "via": (("enum", ("api", "cli", "script")), False, "api"),
                   "page_size": ("posint", False, None)}, None,
                  "change device-group settings through the public API, the sphere CLI (device-group update) "
                  "or the bulk script (crashdumps configure; allow_crash_dumps only)"),
    "move": ({"boards": ("boards", True, None), "group": ("group", True, None)}, None,
             "move the boards' devices to another group"),
    "support_read": ({"boards": ("board_opt", False, "all"), "reason": ("str", False, "scenario investigation")},
                     None, "read every stored dump of the boards through an audited support session"),
    "idle": ({"for": ("duration", True, None)}, "for", "let scenario time pass"),
    "check": ({"expect": ("expectations", True, None)}, "expect", "evaluate expectations now"),
}  # fmt: skip

_COUNT_FIELDS: dict[str, FieldSpec] = {
    "count": ("int", False, None),
    "min": ("int", False, None),
    "max": ("int", False, None),
}

EXPECT_SPECS: dict[str, tuple[dict[str, FieldSpec], str | None, str]] = {
    "dump_stored": ({"boards": ("board_opt", False, "all"), "region": (("enum", REGIONS), False, "any"),
                     "app": ("app", False, None), **_COUNT_FIELDS}, "boards",
                    "each board has dumps stored at the service (default at least 1), in the region"),
    "dumps": ({"boards": ("board_opt", False, "all"), "region": (("enum", REGIONS), False, "any"),
               "app": ("app", False, None), "signature_of": ("app", False, None), **_COUNT_FIELDS}, None,
              "the total of dumps stored for the boards (optionally one region, one app or one crash signature)"),
    "no_request": ({"boards": ("board_opt", False, "all")}, "boards",
                   "no crash-dump request (intent or upload) from the boards reached the service"),
    "dump_skipped": ({"boards": ("board_opt", False, "all"), "reason": (("enum", SKIP_REASONS), True, None),
                      "app": ("app", False, None), **_COUNT_FIELDS}, "reason",
                     "each board reported dump-skipped with the reason (default at least once)"),
    "app_restarted": ({"boards": ("board_opt", False, "all"), "app": ("app", False, None),
                       "within": ("duration", True, None), "after_upload": ("bool", False, False),
                       "upload_slack": ("duration", False, None)}, None,
                      "every crash of the app on the boards was followed by app-restart within the time "
                      "(after_upload: only once its upload completed; upload_slack: at most this long after it)"),
    "upload": ({"boards": ("board_opt", False, "all"), "result": (("enum", ("ok", "fail")), False, "ok"),
                "reason": ("str", False, None), **_COUNT_FIELDS}, None,
               "each board reported upload-ok (or upload-fail with the reason)"),
    "events": ({"boards": ("board_opt", False, "all"), "event": ("event", True, None),
                "where": ("where", False, None), **_COUNT_FIELDS}, None,
               "each board printed matching @tb events (default at least one)"),
    "audit_rows": ({"reason": ("str", False, None), **_COUNT_FIELDS}, None,
                   "rows in the support audit log (default at least one)"),
    "tenant_denied": ({"boards": ("board_opt", False, "all")}, "boards",
                      "the tenant's own Administrator token cannot list or read any dump"),
    "blobs": ({"region": (("enum", REGIONS), False, "any"), **_COUNT_FIELDS}, None,
              "dump blob files in the service's stores"),
    "requests": ({"boards": ("board_opt", False, "all"), "path": (("enum", ("sync", "intent", "upload")), True, None),
                  **_COUNT_FIELDS}, None,
                 "requests from the boards that reached the service (seen by the wire tap), in total"),
    "dump_sizes": ({"boards": ("board_opt", False, "all"), "min_bytes": ("int", False, None),
                    "max_bytes": ("int", False, None)}, None,
                   "every stored dump of the boards has a compressed size within the bounds"),
    "groups": ({"group": ("groups", True, None), "allow_crash_dumps": ("bool", False, None),
                "boundary": (("enum", BOUNDARIES), False, None)}, None,
               "the device groups' settings at the service (read through the public API) are these"),
}  # fmt: skip


# ---------------------------------------------------------------- the loader


class _Ctx:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, line: int, fld: str, message: str) -> ScenarioError:
        return ScenarioError(self.file, line, fld, message)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(ctx: _Ctx, mapping: LocMap, allowed: Iterable[str], where: str) -> None:
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            raise ctx.fail(
                mapping.key_lines[key],
                f"{where}{key}",
                f"unknown field{_suggest(key, allowed)}; allowed: {', '.join(allowed)}",
            )


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", LocMap: "a mapping", list: "a list", LocList: "a list", bool: "true/false",
            int: "a number", float: "a number", str: "text"}.get(type(value), type(value).__name__)  # fmt: skip


class _Loader:
    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx
        self.groups: dict[str, GroupSpec] = {}
        self.fleet: dict[str, FleetSpec] = {}

    # ---- generic value conversion
    def value(self, kind: Any, raw: Any, line: int, fld: str) -> Any:
        fail = self.ctx.fail
        if isinstance(kind, tuple) and kind[0] == "enum":
            allowed = kind[1]
            text = "None" if raw is None and "None" in allowed else raw
            if not isinstance(text, str) or text not in allowed:
                hint = _suggest(str(text), allowed) if isinstance(text, str) else ""
                raise fail(line, fld, f"expected one of {', '.join(allowed)}, got {raw!r}{hint}")
            return text
        if kind == "duration":
            try:
                return parse_duration(raw)
            except ValueError as exc:
                raise fail(line, fld, str(exc)) from None
        if kind in ("int", "posint"):
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise fail(line, fld, f"expected a whole number, got {_type_name(raw)} ({raw!r})")
            if raw < 0 or (kind == "posint" and raw < 1):
                raise fail(line, fld, f"expected a number {'>= 1' if kind == 'posint' else '>= 0'}, got {raw}")
            return raw
        if kind == "bool":
            if isinstance(raw, str) and raw in ("Enabled", "Disabled"):
                return raw == "Enabled"
            if not isinstance(raw, bool):
                raise fail(line, fld, f"expected true/false (or Enabled/Disabled), got {raw!r}")
            return raw
        if kind == "str":
            if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                raise fail(line, fld, f"expected text, got {_type_name(raw)}")
            return str(raw)
        if kind == "board_opt" and raw == "none":
            return []
        if kind in ("boards", "board_opt"):
            return self.boards(raw, line, fld)
        if kind == "group":
            if not isinstance(raw, str) or raw not in self.groups:
                raise fail(line, fld, f"unknown device group {raw!r}{_suggest(str(raw), self.groups)}; "
                           f"groups: {', '.join(self.groups) or '(none declared)'}")  # fmt: skip
            return raw
        if kind == "groups":
            if raw == "all":
                return list(self.groups)
            items = raw if isinstance(raw, list) else [raw]
            return [self.value("group", item, line, fld) for item in items]
        if kind == "app":
            if not isinstance(raw, str) or raw not in KNOWN_APPS:
                raise fail(line, fld, f"unknown app {raw!r}{_suggest(str(raw), KNOWN_APPS)}; "
                           f"the firmware ships: {', '.join(KNOWN_APPS)}")  # fmt: skip
            return raw
        if kind == "event":
            if not isinstance(raw, str) or raw not in KNOWN_EVENTS:
                raise fail(line, fld, f"unknown event {raw!r}{_suggest(str(raw), KNOWN_EVENTS)}; "
                           f"events: {', '.join(KNOWN_EVENTS)}")  # fmt: skip
            return raw
        if kind == "crash_id":
            text = str(raw)
            if not re.match(r"^[A-Za-z0-9_]{1,6}$", text):
                raise fail(line, fld, f"a crash id is 1 to 6 of A-Z a-z 0-9 _, got {raw!r}")
            return text
        if kind == "where":
            if not isinstance(raw, dict):
                raise fail(line, fld, f"expected a mapping of event keys to values, got {_type_name(raw)}")
            return {str(k): str(v) for k, v in raw.items()}
        raise AssertionError(f"unknown field kind {kind!r}")

    def boards(self, raw: Any, line: int, fld: str) -> list[str]:
        all_boards = [b for spec in self.fleet.values() for b in spec.board_names()]
        items = raw if isinstance(raw, list) else [raw]
        out: list[str] = []
        for item in items:
            if item == "all":
                names = all_boards
            elif isinstance(item, str) and item in self.fleet:
                names = self.fleet[item].board_names()
            elif isinstance(item, str) and item in all_boards:
                names = [item]
            else:
                choices = ["all", *self.fleet, *all_boards]
                raise self.ctx.fail(line, fld, f"unknown board or fleet {item!r}{_suggest(str(item), choices)}; "
                                    f"known: {', '.join(choices)}")  # fmt: skip
            out.extend(n for n in names if n not in out)
        if not out:
            raise self.ctx.fail(line, fld, "selects no board")
        return out

    def fields(self, specs: dict[str, FieldSpec], shorthand: str | None, raw: Any, line: int,
               where: str) -> tuple[dict[str, Any], LocMap | None]:  # fmt: skip
        """Convert the arguments of a step or expectation; a non-mapping fills the shorthand field."""
        if not isinstance(raw, LocMap):
            if not specs or (raw is None and not any(req for _, req, _ in specs.values())):
                raw_map: dict[str, Any] = {}
            elif shorthand is None:
                raise self.ctx.fail(line, where.rstrip("."), f"expected a mapping with fields "
                                    f"{', '.join(specs)}, got {_type_name(raw)}")  # fmt: skip
            else:
                raw_map = {shorthand: raw}
            lines: dict[str, int] = {k: line for k in raw_map}
            located = None
        else:
            _check_keys(self.ctx, raw, specs, where)
            raw_map = raw
            lines = raw.value_lines
            located = raw
        out: dict[str, Any] = {}
        for name, (kind, required, default) in specs.items():
            if name in raw_map:
                if kind == "expectations":
                    out[name] = raw_map[name]
                else:
                    out[name] = self.value(kind, raw_map[name], lines.get(name, line), where + name)
            elif required:
                raise self.ctx.fail(line, where + name, "missing (required)")
            elif kind == "board_opt" and default == "all":
                out[name] = self.boards("all", line, where + name)
            else:
                out[name] = default
        return out, located

    # ---- sections
    def load_groups(self, raw: Any, line: int) -> None:
        if not isinstance(raw, LocMap) or not raw:
            raise self.ctx.fail(line, "groups", "expected a mapping of 'Product/Group' to settings")
        for key, settings in raw.items():
            kline = raw.key_lines[key]
            if not isinstance(key, str) or key.count("/") != 1 or not all(
                _NAME_RE.match(part) for part in key.split("/")
            ):
                raise self.ctx.fail(kline, f"groups.{key}", "a group is named 'Product/Group' "
                                    "(letters, digits, '-', '_', '.')")  # fmt: skip
            product, name = key.split("/")
            spec = GroupSpec(key, product, name, line=kline)
            if settings is not None:
                if not isinstance(settings, LocMap):
                    raise self.ctx.fail(kline, f"groups.{key}", f"expected a mapping of settings, got {_type_name(settings)}")
                _check_keys(self.ctx, settings, ("allow_crash_dumps", "boundary"), f"groups.{key}.")
                if "allow_crash_dumps" in settings:
                    spec.allow_crash_dumps = self.value(
                        "bool", settings["allow_crash_dumps"], settings.value_lines["allow_crash_dumps"],
                        f"groups.{key}.allow_crash_dumps")  # fmt: skip
                if "boundary" in settings:
                    spec.boundary = self.value(("enum", BOUNDARIES), settings["boundary"],
                                               settings.value_lines["boundary"], f"groups.{key}.boundary")
            self.groups[key] = spec

    def load_fleet(self, raw: Any, line: int) -> None:
        if not isinstance(raw, LocMap) or not raw:
            raise self.ctx.fail(line, "fleet", "expected a mapping of fleet names to {boards, group, apps}")
        for name, spec in raw.items():
            kline = raw.key_lines[name]
            if not isinstance(name, str) or not _NAME_RE.match(name) or re.search(r"-\d+$", name) or name == "all":
                raise self.ctx.fail(kline, f"fleet.{name}", "a fleet name is letters, digits, '_' or '-', "
                                    "not ending in -<number>, and not 'all'")  # fmt: skip
            if not isinstance(spec, LocMap):
                raise self.ctx.fail(kline, f"fleet.{name}", f"expected a mapping, got {_type_name(spec)}")
            _check_keys(self.ctx, spec, ("boards", "group", "apps"), f"fleet.{name}.")
            for req in ("group",):
                if req not in spec:
                    raise self.ctx.fail(kline, f"fleet.{name}.{req}", "missing (required)")
            count = self.value("posint", spec.get("boards", 1), line_of(spec, "boards", value=True), f"fleet.{name}.boards")
            if count > MAX_BOARDS_PER_FLEET:
                raise self.ctx.fail(line_of(spec, "boards", value=True), f"fleet.{name}.boards",
                                    f"at most {MAX_BOARDS_PER_FLEET} boards per fleet")
            group = self.value("group", spec["group"], spec.value_lines["group"], f"fleet.{name}.group")
            apps_raw = spec.get("apps", list(KNOWN_APPS))
            if not isinstance(apps_raw, list) or not apps_raw:
                raise self.ctx.fail(line_of(spec, "apps", value=True), f"fleet.{name}.apps", "expected a non-empty list of apps")
            apps = [
                self.value("app", app, line_of(apps_raw, i), f"fleet.{name}.apps[{i}]")
                for i, app in enumerate(apps_raw)
            ]
            self.fleet[name] = FleetSpec(name, count, group, apps, line=kline)

    def expectation(self, raw: Any, line: int, where: str) -> Expectation:
        if not isinstance(raw, LocMap) or len(raw) != 1:
            raise self.ctx.fail(line, where.rstrip("."), "an expectation is a mapping with exactly one of: "
                                + ", ".join(EXPECT_SPECS))  # fmt: skip
        kind = next(iter(raw))
        if kind not in EXPECT_SPECS:
            raise self.ctx.fail(raw.key_lines[kind], where + kind,
                                f"unknown expectation{_suggest(kind, EXPECT_SPECS)}; known: {', '.join(EXPECT_SPECS)}")
        specs, shorthand, _ = EXPECT_SPECS[kind]
        args, _ = self.fields(specs, shorthand, raw[kind], raw.value_lines[kind], f"{where}{kind}.")
        if "count" in args and args["count"] is not None and (args.get("min") is not None or args.get("max") is not None):
            raise self.ctx.fail(raw.line, f"{where}{kind}.count", "give either count or min/max, not both")
        text = _expect_text(kind, args)
        return Expectation(kind, args, line=raw.line, text=text)

    def step(self, index: int, raw: Any, line: int) -> Step:
        where = f"steps[{index}]."
        if not isinstance(raw, LocMap):
            raise self.ctx.fail(line, f"steps[{index}]", f"a step is a mapping with one action, got {_type_name(raw)}")
        modifiers = ("at", "name")
        actions = [k for k in raw if k not in modifiers]
        if len(actions) != 1:
            if not actions:
                raise self.ctx.fail(raw.line, f"steps[{index}]", f"no action; one of: {', '.join(STEP_SPECS)}")
            raise self.ctx.fail(raw.key_lines[actions[1]], f"steps[{index}].{actions[1]}",
                                f"one action per step (this step also has '{actions[0]}')")
        action = actions[0]
        if action not in STEP_SPECS:
            raise self.ctx.fail(raw.key_lines[action], where + action,
                                f"unknown action{_suggest(action, STEP_SPECS)}; actions: {', '.join(STEP_SPECS)}")
        specs, shorthand, _ = STEP_SPECS[action]
        args, _ = self.fields(specs, shorthand, raw[action], raw.value_lines[action], f"{where}{action}.")
        at = None
        if "at" in raw:
            at = self.value("duration", raw["at"], raw.value_lines["at"], where + "at")
        label = self.value("str", raw["name"], raw.value_lines["name"], where + "name") if "name" in raw else ""
        step = Step(index, action, args, at=at, label=label, line=raw.line)
        aline = raw.value_lines[action]
        if action == "crash":
            for board in args["boards"]:
                fleet = next(f for f in self.fleet.values() if board in f.board_names())
                if args["app"] not in fleet.apps:
                    raise self.ctx.fail(aline, where + "crash.app", f"board {board} does not run app "
                                        f"{args['app']!r} (fleet {fleet.name} runs: {', '.join(fleet.apps)})")  # fmt: skip
        if action == "set_group" and args["allow_crash_dumps"] is None and args["boundary"] is None:
            raise self.ctx.fail(aline, where + "set_group", "nothing to set: give allow_crash_dumps and/or boundary")
        if action == "set_group" and args["via"] == "script" and (args["boundary"] is not None or args["allow_crash_dumps"] is None):
            raise self.ctx.fail(aline, where + "set_group.via", "the bulk script sets allow_crash_dumps only")
        if action == "service_fault":
            if args["mode"] == "status" and args["status"] is None:
                raise self.ctx.fail(aline, where + "service_fault.status", "mode status needs a status code")
            if args["mode"] in ("delay", "drip") and args["delay"] is None:
                raise self.ctx.fail(aline, where + "service_fault.delay", f"mode {args['mode']} needs a delay")
        if action == "check":
            items = args.pop("expect")
            if not isinstance(items, list) or not items:
                raise self.ctx.fail(aline, where + "check", "expected a list of expectations")
            step.checks = [
                self.expectation(item, line_of(items, i), f"{where}check[{i}].") for i, item in enumerate(items)
            ]
        return step


def _expect_text(kind: str, args: dict[str, Any]) -> str:
    parts = []
    for key, value in args.items():
        if value is None or value is False or (key == "region" and value == "any"):
            continue
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, float):
            value = format_duration(value)
        elif value is True:
            value = "yes"
        parts.append(f"{key}={value}")
    return f"{kind}: " + " ".join(parts) if parts else kind


TOP_FIELDS = ("name", "description", "tenant", "timeout", "service", "groups", "fleet", "steps", "expect")
SERVICE_FIELDS = ("throttle_limit",)


def scenario_from_data(data: Any, file: str, default_name: str = "scenario") -> Scenario:
    """Validate parsed data (a LocMap from a file, or a plain dict from Python) into a Scenario."""
    ctx = _Ctx(file)
    if isinstance(data, dict) and not isinstance(data, LocMap):
        data = _locate_plain(data)
    if not isinstance(data, LocMap):
        raise ctx.fail(line_of(data) or 1, "", f"a scenario is a mapping with fields {', '.join(TOP_FIELDS)}")
    _check_keys(ctx, data, TOP_FIELDS, "")
    loader = _Loader(ctx)
    for req in ("groups", "fleet", "steps"):
        if req not in data:
            raise ctx.fail(data.line, req, "missing (required)")
    loader.load_groups(data["groups"], data.value_lines["groups"])
    loader.load_fleet(data["fleet"], data.value_lines["fleet"])
    steps_raw = data["steps"]
    if not isinstance(steps_raw, LocList) or not steps_raw:
        raise ctx.fail(data.value_lines["steps"], "steps", "expected a non-empty list of steps")
    steps = [loader.step(i, item, line_of(steps_raw, i)) for i, item in enumerate(steps_raw)]
    expect_raw = data.get("expect", LocList())
    if not isinstance(expect_raw, LocList):
        raise ctx.fail(data.value_lines["expect"], "expect", "expected a list of expectations")
    expect = [loader.expectation(item, line_of(expect_raw, i), f"expect[{i}].") for i, item in enumerate(expect_raw)]
    if not expect and not any(s.checks for s in steps):
        raise ctx.fail(data.line, "expect", "a scenario needs at least one expectation")
    last_at = 0.0
    for step in steps:
        if step.at is not None:
            if step.at < last_at:
                raise ctx.fail(step.line, f"steps[{step.index}].at", f"at {format_duration(step.at)} is before an "
                               f"earlier step's at {format_duration(last_at)}")  # fmt: skip
            last_at = step.at
    name = loader.value("str", data["name"], data.value_lines["name"], "name") if "name" in data else default_name
    timeout = loader.value("duration", data["timeout"], data.value_lines["timeout"], "timeout") if "timeout" in data else 300.0
    tenant = loader.value("str", data["tenant"], data.value_lines["tenant"], "tenant") if "tenant" in data else "Contoso"
    description = str(data.get("description") or "").strip()
    service: dict[str, Any] = {}
    if "service" in data:
        raw = data["service"]
        if not isinstance(raw, LocMap):
            raise ctx.fail(data.value_lines["service"], "service", f"expected a mapping with {', '.join(SERVICE_FIELDS)}")
        _check_keys(ctx, raw, SERVICE_FIELDS, "service.")
        for key in raw:
            service[key] = loader.value("posint", raw[key], raw.value_lines[key], f"service.{key}")
    return Scenario(name, description, file, loader.groups, loader.fleet, steps, expect, tenant=tenant,
                    timeout=timeout, service=service)


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


def scale_fleet(scenario: Scenario, boards: int) -> Scenario:
    """Resize the fleets so the scenario runs on ``boards`` boards in total (at least one per fleet).

    Steps and expectations naming a single board that no longer exists make this fail.
    """
    fleets = list(scenario.fleet.values())
    if boards < len(fleets):
        raise ScenarioError(scenario.path, 0, "fleet", f"--boards {boards} is fewer than the {len(fleets)} fleets")
    total = sum(f.count for f in fleets)
    counts = [max(1, round(f.count * boards / total)) for f in fleets]
    while sum(counts) > boards:
        counts[counts.index(max(counts))] -= 1
    while sum(counts) < boards:
        counts[counts.index(min(counts))] += 1
    data_fleet = {f.name: FleetSpec(f.name, c, f.group, list(f.apps), f.line) for f, c in zip(fleets, counts, strict=True)}
    valid = {b for f in data_fleet.values() for b in f.board_names()}
    old = {f.name: set(f.board_names()) for f in fleets}

    def remap(names: list[str], line: int, fld: str) -> list[str]:
        out: list[str] = []
        for fleet_name, members in old.items():
            if members and members <= set(names):
                out.extend(data_fleet[fleet_name].board_names())
                names = [n for n in names if n not in members]
        for n in names:
            if n not in valid:
                raise ScenarioError(scenario.path, line, fld, f"board {n} does not exist with --boards {boards}")
            out.append(n)
        return list(dict.fromkeys(out))

    def fix(args: dict[str, Any], line: int, where: str) -> dict[str, Any]:
        return {k: remap(v, line, where + k) if k == "boards" else v for k, v in args.items()}

    steps = []
    for s in scenario.steps:
        checks = [Expectation(c.kind, fix(c.args, c.line, f"steps[{s.index}].check."), c.line, c.text) for c in s.checks]
        steps.append(Step(s.index, s.action, fix(s.args, s.line, f"steps[{s.index}]."), s.at, s.label, s.line, checks))
    expect = [Expectation(e.kind, fix(e.args, e.line, "expect."), e.line, e.text) for e in scenario.expect]
    return Scenario(scenario.name, scenario.description, scenario.path, scenario.groups, data_fleet, steps, expect,
                    scenario.tenant, scenario.timeout, dict(scenario.service))  # fmt: skip


Describer = Callable[[Step], str]
