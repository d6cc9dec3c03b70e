"""Failures of the device's own state are reported, never passed over.

A sync whose good answer cannot be saved is ``sync-fail reason=state`` (not ``sync-ok``) and
exits nonzero; a state lock that cannot be had turns crash dumps off. Root ignores file modes,
so the files are made unwritable by putting a directory where each one goes.
"""

from __future__ import annotations

from fw_helpers import FakeDeviceApi, FwEnv

from testbed.contract.events import EventName, SyncFailReason


def test_a_sync_that_cannot_be_saved_is_a_sync_fail(fw: FwEnv, api: FakeDeviceApi):
    assert fw.provision(api.port, sync=False).returncode == 0
    (fw.state / "sync.state").mkdir(parents=True)
    proc = fw.run("syncd", "--now")
    assert proc.returncode == 1
    assert b"sync failed: state" in proc.stdout
    ev = fw.wait_event(EventName.SYNC_FAIL)
    assert ev["reason"] == SyncFailReason.STATE
    assert not [e for e in fw.events() if e["event"] == EventName.SYNC_OK]
    assert fw.core_pattern.read_text().startswith("/nonexistent")


def test_without_the_state_lock_dumps_are_off(fw: FwEnv, api: FakeDeviceApi):
    assert fw.provision(api.port).returncode == 0
    assert fw.core_pattern.read_text().startswith("|")
    (fw.state / ".lock").unlink()
    (fw.state / ".lock").mkdir()
    proc = fw.run("syncd", "--now")
    assert proc.returncode == 1
    assert b"state lock" in proc.stderr
    assert fw.wait_event(EventName.SYNC_FAIL)["reason"] == SyncFailReason.STATE
    assert fw.core_pattern.read_text().startswith("/nonexistent")
