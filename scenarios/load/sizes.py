"""Scenario (a), upload sizes: devices and body sizes ramp up together in steps.

Step k of ``stages`` runs k/stages of the users and the k smallest size
buckets of the core fixtures; statistics are per bucket (``upload <bucket>``).
Run it with ``testbed load run sizes``.
"""

import random
import secrets
import time

from testbed.load.cores import load_cores
from testbed.load.runtime import CONTEXT
from testbed.load.schedule import stage_at
from testbed.load.shapes import StepRamp
from testbed.load.users import DeviceUser


class SizesDevice(DeviceUser):
    def next_crash(self):
        params = CONTEXT.params
        cores = load_cores()
        stages = int(params["stages"])
        elapsed = time.monotonic() - (CONTEXT.test_started or time.monotonic())
        stage = stage_at(elapsed, float(params["duration"]) / stages, stages)
        # stage k (0-based) allows the k+1 smallest fixtures (the schedule has one stage per fixture)
        allowed = cores[: max(1, round(len(cores) * (stage + 1) / stages))]
        return random.choice(allowed), secrets.token_hex(16)


class SizesRamp(StepRamp):
    pass
