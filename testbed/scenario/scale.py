"""``--boards N``: a scenario run on a fleet of another size.

The fleets are resized so the scenario has ``N`` boards in total (at least one per fleet,
shared in proportion), and every step and expectation is built again from its fields as
written: ``all`` and a fleet's name select the resized fleets, a board's name (``field-1``)
stays that one board. A board name that does not exist at the new size is an error naming
the place; a list of board names that named a whole fleet, which now grows, is said in a
warning (name the fleet to act on all of it). Expectations' texts and default names are made
again, so they name the boards actually used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from testbed.scenario.fields import Boards, FieldError, Scope
from testbed.scenario.model import (
    Expectation,
    FleetSpec,
    Scenario,
    ScenarioError,
    Step,
)
from testbed.scenario.registry import Op
from testbed.scenario.schema import KNOWN_APPS

OpT = TypeVar("OpT", bound=Op)


def fleet_counts(scenario: Scenario, boards: int) -> dict[str, int]:
    """Each fleet's new size: ``boards`` in total, in proportion, at least one each."""
    fleets = list(scenario.fleet.values())
    if boards < len(fleets):
        raise ScenarioError(scenario.path, 0, "fleet", f"--boards {boards} is fewer than the {len(fleets)} fleets")
    total = sum(f.count for f in fleets)
    counts = [max(1, round(f.count * boards / total)) for f in fleets]
    while sum(counts) > boards:
        counts[counts.index(max(counts))] -= 1
    while sum(counts) < boards:
        counts[counts.index(min(counts))] += 1
    return {f.name: c for f, c in zip(fleets, counts, strict=True)}


def scale_fleet(scenario: Scenario, boards: int, warn: Callable[[str], None] | None = None) -> Scenario:
    """The scenario with its fleets resized to ``boards`` boards in total (see the module's doc).

    Raises ScenarioError when a step or expectation names a board that no longer exists;
    ``warn`` gets one line per board name that covered a whole fleet which now grows.
    """
    counts = fleet_counts(scenario, boards)
    fleet = {n: FleetSpec(f.name, counts[n], f.group, list(f.apps), f.line) for n, f in scenario.fleet.items()}
    scope = Scope(fleet, scenario.groups, KNOWN_APPS)
    old_boards = set(scenario.boards)
    narrowed: dict[str, list[str]] = {}  # a fleet named board by board -> the places

    def rebuild(op: OpT, line: int, where: str, place: str) -> OpT:
        for key, spec in op.specs().items():
            raw = op.written_values().get(key)
            if not isinstance(spec.kind, Boards) or raw is None:
                continue
            names = [n for n in (raw if isinstance(raw, list) else [raw]) if isinstance(n, str) and n in old_boards]
            for n in names:
                if n not in scope.boards:
                    raise ScenarioError(scenario.path, line, where + key, f"board {n} does not exist with --boards "
                                        f"{boards} (fleet {scenario.fleet_of(n).name} has "
                                        f"{', '.join(fleet[scenario.fleet_of(n).name].board_names())})")  # fmt: skip
            for f in scenario.fleet.values():
                if counts[f.name] > f.count and set(f.board_names()) <= set(names):
                    narrowed.setdefault(f.name, []).append(f"{place} ({op.name}, line {line})" if line else
                                                           f"{place} ({op.name})")  # fmt: skip
        try:
            return op.rebuild(scope)
        except FieldError as exc:
            raise ScenarioError(scenario.path, line, where + exc.field, f"{exc} (with --boards {boards})") from None

    def expectation(e: Expectation, where: str, place: str) -> Expectation:
        return Expectation(rebuild(e.check, e.line, f"{where}{e.kind}.", place), e.line, e.text, e.name)

    steps = [Step(s.index, rebuild(s.op, s.line, f"steps[{s.index}].{s.action}.", f"step {s.index + 1}"), s.at,
                  s.label, s.line, [expectation(c, f"steps[{s.index}].check[{i}].", f"step {s.index + 1} check {i + 1}")
                                    for i, c in enumerate(s.checks)])
             for s in scenario.steps]  # fmt: skip
    expect = [expectation(e, f"expect[{i}].", f"expectation {i + 1}") for i, e in enumerate(scenario.expect)]
    if warn is not None:
        for name, places in narrowed.items():
            named = scenario.fleet[name].board_names()
            shown = places if len(places) <= 3 else [*places[:3], f"{len(places) - 3} more"]
            listed = ", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else shown[0]
            warn(f"{scenario.path}: with --boards {boards}, fleet {name} grows to {', '.join(fleet[name].board_names())}, "
                 f"but {listed} name{'' if len(places) > 1 else 's'} its board{'s' if len(named) > 1 else ''} "
                 f"{', '.join(named)} and stay{'' if len(places) > 1 else 's'} on {'them' if len(named) > 1 else 'it'}; "
                 f"write `{name}` to act on the whole fleet")  # fmt: skip
    return Scenario(scenario.name, scenario.description, scenario.path, scenario.groups, fleet, steps, expect,
                    scenario.tenant, scenario.timeout, dict(scenario.service))  # fmt: skip
