"""Scenario (a), upload sizes: devices and body sizes ramp up together in steps.

Step k of ``stages`` (one per size bucket of the core fixtures) runs
k/stages of the users and the k smallest buckets, each bucket equally
often; statistics are per bucket (``upload <bucket>``).
Run it with ``testbed load run sizes``.
"""

import random
import secrets
import time

from testbed.contract.device_api import SIGNATURE_HEX
from testbed.load.cores import bucket_of, load_cores
from testbed.load.runtime import CONTEXT
from testbed.load.schedule import stage_at
from testbed.load.shapes import StepRamp
from testbed.load.users import DeviceUser


def fixtures_by_bucket():
    """The fixtures grouped by size bucket, smallest bucket first."""
    groups = {}
    for core in load_cores():  # sorted by size
        groups.setdefault(bucket_of(core.size), []).append(core)
    return list(groups.values())


class SizesDevice(DeviceUser):
    def next_crash(self):
        params = CONTEXT.params
        buckets = fixtures_by_bucket()
        stages = int(params["stages"])
        elapsed = time.monotonic() - (CONTEXT.test_started or time.monotonic())
        stage = stage_at(elapsed, float(params["duration"]) / stages, stages)
        # stage k (0-based) runs the k+1 smallest buckets, each equally often, whatever their fixture counts
        allowed = buckets[: max(1, round(len(buckets) * (stage + 1) / stages))]
        return random.choice(random.choice(allowed)), secrets.token_hex(SIGNATURE_HEX // 2)


class SizesRamp(StepRamp):
    pass
