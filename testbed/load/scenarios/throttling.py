"""(b) Throttling: many devices, few crash signatures; exactly N stored per signature on the service."""

from __future__ import annotations

import math
import secrets
from typing import Any

from testbed.load import counters as C
from testbed.load.evidence import Evidence
from testbed.load.params import Param, device_params
from testbed.load.scenarios.base import Check, Figures, LoadScenario, ScenarioRun, register


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


@register
class Throttling(LoadScenario):
    name = "throttling"
    locustfile = "throttling.py"
    summary = "(b) many devices, few crash signatures: skipped at intent, bytes saved, exactly N stored per signature"
    users = 100
    duration = 20
    service_options = {"rate_limit": 0}
    params = (
        *device_params(crash_interval=0.2, intent=True, sync_every=3),
        Param("signatures", int, 3, "crash signatures of each round (all devices pile in on them)", minimum=1),
        Param("rotate_seconds", float, 5.0, "seconds of one round; each round brings new signatures", minimum=0.5),
        Param("run_id", str, None, "seeds the rounds' signatures (default: a fresh one per run)"),
    )

    def derive(self, params: dict[str, Any], given: dict[str, Any], processes: int) -> dict[str, Any]:
        params.setdefault("run_id", secrets.token_hex(6))
        params["rounds"] = max(1, math.ceil(float(params["duration"]) / float(params["rotate_seconds"])))
        return params

    def check(self, run: ScenarioRun, figures: Figures, summary: dict[str, Any]) -> dict[str, Check]:
        sums = figures.sums
        limit = run.service.throttle_limit
        crashes = sums.get(C.CRASHES, 0)
        failed = int(sums.get(C.UPLOAD_FAILED, 0))
        section: dict[str, Any] = {
            "throttle_limit": limit,
            "crashes": int(crashes),
            "share_skipped_at_intent": _share(sums.get(C.SKIPPED_INTENT, 0), crashes),
            "share_skipped_on_device": _share(sums.get(C.SKIPPED_LOCAL, 0), crashes),
            "share_uploaded": _share(sums.get(C.STORED, 0) + sums.get(C.THROTTLED_AT_UPLOAD, 0), crashes),
            "throttled_at_upload": int(sums.get(C.THROTTLED_AT_UPLOAD, 0)),
            "bytes_saved": int(sums.get(C.BYTES_SAVED, 0)),
            "bytes_sent_then_throttled": int(sums.get(C.BYTES_SENT_THROTTLED, 0)),
            "bytes_stored": int(sums.get(C.STORED_BYTES, 0)),
        }
        summary["throttling"] = section
        sent = C.per_key(sums, C.UPLOAD_SENT)
        acked = C.per_key(sums, C.STORED)
        with Evidence(run.service.url, run.service.control_token, run.fleet.tenant_id) as evidence:
            stored_by_sig = evidence.stored_per_signature()
        wrong: list[dict[str, Any]] = []
        exact = 0
        for sig, n_sent in sorted(sent.items()):
            stored = stored_by_sig.get(sig, 0)
            # N+1 must never get through; with at least N bodies sent, exactly N are stored;
            # every 201 a client saw is a stored dump. The client-side counts are lower
            # bounds: a request in flight when the run stops can be stored after its user
            # is gone, and a worker's last counters can miss the master's final report, so
            # a stored dump without a counted 201 is not an error (the reverse is).
            expect_exact = n_sent >= limit and failed == 0
            if stored > limit or (expect_exact and stored != limit) or acked.get(sig, 0) > stored:
                wrong.append({"signature": sig, "stored": stored, "acknowledged": acked.get(sig, 0),
                              "bodies_sent": n_sent})
            elif stored == limit:
                exact += 1
        section["signatures"] = len(sent)
        section["signatures_at_exactly_n"] = exact
        return {
            "exactly_n_per_signature": {"ok": not wrong and exact > 0, "limit": limit, "signatures": len(sent),
                                        "at_exactly_n": exact, "wrong": wrong[:20]},
            "no_failed_uploads": {"ok": failed == 0, "failed": failed},
        }
