"""Your own locustfile on the testbed's fleet and simulated devices (``--locustfile PATH``).

The run is prepared as for any scenario (a service, a tenant, claimed devices,
the run configuration the device users read), then Locust runs the given
locustfile; its user classes subclass ``testbed.load.users.DeviceUser`` /
``MixDevice`` (or the deadline and fleet users). Parameters: the device users'
ones, and any other ``--param KEY=VALUE`` (a JSON value, or text), which the
locustfile reads from ``CONTEXT.params``. Checks: Locust ran, no request failed.
"""

from __future__ import annotations

import json
from typing import Any

from testbed.load.params import device_params, resolve
from testbed.load.scenarios.base import Check, Figures, LoadScenario, ScenarioRun, register


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


@register
class Custom(LoadScenario):
    name = "custom"
    locustfile = ""  # given with --locustfile
    summary = "your own locustfile (--locustfile PATH) with the testbed's fleet, device users and checks of failures"
    users = 10
    duration = 20
    service_options = {"rate_limit": 0}
    params = device_params(crash_interval=1.0, intent=True)
    accepts_other_params = True

    def resolve_params(self, given: dict[str, Any], users: int, duration: float, processes: int) -> dict[str, Any]:
        known = {p.name for p in self.params}
        values = resolve(self.name, self.params, {k: v for k, v in given.items() if k in known})
        values.update({k: _json_or_text(v) for k, v in given.items() if k not in known})
        values.update(users=users, duration=duration)
        return values

    def check(self, run: ScenarioRun, figures: Figures, summary: dict[str, Any]) -> dict[str, Check]:
        failed = {e["name"]: e["num_failures"] for e in figures.stats if e["num_failures"]}
        return {"no_failed_requests": {"ok": not failed, "failed": failed}}
