"""Provisioning a restored board with the firmware's tb-provision (no service needed)."""

from __future__ import annotations

import socket
import time

import pytest

from testbed.board.errors import BoardError
from testbed.board.identity import Identity

pytestmark = pytest.mark.e2e


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_provision_after_restore_gives_the_board_its_identity(board):
    if board.console.run("command -v tb-provision")[1] != 0:
        pytest.skip("this image has no firmware (firmware_stubs/Makefile missing)")
    identity = Identity(Identity.random_device_id(), "Secret_0123456789", f"10.0.2.2:{_closed_port()}")
    before = time.monotonic()
    output, code = board.provision(identity)
    assert code == 1, output  # provisioned, but nothing listens there, so the first sync failed
    event = board.wait_for_event("provisioned", timeout=10, since=before)
    assert event["device"] == identity.device_id
    assert abs(int(board.console.run_check("date +%s")) - time.time()) < 5


def test_identity_refuses_addresses_a_board_must_not_dial():
    device = "ab" * 64
    for bad in ("8.8.8.8:443", "example.com:80", "10.0.2.3:80", "10.0.2.2", "10.0.2.2:0"):
        with pytest.raises(ValueError):
            Identity(device, "s", bad)
    with pytest.raises(ValueError, match="128 lowercase hex"):
        Identity("AB" * 64, "s", "10.0.2.2:80")
    assert Identity(device, "s", "127.0.0.1:8080").service == "127.0.0.1:8080"
    assert "tb.service=10.0.2.2:9" in Identity.for_port(device, "s", 9).kernel_args()
    assert issubclass(BoardError, Exception)


def test_an_identity_given_at_construction_is_provisioned_after_restore(board_image, board_snapshot):
    from testbed.board.qemu import QemuBoard

    identity = Identity(Identity.random_device_id(), "Secret_abc", f"10.0.2.2:{_closed_port()}")
    with QemuBoard(board_image, name="restore-identity", identity=identity) as b:
        if b.image.meta.get("firmware", {}).get("included") is not True:
            pytest.skip("this image has no firmware")
        b.restore(board_snapshot)
        assert b.wait_for_event("provisioned", timeout=10)["device"] == identity.device_id
