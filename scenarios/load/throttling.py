"""Scenario (b), throttling: many devices crash with the same few bugs at once.

Every ``rotate_seconds`` a new set of ``signatures`` crash signatures starts
(a new round), so the race for the last of the N throttle slots is run
again and again with all devices piling in at once. Devices re-sync every
``sync_every`` crashes and skip locally what the service lists as throttled;
otherwise they ask intent and upload. Run it with ``testbed load run throttling``.
"""

import hashlib
import random
import time

from testbed.contract.device_api import SIGNATURE_HEX
from testbed.load import counters as C
from testbed.load.cores import load_cores
from testbed.load.runtime import CONTEXT
from testbed.load.users import DeviceUser, Outcome


def round_signatures(run_id: str, round_no: int, count: int) -> list[str]:
    return [hashlib.sha256(f"throttle|{run_id}|{round_no}|{k}".encode()).hexdigest()[:SIGNATURE_HEX] for k in range(count)]


class ThrottleDevice(DeviceUser):
    def next_crash(self):
        params = CONTEXT.params
        elapsed = time.monotonic() - (CONTEXT.test_started or time.monotonic())
        round_no = int(elapsed // float(params["rotate_seconds"]))
        round_no = min(round_no, int(params["rounds"]) - 1)
        signatures = round_signatures(params["run_id"], round_no, int(params["signatures"]))
        k = random.randrange(len(signatures))
        cores = load_cores()
        # one bug, one crash site: the body size is fixed per signature
        return cores[k % len(cores)], signatures[k]

    def upload(self, fixture, signature):
        CONTEXT.counters.add(C.keyed(C.UPLOAD_SENT, signature))
        outcome = super().upload(fixture, signature)
        if outcome == Outcome.STORED:
            CONTEXT.counters.add(C.keyed(C.STORED, signature))
        return outcome
