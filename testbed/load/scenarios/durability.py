"""Durability: uploads while the service is SIGKILLed and restarted; no acknowledged upload is lost."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from testbed.deadline import Deadline
from testbed.load import counters as C
from testbed.load.cores import check_core_gzip, load_cores
from testbed.load.evidence import Evidence
from testbed.load.params import Param, device_params
from testbed.load.runner import LocustPlan, LocustResult, run_locust
from testbed.load.scenarios.base import Check, Figures, LoadScenario, ScenarioRun, register


def read_acked(out: Path) -> dict[str, dict[str, Any]]:
    """Every upload a device saw acknowledged (201), by dump id, from the processes' journals."""
    acked: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob(C.ACKED_JOURNAL_GLOB)):
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                acked[entry["id"]] = entry
    return acked


@register
class Durability(LoadScenario):
    name = "durability"
    locustfile = "mix.py"
    summary = "uploads under SIGKILLs of the service: every acknowledged upload survives, nothing half-written shows"
    users = 20
    duration = 20
    service_options = {"rate_limit": 0}
    needs_own_service = True
    params = (
        *device_params(crash_interval=0.05, intent=False),
        Param("kills", int, 3, "SIGKILLs of the service, evenly spread over the run", minimum=1, maximum=100),
    )

    def derive(self, params: dict[str, Any], given: dict[str, Any], processes: int) -> dict[str, Any]:
        params["journal"] = True  # the devices record every 201 for the check
        return params

    def execute(self, run: ScenarioRun, plan: LocustPlan) -> LocustResult:
        """Run Locust in a thread while SIGKILLing the service ``kills`` times and restarting it."""
        proc = run.service.process
        kills, duration = int(run.params["kills"]), float(run.params["duration"])
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.update(result=run_locust(plan)), name="locust")
        thread.start()
        history: list[dict[str, Any]] = []
        run.state["kills"] = history
        try:
            interval = duration / (kills + 1)
            t0 = time.monotonic()
            for k in range(kills):
                until = Deadline(interval * (k + 1), start=t0)
                while not until.expired and thread.is_alive():
                    until.sleep(0.05)
                if not thread.is_alive():
                    break
                port = proc.port
                killed_at = time.monotonic() - t0
                proc.kill()
                proc.requested_port = port  # come back where the devices dial
                started = time.monotonic()
                proc.start()
                run.service.pid = proc.pid
                run.service.control_token = proc.control_token or ""  # a restarted service has a new one
                history.append({"at_s": round(killed_at, 2), "restart_s": round(time.monotonic() - started, 2)})
                run.say(f"durability: SIGKILL {k + 1}/{kills} at {killed_at:.1f} s; back in {history[-1]['restart_s']} s")
        finally:
            thread.join()
        return box["result"]

    def check(self, run: ScenarioRun, figures: Figures, summary: dict[str, Any]) -> dict[str, Check]:
        kills = int(run.params["kills"])
        summary["kills"] = run.state.get("kills", [])
        acked = read_acked(figures.result.out_dir)
        bodies = {c.name: hashlib.sha256(c.body).hexdigest() for c in load_cores()}
        missing, differ, broken = [], [], []
        with Evidence(run.service.url, run.service.control_token, run.fleet.tenant_id) as evidence:
            listed = evidence.dumps()
            listed_ids = {d["id"] for d in listed}
            for dump_id, entry in acked.items():
                # each acknowledged dump's stored bytes, against the body that was sent
                data = evidence.blob(dump_id)
                if data is None:
                    missing.append(dump_id)
                elif hashlib.sha256(data).hexdigest() != bodies.get(entry["fixture"]):
                    differ.append(dump_id)
            # Everything visible must be whole: acknowledged or not (in flight at a kill), a complete core.
            for d in listed:
                if d["id"] in acked:
                    continue
                try:
                    data = evidence.blob(d["id"])
                    if data is None:
                        raise ValueError("listed but its bytes are unknown")
                    check_core_gzip(data, name=d["id"])
                except ValueError as exc:
                    broken.append(str(exc))
                except Exception as exc:  # unreadable is as bad as broken
                    broken.append(f"{d['id']}: {exc}")
        summary["durability"] = {
            "acknowledged": len(acked), "listed": len(listed), "missing": len(missing),
            "content_differs": len(differ), "unacknowledged_but_stored": len(listed_ids - set(acked)),
            "half_written_visible": len(broken),
        }
        return {
            "kills_done": {"ok": len(summary["kills"]) >= kills, "kills": len(summary["kills"]), "asked": kills},
            "uploads_acknowledged": {"ok": len(acked) > 0, "acknowledged": len(acked)},
            "zero_acknowledged_lost": {"ok": not missing and not differ, "missing": missing[:20], "differs": differ[:20]},
            "nothing_half_written": {"ok": not broken, "broken": broken[:20]},
        }
