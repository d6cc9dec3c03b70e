"""The final figures of a load run as a text table (``testbed load run`` prints it on stdout)."""

from __future__ import annotations

import json
from typing import Any

from testbed.load import counters as C

#: skips a device can make, as (counter, label)
SKIPS = ((C.SKIPPED_INTENT, "skipped at intent"), (C.SKIPPED_LOCAL, "skipped on the device"),
         (C.SKIPPED_OPTOUT, "skipped, not opted in"))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def stats_table(summary: dict[str, Any]) -> str:
    """Requests per kind (count, failures, rate, p50, p99), then stored dumps and skip shares, then the checks."""
    rows = [("request", "count", "failed", "per s", "p50 ms", "p99 ms")]
    for name, r in sorted(summary.get("requests", {}).items()):
        rows.append((name, str(r["requests"]), str(r["failures"]), f"{r['per_second']:g}",
                     _ms(r.get("p50_ms")), _ms(r.get("p99_ms"))))
    total = summary.get("requests_total")
    if total and len(rows) > 2:  # more than one kind: all of them together, as Locust's "Aggregated"
        rows.append(("all requests", str(total["requests"]), str(total["failures"]), f"{total['per_second']:g}",
                     _ms(total.get("p50_ms")), _ms(total.get("p99_ms"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if total and len(rows) > 3:
        lines.insert(len(lines) - 1, "  ".join("-" * w for w in widths))
    counters = summary.get("counters", {})
    crashes = counters.get(C.CRASHES, 0)
    if C.STORED in counters or crashes:
        lines.append("")
        lines.append(f"stored (201s seen by devices): {int(counters.get(C.STORED, 0))}")
    if crashes:
        lines.append(f"crashes: {int(crashes)}")
        for key, label in SKIPS:
            if counters.get(key):
                lines.append(f"{label}: {int(counters[key])} ({counters[key] / crashes:.1%} of crashes)")
    checks = summary.get("checks", {})
    if checks:
        lines.append("")
        for name, check in checks.items():
            if "not_run" in check:
                lines.append(f"--   {name}: not run ({check['not_run']})")
                continue
            lines.append(f"{'ok  ' if check.get('ok') else 'FAIL'} {name}"
                         + ("" if check.get("ok") else f": {figures(check)}"))
    return "\n".join(lines)


def figures(check: dict[str, Any], limit: int = 300) -> str:
    """A check's figures on one line (``limit 5, signatures 6, wrong [...]``), cut at ``limit`` characters."""
    text = ", ".join(f"{k} {json.dumps(v)}" for k, v in check.items() if k != "ok") or "no figures"
    return text if len(text) <= limit else text[: limit - 3] + "..."
