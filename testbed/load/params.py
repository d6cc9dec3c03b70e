"""Typed scenario parameters: declared once per scenario, checked before anything starts.

A scenario lists its :class:`Param` s (name, type, default, bounds, help);
``testbed load run --param KEY=VALUE`` values are parsed and checked against
them before a service is started or a device claimed, and ``testbed load list``
shows them with their defaults.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class ParamError(ValueError):
    """A parameter is unknown or its value does not fit; the message names it and what it takes."""


_TYPE_WORDS: dict[type, str] = {
    int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a JSON list",
}


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None

    def expected(self) -> str:
        words = _TYPE_WORDS[self.type]
        if self.minimum is not None and self.maximum is not None:
            return f"{words} in [{self.minimum:g}, {self.maximum:g}]"
        if self.minimum is not None:
            return f"{words} >= {self.minimum:g}"
        if self.maximum is not None:
            return f"{words} <= {self.maximum:g}"
        return words

    def convert(self, value: Any) -> Any:
        """``value`` (from JSON, from a string, or already typed) as this parameter's type; ParamError else."""
        if isinstance(value, str) and self.type is not str:
            try:
                value = json.loads(value)
            except ValueError:
                raise self._error(value) from None
        out: Any
        if self.type is bool:
            if not isinstance(value, bool):
                raise self._error(value)
            out = value
        elif self.type is int:
            if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
                raise self._error(value)
            out = int(value)
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
                raise self._error(value)
            out = float(value)
        elif self.type is str:
            if not isinstance(value, str) or not value:
                raise self._error(value)
            out = value
        elif self.type is list:
            if not isinstance(value, list):
                raise self._error(value)
            out = value
        else:  # pragma: no cover - a declaration mistake
            raise TypeError(f"parameter {self.name}: unsupported type {self.type}")
        if self.minimum is not None and out < self.minimum or self.maximum is not None and out > self.maximum:
            raise self._error(value)
        return out

    def _error(self, value: Any) -> ParamError:
        return ParamError(f"parameter {self.name}={value!r}: expected {self.expected()} ({self.help})")


def parse_cli(values: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a mapping (the values stay text: the scenario's params type them)."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ParamError(f"--param {item!r}: expected KEY=VALUE")
        out[key.strip()] = raw
    return out


def resolve(scenario: str, declared: Iterable[Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared parameter's value: ``given`` ones converted and checked, the rest their defaults."""
    by_name = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        named = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(by_name), n=1, cutoff=0.6)
            named.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise ParamError(f"unknown parameter(s) for {scenario}: {', '.join(named)}; "
                         f"known: {', '.join(sorted(by_name))}")
    out = {name: p.default for name, p in by_name.items()}
    for name, value in given.items():
        out[name] = by_name[name].convert(value)
    return out


# ----------------------------------------------------------------------------- shared declarations


def device_params(*, crash_interval: float, intent: bool = True, sync_every: int = 0) -> tuple[Param, ...]:
    """The parameters of ``testbed.load.users.DeviceUser``, with a scenario's defaults."""
    return (
        Param("crash_interval", float, crash_interval,
              "mean seconds between one device's crashes (0: back to back)", minimum=0),
        Param("pace", float, 0.0, "crashes a second per device at a fixed rate (0: use crash_interval)", minimum=0),
        Param("intent", bool, intent, "ask the service before uploading"),
        Param("sync_every", int, sync_every, "re-sync after this many crashes (0: never)", minimum=0),
    )
