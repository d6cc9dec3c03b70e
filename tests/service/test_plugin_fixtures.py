"""The plugin's service fixtures as documented (docs/pytest.md): the consent keyword and its
deprecated alias, the device's identity for a board."""

from __future__ import annotations

import pytest

from testbed.board.identity import QEMU_HOST


def test_allow_crash_dumps_is_the_groups_consent(device_group, tenant_admin):
    on, off = device_group(allow_crash_dumps=True), device_group()
    assert on["AllowCrashDumpsCollection"] is True and off["AllowCrashDumpsCollection"] is False
    stored = tenant_admin.device_group(tenant_admin.tenant_id, on["Id"])
    assert stored["AllowCrashDumpsCollection"] is True


def test_enabled_is_a_deprecated_alias(device_group):
    with pytest.warns(DeprecationWarning, match=r"device_group\(enabled=\) is deprecated: use allow_crash_dumps="):
        group = device_group(enabled=True)
    assert group["AllowCrashDumpsCollection"] is True


def test_claimed_device_identity_dials_the_service_as_a_board_sees_it(service, claimed_device):
    device = claimed_device()
    identity = device.identity()
    assert (identity.device_id, identity.secret) == (device.device_id, device.secret)
    assert identity.service == f"{QEMU_HOST}:{service.port}"
    assert device.client().sync()  # the credential works on the device API
