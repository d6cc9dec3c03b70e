"""Summaries of a Locust run: per-request-name figures, time series, and an HTML page with inline SVG."""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict


def percentile(histogram: dict[Any, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a Locust response-time histogram {rounded ms: count}."""
    items = sorted((float(k), int(v)) for k, v in histogram.items())
    total = sum(v for _, v in items)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value, count in items:
        seen += count
        if seen >= rank:
            return value
    return items[-1][0]


def exact_percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def entry_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """One request name of Locust's JSON stats, as our summary fields."""
    n = int(entry["num_requests"])
    span = max(float(entry["last_request_timestamp"] or 0) - float(entry["start_time"] or 0), 1e-9)
    hist = entry.get("response_times", {})
    return {
        "requests": n,
        "failures": int(entry["num_failures"]),
        "per_second": round(n / span, 2) if n > 1 else 0.0,
        "p50_ms": percentile(hist, 0.50),
        "p90_ms": percentile(hist, 0.90),
        "p99_ms": percentile(hist, 0.99),
        "max_ms": round(float(entry["max_response_time"] or 0), 2),
        "mean_ms": round(float(entry["total_response_time"]) / n, 2) if n else None,
        "response_bytes": int(entry.get("total_content_length") or 0),
    }


def summarize_stats(stats: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{e['method']} {e['name']}" if e.get("method") not in (None, "POST") else e["name"]: entry_summary(e)
            for e in stats}


def merged_summary(stats: list[dict[str, Any]], prefix: str) -> dict[str, Any] | None:
    """All request names starting with ``prefix`` together (e.g. every ``upload`` bucket)."""
    chosen = [e for e in stats if e["name"].startswith(prefix)]
    if not chosen:
        return None
    hist: dict[float, int] = {}
    for e in chosen:
        for k, v in e.get("response_times", {}).items():
            hist[float(k)] = hist.get(float(k), 0) + int(v)
    merged = {
        "num_requests": sum(e["num_requests"] for e in chosen),
        "num_failures": sum(e["num_failures"] for e in chosen),
        "start_time": min(e["start_time"] for e in chosen),
        "last_request_timestamp": max(e["last_request_timestamp"] or 0 for e in chosen),
        "total_response_time": sum(e["total_response_time"] for e in chosen),
        "max_response_time": max(e["max_response_time"] or 0 for e in chosen),
        "total_content_length": sum(e.get("total_content_length") or 0 for e in chosen),
        "response_times": hist,
    }
    return entry_summary(merged)


class HistoryRow(TypedDict):
    """One second of one request name in Locust's stats history (see :func:`read_history`)."""

    t: float
    users: float
    rps: float
    p50: float | None
    p99: float | None
    count: float


def interval_rates(rows: list[HistoryRow]) -> list[tuple[float, float]]:
    """Requests per second between consecutive history rows (exact, unlike Locust's rolling Requests/s)."""
    out = []
    for prev, cur in zip(rows, rows[1:], strict=False):
        dt = cur["t"] - prev["t"]
        if dt > 0:
            out.append((cur["t"], max(0.0, (cur["count"] - prev["count"]) / dt)))
    return out


def _num(row: dict[str, str], key: str) -> float | None:
    try:
        return float(row.get(key, "N/A"))
    except (TypeError, ValueError):
        return None


def read_history(path: Path, names: tuple[str, ...] | None = None) -> dict[str, list[HistoryRow]]:
    """Locust's ``*_stats_history.csv`` as {name: [{t, users, rps, p50, p99}, ...]} (t from the first row)."""
    series: dict[str, list[HistoryRow]] = {}
    if not path.exists():
        return series
    t0: float | None = None
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            name = row["Name"]
            if names is not None and name not in names:
                continue
            t = float(row["Timestamp"])
            t0 = t if t0 is None else t0

            series.setdefault(name, []).append({
                "t": t - t0, "users": _num(row, "User Count") or 0.0, "rps": _num(row, "Requests/s") or 0.0,
                "p50": _num(row, "50%"), "p99": _num(row, "99%"),
                "count": _num(row, "Total Request Count") or 0.0,
            })
    return series


# --------------------------------------------------------------------------- HTML with inline SVG
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def svg_chart(title: str, unit: str, lines: Mapping[str, Sequence[tuple[float, float | None]]], width: int = 640,
              height: int = 240) -> str:
    """A small line chart: ``lines`` maps a label to (x seconds, y) points (a None y is a gap)."""
    pts = [(x, y) for line in lines.values() for x, y in line if y is not None]
    pad_l, pad_b, pad_t, pad_r = 60, 34, 28, 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="{html.escape(title)}">',
           f'<text x="{pad_l}" y="16" font-size="13" font-family="sans-serif">{html.escape(title)}</text>']
    if not pts:
        out.append(f'<text x="{pad_l}" y="{height // 2}" font-size="12">no data</text></svg>')
        return "".join(out)
    x_max = max(p[0] for p in pts) or 1.0
    y_max = max(p[1] for p in pts) or 1.0
    y_max *= 1.1
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def sx(x: float) -> float:
        return pad_l + w * x / x_max

    def sy(y: float) -> float:
        return pad_t + h - h * y / y_max

    out.append(f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#888"/>')
    out.append(f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#888"/>')
    for i in range(5):
        y = y_max * i / 4
        out.append(f'<text x="{pad_l - 4}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end" '
                   f'font-family="sans-serif">{y:.0f}</text>')
    for i in range(5):
        x = x_max * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(f'<line x1="{sx(x):.1f}" y1="{pad_t + h}" x2="{sx(x):.1f}" y2="{pad_t + h + 4}" stroke="#888"/>')
        out.append(f'<text x="{sx(x):.1f}" y="{pad_t + h + 15}" font-size="10" text-anchor="{anchor}" '
                   f'font-family="sans-serif">{x:.0f}</text>')
    out.append(f'<text x="{pad_l + w / 2:.1f}" y="{height - 2}" font-size="10" text-anchor="middle" '
               f'font-family="sans-serif">seconds since the start of the run</text>')
    out.append(f'<text x="4" y="{pad_t - 6}" font-size="10" font-family="sans-serif">{html.escape(unit)}</text>')
    for i, (label, line) in enumerate(lines.items()):
        color = _COLORS[i % len(_COLORS)]
        good = [(x, y) for x, y in line if y is not None]
        if good:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        out.append(f'<text x="{pad_l + 8 + 150 * (i % 4)}" y="{pad_t + 12 + 13 * (i // 4)}" font-size="11" fill="{color}" '
                   f'font-family="sans-serif">{html.escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def write_html(path: Path, title: str, summary: dict[str, Any], charts: list[str], links: dict[str, str]) -> None:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}pre{background:#f4f4f4;padding:1em;"
        "overflow:auto}svg{display:block;margin:1em 0;border:1px solid #ddd}table{border-collapse:collapse}"
        "td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if links:
        parts.append("<p>" + " · ".join(f"<a href='{html.escape(h)}'>{html.escape(t)}</a>" for t, h in links.items())
                     + "</p>")
    parts += charts
    parts += _checks_table(summary.get("checks", {}))
    parts += _requests_table(summary.get("requests", {}))
    parts.append("<details><summary>The whole summary (summary.json)</summary><pre>"
                 + html.escape(json.dumps(summary, indent=2)) + "</pre></details></body></html>")
    path.write_text("".join(parts))


def _checks_table(checks: dict[str, Any]) -> list[str]:
    if not checks:
        return []
    rows = []
    for name, check in checks.items():
        details = ", ".join(f"{k}={json.dumps(v)}" for k, v in check.items() if k != "ok")
        verdict = "<b style='color:#2ca02c'>ok</b>" if check.get("ok") else "<b style='color:#d62728'>FAIL</b>"
        rows.append(f"<tr><td>{verdict}</td><td>{html.escape(name)}</td><td>{html.escape(details[:300])}</td></tr>")
    return ["<h2>Checks</h2><table><tr><th></th><th>check</th><th>figures</th></tr>", *rows, "</table>"]


def _requests_table(requests: dict[str, Any]) -> list[str]:
    if not requests:
        return []
    rows = [f"<tr><td>{html.escape(name)}</td><td>{r['requests']}</td><td>{r['failures']}</td>"
            f"<td>{r['per_second']}</td><td>{r.get('p50_ms', '-')}</td><td>{r.get('p99_ms', '-')}</td></tr>"
            for name, r in sorted(requests.items())]
    return ["<h2>Requests</h2><table><tr><th>request</th><th>count</th><th>failed</th><th>per s</th>"
            "<th>p50 ms</th><th>p99 ms</th></tr>", *rows, "</table>"]
