"""The report's timeline and legend as inline SVG.

The x axis is host time since the scenario's start; a clock warp is a marked break (a zigzag)
with its jump ("+3 d") and what the boards' and the service's clocks read after it. Text labels
are placed so that no two overlap (a label with no free place is left to its tooltip), markers a
few pixels apart are stacked, and the same event repeated at one spot is drawn once with a count.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from testbed.contract.events import EventName
from testbed.scenario.results import BoardEvent, Interval, ScenarioResult
from testbed.scenario.timeline import CrashEpisode, crash_episodes
from testbed.scenario.when import SERVICE, dates_at, duration, jump, short_date

MARKS: dict[str, tuple[str, str, str]] = {
    # event: (colour, shape, legend)
    EventName.CRASH: ("#d62728", "circle", "crash"),
    EventName.UPLOAD_OK: ("#2ca02c", "triangle", "dump stored"),
    EventName.UPLOAD_FAIL: ("#ff7f0e", "cross", "upload failed"),
    EventName.DUMP_SKIPPED: ("#7f7f7f", "square", "dump skipped"),
    EventName.APP_RESTART: ("#1f77b4", "diamond", "app restarted"),
    EventName.OS_RESTART: ("#17becf", "diamond", "OS component restarted"),
    EventName.SYNC_OK: ("#9467bd", "tick", "sync"),
    EventName.SYNC_FAIL: ("#9467bd", "cross", "sync failed"),
    EventName.BOOT_READY: ("#bbbbbb", "tick", "boot"),
}
BANDS = {
    "link-down": ("#ff7f0e", "link down"),
    "paused": ("#8c564b", "paused"),
    "service-fault": ("#d62728", "service fault"),
    "reboot": ("#bbbbbb", "reboot"),
}
WARP_COLOUR = "#6a3d9a"
W, LEFT, RIGHT = 960, 110, 20
FONT = 11
CHAR_W = 0.68 * FONT  # a generous advance for sans-serif fonts (DejaVu digits are 0.64 em): boxes err wide
GAP = 6  # at least this much space between two labels on one line ("10" "11" never read "1011")
STEP_LANES = (11, 22)
CLOCK_TOP = 30  # the clock lane: warps' jumps and dates
ROWS_TOP = 78
ROW, MID = 120, 58  # a board's row height, and its axis from the row's top
MARKER_LANES = (0, -12, 12, -24, 24)


def text_width(text: str, bold: bool = False) -> float:
    return len(text) * CHAR_W * (1.1 if bold else 1.0)


@dataclass
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def hits(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


def text_box(x: float, y: float, text: str, anchor: str = "start", bold: bool = False) -> Box:
    """The box a text of the timeline's font takes (``y`` is its baseline): a line is 12 px high."""
    w = text_width(text, bold)
    x0 = x - w / 2 if anchor == "middle" else x - w if anchor == "end" else x
    return Box(x0, y - FONT * 0.8, x0 + w, y + FONT * 0.2)


class Labels:
    """Places text labels without overlaps: each label tries its places in order."""

    def __init__(self, left: float = 0, right: float = W) -> None:
        self.boxes: list[Box] = []
        self.left, self.right = left, right

    def place(self, places: Sequence[tuple[float, float, str]], text: str, attrs: str = "", title: str = "") -> str:
        """The ``<text>`` at the first free place ((x, y, anchor)), or "" when none is free."""
        for x, y, anchor in places:
            box = text_box(x, y, text, anchor, "bold" in attrs)
            if box.x0 < self.left - 0.5 or box.x1 > self.right + 0.5:
                continue
            wide = Box(box.x0 - GAP, box.y0, box.x1 + GAP, box.y1)  # a space between neighbours
            if any(wide.hits(b) for b in self.boxes):
                continue
            self.boxes.append(box)
            t = f"<title>{html.escape(title)}</title>" if title else ""
            return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{attrs}>{t}'
                    f"{html.escape(text)}</text>")  # fmt: skip
        return ""


