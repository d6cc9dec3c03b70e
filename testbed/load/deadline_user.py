"""The deadline scenario's device: one total deadline per crash over intent and upload.

A device under a slow, hung or dripping service talks like the firmware
(``testbed.load.boardhttp``: one request per connection) and must have its
answer, or have closed its connection, within ``deadline`` seconds of the crash.
"""

from __future__ import annotations

import json
import random
import secrets
import time

import gevent
from locust import User, constant, task

from testbed.contract import device_api as api
from testbed.deadline import Deadline
from testbed.load import counters as C
from testbed.load import device_calls as calls
from testbed.load.boardhttp import BoardHttp, BoardHttpError, DeadlineExceeded
from testbed.load.cores import load_cores
from testbed.load.runtime import CONTEXT

JSON_HEADERS = {api.CONTENT_TYPE: "application/json"}


# Read and check the core fixtures now, when Locust imports the locustfile: not in the first
# crash of the timed run (on a busy machine a short run can end before that is done).
load_cores()


class DeadlineDevice(User):
    """A device under a slow, hung or dripping service: one deadline per crash.

    Each crash: intent, then upload, all within ``deadline`` seconds (default
    5) of the crash. The time from the crash to the moment the device has its
    answer or has closed its connection is recorded as ``crash <phase> ok``
    or ``crash <phase> gave-up`` and as an exact sample (``handled_s``,
    ``gave_up_s``) for the summary. Phases come from ``params.phases``.
    """

    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.device_id, self.secret = CONTEXT.next_device()
        self.auth = api.device_authorization(self.device_id, self.secret)
        params = CONTEXT.params
        self.deadline_s = float(params.get("deadline", api.UPLOAD_DEADLINE_MS / 1000))
        self.crash_interval = float(params.get("crash_interval", 0.2))
        assert self.host is not None  # the run always gives Locust the service's URL
        self.http = BoardHttp(self.host)
        self.fixtures = load_cores()
        self.started = CONTEXT.test_started or time.monotonic()
        # Opt-in is known from a sync before the faults start (phase 0 has none).
        try:
            self.http.request("POST", api.SYNC_PATH, {api.AUTHORIZATION: self.auth, **JSON_HEADERS},
                              b"{}", Deadline(self.deadline_s))
        except (DeadlineExceeded, BoardHttpError):
            CONTEXT.counters.add(C.SYNC_FAILED)

    def _phase(self) -> str:
        phases = CONTEXT.params.get("phases") or [{"name": "run", "seconds": 1e9}]
        elapsed = time.monotonic() - self.started
        for phase in phases:
            elapsed -= float(phase["seconds"])
            if elapsed < 0:
                return str(phase["name"])
        return "after"

    def _fire(self, name: str, start_wall: float, elapsed: float, length: int, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="CRASH", name=name, response_time=elapsed * 1000.0,
            response_length=length, exception=exc, context={}, start_time=start_wall,
        )

    def _exchange(self, signature: str, deadline: Deadline) -> tuple[Exception | None, int]:
        """Intent, then the upload if asked for; (the failure or None, bytes sent)."""
        fixture = random.choice(self.fixtures)
        status, _h, body = self.http.request(
            "POST", api.INTENT_PATH, {api.AUTHORIZATION: self.auth, **JSON_HEADERS},
            json.dumps(calls.intent_body(signature, fixture.size)).encode(), deadline)
        if status != 200:
            return BoardHttpError(f"intent: HTTP {status}"), 0
        if not calls.intent_says_upload(calls.json_or_none(body)):
            return None, 0
        status, _h, body = self.http.request(
            "POST", api.UPLOAD_PATH, calls.upload_headers(self.auth, signature, int(time.time())),
            fixture.body, deadline)
        if status not in (200, 201):
            return BoardHttpError(f"upload: HTTP {status}"), fixture.size
        return None, fixture.size

    @task
    def crash_task(self) -> None:
        signature = secrets.token_hex(api.SIGNATURE_HEX // 2)
        phase = self._phase()
        start_wall = time.time()
        deadline = Deadline(self.deadline_s)
        outcome: Exception | None
        try:
            outcome, sent = self._exchange(signature, deadline)
        except (DeadlineExceeded, BoardHttpError) as exc:
            outcome, sent = exc, 0
        elapsed = deadline.elapsed
        counters = CONTEXT.counters
        if elapsed > self.deadline_s + C.LATE_SLACK_S:
            counters.sample(C.LATE, [round(time.time(), 3), round(elapsed, 4)])
        counters.sample(C.HANDLED_S, elapsed)
        counters.sample(C.keyed(C.HANDLED_S, phase), elapsed)
        if isinstance(outcome, DeadlineExceeded):
            counters.add(C.GAVE_UP)
            counters.add(C.keyed(C.GAVE_UP, phase))
            counters.sample(C.GAVE_UP_S, elapsed)
            self._fire(C.crash_request(phase, C.CrashOutcome.GAVE_UP), start_wall, elapsed, sent, outcome)
        else:
            name = C.ANSWERED if outcome is None else C.ERRORS
            counters.add(name)
            counters.add(C.keyed(name, phase))
            result = C.CrashOutcome.OK if outcome is None else C.CrashOutcome.ERROR
            self._fire(C.crash_request(phase, result), start_wall, elapsed, sent, outcome)
        if self.crash_interval > 0:
            gevent.sleep(random.expovariate(1.0 / self.crash_interval))
