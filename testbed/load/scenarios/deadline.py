"""(c) The 5 s deadline: the service delayed, hung, dripping; every device gives up in time, the service recovers."""

from __future__ import annotations

import json
import math
import secrets
from typing import Any

import httpx

from testbed.contract import device_api as api
from testbed.load import counters as C
from testbed.load import device_calls as calls
from testbed.load import report
from testbed.load.cores import load_cores
from testbed.load.params import Param
from testbed.load.procfacts import RssSampler, rss_bytes, wait_connections_drained
from testbed.load.runner import LocustPlan, LocustResult, run_locust
from testbed.load.scenarios.base import (
    Check,
    Figures,
    LoadScenario,
    ScenarioError,
    ScenarioRun,
    register,
    rounded,
)

WARMUP_CRASHES = 60


def min_deadline_duration(deadline: float) -> float:
    return 3.0 + 4 * (deadline + 2.0)


def deadline_phases(duration: float, deadline: float) -> list[dict[str, Any]]:
    """Baseline (3 s), hang, delay past the deadline, drip (a third each of the rest), recovery.

    A delayed or dripping request keeps its fault after the phase ends, but
    clearing ``hang`` releases the held requests (503): so ``hang`` comes
    first, while devices are quick, and its crashes reach the deadline.
    Recovery lasts the deadline + 2 s: crashes begun under the last fault end
    within the deadline, and then devices must be answered again.
    """
    if duration < min_deadline_duration(deadline):
        raise ScenarioError(
            f"the deadline scenario needs --duration >= {min_deadline_duration(deadline):.0f} s "
            f"(3 s baseline, three fault phases and a recovery of at least the deadline + 2 s each)"
        )
    recovery = deadline + 2.0
    fault_s = (duration - 3.0 - recovery) / 3
    return [
        {"name": "baseline", "seconds": 3.0, "fault": None},
        {"name": "hang", "seconds": fault_s, "fault": {"mode": "hang"}},
        {"name": "delay", "seconds": fault_s, "fault": {"mode": "delay", "delayMs": int((deadline + 2) * 1000)}},
        {"name": "drip", "seconds": fault_s, "fault": {"mode": "drip", "delayMs": 400}},
        {"name": "recovery", "seconds": recovery, "fault": None},
    ]


def _histogram(values: list[float], width: float) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        lo = math.floor(v / width) * width
        key = f"{lo:.1f}-{lo + width:.1f}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: float(kv[0].split("-")[0])))