def shape(kind: str, x: float, y: float, colour: str, title: str) -> str:
    t = f"<title>{html.escape(title)}</title>"
    if kind == "circle":
        return f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{colour}">{t}</circle>'
    if kind == "triangle":
        return f'<path d="M{x:.1f},{y - 6} l6,10 h-12 z" fill="{colour}">{t}</path>'
    if kind == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4}" width="8" height="8" fill="{colour}">{t}</rect>'
    if kind == "diamond":
        return f'<path d="M{x:.1f},{y - 6} l6,6 l-6,6 l-6,-6 z" fill="{colour}">{t}</path>'
    if kind == "cross":
        return (f'<path d="M{x - 4:.1f},{y - 4} l8,8 M{x + 4:.1f},{y - 4} l-8,8" stroke="{colour}" '
                f'stroke-width="2.5">{t}</path>')  # fmt: skip
    return f'<line x1="{x:.1f}" y1="{y - 7}" x2="{x:.1f}" y2="{y + 7}" stroke="{colour}" stroke-width="2">{t}</line>'


def ticks(span: float) -> list[float]:
    step = 3600.0
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span / step <= 12:
            break
    out, t = [], 0.0
    while t <= span + 1e-9:
        out.append(t)
        t += step
    return out


def fmt_event(e: BoardEvent) -> str:
    fields = " ".join(f"{k}={v}" for k, v in e.fields.items())
    return f"t={e.t:.3f}s {e.name} {fields}".strip()


def _tick_label(t: float, span: float) -> str:
    return f"{t:g} s" if span <= 150 else duration(t)


def _zigzag(x: float, y0: float, y1: float) -> str:
    d, y, side = f"M{x:.1f},{y0:.0f}", y0, 1
    while y < y1:
        y = min(y1, y + 6)
        d += f" L{x + 3 * side:.1f},{y:.0f}"
        side = -side
    return d


def _marker_groups(events: list[BoardEvent], x: Callable[[float], float]) -> list[tuple[float, int, list[BoardEvent]]]:
    """(x, lane, events): the same event within 4 px drawn once; others within 12 px stacked in lanes."""
    groups: list[tuple[float, list[BoardEvent]]] = []
    for e in sorted((e for e in events if e.name in MARKS), key=lambda e: e.t):
        px = x(e.t)
        same = next((g for g in reversed(groups[-6:]) if g[1][0].name == e.name and px - g[0] <= 4), None)
        if same is not None:
            same[1].append(e)
        else:
            groups.append((px, [e]))
    placed: list[tuple[float, int, list[BoardEvent]]] = []
    for px, evs in groups:
        used = {lane for qx, lane, _ in placed if px - qx < 12}
        lane = next((i for i in range(len(MARKER_LANES)) if i not in used), len(placed) % len(MARKER_LANES))
        placed.append((px, lane, evs))
    return placed


def timeline_svg(result: ScenarioResult) -> str:
    """One inline SVG: the clock lane (warps), then a row per board with its events, fault bands and
    crash latencies."""
    last_step = max((st.end for st in result.steps), default=0.0)
    last_event = max((e.t for b in result.boards for e in b.events), default=0.0)
    span = max(last_step, last_event, 1.0) * 1.03
    plot_w = W - LEFT - RIGHT
    height = ROWS_TOP + len(result.boards) * ROW + 20
    labels = Labels()
    names = [b.name for b in result.boards]

    def x(t: float) -> float:
        return LEFT + max(0.0, min(t, span)) / span * plot_w

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
           f'class="timeline" font-family="sans-serif" font-size="{FONT}">']  # fmt: skip
    for t in ticks(span):
        out.append(f'<line x1="{x(t):.1f}" y1="{ROWS_TOP - 6}" x2="{x(t):.1f}" y2="{height - 18}" stroke="#eee"/>')
        out.append(labels.place([(x(t), height - 5, "middle")], _tick_label(t, span), ' fill="#666"'))
    out.append(labels.place([(4, height - 5, "start")], "host time", ' fill="#666"'))
    for step in result.steps:
        sx = x(step.start)
        title = f"step {step.index + 1} at {step.start:.2f} s: {step.text}"
        colour = "#ccc" if step.ok else "#d62728"
        out.append(f'<g><title>{html.escape(title)}</title><line x1="{sx:.1f}" y1="{STEP_LANES[-1] + 3}" '
                   f'x2="{sx:.1f}" y2="{CLOCK_TOP - 4}" stroke="{colour}"/><line x1="{sx:.1f}" y1="{ROWS_TOP - 8}" '
                   f'x2="{sx:.1f}" y2="{height - 18}" stroke="{colour}" stroke-dasharray="2,3"/></g>')  # fmt: skip
        places = [(sx, y, "middle") for y in STEP_LANES]
        out.append(labels.place(places, str(step.index + 1), ' fill="#888"', title))
    out.extend(_clock_lane(result, x, height, labels, names))
    for row, board in enumerate(result.boards):
        out.extend(_board_row(result, board.name, board.events, ROWS_TOP + row * ROW, x, span, labels))
    out.append("</svg>")
    return "".join(p for p in out if p)


