"""Simulated devices as Locust users, speaking the device API of docs/device-api.md.

- ``DeviceUser`` (FastHttpUser): syncs, and on each crash asks intent and
  uploads a real gzip'd ARM core; the base of the sizes, throttling, bench
  and durability scenarios. ``MixDevice``: each crash a new bug.
- ``testbed.load.deadline_user.DeadlineDevice``: a device that talks like the
  firmware under one 5 s deadline per crash (the deadline scenario).
- ``testbed.load.fleet_user.FleetUser``: one Locust user drives a slice of a
  large fleet, each device syncing on its own compressed schedule.

Paths, headers and fields come from ``testbed.contract``; the counters and request
names from ``testbed.load.counters``. A locustfile of one's own can subclass these
(docs/load.md, "Your own locustfile").
"""

from __future__ import annotations

import json
import random
import secrets
import time
from enum import StrEnum

import gevent
from locust import FastHttpUser, constant, task

from testbed.contract import device_api as api
from testbed.contract.events import DumpSkipReason
from testbed.load import counters as C
from testbed.load import device_calls as calls
from testbed.load.cores import CoreFixture, load_cores
from testbed.load.runtime import CONTEXT

# Read and check the core fixtures now, when Locust imports the locustfile: not in the first
# crash of the timed run (on a busy machine a short run can end before that is done).
load_cores()


class Outcome(StrEnum):
    """What became of one crash's upload."""

    STORED = "stored"
    THROTTLED = api.SkipReason.THROTTLED.value
    RATELIMIT = DumpSkipReason.RATELIMIT.value
    ERROR = "error"


#: intent's answer when the device is to upload
UPLOAD = api.IntentAction.UPLOAD.value


