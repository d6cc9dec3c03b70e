"""The HTML pages of load runs and the ingest bench: charts (inline SVG) and the summary as tables.

Every chart has its own title, a labelled time axis and a labelled value axis
with its unit, and a legend that cannot overlap; the summary is shown as
tables a person reads (units in the column names, shares as percentages,
sizes in KiB/MiB), with the raw JSON folded below for tools.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_FONT = 'font-family="sans-serif"'
#: the x axis of every load chart
TIME_AXIS = "time since the run started (s)"
#: approximate width of one character of an 11 px sans-serif label
_CHAR_PX = 6.4


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 x 10^k) up to at least ``top``."""
    top = top if top > 0 else 1.0
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _tick(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


def svg_chart(title: str, y_label: str, lines: Mapping[str, Sequence[tuple[float, float | None]]], *,
              x_label: str = TIME_AXIS, width: int = 640, height: int = 240) -> str:
    """A line chart: ``lines`` maps a label to (x, y) points (a None y is a gap).

    ``y_label`` names the value axis with its unit ("requests per second", "p99 latency (ms)").
    """
    pts = [(x, y) for line in lines.values() for x, y in line if y is not None]
    pad_l, pad_r, pad_t = 64, 14, 26
    # the legend: one row below the axis title per full line of labels
    legend: list[tuple[float, int, str, str]] = []  # x, row, label, colour
    x_at, row = 0.0, 0
    for i, label in enumerate(lines):
        w = 26 + _CHAR_PX * len(label)
        if x_at > 0 and x_at + w > width - pad_l - pad_r:
            x_at, row = 0.0, row + 1
        legend.append((pad_l + x_at, row, label, _COLORS[i % len(_COLORS)]))
        x_at += w + 14
    legend_h = 16 * (row + 1) if legend else 0
    total_h = height + legend_h
    w, h = width - pad_l - pad_r, height - pad_t - 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" role="img" '
           f'aria-label="{html.escape(title)}">',
           f'<text x="{pad_l}" y="16" font-size="13" font-weight="bold" {_FONT}>{html.escape(title)}</text>']
    # the value axis title, along the axis
    out.append(f'<text transform="translate(13,{pad_t + h / 2:.1f}) rotate(-90)" font-size="11" '
               f'text-anchor="middle" {_FONT}>{html.escape(y_label)}</text>')
    out.append(f'<text x="{pad_l + w / 2:.1f}" y="{pad_t + h + 32}" font-size="11" text-anchor="middle" '
               f'{_FONT}>{html.escape(x_label)}</text>')
    out.append(f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#888"/>')
    out.append(f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#888"/>')
    if not pts:
        out.append(f'<text x="{pad_l + 10}" y="{pad_t + h / 2:.0f}" font-size="12" {_FONT}>no data</text></svg>')
        return "".join(out)
    x_ticks = nice_ticks(max(p[0] for p in pts))
    y_ticks = nice_ticks(max(p[1] for p in pts))
    x_max, y_max = x_ticks[-1], y_ticks[-1]

    def sx(x: float) -> float:
        return pad_l + w * x / x_max

    def sy(y: float) -> float:
        return pad_t + h - h * y / y_max

    for y in y_ticks:
        out.append(f'<line x1="{pad_l - 4}" y1="{sy(y):.1f}" x2="{pad_l + w}" y2="{sy(y):.1f}" '
                   f'stroke="{"#888" if y == 0 else "#eee"}"/>')
        out.append(f'<text x="{pad_l - 6}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end" {_FONT}>'
                   f'{_tick(y)}</text>')
    for x in x_ticks:
        out.append(f'<line x1="{sx(x):.1f}" y1="{pad_t + h}" x2="{sx(x):.1f}" y2="{pad_t + h + 4}" stroke="#888"/>')
        out.append(f'<text x="{sx(x):.1f}" y="{pad_t + h + 15}" font-size="10" text-anchor="middle" {_FONT}>'
                   f'{_tick(x)}</text>')
    for i, line in enumerate(lines.values()):
        good = [(x, y) for x, y in line if y is not None]
        if good:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
            out.append(f'<polyline fill="none" stroke="{_COLORS[i % len(_COLORS)]}" stroke-width="1.5" '
                       f'points="{path}"/>')
    top = height + 12
    for x, r, label, color in legend:
        y = top + 16 * r
        out.append(f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x + 18:.1f}" y2="{y - 4}" stroke="{color}" stroke-width="3"/>')
        out.append(f'<text x="{x + 22:.1f}" y="{y}" font-size="11" {_FONT}>{html.escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


# ----------------------------------------------------------------------------- the summary as tables

#: sections of a load summary shown in their own way (the rest are shown as generic tables)
_OWN_WAY = {"checks", "requests", "requests_total", "params", "counters", "files", "ok", "output_dir"}
_RUN_FIELDS = (("scenario", "scenario"), ("users", "users"), ("devices", "devices claimed"),
               ("duration_s", "duration (s)"), ("workers", "Locust workers"), ("wall_s", "wall time (s)"),
               ("locust_exit_code", "Locust exit code"))
_UNITS = {"_ms": "ms", "_s": "s", "_per_s": "per s"}


def label(key: str) -> str:
    """A summary key as a column or row name: words, with its unit in brackets (``p99_ms`` -> ``p99 (ms)``)."""
    for suffix in ("_per_s", "_ms", "_s"):
        if key.endswith(suffix) and len(key) > len(suffix):
            return f"{key.removesuffix(suffix).replace('_', ' ')} ({_UNITS[suffix]})"
    return key.replace("_", " ")


def _is_bytes(key: str) -> bool:
    return ("bytes" in key or "rss" in key) and "ratio" not in key and "taken" not in key


def human(key: str, value: Any) -> str:
    """One value for a person: counts with separators, shares in %, sizes in KiB/MiB, yes/no."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if key.startswith("share") or key.endswith("_share"):
            return f"{value:.1%}"
        if _is_bytes(key) and abs(value) >= 1024:
            size, units = float(value) / 1024, ["KiB", "MiB", "GiB"]
            while abs(size) >= 1024 and len(units) > 1:
                size, units = size / 1024, units[1:]
            unit = units[0]
            return f"{value:,.0f} ({size:.1f} {unit})"
        if isinstance(value, float) and value != int(value):
            return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.1f}"
        return f"{value:,.0f}"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if not value:
            return "none"
        shown = ", ".join(human(key, v) if not isinstance(v, dict | list) else json.dumps(v) for v in value[:12])
        return shown + (f" ... ({len(value) - 12} more)" if len(value) > 12 else "")
    return json.dumps(value)


def _cell(key: str, value: Any) -> str:
    """A value in a table cell; a dict becomes a small table inside the cell (at any depth)."""
    if isinstance(value, dict) and value:
        return "<table class='in'>" + "".join(f"<tr><td>{html.escape(label(str(k)))}</td><td class='n'>"
                                               f"{_cell(str(k), v)}</td></tr>"
                                               for k, v in value.items()) + "</table>"
    return html.escape(human(key, value))


def _columns_table(rows: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]], first: str) -> str:
    """A row per entry, a column per field (the union, in first-seen order)."""
    items = list(rows.items()) if isinstance(rows, Mapping) else [(str(i + 1), r) for i, r in enumerate(rows)]
    fields: list[str] = []
    for _, row in items:
        fields += [k for k in row if k not in fields]
    head = "".join(f"<th>{html.escape(label(f))}</th>" for f in fields)
    body = "".join(f"<tr><td>{html.escape(name)}</td>"
                   + "".join(f"<td class='n'>{_cell(f, row.get(f))}</td>" for f in fields) + "</tr>"
                   for name, row in items)
    return f"<table><tr><th>{html.escape(first)}</th>{head}</tr>{body}</table>"


def _pairs_table(data: Mapping[str, Any]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(label(k))}</th><td class='n'>{_cell(k, v)}</td></tr>"
                               for k, v in data.items()) + "</table>"


#: headings of the sections whose key alone says too little
_TITLES = {"uploads": "Uploads, every size bucket together", "per_bucket": "Uploads per size bucket",
           "requests_per_worker": "Requests per Locust worker", "kills": "Service kills",
           "params": "Parameters", "counters": "Counters of the simulated devices"}


def section(key: str, value: Any) -> list[str]:
    """One summary section as a heading and tables: nested tables of rows become their own tables."""
    parts = [f"<h2>{html.escape(_TITLES.get(key, label(key).capitalize()))}</h2>"]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return parts + [_columns_table(value, "#")]
    if not isinstance(value, dict):
        return parts + [f"<p>{html.escape(human(key, value))}</p>"]
    if value and all(isinstance(v, dict) for v in value.values()):
        return parts + [_columns_table(value, "")]
    flat = {k: v for k, v in value.items() if not _is_rows(v)}
    if flat:
        parts.append(_pairs_table(flat))
    for k, v in value.items():
        if _is_rows(v):
            parts.append(f"<h3>{html.escape(label(k))}</h3>")
            parts.append(_columns_table(v, "" if isinstance(v, dict) else "#"))
    return parts


def _is_rows(value: Any) -> bool:
    """A dict of dicts or a list of dicts: a table of its own."""
    if isinstance(value, dict):
        return bool(value) and all(isinstance(v, dict) for v in value.values())
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _checks_table(checks: Mapping[str, Any]) -> list[str]:
    if not checks:
        return []
    rows = []
    for name, check in checks.items():
        figures = "; ".join(f"{label(k)}: {human(k, v) if not isinstance(v, dict) else _inline(v)}"
                            for k, v in check.items() if k != "ok")
        verdict = ("<b style='color:#2ca02c'>ok</b>" if check.get("ok") else "not run" if "not_run" in check
                   else "<b style='color:#d62728'>FAIL</b>")
        rows.append(f"<tr><td>{verdict}</td><td>{html.escape(label(name))}</td><td>{html.escape(figures)}</td></tr>")
    return ["<h2>Checks</h2><table><tr><th></th><th>check</th><th>figures</th></tr>", *rows, "</table>"]


def _inline(value: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {human(str(k), v)}" for k, v in value.items()) or "none"


_REQUEST_COLUMNS = (("requests", "count"), ("failures", "failed"), ("per_second", "per s"), ("p50_ms", "p50 (ms)"),
                    ("p90_ms", "p90 (ms)"), ("p99_ms", "p99 (ms)"), ("max_ms", "max (ms)"), ("mean_ms", "mean (ms)"))


def _requests_table(requests: Mapping[str, Any], total: Mapping[str, Any] | None = None) -> list[str]:
    if not requests:
        return []
    head = "".join(f"<th>{t}</th>" for _, t in _REQUEST_COLUMNS)
    named = sorted(requests.items()) + ([("all requests", total)] if total and len(requests) > 1 else [])
    rows = [f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td class='n'>{html.escape(human(k, r.get(k)))}</td>"
                                                         for k, _ in _REQUEST_COLUMNS) + "</tr>"
            for name, r in named]
    return [f"<h2>Requests</h2><table><tr><th>request</th>{head}</tr>", *rows, "</table>"]


def summary_tables(summary: Mapping[str, Any]) -> list[str]:
    """The whole summary as HTML tables: the run, checks, requests, the scenario's sections, parameters, counters."""
    run = {title: summary[key] for key, title in _RUN_FIELDS if key in summary}
    parts = []
    if run:
        parts += ["<h2>Run</h2><table>", *(f"<tr><th>{html.escape(k)}</th><td class='n'>{html.escape(human(k, v))}"
                                           f"</td></tr>" for k, v in run.items()), "</table>"]
    parts += _checks_table(summary.get("checks", {}))
    parts += _requests_table(summary.get("requests", {}), summary.get("requests_total"))
    rest = {k: v for k, v in summary.items() if k not in _OWN_WAY and k not in dict(_RUN_FIELDS)}
    scalars = {k: v for k, v in rest.items() if not isinstance(v, dict) and not _is_rows(v)}
    if scalars:
        parts += ["<h2>Figures</h2>", _pairs_table(scalars)]
    for key, value in rest.items():
        if key not in scalars:
            parts += section(key, value)
    for key in ("params", "counters"):
        if summary.get(key):
            parts += section(key, summary[key])
    return parts


_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:64em}pre{background:#f4f4f4;padding:1em;overflow:auto}"
          "svg{display:block;margin:1em 0;border:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0}"
          "td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}th{background:#f6f6f6}"
          "td.n{text-align:right}table.in td{border:none;padding:0 4px}")


def write_html(path: Path, title: str, summary: Mapping[str, Any], charts: list[str], links: Mapping[str, str]) -> None:
    """A page: title, links, the charts, the summary as tables, and the raw JSON folded at the end."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if links:
        parts.append("<p>" + " · ".join(f"<a href='{html.escape(h)}'>{html.escape(t)}</a>" for t, h in links.items())
                     + "</p>")
    parts += charts
    parts += summary_tables(summary)
    parts.append("<details><summary>The whole summary as JSON (summary.json)</summary><pre>"
                 + html.escape(json.dumps(summary, indent=2)) + "</pre></details></body></html>")
    path.write_text("".join(parts))
