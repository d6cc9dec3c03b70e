"""Simulated devices as Locust users, speaking the device API of docs/device-api.md.

- ``DeviceUser`` (FastHttpUser): syncs, and on each crash asks intent and
  uploads a real gzip'd ARM core; the base of the sizes, throttling, bench
  and durability scenarios.
- ``BoardHttp`` / ``DeadlineDevice``: a device that talks like the firmware
  (one request per connection, ``Connection: close``) under one 5 s deadline
  per crash that covers connect, send and response of intent and upload
  together (a total, not a per-read timeout). Used by the deadline scenario.
- ``FleetUser``: one Locust user drives a slice of a large fleet, each device
  syncing on its own compressed schedule.

Request names group statistics: ``sync``, ``intent``, ``upload <bucket>``,
``crash <phase> ok|gave-up``, ``fleet sync``.
"""

from __future__ import annotations

import heapq
import json
import random
import secrets
import time
from typing import Any

import gevent
from locust import FastHttpUser, User, constant, task

from testbed.load.boardhttp import BoardHttp, BoardHttpError, DeadlineExceeded
from testbed.load.cores import CoreFixture, load_cores
from testbed.load.runtime import CONTEXT

SYNC_PATH = "/device/v1/sync"
INTENT_PATH = "/device/v1/crashdumps/intent"
UPLOAD_PATH = "/device/v1/crashdumps"
FIRMWARE_VERSION = "load-0.1"


def device_auth(device_id: str, secret: str) -> str:
    return f"Device {device_id}:{secret}"


def upload_headers(auth: str, signature: str, crash_time: int | None = None) -> dict[str, str]:
    headers = {
        "Authorization": auth,
        "Content-Type": "application/gzip",
        "X-Crash-Signature": signature,
        "X-Component-Class": "App",
        "X-Component-Name": "crashapp",
    }
    if crash_time is not None:
        headers["X-Crash-Time"] = str(crash_time)
    return headers


