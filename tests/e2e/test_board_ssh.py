"""SSH to a real board through QEMU's forwarded port: commands and file transfer."""

from __future__ import annotations

import hashlib

import pytest

from testbed.board.ssh import SshConnection, SshError

pytestmark = pytest.mark.e2e


def test_ssh_runs_commands_and_moves_files(board, tmp_path):
    with board.ssh() as ssh:
        assert ssh.run("echo out; echo err >&2; exit 3") == ("out\nerr", 3)
        assert ssh.run("uname -m") == ("armv7l", 0)

        ssh.run("dd if=/dev/urandom of=/tmp/blob bs=1024 count=48 2>/dev/null")
        remote_sum = ssh.run("sha256sum /tmp/blob")[0].split()[0]
        pulled = ssh.pull("/tmp/blob", tmp_path / "blob")
        assert hashlib.sha256(pulled.read_bytes()).hexdigest() == remote_sum
        assert pulled.stat().st_size == 48 * 1024

        local = tmp_path / "up"
        local.write_bytes(bytes(range(256)) * 10)
        ssh.push(local, "/tmp/up")
        assert ssh.run("sha256sum /tmp/up")[0].split()[0] == hashlib.sha256(local.read_bytes()).hexdigest()

        with pytest.raises(SshError, match="/nope"):
            ssh.pull("/nope", tmp_path / "nope")
    # The console sees the same board.
    assert board.console.run("cat /tmp/up | wc -c")[0].strip() == "2560"


def test_ssh_to_a_closed_port_fails_clearly(board):
    port = board.ssh_port
    board.close()
    with pytest.raises(SshError, match="did not come up"):
        SshConnection("127.0.0.1", port=port, connect_timeout=1)