class DeviceUser(FastHttpUser):
    """A simulated device: syncs at start, then crashes, asks intent, uploads.

    Subclasses choose the body and signature of each crash (``next_crash``).
    Params (config ``params``): ``crash_interval`` (mean seconds between a
    device's crashes, 0 = back to back), ``pace`` (crashes a second per
    device at a fixed rate, overrides crash_interval), ``intent`` (ask before uploading,
    default true), ``sync_every`` (re-sync after this many crashes, 0 = never).
    """

    abstract = True
    wait_time = constant(0)
    # Locust's defaults are 60 s; a device gives up far sooner.
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.device_id, self.secret = CONTEXT.next_device()
        self.auth = api.device_authorization(self.device_id, self.secret)
        params = CONTEXT.params
        self.crash_interval = float(params.get("crash_interval", 0))
        self.pace = float(params.get("pace", 0))
        self.ask_intent = bool(params.get("intent", True))
        self.sync_every = int(params.get("sync_every", 0))
        self.throttled: set[str] = set()
        self.opt_in = True
        self.crashes = 0
        self.journal = CONTEXT.acked_journal() if params.get("journal") else None
        self.sync()
        if self.pace > 0:
            # a random phase, so paced devices do not all fire in the same instant
            gevent.sleep(random.random() / self.pace)

    # protocol steps -------------------------------------------------------------
    def sync(self) -> None:
        with self.client.post(
            api.SYNC_PATH, json=calls.sync_body(), headers={api.AUTHORIZATION: self.auth},
            name=C.Request.SYNC, catch_response=True,
        ) as resp:
            body = calls.json_or_none(resp.content)
            if resp.status_code != 200 or not isinstance(body, dict):
                resp.failure(f"sync: HTTP {resp.status_code}")
                CONTEXT.counters.add(C.SYNC_FAILED)
                return
            self.opt_in = bool(body.get(api.SyncResponse.OPT_IN))
            self.throttled = set(body.get(api.SyncResponse.THROTTLED_SIGNATURES) or [])
            CONTEXT.counters.add(C.SYNC_OK)

    def intent(self, fixture: CoreFixture, signature: str) -> str:
        """'upload', or the reason to skip ('ratelimit', 'error', or the service's reason)."""
        with self.client.post(
            api.INTENT_PATH, json=calls.intent_body(signature, fixture.size),
            headers={api.AUTHORIZATION: self.auth}, name=C.Request.INTENT, catch_response=True,
        ) as resp:
            body = calls.json_or_none(resp.content)
            if resp.status_code == 429:
                resp.failure("intent: 429 rate limited")
                self._backoff(resp.headers.get(api.RETRY_AFTER_HEADER))
                return Outcome.RATELIMIT
            if resp.status_code != 200 or not isinstance(body, dict):
                resp.failure(f"intent: HTTP {resp.status_code}")
                return Outcome.ERROR
            if calls.intent_says_upload(body):
                return UPLOAD
            return calls.intent_skip_reason(body)

    def upload(self, fixture: CoreFixture, signature: str) -> Outcome:
        with self.client.post(
            # locust types `data` as str | dict, but geventhttpclient sends bytes as they are
            api.UPLOAD_PATH, data=fixture.body,  # type: ignore[arg-type]
            headers=calls.upload_headers(self.auth, signature, int(time.time())),
            name=C.upload_request(fixture.bucket), catch_response=True,
        ) as resp:
            body = calls.json_or_none(resp.content)
            status = resp.status_code
            dump_id = calls.stored_id(body) if status == 201 else None
            if dump_id:
                CONTEXT.counters.add(C.STORED)
                CONTEXT.counters.add(C.STORED_BYTES, fixture.size)
                if self.journal is not None:
                    self._journal(dump_id, fixture, signature)
                return Outcome.STORED
            if status == 200 and calls.upload_skipped(body):
                CONTEXT.counters.add(C.THROTTLED_AT_UPLOAD)
                CONTEXT.counters.add(C.BYTES_SENT_THROTTLED, fixture.size)
                self.throttled.add(signature)
                return Outcome.THROTTLED
            if status == 429:
                resp.failure("upload: 429 rate limited")
                CONTEXT.counters.add(C.RATELIMITED)
                self._backoff(resp.headers.get(api.RETRY_AFTER_HEADER))
                return Outcome.RATELIMIT
            resp.failure(f"upload: HTTP {status} {(resp.content or b'')[:200]!r}")
            CONTEXT.counters.add(C.UPLOAD_FAILED)
            return Outcome.ERROR

    def crash(self, fixture: CoreFixture, signature: str) -> str:
        """One crash as the firmware handles it; returns what happened."""
        self.crashes += 1
        CONTEXT.counters.add(C.CRASHES)
        if self.sync_every and self.crashes % self.sync_every == 0:
            self.sync()
        if not self.opt_in:
            CONTEXT.counters.add(C.SKIPPED_OPTOUT)
            return api.SkipReason.OPTOUT
        if signature in self.throttled:
            CONTEXT.counters.add(C.SKIPPED_LOCAL)
            CONTEXT.counters.add(C.BYTES_SAVED, fixture.size)
            return "skipped-local"
        if self.ask_intent:
            decision = self.intent(fixture, signature)
            if decision != UPLOAD:
                CONTEXT.counters.add(C.skipped_intent_reason(decision))
                if decision not in (Outcome.ERROR, Outcome.RATELIMIT):
                    CONTEXT.counters.add(C.SKIPPED_INTENT)
                    CONTEXT.counters.add(C.BYTES_SAVED, fixture.size)
                if decision == api.SkipReason.THROTTLED:
                    self.throttled.add(signature)
                return f"intent-{decision}"
        return self.upload(fixture, signature)

    # helpers --------------------------------------------------------------------
    def _backoff(self, retry_after: str | None) -> None:
        try:
            delay = min(float(retry_after or 1), 5.0)
        except ValueError:
            delay = 1.0
        gevent.sleep(delay)

    def _journal(self, dump_id: str, fixture: CoreFixture, signature: str) -> None:
        line = json.dumps({"id": dump_id, "fixture": fixture.name, "signature": signature, "device": self.device_id})
        # One small append per acknowledged upload; survives the service being killed.
        assert self.journal is not None  # called only when the run keeps a journal
        with open(self.journal, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def pause(self, task_started: float) -> None:
        if self.pace > 0:
            # paced (open-loop-like): this device starts a crash every 1/pace seconds
            gevent.sleep(max(0.0, 1.0 / self.pace - (time.monotonic() - task_started)))
        elif self.crash_interval > 0:
            gevent.sleep(random.expovariate(1.0 / self.crash_interval))

    def next_crash(self) -> tuple[CoreFixture, str]:
        raise NotImplementedError

    @task
    def crash_task(self) -> None:
        started = time.monotonic()
        fixture, signature = self.next_crash()
        self.crash(fixture, signature)
        self.pause(started)


class MixDevice(DeviceUser):
    """Each crash is a new bug (a fresh signature) with a body from the whole mix."""

    abstract = True

    def next_crash(self) -> tuple[CoreFixture, str]:
        return random.choice(load_cores()), secrets.token_hex(api.SIGNATURE_HEX // 2)
