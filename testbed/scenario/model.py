"""The scenario model the loader builds and the runner executes, and its small value types.

A :class:`Scenario` holds groups, a fleet, timeline :class:`Step` s (each with its typed
action, :mod:`testbed.scenario.actions`) and :class:`Expectation` s (each with its typed
check, :mod:`testbed.scenario.expectations`). Errors in a scenario are
:class:`ScenarioError`, naming the file, the line and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testbed.scenario.registry import Action, Check


class ScenarioError(ValueError):
    """A scenario file is wrong. ``str()`` reads ``file:line: field 'x': what is wrong``; a field of a
    step or an expectation is said the way progress counts them, from 1:
    ``file:line: step 3/12, field 'crash.app': what is wrong``.

    ``field`` is the path in the file's data (``steps[2].crash.app``, list positions from 0, for
    programs); ``totals`` (``{"steps": 12, "expect": 3}``) give the "of N" when known. One error
    may carry several mistakes (:meth:`combine`): ``errors`` lists them all, itself first.
    """

    def __init__(self, file: str, line: int, fld: str, message: str, totals: dict[str, int] | None = None) -> None:
        self.file = file
        self.line = line
        self.field = fld
        self.message = message
        self.totals = dict(totals or {})
        self.errors: list[ScenarioError] = [self]
        where = f"{file}:{line}" if line else file
        place, rest = describe_field(fld, self.totals)
        if place:
            text = f"{where}: {place}, field '{rest}': {message}" if rest else f"{where}: {place}: {message}"
        else:
            text = f"{where}: field '{fld}': {message}" if fld else f"{where}: {message}"
        super().__init__(text)

    @classmethod
    def combine(cls, errors: list[ScenarioError]) -> ScenarioError:
        """One error for every mistake of ``errors`` (in file and line order), one a line."""
        every = sorted((e for err in errors for e in err.errors), key=lambda e: (e.file, e.line))
        if len(every) == 1:
            return every[0]
        first = every[0]
        out = cls(first.file, first.line, first.field, first.message, first.totals)
        out.errors = every
        files = sorted({e.file for e in every})
        out.args = ("\n".join(str(e) for e in every) + f"\n{len(every)} mistakes in {', '.join(files)}",)
        return out


_FIELD_RE = re.compile(r"^(steps|expect)\[(\d+)\](?:\.check\[(\d+)\])?(?:\.(.*))?$")


def describe_field(fld: str, totals: dict[str, int] | None = None) -> tuple[str, str]:
    """A field path in words, counted from 1: ``steps[2].crash.app`` -> (``step 3/12``, ``crash.app``);
    ``steps[4].check[0].dumps.count`` -> (``step 5/12, check 1``, ``dumps.count``); ``expect[0].x`` ->
    (``expectation 1/3``, ``x``). ("", fld) for a field outside steps and expectations."""
    m = _FIELD_RE.match(fld)
    if m is None:
        return "", fld
    section, index, check, rest = m.group(1), int(m.group(2)), m.group(3), m.group(4) or ""
    total = (totals or {}).get(section)
    of = f"/{total}" if total else ""
    place = f"step {index + 1}{of}" if section == "steps" else f"expectation {index + 1}{of}"
    if check is not None:
        place += f", check {int(check) + 1}"
    return place, rest


_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


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
class Expectation:
    """One expectation: its typed check; ``text`` says what it checks (kind and arguments, the boards
    as resolved), ``name`` is what progress, results, report and JUnit call it (unique in a scenario)."""

    check: Check
    line: int = 0
    text: str = ""
    name: str = ""

    @property
    def kind(self) -> str:
        return self.check.name

    @property
    def args(self) -> dict[str, Any]:
        return self.check.as_dict()


@dataclass
class Step:
    """One timeline step: its typed action, when and where it was written."""

    index: int
    op: Action
    at: float | None = None
    label: str = ""
    line: int = 0
    checks: list[Expectation] = field(default_factory=list)

    @property
    def action(self) -> str:
        return self.op.name

    @property
    def args(self) -> dict[str, Any]:
        return self.op.as_dict()

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.checks:
            return "check " + " ".join(c.kind for c in self.checks)
        return self.op.describe()


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

    def __post_init__(self) -> None:
        name_expectations(self.path, self.steps, self.expect)

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


def name_expectations(file: str, steps: list[Step], expect: list[Expectation]) -> None:
    """Give every expectation its name: its ``name:`` as written, else its text (the kind and its
    arguments), with `` #2``, `` #3`` on a text that repeats. Two written names alike are an error."""
    places = [(f"steps[{s.index}].check[{i}]", e) for s in steps for i, e in enumerate(s.checks)]
    places += [(f"expect[{i}]", e) for i, e in enumerate(expect)]
    taken: dict[str, str] = {}
    for where, e in places:
        e.text = e.check.text()
        label = e.check.label
        if label is None:
            continue
        if not label.strip():
            raise ScenarioError(file, e.line, f"{where}.name", "an expectation's name cannot be empty")
        if label in taken:
            raise ScenarioError(file, e.line, f"{where}.name", f"the name {label!r} is also that of {taken[label]}; "
                                "names are unique in a scenario")  # fmt: skip
        taken[label] = f"{where} (line {e.line})" if e.line else where
    for where, e in places:
        if e.check.label is not None:
            e.name = e.check.label
            continue
        name, n = e.text, 1
        while name in taken:
            n += 1
            name = f"{e.text} #{n}"
        taken[name] = where
        e.name = name
