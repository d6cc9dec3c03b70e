"""Scenario (c), the 5 s deadline: the service slowed, hung and dripping, through the control API.

The master (or the single local process) walks ``params.phases`` and sets
each phase's fault on the device API; devices (``DeadlineDevice``) crash
back to back and must have their answer or have given up within the
deadline of each crash. Run it with ``testbed load run deadline``.
"""

import json
import logging
import os
import time

import gevent
from locust import events
from locust.runners import WorkerRunner

from testbed.load.counters import PHASES_FILE
from testbed.load.deadline_user import DeadlineDevice
from testbed.load.runtime import CONTEXT

log = logging.getLogger("testbed.load.deadline")


class Device(DeadlineDevice):
    pass


def _mark(name: str) -> None:
    """Append the phase's start (wall clock) to the output's phases file: the host side lines samples up with it."""
    out = CONTEXT.require_config().get("output_dir")
    if out and os.path.isdir(out):
        with open(os.path.join(out, PHASES_FILE), "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"phase": name, "at": time.time()}) + "\n")


def drive_faults(phases) -> None:
    """Each phase's fault at its planned start: test start + the seconds of the phases before it.

    The devices place their crashes in phases by the same clock (time since the
    test started), so the schedule is kept absolute: the time the control API
    calls take does not push later phases back (it did: 0.3 s over a run on a
    busy machine, and a crash a device counted in recovery was still dripping).
    """
    start = CONTEXT.test_started or time.monotonic()
    at = 0.0
    for phase in phases:
        gevent.sleep(max(0.0, start + at - time.monotonic()))
        _mark(phase["name"])
        fault = phase.get("fault")
        try:
            if fault:
                CONTEXT.control("POST", "/testbed/v1/faults", fault)
            else:
                CONTEXT.control("DELETE", "/testbed/v1/faults")
        except Exception as exc:  # the run goes on; the summary shows the phase's figures
            log.error("could not set the fault of phase %s: %s", phase["name"], exc)
        at += float(phase["seconds"])
    gevent.sleep(max(0.0, start + at - time.monotonic()))
    CONTEXT.control("DELETE", "/testbed/v1/faults")
    _mark("after")


@events.test_start.add_listener
def _start(environment, **_kw):
    if isinstance(environment.runner, WorkerRunner):
        return
    gevent.spawn(drive_faults, CONTEXT.params.get("phases", []))


@events.test_stop.add_listener
def _stop(environment, **_kw):
    if isinstance(environment.runner, WorkerRunner):
        return
    try:
        CONTEXT.control("DELETE", "/testbed/v1/faults")
    except Exception as exc:
        log.error("could not clear faults: %s", exc)
