"""(d) A fleet on a compressed schedule: 10,000 devices syncing once per compressed day."""

from __future__ import annotations

import math
from typing import Any

from testbed.load import counters as C
from testbed.load import report
from testbed.load.params import Param
from testbed.load.scenarios.base import (
    Check,
    Figures,
    LoadScenario,
    ScenarioError,
    ScenarioRun,
    register,
    rounded,
)


@register
class FleetScenario(LoadScenario):
    name = "fleet"
    locustfile = "fleet.py"
    summary = "(d) 10,000 devices syncing once per compressed day (sync_period seconds)"
    users = 40
    duration = 90
    params = (Param("sync_period", float, 60.0, "seconds in which every device syncs once (a compressed day)",
                    minimum=0.1),)

    def devices(self, users: int) -> int:
        return 10_000

    def users_for(self, users: int, processes: int) -> int:
        if processes > 1:  # the same users on every worker
            return processes * math.ceil(max(users, processes) / processes)
        return users

    def derive(self, params: dict[str, Any], given: dict[str, Any], processes: int) -> dict[str, Any]:
        if float(params["duration"]) < float(params["sync_period"]):
            raise ScenarioError(f"the fleet scenario needs --duration >= sync_period ({params['sync_period']} s) "
                                "so that every device syncs at least once")
        params["fleet_users_per_process"] = int(params["users"]) // processes
        return params

    def check(self, run: ScenarioRun, figures: Figures, summary: dict[str, Any]) -> dict[str, Check]:
        sums, samples, params = figures.sums, figures.samples, run.params
        devices = len(run.fleet.devices)
        period = float(params["sync_period"])
        duration = float(params["duration"])
        syncs = int(sums.get(C.FLEET_SYNCS, 0))
        failed = int(sums.get(C.FLEET_SYNC_FAILED, 0))
        lateness = samples.get(C.LATENESS_S, [])
        target = devices / period
        # Every device has synced floor(duration / period) times by the end (its first sync is within one period).
        expected = devices * max(1, math.floor(duration / period))
        entry = next((e for e in figures.stats if e["name"] == C.Request.FLEET_SYNC), None)
        summary["fleet"] = {
            "devices": devices, "sync_period_s": period, "target_syncs_per_s": round(target, 1),
            "syncs": syncs, "failed": failed,
            "achieved_syncs_per_s": round(syncs / duration, 1),
            "lateness_s": {"p50": rounded(report.exact_percentile(lateness, 0.5)),
                           "p99": rounded(report.exact_percentile(lateness, 0.99)),
                           "max": rounded(max(lateness)) if lateness else None},
            "sync_latency": report.entry_summary(entry) if entry else None,
        }
        p99_late = report.exact_percentile(lateness, 0.99) or 0.0
        rate = float(summary["fleet"]["sync_latency"]["per_second"]) if entry else 0.0
        synced = int(sums.get(C.FLEET_DEVICES_SYNCED, 0))
        summary["fleet"]["devices_synced"] = synced
        summary["fleet"]["syncs_expected_about"] = expected
        return {
            "every_device_synced": {"ok": synced == devices, "synced": synced, "devices": devices},
            # the rate between the first and the last sync (start-up of distributed workers not counted)
            "rate_kept": {"ok": rate >= 0.9 * target, "syncs_per_s": round(rate, 1), "target_per_s": round(target, 1)},
            "no_failed_syncs": {"ok": failed == 0, "failed": failed},
            "schedule_kept": {"ok": p99_late <= 1.0, "lateness_p99_s": rounded(p99_late)},
        }
