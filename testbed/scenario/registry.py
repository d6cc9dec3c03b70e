"""The registry of step actions and expectations: one small class each, registered by name.

    @action("link_down", needs={Capability.LINK}, shorthand="boards")
    @dataclass(kw_only=True)
    class LinkDown(Action):
        "unplug the boards' network"
        boards: list[str] = arg(Boards())

        def run(self, ctx: StepContext) -> None: ...

The scenario schema (YAML and Python), the Python builder's methods and the reference
table of docs/scenarios.md are all made from :data:`ACTIONS` and :data:`EXPECTATIONS`:
a field exists once, in its class.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from testbed.board.protocols import Capability
from testbed.scenario.fields import (
    ALL_BOARDS,
    Boards,
    FieldError,
    FieldErrors,
    FieldSpec,
    Scope,
    Text,
    arg,
)
from testbed.scenario.model import format_duration

if TYPE_CHECKING:
    from testbed.scenario.evidence import Evidence, Finding
    from testbed.scenario.steps import StepContext


def _missing(key: str, spec: FieldSpec, scope: Scope) -> str:
    """The message for a required field left out; for boards, what to write."""
    if not isinstance(spec.kind, Boards):
        return "missing (required)"
    examples = ["`all`", *(f"a fleet (`{f}`)" for f in list(scope.fleet)[:1]),
                *(f"a board (`{b}`)" for b in scope.boards[:1])]
    return f"missing (required): write `{key}:` with {', '.join(examples)} or a list of those"


class Op:
    """What an action and an expectation share: typed fields, a name, a help text."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    #: The field a scalar or list value fills (``sync: all``), or None.
    shorthand: ClassVar[str | None] = None
    #: The values as written (by YAML key, before selectors were resolved): what ``--boards N``
    #: builds the op again from, so `all` and fleet names grow and a board name stays one board.
    written: dict[str, Any]

    @classmethod
    def specs(cls) -> dict[str, FieldSpec]:
        out: dict[str, FieldSpec] = {}
        own = set(vars(cls).get("__annotations__", {}))
        # the class's own fields first, then the inherited ones (counts: count, min, max)
        # (an expectation's own `name` last of all)
        fields = sorted(dataclasses.fields(cls), key=lambda f: (f.name not in own, f.name == "label"))  # type: ignore[arg-type]
        for f in fields:
            if "kind" not in f.metadata:
                continue
            key = f.metadata["key"] or f.name
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[operator]
            out[key] = FieldSpec(key, f.name, f.metadata["kind"], required, default, f.metadata["doc"])
        return out

    @classmethod
    def convert_fields(cls, values: dict[str, Any], scope: Scope,
                       required: bool = True) -> tuple[dict[str, Any], list[FieldError]]:  # fmt: skip
        """Convert raw values (by YAML key): the keyword arguments, and a FieldError naming the key
        for each wrong field (and each missing required one, unless ``required`` is False)."""
        kwargs: dict[str, Any] = {}
        errors: list[FieldError] = []
        for key, spec in cls.specs().items():
            if key in values:
                try:
                    kwargs[spec.attr] = spec.kind.convert(values[key], scope)
                except FieldError as exc:
                    errors.append(FieldError(str(exc), key + ("." + exc.field if exc.field else "")))
            elif spec.required:
                if required:
                    errors.append(FieldError(_missing(key, spec, scope), key))
            elif isinstance(spec.kind, Boards) and spec.default == ALL_BOARDS:
                kwargs[spec.attr] = scope.boards
        return kwargs, errors

    @classmethod
    def build(cls, values: dict[str, Any], scope: Scope) -> Self:
        """Convert raw values (by YAML key) into an instance; a FieldError names the key (a
        :class:`FieldErrors` when several fields are wrong)."""
        kwargs, errors = cls.convert_fields(values, scope)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise FieldErrors(errors)
        op = cls(**kwargs)
        op.validate(scope)
        op.written = dict(values)
        return op

    def rebuild(self, scope: Scope) -> Self:
        """The op built again from its written values in another scope (a resized fleet)."""
        return self.build(self.written_values(), scope)

    def written_values(self) -> dict[str, Any]:
        """The values as written; for an op made without :meth:`build`, its current ones."""
        if hasattr(self, "written"):
            return dict(self.written)
        return {k: v for k, v in self.as_dict().items() if v is not None and v != []}

    def validate(self, scope: Scope) -> None:
        """Checks across fields (raise FieldError naming the field)."""

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, spec.attr) for key, spec in self.specs().items()}

    def replace(self, **by_key: Any) -> Op:
        specs = self.specs()
        op = dataclasses.replace(self, **{specs[k].attr: v for k, v in by_key.items()})  # type: ignore[type-var]
        op.written = {**self.written_values(), **by_key}
        return op

    def text_parts(self, skip: tuple[str, ...] = ()) -> list[str]:
        parts = []
        for key, value in self.as_dict().items():
            if key in skip or value is None or value is False or value == [] or value == {}:
                continue
            if isinstance(value, list):
                value = ",".join(map(str, value))
            elif isinstance(value, float):
                value = format_duration(value)
            elif value is True:
                value = "yes"
            parts.append(f"{key}={value}")
        return parts