def _json_or_none(content: bytes | None) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


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
        self.auth = device_auth(self.device_id, self.secret)
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
            SYNC_PATH,
            json={"firmwareVersion": FIRMWARE_VERSION, "deviceTime": int(time.time()), "spooled": 0},
            headers={"Authorization": self.auth},
            name="sync",
            catch_response=True,
        ) as resp:
            body = _json_or_none(resp.content)
            if resp.status_code != 200 or not isinstance(body, dict):
                resp.failure(f"sync: HTTP {resp.status_code}")
                CONTEXT.counters.add("sync_failed")
                return
            self.opt_in = bool(body.get("optIn"))
            self.throttled = set(body.get("throttledSignatures") or [])
            CONTEXT.counters.add("sync_ok")

    def intent(self, fixture: CoreFixture, signature: str) -> str:
        """'upload', or the reason to skip."""
        with self.client.post(
            INTENT_PATH,
            json={"signature": signature, "size": fixture.size, "componentClass": "App", "component": "crashapp"},
            headers={"Authorization": self.auth},
            name="intent",
            catch_response=True,
        ) as resp:
            body = _json_or_none(resp.content)
            if resp.status_code == 429:
                resp.failure("intent: 429 rate limited")
                self._backoff(resp.headers.get("Retry-After"))
                return "ratelimit"
            if resp.status_code != 200 or not isinstance(body, dict):
                resp.failure(f"intent: HTTP {resp.status_code}")
                return "error"
            if body.get("action") == "upload":
                return "upload"
            return str(body.get("reason") or "skip")

    def upload(self, fixture: CoreFixture, signature: str) -> str:
        """'stored', 'throttled', 'ratelimit' or 'error'."""
        name = f"upload {fixture.bucket}"
        with self.client.post(
            UPLOAD_PATH,
            data=fixture.body,
            headers=upload_headers(self.auth, signature, int(time.time())),
            name=name,
            catch_response=True,
        ) as resp:
            body = _json_or_none(resp.content)
            status = resp.status_code
            if status == 201 and isinstance(body, dict) and body.get("id"):
                CONTEXT.counters.add("stored")
                CONTEXT.counters.add("stored_bytes", fixture.size)
                if self.journal is not None:
                    self._journal(body["id"], fixture, signature)
                return "stored"
            if status == 200 and isinstance(body, dict) and body.get("skipped"):
                CONTEXT.counters.add("throttled_at_upload")
                CONTEXT.counters.add("bytes_sent_throttled", fixture.size)
                self.throttled.add(signature)
                return "throttled"
            if status == 429:
                resp.failure("upload: 429 rate limited")
                CONTEXT.counters.add("ratelimited")
                self._backoff(resp.headers.get("Retry-After"))
                return "ratelimit"
            resp.failure(f"upload: HTTP {status} {(resp.content or b'')[:200]!r}")
            CONTEXT.counters.add("upload_failed")
            return "error"

    def crash(self, fixture: CoreFixture, signature: str) -> str:
        """One crash as the firmware handles it; returns what happened."""
        self.crashes += 1
        CONTEXT.counters.add("crashes")
        if self.sync_every and self.crashes % self.sync_every == 0:
            self.sync()
        if not self.opt_in:
            CONTEXT.counters.add("skipped_optout")
            return "optout"
        if signature in self.throttled:
            CONTEXT.counters.add("skipped_local")
            CONTEXT.counters.add("bytes_saved", fixture.size)
            return "skipped-local"
        if self.ask_intent:
            decision = self.intent(fixture, signature)
            if decision != "upload":
                CONTEXT.counters.add(f"skipped_intent_{decision}")
                if decision not in ("error", "ratelimit"):
                    CONTEXT.counters.add("skipped_intent")
                    CONTEXT.counters.add("bytes_saved", fixture.size)
                if decision == "throttled":
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
        return random.choice(load_cores()), secrets.token_hex(16)


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
        self.auth = device_auth(self.device_id, self.secret)
        params = CONTEXT.params
        self.deadline_s = float(params.get("deadline", 5.0))
        self.crash_interval = float(params.get("crash_interval", 0.2))
        self.http = BoardHttp(self.host)
        self.fixtures = load_cores()
        self.started = CONTEXT.test_started or time.monotonic()
        # Opt-in is known from a sync before the faults start (phase 0 has none).
        deadline = time.monotonic() + self.deadline_s
        try:
            self.http.request("POST", SYNC_PATH, {"Authorization": self.auth, "Content-Type": "application/json"},
                              b"{}", deadline)
        except (DeadlineExceeded, BoardHttpError):
            CONTEXT.counters.add("sync_failed")

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

    @task
    def crash_task(self) -> None:
        fixture = random.choice(self.fixtures)
        signature = secrets.token_hex(16)
        phase = self._phase()
        start_wall = time.time()
        t0 = time.monotonic()
        deadline = t0 + self.deadline_s
        outcome: Exception | None = None
        sent = 0
        try:
            intent_body = json.dumps({"signature": signature, "size": fixture.size,
                                      "componentClass": "App", "component": "crashapp"}).encode()
            status, _h, body = self.http.request(
                "POST", INTENT_PATH, {"Authorization": self.auth, "Content-Type": "application/json"},
                intent_body, deadline)
            decision = _json_or_none(body) if status == 200 else None
            if isinstance(decision, dict) and decision.get("action") == "upload":
                status, _h, body = self.http.request(
                    "POST", UPLOAD_PATH, upload_headers(self.auth, signature, int(time.time())),
                    fixture.body, deadline)
                sent = fixture.size
                if status not in (200, 201):
                    outcome = BoardHttpError(f"upload: HTTP {status}")
            elif status != 200:
                outcome = BoardHttpError(f"intent: HTTP {status}")
        except DeadlineExceeded as exc:
            outcome = exc
        except BoardHttpError as exc:
            outcome = exc
        elapsed = time.monotonic() - t0
        if elapsed > self.deadline_s + 0.2:
            CONTEXT.counters.sample("late", [round(time.time(), 3), round(elapsed, 4)])
        CONTEXT.counters.sample("handled_s", elapsed)
        CONTEXT.counters.sample(f"handled_s:{phase}", elapsed)
        if isinstance(outcome, DeadlineExceeded):
            CONTEXT.counters.add("gave_up")
            CONTEXT.counters.add(f"gave_up:{phase}")
            CONTEXT.counters.sample("gave_up_s", elapsed)
            self._fire(f"crash {phase} gave-up", start_wall, elapsed, sent, outcome)
        else:
            CONTEXT.counters.add("answered" if outcome is None else "errors")
            CONTEXT.counters.add(f"{'answered' if outcome is None else 'errors'}:{phase}")
            self._fire(f"crash {phase} {'ok' if outcome is None else 'error'}", start_wall, elapsed, sent, outcome)
        if self.crash_interval > 0:
            gevent.sleep(random.expovariate(1.0 / self.crash_interval))


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
        CONTEXT.counters.sample("lateness_s", max(0.0, time.monotonic() - due))
        device_id, secret = self.slice[index]
        with self.client.post(
            SYNC_PATH, json={"firmwareVersion": FIRMWARE_VERSION, "deviceTime": int(time.time())},
            headers={"Authorization": device_auth(device_id, secret)}, name="fleet sync", catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                CONTEXT.counters.add("fleet_syncs")
                if index not in self.synced:
                    self.synced.add(index)
                    CONTEXT.counters.add("fleet_devices_synced")
            else:
                resp.failure(f"sync: HTTP {resp.status_code}")
                CONTEXT.counters.add("fleet_sync_failed")
        heapq.heappush(self.schedule, (due + self.period, index))
