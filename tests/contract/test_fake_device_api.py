"""The firmware tier's stand-in device API answers as the real service does.

tests/firmware keeps a stand-in (fw_helpers.FakeDeviceApi) for what the real service
will not do on demand: hang, drip, answer garbage. Its normal answers are checked here
against the real service's, request for request: same status, same JSON fields.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from contract_helpers import board_core
from fw_helpers import DEVICE_ID, SECRET, FakeDeviceApi

from testbed.contract import device_api
from testbed.contract.errors import ERROR_CODE, ERROR_DETAIL, ERROR_TITLE
from testbed.crash.signature import signature_of_core
from testbed.service.client import DeviceClient


@pytest.fixture
def fake() -> Iterator[FakeDeviceApi]:
    server = FakeDeviceApi()
    yield server
    server.close()


@pytest.fixture
def pair(fake, claimed_device) -> Iterator[tuple[DeviceClient, DeviceClient]]:
    real = claimed_device().client()
    stand_in = DeviceClient(f"http://127.0.0.1:{fake.port}", DEVICE_ID, SECRET)
    with real, stand_in:
        yield real, stand_in


def _shape(response) -> tuple[int, object]:
    body = response.json()
    if isinstance(body, list):
        return response.status_code, [sorted(item) for item in body]
    return response.status_code, sorted(body)


def test_sync_answers_alike(pair):
    path = device_api.SYNC_PATH
    answers = [_shape(c.http.post(path, json={device_api.SyncRequest.DEVICE_TIME: 1})) for c in pair]
    assert answers[0] == answers[1]
    assert answers[0][1] == sorted(device_api.SyncResponse)


@pytest.mark.parametrize("step", ["intent", "upload"])
def test_crash_requests_answer_alike(pair, step):
    core = board_core()
    sig = signature_of_core(core)
    gz = gzip.compress(core)
    shapes = []
    for client in pair:
        if step == "intent":
            r = client.http.post(device_api.INTENT_PATH, json={
                device_api.IntentRequest.SIGNATURE: sig, device_api.IntentRequest.SIZE: len(gz),
                device_api.IntentRequest.COMPONENT_CLASS: device_api.ComponentClass.APP,
                device_api.IntentRequest.COMPONENT: "app"})
        else:
            r = client.upload_raw(gz, sig)
        shapes.append(_shape(r))
    assert shapes[0] == shapes[1]


def test_error_bodies_alike(pair, fake, control):
    fake.upload_status = 503
    control.set_fault("status", status=503, count=1)
    core = board_core()
    shapes = [_shape(c.upload_raw(gzip.compress(core), signature_of_core(core))) for c in pair]
    assert shapes[0] == shapes[1] == (503, [sorted([ERROR_CODE, ERROR_TITLE, ERROR_DETAIL])])
