"""The typed fields of steps and expectations: what a value may be, how it is converted.

A step or expectation class declares its fields with :func:`arg` (a dataclass field
carrying a :class:`Kind`); the loader converts each raw YAML/Python value with the
kind, in a :class:`Scope` that knows the scenario's boards, fleets and groups, and
an error names the field. The reference table in docs/scenarios.md prints
:meth:`Kind.doc` of every field.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any

from testbed.contract.events import HTTP_REASON_EVENTS, REASONS, EventName, reason_is_known
from testbed.scenario.model import FleetSpec, GroupSpec, parse_duration


class FieldError(ValueError):
    """A value is wrong; ``field`` is the sub-field it concerns ('' for the field itself)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class FieldErrors(FieldError):
    """Several wrong fields of one step or expectation (``errors``, each a FieldError); the first's
    message and field are its own."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(str(errors[0]), errors[0].field)
        self.errors = errors


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def suggest_other(word: str, names: Iterable[str], what: str, section: str) -> str:
    """A near miss of a name of the other section: `` (did you mean the expectation 'x', under `expect:`?)``."""
    near = suggest(word, names)
    return near.replace("did you mean '", f"did you mean the {what} '").replace("?)", f", under `{section}:`?)")


def type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


@dataclass
class Scope:
    """What a value is checked against: the scenario's fleets, groups and the firmware's apps."""

    fleet: dict[str, FleetSpec]
    groups: dict[str, GroupSpec]
    apps: Sequence[str]

    @property
    def boards(self) -> list[str]:
        return [b for spec in self.fleet.values() for b in spec.board_names()]


class Kind:
    """One kind of value. ``convert`` raises FieldError with a message for the user."""

    def convert(self, raw: Any, scope: Scope) -> Any:
        raise NotImplementedError

    def doc(self) -> str:
        raise NotImplementedError


class Duration(Kind):
    def convert(self, raw: Any, scope: Scope) -> float:
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise FieldError(str(exc)) from None

    def doc(self) -> str:
        return "duration"


@dataclass
class Int(Kind):
    minimum: int = 0

    def convert(self, raw: Any, scope: Scope) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise FieldError(f"expected a whole number, got {type_name(raw)} ({raw!r})")
        if raw < self.minimum:
            raise FieldError(f"expected a number >= {self.minimum}, got {raw}")
        return raw

    def doc(self) -> str:
        return "number" if self.minimum <= 0 else f"number >= {self.minimum}"


class Bool(Kind):
    def convert(self, raw: Any, scope: Scope) -> bool:
        if isinstance(raw, str) and raw in ("Enabled", "Disabled"):
            return raw == "Enabled"
        if not isinstance(raw, bool):
            raise FieldError(f"expected true/false (or Enabled/Disabled), got {raw!r}")
        return raw

    def doc(self) -> str:
        return "true\\|false"


class Text(Kind):
    def convert(self, raw: Any, scope: Scope) -> str:
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise FieldError(f"expected text, got {type_name(raw)}")
        return str(raw)

    def doc(self) -> str:
        return "text"


@dataclass
class OneOf(Kind):
    values: tuple[str, ...]

    def convert(self, raw: Any, scope: Scope) -> str:
        text = "None" if raw is None and "None" in self.values else raw
        if not isinstance(text, str) or text not in self.values:
            hint = suggest(text, self.values) if isinstance(text, str) else ""
            raise FieldError(f"expected one of {', '.join(self.values)}, got {raw!r}{hint}")
        return text

    def doc(self) -> str:
        return "\\|".join(self.values)


@dataclass
class Boards(Kind):
    """A board selector: ``all``, a fleet, a board or a list of those; ``none`` when optional."""

    optional: bool = False

    def convert(self, raw: Any, scope: Scope) -> list[str]:
        if self.optional and raw == "none":
            return []
        all_boards = scope.boards
        out: list[str] = []
        for item in raw if isinstance(raw, list) else [raw]:
            if item == "all":
                names = all_boards
            elif isinstance(item, str) and item in scope.fleet:
                names = scope.fleet[item].board_names()
            elif isinstance(item, str) and item in all_boards:
                names = [item]
            else:
                choices = ["all", *scope.fleet, *all_boards]
                raise FieldError(f"unknown board or fleet {item!r}{suggest(str(item), choices)}; "
                                 f"known: {', '.join(choices)}")  # fmt: skip
            out.extend(n for n in names if n not in out)
        if not out:
            raise FieldError("selects no board")
        return out

    def doc(self) -> str:
        return "boards" + (" (default all; none)" if self.optional else "")


class Group(Kind):
    def convert(self, raw: Any, scope: Scope) -> str:
        if not isinstance(raw, str) or raw not in scope.groups:
            raise FieldError(f"unknown device group {raw!r}{suggest(str(raw), scope.groups)}; "
                             f"groups: {', '.join(scope.groups) or '(none declared)'}")  # fmt: skip
        return raw

    def doc(self) -> str:
        return "group"


class Groups(Kind):
    def convert(self, raw: Any, scope: Scope) -> list[str]:
        if raw == "all":
            return list(scope.groups)
        return [Group().convert(item, scope) for item in (raw if isinstance(raw, list) else [raw])]

    def doc(self) -> str:
        return "group, list or all"


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


class App(Kind):
    def convert(self, raw: Any, scope: Scope) -> str:
        if not isinstance(raw, str) or raw not in scope.apps:
            raise FieldError(f"unknown app {raw!r}{suggest(str(raw), scope.apps)}; "
                             f"the firmware ships: {', '.join(scope.apps)}")  # fmt: skip
        return raw

    def doc(self) -> str:
        return "app"


#: The event names a scenario may wait for or count: the contract's.
KNOWN_EVENTS: tuple[str, ...] = tuple(EventName)


class Event(Kind):
    def convert(self, raw: Any, scope: Scope) -> str:
        if not isinstance(raw, str) or raw not in KNOWN_EVENTS:
            raise FieldError(f"unknown event {raw!r}{suggest(str(raw), KNOWN_EVENTS)}; "
                             f"events: {', '.join(KNOWN_EVENTS)}")  # fmt: skip
        return raw

    def doc(self) -> str:
        return "event"


@dataclass
class Reason(Kind):
    """A ``reason=`` the firmware may print with ``event`` (the contract's reasons)."""

    event: str

    def convert(self, raw: Any, scope: Scope) -> str:
        return check_reason(self.event, raw)

    def doc(self) -> str:
        extra = "\\|http-NNN" if self.event in HTTP_REASON_EVENTS else ""
        return "\\|".join(REASONS[EventName(self.event)]) + extra


def check_reason(event: str, raw: Any) -> str:
    """``raw`` when the firmware may print it as ``event``'s reason (any text for an event without reasons)."""
    text = str(raw)
    name = EventName(event) if event in KNOWN_EVENTS else None
    if name is None or name not in REASONS or reason_is_known(name, text):
        return text
    allowed = REASONS[name] + (("http-NNN",) if name in HTTP_REASON_EVENTS else ())
    raise FieldError(f"{event} has no reason {text!r}{suggest(text, allowed)}; reasons: {', '.join(allowed)}")


class CrashId(Kind):
    def convert(self, raw: Any, scope: Scope) -> str:
        text = str(raw)
        if not re.match(r"^[A-Za-z0-9_]{1,6}$", text):
            raise FieldError(f"a crash id is 1 to 6 of A-Z a-z 0-9 _, got {raw!r}")
        return text

    def doc(self) -> str:
        return "1-6 of A-Za-z0-9_"


class Where(Kind):
    def convert(self, raw: Any, scope: Scope) -> dict[str, str]:
        if not isinstance(raw, dict):
            raise FieldError(f"expected a mapping of event keys to values, got {type_name(raw)}")
        return {str(k): str(v) for k, v in raw.items()}

    def doc(self) -> str:
        return "{key: value}"


class Expectations(Kind):
    """A check step's list of expectations (the loader converts each)."""

    def convert(self, raw: Any, scope: Scope) -> Any:
        if not isinstance(raw, list) or not raw:
            raise FieldError("expected a list of expectations")
        return raw

    def doc(self) -> str:
        return "list of expectations"


#: The default of an optional board selector: every board of the scenario.
ALL_BOARDS = "all"


@dataclass(frozen=True)
class FieldSpec:
    """How one field is written (``key``, the YAML name) and read (``attr``, the Python name)."""

    key: str
    attr: str
    kind: Kind
    required: bool
    default: Any
    doc: str = ""

    def default_text(self) -> str:
        if self.required or self.default is None or self.default is False:
            return ""
        if isinstance(self.default, float):
            from testbed.scenario.model import format_duration

            return format_duration(self.default) if isinstance(self.kind, Duration) else f"{self.default:g}"
        if self.default is True:
            return "true"
        return str(self.default)


def arg(kind: Kind, default: Any = MISSING, *, key: str | None = None, doc: str = "") -> Any:
    """Declare a typed field of a step or expectation class (required when no default)."""
    meta = {"kind": kind, "key": key, "doc": doc}
    if default is MISSING:
        return field(metadata=meta)
    if isinstance(default, list | dict):

        def fresh_copy(d: list[Any] | dict[Any, Any] = default) -> Any:
            return type(d)(d)

        return field(default_factory=fresh_copy, metadata=meta)
    return field(default=default, metadata=meta)
