"""Exactly-once on a real board: the service stores the dump, the answer is lost on the way back,
the board keeps the dump with its upload id, retries after a sync, and the service holds one copy.

The lost answer is the control API's ``drop`` fault (docs: the control API additions agreed
between the service and the firmware): the next device upload is processed and stored as usual,
then the connection is closed without a response.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.board.identity import Identity
from testbed.contract import device_api
from testbed.contract.events import EventName
from testbed.scenario.tap import WireTap
from testbed.service.client import ControlClient, check

pytestmark = pytest.mark.e2e

FAULTS_PATH = "/testbed/v1/faults"
DUMPS_PATH = "/testbed/v1/dumps"


@pytest.fixture
def tap(service) -> Iterator[WireTap]:
    t = WireTap("127.0.0.1", service.port).start()
    yield t
    t.stop()


def stored_dumps(control: ControlClient, device_id: str) -> list[dict[str, Any]]:
    """What the service holds for the device (durable dumps only; the endpoint waits for the writer)."""
    return check(control.http.get(DUMPS_PATH, params={"deviceId": device_id})).json()["Items"]


def test_lost_answer_is_retried_with_the_same_id_and_stored_once(board, tap, claimed_device, device_group, control):
    device = claimed_device(device_group(allow_crash_dumps=True, boundary="EU"))
    board.provision(Identity.for_port(device.device_id, device.secret, tap.port))
    board.wait_for_event(EventName.SYNC_OK, timeout=10)
    check(control.http.post(FAULTS_PATH, json={"mode": "drop", "count": 1}))
    try:
        t0 = time.monotonic()
        out, code = board.console.run("crashapp --mode segv --heap-kib 64", timeout=15)
        assert code == 0, out
        fail = board.wait_for_event(EventName.UPLOAD_FAIL, since=t0, timeout=15)
        board.wait_for_event(EventName.APP_RESTART, since=t0, timeout=15)
    finally:
        control.clear_faults()
    assert fail["stage"] == "body"
    upload_id = fail["upload_id"]
    assert device_api.is_upload_id(upload_id)
    # the service did store it: the answer was what got lost
    first = stored_dumps(control, device.device_id)
    assert len(first) == 1 and first[0]["uploadId"] == upload_id

    board.console.run_check("syncd --now", timeout=20)
    # the daemon may retry on its own before `syncd --now` does: either sends the spooled dump
    again = board.wait_for_event(EventName.UPLOAD_OK, since=t0, timeout=15)
    assert again["spooled"] == "1" and again["upload_id"] == upload_id
    dumps = stored_dumps(control, device.device_id)
    assert [d["id"] for d in dumps] == [first[0]["id"]] == [again["id"]]
    bodies = [r for r in tap.for_device(device.device_id) if r.path == device_api.UPLOAD_PATH]
    assert len(bodies) == 2  # sent twice, stored once
    out, _ = board.console.run("ls /var/lib/testbed/spool 2>/dev/null | wc -l")
    assert out.strip().splitlines()[-1] == "0"
