"""The fleet scenario's user: one Locust user drives a slice of a large fleet on a compressed schedule."""

from __future__ import annotations

import heapq
import random
import time

import gevent
from locust import FastHttpUser, constant, task

from testbed.contract import device_api as api
from testbed.load import counters as C
from testbed.load import device_calls as calls
from testbed.load.runtime import CONTEXT


class FleetUser(FastHttpUser):
    """Drives a slice of a large fleet: every device syncs once per ``sync_period`` seconds.

    Devices of the slice are spread evenly over the period (each at its own
    phase), so the whole fleet makes ``devices / sync_period`` syncs a second.
    Records ``fleet sync`` requests and, as samples, how late each sync started
    against its schedule (``lateness_s``): a service that keeps up keeps that small.
    """

    abstract = True
    wait_time = constant(0)
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        params = CONTEXT.params
        self.period = float(params.get("sync_period", 60.0))
        users = max(1, int(params.get("fleet_users_per_process", 1)))
        mine = CONTEXT.devices()
        slot = CONTEXT.next_slot()
        self.slice = mine[slot % users :: users]
        now = time.monotonic()
        n = max(1, len(self.slice))
        offset = random.random() * self.period / n
        # (due time, index into slice)
        self.schedule = [(now + offset + i * self.period / n, i) for i in range(len(self.slice))]
        heapq.heapify(self.schedule)
        self.synced: set[int] = set()

    @task
    def next_sync(self) -> None:
        if not self.schedule:
            gevent.sleep(1.0)
            return
        due, index = heapq.heappop(self.schedule)
        wait = due - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
        CONTEXT.counters.sample(C.LATENESS_S, max(0.0, time.monotonic() - due))
        device_id, secret = self.slice[index]
        with self.client.post(
            api.SYNC_PATH, json=calls.sync_body(spooled=None), headers=calls.auth_headers(device_id, secret),
            name=C.Request.FLEET_SYNC, catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                CONTEXT.counters.add(C.FLEET_SYNCS)
                if index not in self.synced:
                    self.synced.add(index)
                    CONTEXT.counters.add(C.FLEET_DEVICES_SYNCED)
            else:
                resp.failure(f"sync: HTTP {resp.status_code}")
                CONTEXT.counters.add(C.FLEET_SYNC_FAILED)
        heapq.heappush(self.schedule, (due + self.period, index))
