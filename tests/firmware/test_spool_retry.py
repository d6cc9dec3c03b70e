"""Every failure that may pass keeps the dump in the spool with its upload id, and the retry after
the next good sync sends that same id (the service answers a repeat id with its first answer, so a
retry is safe even when the first attempt was stored): a hung or dripping server (timeout, at the
intent or at the body), a 5xx, and a gzip cut short by the 5 s deadline on a starved board.
A spooled dump whose signature became throttled is dropped without being sent.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest
from fw_helpers import FakeDeviceApi, FwEnv

from testbed.contract import device_api as api_c
from testbed.contract.events import DumpSkipReason, EventName, UploadFailReason, UploadStage
from testbed.paths import REPO_ROOT

BOARD_CORE = REPO_ROOT / "testbed" / "load" / "cores" / "segv-16k.core.gz"
UPLOAD_ID = api_c.UPLOAD_ID_HEADER.lower()
DEADLINE_S = api_c.UPLOAD_DEADLINE_MS / 1000
PROCESS_MARGIN_S = 1.0  # process start-up, spooling and exit on a loaded 2-core machine


@pytest.fixture(scope="module")
def core() -> bytes:
    return gzip.decompress(BOARD_CORE.read_bytes())


def provisioned(fw: FwEnv, api: FakeDeviceApi) -> None:
    assert fw.provision(api.port).returncode == 0
    api.requests.clear()


def report(fw: FwEnv, core: bytes, **env: str) -> tuple[float, object]:
    t0 = time.monotonic()
    proc = fw.run("crash-reporter", "4242", "crashapp", "11", str(int(time.time())), input=core, timeout=30, **env)
    return time.monotonic() - t0, proc


def spooled_meta(fw: FwEnv) -> dict[str, str]:
    metas = [p for p in fw.spool_files() if p.suffix == ".meta"]
    assert len(metas) == 1, fw.spool_files()
    return dict(line.split("=", 1) for line in metas[0].read_text().splitlines())


def uploads(api: FakeDeviceApi) -> list:
    return [r for r in api.requests if r.path == api_c.UPLOAD_PATH]


@pytest.mark.parametrize(
    "mode,status,reason,stage",
    [
        ("hang", 201, UploadFailReason.TIMEOUT, UploadStage.INTENT),
        ("hang-upload", 201, UploadFailReason.TIMEOUT, UploadStage.BODY),
        ("drip-upload", 201, UploadFailReason.TIMEOUT, UploadStage.BODY),
        ("ok", 503, "http-503", UploadStage.BODY),
    ],
)
def test_a_retryable_failure_is_spooled_and_resent_with_its_upload_id(fw, api, core, mode, status, reason, stage):
    provisioned(fw, api)
    api.mode, api.upload_status = mode, status
    elapsed, proc = report(fw, core)
    assert proc.returncode == 1
    fail = fw.wait_event(EventName.UPLOAD_FAIL)
    assert fail["reason"] == reason and fail["stage"] == stage
    assert elapsed <= DEADLINE_S + PROCESS_MARGIN_S  # spooling included
    first = fail["upload_id"]
    assert api_c.is_upload_id(first)
    assert spooled_meta(fw)["upload_id"] == first
    assert [r.headers[UPLOAD_ID] for r in uploads(api)] == ([] if stage == UploadStage.INTENT else [first])
    api.mode, api.upload_status = "ok", 201
    n = len(fw.events())
    assert fw.run("syncd", "--now").returncode == 0
    ok = fw.wait_event(EventName.UPLOAD_OK, after=n)
    assert ok["spooled"] == "1" and ok["upload_id"] == first
    assert uploads(api)[-1].headers[UPLOAD_ID] == first
    assert gzip.decompress(uploads(api)[-1].body) == core
    assert fw.spool_files() == []


def test_a_spool_retry_that_times_out_again_keeps_the_dump_and_its_id(fw, api, core):
    provisioned(fw, api)
    api.mode = "hang-upload"
    report(fw, core)
    first = spooled_meta(fw)["upload_id"]
    n = len(fw.events())
    assert fw.run("syncd", "--now", timeout=30).returncode == 0  # the sync is answered; the retry hangs
    again = fw.wait_event(EventName.UPLOAD_FAIL, after=n)
    assert again["reason"] == UploadFailReason.TIMEOUT and again["spooled"] == "1" and again["upload_id"] == first
    assert spooled_meta(fw)["upload_id"] == first


def test_a_gzip_cut_short_by_the_deadline_is_spooled_after_the_restart(fw, api, core, tmp_path: Path):
    """A starved board: gzip does not finish within 5 s. The reporter gives up at the deadline
    (appmgr is told), then gzips again and keeps the dump; nothing was sent for it."""
    marker = tmp_path / "slow-once"
    slow_gzip = tmp_path / "gzip"
    slow_gzip.write_text(f'#!/bin/sh\nif [ -e "{marker}" ]; then exec gzip -c; fi\n: > "{marker}"\nexec sleep 20\n')
    slow_gzip.chmod(0o755)
    provisioned(fw, api)
    elapsed, proc = report(fw, core, TB_GZIP=str(slow_gzip))
    assert proc.returncode == 1
    fail = fw.wait_event(EventName.UPLOAD_FAIL)
    assert fail["reason"] == UploadFailReason.TIMEOUT and "stage" not in fail
    assert elapsed <= DEADLINE_S + PROCESS_MARGIN_S
    assert api.requests == []
    meta = spooled_meta(fw)
    assert api_c.is_upload_id(meta["upload_id"]) and meta["sig"] == fail["sig"]
    n = len(fw.events())
    assert fw.run("syncd", "--now").returncode == 0
    ok = fw.wait_event(EventName.UPLOAD_OK, after=n)
    assert ok["spooled"] == "1" and ok["upload_id"] == meta["upload_id"]
    assert gzip.decompress(uploads(api)[-1].body) == core
    assert fw.spool_files() == []


def test_a_spooled_dump_whose_signature_became_throttled_is_dropped_unsent(fw, api, core):
    provisioned(fw, api)
    api.upload_status = 503
    report(fw, core)
    sig = spooled_meta(fw)["sig"]
    api.upload_status = 201
    api.throttled = [sig]
    api.requests.clear()
    n = len(fw.events())
    assert fw.run("syncd", "--now").returncode == 0
    skipped = fw.wait_event(EventName.DUMP_SKIPPED, after=n)
    assert skipped["reason"] == DumpSkipReason.THROTTLED and skipped["spooled"] == "1"
    assert api.paths() == [api_c.SYNC_PATH]
    assert fw.spool_files() == []