def _clock_lane(result: ScenarioResult, x: Callable[[float], float], height: int, labels: Labels,
                names: list[str]) -> list[str]:  # fmt: skip
    """The warps: a zigzag through every row, the jump on top, the clocks' dates after it."""
    out = [labels.place([(4, CLOCK_TOP + 20, "start")], "clocks", ' font-weight="bold"')]
    y_jump, y_board, y_service = CLOCK_TOP + 8, CLOCK_TOP + 20, CLOCK_TOP + 32
    for j in sorted(result.jumps, key=lambda j: j.t):
        jx = x(j.t)
        dates = dates_at(result, j.t)
        board = next((dates[b] for b in names if b in j.dates), None)
        service = j.dates.get(SERVICE)
        title = f"clock warp {jump(j.seconds)} at {j.t:.2f} s: " + ", ".join(
            f"{k} now {short_date(v)} UTC" for k, v in j.dates.items())
        out.append(f'<path d="{_zigzag(jx, CLOCK_TOP - 2, height - 18)}" fill="none" stroke="{WARP_COLOUR}" '
                   f'stroke-width="1.5"><title>{html.escape(title)}</title></path>')  # fmt: skip
        attrs = f' fill="{WARP_COLOUR}"'
        out.append(labels.place([(jx + 6, y_jump, "start"), (jx - 6, y_jump, "end")], jump(j.seconds),
                                attrs + ' font-weight="bold"', title))  # fmt: skip
        for y, who, when in ((y_board, "boards", board), (y_service, "service", service)):
            if when is not None:
                text = f"{who} {short_date(when)}"
                out.append(labels.place([(jx + 6, y, "start"), (jx - 6, y, "end")], text, attrs, title))
    start = dates_at(result, 0.0)
    if start:
        for y, who, key in ((y_board, "boards", names[0] if names else SERVICE), (y_service, "service", SERVICE)):
            out.append(labels.place([(LEFT, y, "start")], f"{who} {short_date(start[key])}", ' fill="#666"',
                                    "the clocks at the start (UTC)"))  # fmt: skip
    return out


def _board_row(result: ScenarioResult, name: str, events: list[BoardEvent], top: float,
               x: Callable[[float], float], span: float, labels: Labels) -> list[str]:  # fmt: skip
    mid = top + MID
    out = [labels.place([(4, mid + 4, "start")], name if len(name) <= 15 else name[:14] + "…",
                        ' font-weight="bold"', name),  # fmt: skip
           f'<line x1="{LEFT}" y1="{mid}" x2="{W - RIGHT}" y2="{mid}" stroke="#ddd"/>']
    bands: list[Interval] = [i for i in result.intervals if i.board in (None, name)]
    for band in bands:
        colour, legend = BANDS.get(band.kind, ("#999", band.kind))
        end = band.end if band.end is not None else span
        title = f"{legend} {band.label} from {band.start:.2f} s to {end:.2f} s".replace("  ", " ")
        when = [dates_at(result, t).get(name) for t in (band.start, end)]
        if when[0] and when[1]:
            title += f" (the board's clock: {short_date(when[0])} to {short_date(when[1])} UTC)"
        title = html.escape(title)
        width = max(2.0, x(end) - x(band.start))
        out.append(f'<rect x="{x(band.start):.1f}" y="{mid - 30}" width="{width:.1f}" height="60" fill="{colour}" '
                   f'opacity="0.15"><title>{title}</title></rect>')  # fmt: skip
    for ep in crash_episodes(events):
        out.extend(_episode_svg(ep, x, mid, labels))
    for px, lane, evs in _marker_groups(events, x):
        colour, kind, _ = MARKS[evs[0].name]
        y = mid + MARKER_LANES[lane]
        title = "\n".join(fmt_event(e) for e in evs)
        out.append(shape(kind, px, y, colour, title))
        if len(evs) > 1:
            out.append(labels.place([(px + 7, y + 4, "start"), (px - 7, y + 4, "end")], f"×{len(evs)}",
                                    f' fill="{colour}"', title))  # fmt: skip
    return out


