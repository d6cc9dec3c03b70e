"""(a) Upload sizes: devices and body sizes ramp up together in steps; latency per size bucket."""

from __future__ import annotations

from typing import Any

from testbed.load import counters as C
from testbed.load import report
from testbed.load.cores import load_cores
from testbed.load.params import Param, device_params
from testbed.load.scenarios.base import Check, Figures, LoadScenario, ScenarioRun, register


@register
class Sizes(LoadScenario):
    name = "sizes"
    locustfile = "sizes.py"
    summary = "(a) devices and upload sizes ramp in steps; throughput and latency per size bucket"
    users = 40
    duration = 40
    service_options = {"rate_limit": 0}
    uses_shape = True
    params = (
        *device_params(crash_interval=0.5, intent=True),
        Param("stages", int, None, "steps of the ramp (default: one per size bucket of the core fixtures)", minimum=1),
        Param("spawn_rate", float, None, "users started a second at each step (default: all at once)", minimum=0.1),
    )

    def derive(self, params: dict[str, Any], given: dict[str, Any], processes: int) -> dict[str, Any]:
        params.setdefault("stages", len({c.bucket for c in load_cores()}))
        return params

    def check(self, run: ScenarioRun, figures: Figures, summary: dict[str, Any]) -> dict[str, Check]:
        uploads: dict[str, Any] = summary.get("uploads") or {}
        summary["per_bucket"] = {e["name"].removeprefix(C.UPLOAD_PREFIX): report.entry_summary(e)
                                 for e in figures.stats if e["name"].startswith(C.UPLOAD_PREFIX)}
        return {"no_failed_uploads": {"ok": bool(uploads) and uploads["failures"] == 0,
                                      "failures": uploads["failures"] if uploads else None}}
