"""Times for people: durations ("350 ms", "5.0 s", "3 d 2 h"), dates in UTC, and what the service's
and the boards' clocks read at a moment of a run (warps included)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from testbed.scenario.results import ScenarioResult

SERVICE = "service"
_UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def duration(seconds: float | None) -> str:
    """``-`` for None; "350 ms" under a second, "5.0 s" under a minute, else the two largest units
    ("2 min 5 s", "3 h 2 min", "3 d 2 h")."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 1:
        return f"{sign}{s * 1000:.0f} ms"
    if s < 60:
        return f"{sign}{s:.1f} s"
    rest = round(s)
    for i, (size, unit) in enumerate(_UNITS[:-1]):
        if rest >= size:
            n, rest = divmod(rest, size)
            size2, unit2 = _UNITS[i + 1]
            m = rest // size2
            return f"{sign}{n} {unit}" + (f" {m} {unit2}" if m else "")
    return f"{sign}{rest} s"


def jump(seconds: float) -> str:
    """A clock warp as a jump: "+3 d", "+49 h" reads as "+2 d 1 h", "-1 h"."""
    text = duration(seconds)
    return text if text.startswith("-") else "+" + text


def date(epoch: float | None, seconds: bool = True) -> str:
    """UTC date and time of epoch seconds ("2026-12-05 09:51:07 UTC"); ``-`` for None or 0."""
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def short_date(epoch: float) -> str:
    """A compact date for the timeline ("Sat 05 Dec 09:51")."""
    return time.strftime("%a %d %b %H:%M", time.gmtime(epoch))


def is_epoch(key: str, value: Any) -> bool:
    """A field that holds epoch seconds: named ``at``, ``...At`` or ``...Time``, a number after 2001."""
    named = key == "at" or key.endswith(("At", "Time", "_at"))
    return named and isinstance(value, int | float) and not isinstance(value, bool) and value > 1e9


def t0_wall(result: ScenarioResult) -> float:
    """The host's wall clock at scenario time 0: recorded by the runner, else from the events' stamps."""
    if result.t0_wall:
        return result.t0_wall
    offsets = [e.wall - e.t for b in result.boards for e in b.events if e.wall]
    return statistics.median(offsets) if offsets else result.started_wall


def dates_at(result: ScenarioResult, t: float) -> dict[str, float]:
    """What each clock read at scenario time ``t`` (epoch seconds): ``"service"`` and every board.

    Every clock starts at the host's wall clock (boards are set to it when they start); after a
    warp it reads what it said just after the warp, plus the time since.
    """
    base = t0_wall(result)
    if not base:
        return {}
    out = {key: base + t for key in [SERVICE, *(b.name for b in result.boards)]}
    for j in sorted(result.jumps, key=lambda j: j.t):
        if j.t > t + 1e-9:
            break
        for key in out:
            if key in j.dates:
                out[key] = j.dates[key] + (t - j.t)
    return out


def clocks_text(dates: dict[str, float], boards: list[str]) -> tuple[str, str]:
    """(boards, service) as text: one date when the boards agree within 2 s, else one per board."""
    board_dates = [(b, dates[b]) for b in boards if b in dates]
    if board_dates and max(d for _, d in board_dates) - min(d for _, d in board_dates) <= 2:
        board_text = date(board_dates[0][1])
    else:
        board_text = ", ".join(f"{b} {date(d)}" for b, d in board_dates) or "-"
    return board_text, date(dates.get(SERVICE))