def _episode_svg(ep: CrashEpisode, x: Callable[[float], float], mid: float, labels: Labels) -> list[str]:
    """Latency bars of one crash: to stored (above, green; dashed when from the spool) and to restart
    (below, blue)."""
    parts = []
    cx = x(ep.crash.t)
    stored = ep.stored
    if stored is not None and ep.to_stored is not None:
        from_spool = stored is not ep.outcome
        label = ("stored from the spool " if from_spool else "stored ") + duration(ep.to_stored)
        ms = stored.fields.get("ms")
        title = f"crash at {ep.crash.t:.2f} s to stored {duration(ep.to_stored)} (upload {ms} ms by the board)"
        dash = ' stroke-dasharray="5,3"' if from_spool else ""
        parts.append(f'<line x1="{cx:.1f}" y1="{mid - 34}" x2="{x(stored.t):.1f}" y2="{mid - 34}" stroke="#2ca02c" '
                     f'stroke-width="1.5"{dash}><title>{html.escape(title)}</title></line>')  # fmt: skip
        places = [(cx + 2, mid - 38 - 12 * i, "start") for i in range(2)]
        places += [(x(stored.t) - 2, mid - 38 - 12 * i, "end") for i in range(2)]  # near the right edge
        parts.append(labels.place(places, label, ' fill="#2ca02c"', title))
    if ep.restart is not None and ep.to_restart is not None:
        label = f"restart {duration(ep.to_restart)}"
        title = f"crash at {ep.crash.t:.2f} s to {label}"
        parts.append(f'<line x1="{cx:.1f}" y1="{mid + 34}" x2="{x(ep.restart.t):.1f}" y2="{mid + 34}" '
                     f'stroke="#1f77b4" stroke-width="1.5"><title>{html.escape(title)}</title></line>')  # fmt: skip
        places = [(cx + 2, mid + 46 + 12 * i, "start") for i in range(2)]
        places += [(x(ep.restart.t) - 2, mid + 46 + 12 * i, "end") for i in range(2)]
        parts.append(labels.place(places, label, ' fill="#1f77b4"', title))
    return parts


def _marker_symbol(kind: str, colour: str, label: str) -> Callable[[float, float], str]:
    return lambda cx, cy: shape(kind, cx, cy, colour, label)


def _band_symbol(colour: str) -> Callable[[float, float], str]:
    return lambda cx, cy: f'<rect x="{cx - 6}" y="{cy - 6}" width="12" height="12" fill="{colour}" opacity="0.3"/>'


def _warp_symbol(cx: float, cy: float) -> str:
    return f'<path d="{_zigzag(cx, cy - 7, cy + 7)}" fill="none" stroke="{WARP_COLOUR}"/>'


def _spool_symbol(cx: float, cy: float) -> str:
    return (f'<line x1="{cx - 7}" y1="{cy}" x2="{cx + 7}" y2="{cy}" stroke="#2ca02c" stroke-width="1.5" '
            'stroke-dasharray="5,3"/>')  # fmt: skip


def legend_svg() -> str:
    """Markers, bands and lines, in columns as wide as the longest label."""
    entries: list[tuple[Callable[[float, float], str], str]] = []
    for colour, kind, label in MARKS.values():
        entries.append((_marker_symbol(kind, colour, label), label))
    for colour, label in BANDS.values():
        entries.append((_band_symbol(colour), f"{label} (band)"))
    entries.append((_warp_symbol, "clock warp (jump)"))
    entries.append((_spool_symbol, "stored from the spool"))
    col = 24 + max(text_width(label) for _, label in entries)
    cols = max(1, int(W // col))
    rows = (len(entries) + cols - 1) // cols
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{rows * 18 + 4}" class="legend" '
           f'font-family="sans-serif" font-size="{FONT}">']  # fmt: skip
    for i, (symbol, label) in enumerate(entries):
        cx, cy = 10 + (i % cols) * col, 10 + (i // cols) * 18
        out.append(symbol(cx, cy))
        out.append(f'<text x="{cx + 12:.1f}" y="{cy + 4}">{html.escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)
