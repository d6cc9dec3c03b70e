"""Custom Locust load shapes: ramps of users in steps, ending on time (runs are bounded)."""

from __future__ import annotations

from locust import LoadTestShape

from testbed.load.runtime import CONTEXT
from testbed.load.schedule import stage_at, step_users


class StepRamp(LoadTestShape):
    """``params.stages`` equal steps over ``params.duration`` seconds up to ``params.users`` users.

    Users and body sizes ramp together in the sizes scenario: step k runs
    k+1 of the size buckets (the users pick them by the same schedule).
    """

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        params = CONTEXT.params
        duration = float(params["duration"])
        stages = int(params["stages"])
        users = int(params["users"])
        run_time = self.get_run_time()
        if run_time >= duration:
            return None
        stage = stage_at(run_time, duration / stages, stages)
        target = step_users(users, stages, stage)
        return target, float(params.get("spawn_rate", max(target, 1)))
