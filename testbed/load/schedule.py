"""Step schedules shared by load shapes (master) and users (workers); no Locust import."""

from __future__ import annotations


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