class Action(Op):
    """A timeline step's action. ``needs``: the board capabilities it uses on each target board."""

    needs: ClassVar[frozenset[Capability]] = frozenset()

    def targets(self) -> list[str]:
        """The boards the action acts on (whose capabilities it needs)."""
        return list(getattr(self, "boards", None) or [])

    def reach(self) -> set[str] | None:
        """The boards whose evidence (events, dumps, requests) the step makes or changes; None: the
        service's as well, so every expectation's. After a failed step, an expectation that a step
        which never ran would reach is not evaluated (:mod:`testbed.scenario.assess`)."""
        targets = self.targets()
        return set(targets) if targets else None

    def describe(self) -> str:
        parts = self.text_parts(skip=("timeout",))
        return f"{self.name} " + " ".join(parts) if parts else self.name

    def run(self, ctx: StepContext) -> None:
        raise NotImplementedError


@dataclasses.dataclass(kw_only=True)
class Check(Op):
    """An expectation. ``timing``: it is about how long something took (restart within, upload
    within), so a host that starved the board can make its failure inconclusive; otherwise it is
    functional (what was stored, where, how many, which events) and its verdict is never softened.

    Every expectation may be named (``name:``, the attribute ``label``); unnamed, it is called by
    its :meth:`text` (see :func:`testbed.scenario.model.name_expectations`)."""

    timing: ClassVar[bool] = False

    label: str | None = arg(Text(), None, key="name",
                            doc="the expectation's name in progress, report, results and JUnit")  # fmt: skip

    def text(self) -> str:
        """What it checks: the kind and its arguments (the boards as resolved)."""
        parts = [p for p in self.text_parts(skip=("name",)) if p != "region=any"]
        return f"{self.name}: " + " ".join(parts) if parts else self.name

    def evaluate(self, ev: Evidence) -> Finding:
        raise NotImplementedError


ACTIONS: dict[str, type[Action]] = {}
EXPECTATIONS: dict[str, type[Check]] = {}

A = TypeVar("A", bound=type[Action])
C = TypeVar("C", bound=type[Check])


def _help(cls: type, name: str) -> str:
    doc = inspect.getdoc(cls) or ""
    if not doc:
        raise TypeError(f"{name}: a registered class needs a docstring (its help text)")
    return " ".join(doc.split("\n\n")[0].split())


def action(name: str, *, needs: set[Capability] | frozenset[Capability] = frozenset(),
           shorthand: str | None = None) -> Callable[[A], A]:  # fmt: skip
    """Register an action class under ``name`` (the YAML key and the builder's method)."""

    def register(cls: A) -> A:
        if name in ACTIONS:
            raise TypeError(f"action {name!r} is registered twice")
        cls.name, cls.help, cls.needs, cls.shorthand = name, _help(cls, name), frozenset(needs), shorthand
        ACTIONS[name] = cls
        return cls

    return register


def expectation(name: str, *, timing: bool = False, shorthand: str | None = None) -> Callable[[C], C]:
    """Register an expectation class under ``name``."""

    def register(cls: C) -> C:
        if name in EXPECTATIONS:
            raise TypeError(f"expectation {name!r} is registered twice")
        cls.name, cls.help, cls.timing, cls.shorthand = name, _help(cls, name), timing, shorthand
        EXPECTATIONS[name] = cls
        return cls

    return register


def load_all() -> None:
    """Import the modules that register the built-in actions and expectations."""
    import testbed.scenario.actions  # noqa: F401
    import testbed.scenario.expectations  # noqa: F401
    import testbed.scenario.expectations_board  # noqa: F401


__all__ = ["ACTIONS", "EXPECTATIONS", "Action", "Check", "Op", "action", "expectation", "load_all"]
