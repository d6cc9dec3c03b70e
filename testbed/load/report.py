"""Summaries of a Locust run: per-request-name figures and time series (the page: testbed.load.page)."""

from __future__ import annotations

import csv
import math
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


def entry_summary(entry: dict[str, Any], span: float | None = None) -> dict[str, Any]:
    """One request name of Locust's JSON stats, as our summary fields.

    ``per_second`` is over ``span`` seconds when given (the whole run), else over the name's own
    first to last request.
    """
    n = int(entry["num_requests"])
    if span is None:
        span = float(entry["last_request_timestamp"] or 0) - float(entry["start_time"] or 0)
    span = max(span, 1e-9)
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
    """Every request name's figures; the rates over the whole run (requests made only at the start,
    such as one sync per device, would otherwise show thousands a second over their own few ms)."""
    starts = [float(e["start_time"]) for e in stats if e.get("start_time")]
    ends = [float(e["last_request_timestamp"]) for e in stats if e.get("last_request_timestamp")]
    span = max(ends) - min(starts) if starts and ends else None
    return {_request_name(e): entry_summary(e, span) for e in stats}


def _request_name(entry: dict[str, Any]) -> str:
    """The name, after its method unless POST (the device API's) or already said ("CRASH crash ...")."""
    method, name = entry.get("method"), entry["name"]
    if method in (None, "POST") or name.lower().startswith(str(method).lower() + " "):
        return name
    return f"{method} {name}"


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
