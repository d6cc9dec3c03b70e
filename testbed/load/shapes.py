"""Custom Locust load shapes: ramps of users in steps, ending on time (runs are bounded)."""

from __future__ import annotations

from locust import LoadTestShape

from testbed.load.runtime import CONTEXT


def step_users(total_users: int, steps: int, step: int) -> int:
    """Users in ``step`` (0-based) of a ramp that reaches ``total_users`` at the last of ``steps``."""
    if steps < 1 or total_users < 1:
        raise ValueError("steps and total_users must be >= 1")
    step = min(max(step, 0), steps - 1)
    return max(1, round(total_users * (step + 1) / steps))


def stage_at(elapsed: float, stage_seconds: float, stages: int) -> int:
    """The 0-based stage of a schedule of ``stages`` equal stages at ``elapsed`` seconds (clamped)."""
    if stage_seconds <= 0:
        return stages - 1
    return min(stages - 1, max(0, int(elapsed // stage_seconds)))


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
