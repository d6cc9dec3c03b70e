"""Exactly-once on the device side: each dump carries one upload id, in the spool and on every
attempt, and only a 201 whose whole JSON names the stored dump counts as done.

The stand-in server answers the body with what the real service never sends on demand: a 201
that is not JSON, one cut off by a reset, one longer than the reporter reads.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from fw_helpers import FakeDeviceApi, FwEnv

from testbed.contract import device_api as api_c
from testbed.contract.events import EventName, UploadFailReason
from testbed.paths import REPO_ROOT

BOARD_CORE = REPO_ROOT / "testbed" / "load" / "cores" / "segv-16k.core.gz"
UPLOAD_ID = api_c.UPLOAD_ID_HEADER.lower()


@pytest.fixture(scope="module")
def core() -> bytes:
    return gzip.decompress(BOARD_CORE.read_bytes())


def provisioned(fw: FwEnv, api: FakeDeviceApi) -> None:
    assert fw.provision(api.port).returncode == 0
    api.requests.clear()


def report(fw: FwEnv, core: bytes, pid: int = 4242):
    return fw.run("crash-reporter", str(pid), "crashapp", "11", "1790000000", input=core, timeout=30)


def uploads(api: FakeDeviceApi) -> list:
    return [r for r in api.requests if r.path == api_c.UPLOAD_PATH]


def meta_upload_id(fw: FwEnv) -> str:
    metas = [p for p in fw.spool_files() if p.suffix == ".meta"]
    assert len(metas) == 1, fw.spool_files()
    fields = dict(line.split("=", 1) for line in metas[0].read_text().splitlines())
    return fields["upload_id"]


def test_every_upload_sends_a_fresh_upload_id(fw, api, core):
    provisioned(fw, api)
    report(fw, core, pid=10)
    report(fw, core, pid=11)
    ids = [r.headers[UPLOAD_ID] for r in uploads(api)]
    assert len(ids) == 2 and all(api_c.is_upload_id(i) for i in ids)
    assert ids[0] != ids[1]
    oks = [e for e in fw.events() if e["event"] == EventName.UPLOAD_OK]
    assert [e["upload_id"] for e in oks] == ids


@pytest.mark.parametrize("mode", ["garbage-201", "reset-201", "huge-201", "drop-upload"])
def test_a_201_without_the_dump_id_is_a_failure_and_the_retry_resends_the_same_id(fw, api, core, mode):
    provisioned(fw, api)
    api.mode = mode
    proc = report(fw, core)
    assert proc.returncode == 1
    ev = fw.wait_event(EventName.UPLOAD_FAIL)
    assert ev["reason"] == UploadFailReason.BAD_RESPONSE and ev["stage"] == "body"
    assert not [e for e in fw.events() if e["event"] == EventName.UPLOAD_OK]
    first = uploads(api)[0].headers[UPLOAD_ID]
    assert ev["upload_id"] == first
    assert meta_upload_id(fw) == first  # kept with the dump
    # the next sync retries from the spool with the same id; the service answers properly now
    api.mode = "ok"
    n = len(fw.events())
    assert fw.run("syncd", "--now").returncode == 0
    ok = fw.wait_event(EventName.UPLOAD_OK, after=n)
    assert ok["spooled"] == "1" and ok["upload_id"] == first
    assert [r.headers[UPLOAD_ID] for r in uploads(api)] == [first, first]
    assert gzip.decompress(uploads(api)[1].body) == core
    assert fw.spool_files() == []


def test_an_old_spool_entry_gets_an_id_once(fw, api, core, tmp_path: Path):
    """An entry spooled before upload ids (no upload_id in its .meta) gets one when read, and keeps it."""
    provisioned(fw, api)
    api.upload_status = 503
    report(fw, core)
    meta = next(p for p in fw.spool_files() if p.suffix == ".meta")
    meta.write_text("".join(ln + "\n" for ln in meta.read_text().splitlines() if not ln.startswith("upload_id=")))
    # still failing: the entry is read, given an id, and kept
    assert fw.run("syncd", "--now").returncode == 0
    given = meta_upload_id(fw)
    assert api_c.is_upload_id(given)
    api.upload_status = 201
    assert fw.run("syncd", "--now").returncode == 0
    sent = [r.headers[UPLOAD_ID] for r in uploads(api)]
    assert sent[-2:] == [given, given]
    assert fw.spool_files() == []