@register
class DeadlineScenario(LoadScenario):
    name = "deadline"
    locustfile = "deadline.py"
    summary = ("(c) the service delayed, hung, dripping: every device gives up at its 5 s deadline; "
               "memory and sockets recover")
    users = 30
    duration = 39
    service_options = {"rate_limit": 0}
    needs_pid = True
    params = (
        Param("deadline", float, api.UPLOAD_DEADLINE_MS / 1000, "seconds from a crash to the device giving up",
              minimum=0.5),
        Param("crash_interval", float, 0.2, "mean seconds between one device's crashes", minimum=0),
        Param("phases", list, None, "[{name, seconds, fault}] (default: baseline, hang, delay, drip, recovery)"),
    )

    def derive(self, params: dict[str, Any], given: dict[str, Any], processes: int) -> dict[str, Any]:
        if "phases" not in params:
            params["phases"] = deadline_phases(float(params["duration"]), float(params["deadline"]))
        for phase in params["phases"]:
            if not isinstance(phase, dict) or not isinstance(phase.get("name"), str) \
                    or not isinstance(phase.get("seconds"), int | float):
                raise ScenarioError(f"parameter phases: each phase is {{name, seconds, fault}}, got {phase!r}")
        return params

    def prepare(self, run: ScenarioRun) -> None:
        """Exercise the device API once per code path, then take the 'before' memory figure."""
        cores = load_cores()
        device_id, secret = run.fleet.devices[0]
        auth = calls.auth_headers(device_id, secret)
        with httpx.Client(base_url=run.service.url, timeout=10) as c:
            for i in range(WARMUP_CRASHES):
                fixture = cores[i % len(cores)]
                sig = secrets.token_hex(api.SIGNATURE_HEX // 2)
                c.post(api.SYNC_PATH, json={}, headers=auth)
                c.post(api.INTENT_PATH, json=calls.intent_body(sig, fixture.size), headers=auth)
                c.post(api.UPLOAD_PATH, content=fixture.body,
                       headers=calls.upload_headers(auth[api.AUTHORIZATION], sig))
        assert run.service.pid is not None
        run.state["rss_before"] = rss_bytes(run.service.pid)

    def execute(self, run: ScenarioRun, plan: LocustPlan) -> LocustResult:
        with RssSampler(run.service.pid) as sampler:
            result = run_locust(plan)
        run.state["rss_samples"] = sampler.samples
        return result

    def check(self, run: ScenarioRun, figures: Figures, summary: dict[str, Any]) -> dict[str, Check]:
        params, sums, samples = run.params, figures.sums, figures.samples
        limit = float(params["deadline"]) + C.LATE_SLACK_S
        handled = samples.get(C.HANDLED_S, [])
        gave_up = samples.get(C.GAVE_UP_S, [])
        per_phase: dict[str, dict[str, Any]] = {}
        for phase in [p["name"] for p in params["phases"]] + ["after"]:
            hs = samples.get(C.keyed(C.HANDLED_S, phase), [])
            if not hs:
                continue
            per_phase[phase] = {
                "crashes": len(hs), "gave_up": int(sums.get(C.keyed(C.GAVE_UP, phase), 0)),
                "answered": int(sums.get(C.keyed(C.ANSWERED, phase), 0)),
                "errors": int(sums.get(C.keyed(C.ERRORS, phase), 0)),
                "p50_s": rounded(report.exact_percentile(hs, 0.5)), "p99_s": rounded(report.exact_percentile(hs, 0.99)),
                "max_s": rounded(max(hs)),
            }
        pid, port = run.service.pid, int(run.service.url.rsplit(":", 1)[1])
        assert pid is not None
        left, waited = wait_connections_drained(pid, port, timeout=30.0)
        rss_after = rss_bytes(pid)
        rss_samples: list[tuple[float, int]] = run.state.get("rss_samples", [])
        # "before": the service warmed up under the same load, just before the first fault (end of the
        # baseline phase, from the phase marks the Locust master writes); else after the host-side warm-up.
        rss_before = run.state["rss_before"]
        before_source = "after warm-up uploads"
        phases_path = figures.result.out_dir / C.PHASES_FILE
        marks = [json.loads(line) for line in phases_path.read_text().splitlines()] if phases_path.exists() else []
        first_fault = next((m["at"] for m in marks if m["phase"] not in ("baseline",)), None)
        if first_fault is not None:
            prior = [rss for at, rss in rss_samples if at <= first_fault]
            if prior:
                rss_before, before_source = prior[-1], "end of the baseline phase (under load)"
        peak = max((rss for _, rss in rss_samples), default=rss_after)
        ratio = rss_after / rss_before if rss_before else None
        lags = samples.get(C.LOOP_LAG, [])
        late = samples.get(C.LATE, [])
        # A crash measured past the limit is the client's fault unless the load generator's own event
        # loop was stalled (CPU starvation of the Locust process) for at least the overshoot during it.
        unexplained = []
        for end, took in late:
            stall = max((lag for at, lag in lags if end - took <= at <= end + 0.1), default=0.0)
            if took - limit > stall:
                unexplained.append({"took_s": took, "stall_s": stall})
        summary["deadline"] = {
            "deadline_s": params["deadline"],
            "crashes": len(handled),
            "gave_up": len(gave_up),
            "time_to_give_up_s": {
                "p50": rounded(report.exact_percentile(gave_up, 0.5)),
                "p90": rounded(report.exact_percentile(gave_up, 0.9)),
                "p99": rounded(report.exact_percentile(gave_up, 0.99)),
                "min": rounded(min(gave_up)) if gave_up else None, "max": rounded(max(gave_up)) if gave_up else None,
                "histogram_0_1s": _histogram(gave_up, 0.1),
            },
            "max_crash_handling_s": rounded(max(handled)) if handled else None,
            "phases": per_phase,
            "service_rss_before": rss_before,
            "service_rss_before_taken": before_source,
            "service_rss_after_warmup": run.state["rss_before"],
            "service_rss_peak": peak,
            "service_rss_after": rss_after,
            "rss_ratio": round(ratio, 3) if ratio else None,
            "connections_left": left,
            "connections_drained_after_s": waited,
            "late_crashes": len(late),
            "late_explained_by_load_generator_stalls": len(late) - len(unexplained),
            "max_load_generator_stall_s": rounded(max((lag for _, lag in lags), default=0.0)),
        }
        faulted = [p for p in per_phase if p not in ("baseline", "recovery", "after")]
        recovered = per_phase.get("recovery", {}).get("answered", 0)
        return {
            "no_client_past_deadline": {"ok": bool(handled) and not unexplained, "limit_s": limit,
                                        "max_s": rounded(max(handled)) if handled else None,
                                        "past_limit": len(late), "past_limit_unexplained": unexplained[:20]},
            "clients_gave_up_under_faults": {"ok": all(per_phase[p]["gave_up"] > 0 for p in faulted) and bool(faulted),
                                             "phases": {p: per_phase[p]["gave_up"] for p in faulted}},
            "service_answers_after_faults": {"ok": recovered > 0, "answered_in_recovery": recovered},
            "memory_within_20_percent": {"ok": ratio is not None and 0.8 <= ratio <= 1.2, "ratio": rounded(ratio)},
            "no_leaked_connections": {"ok": left == 0, "left": left, "waited_s": waited},
        }
