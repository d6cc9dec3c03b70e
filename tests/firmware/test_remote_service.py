"""A real board on a LAN: the service address beyond 10.0.2.2/127.x only with an explicit opt-in.

No test here dials the LAN address: provisioning is done with --no-sync and the identity is read
back by fresh syncd processes (``syncd --status``), which parse it as every reader does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fw_helpers import DEVICE_ID, SECRET, FwEnv

LAN = "192.168.7.1:8443"


def provision(fw: FwEnv, service: str, *extra: str) -> subprocess.CompletedProcess:
    return fw.run("tb-provision", "--device-id", DEVICE_ID, "--secret", SECRET, "--service", service, "--no-sync", *extra)


def identity(fw: FwEnv) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (fw.state / "identity").read_text().splitlines())


def status(fw: FwEnv) -> dict[str, str]:
    proc = fw.run("syncd", "--status")
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.decode().splitlines())


def test_a_lan_address_is_refused_without_the_flag(fw):
    proc = provision(fw, LAN)
    assert proc.returncode == 2
    assert "refused" in proc.stderr.decode() and "--allow-remote-service" in proc.stderr.decode()
    assert not (fw.state / "identity").exists()


def test_a_lan_address_is_taken_with_the_flag_and_kept_across_restarts(fw):
    proc = provision(fw, LAN, "--allow-remote-service")
    assert proc.returncode == 0, proc.stderr
    assert identity(fw)["service"] == LAN and identity(fw)["allow_remote"] == "1"
    assert status(fw)["provisioned"] == "1"  # a new syncd reads it back with the flag
    assert status(fw)["provisioned"] == "1"  # and the next one too


def test_the_flag_is_the_identity_files_not_the_address(fw):
    """An identity file naming a LAN address without allow_remote=1 (hand-edited, or from before
    the flag) is not an identity: every reader refuses it."""
    assert provision(fw, "127.0.0.1:8443").returncode == 0
    ident = fw.state / "identity"
    assert identity(fw)["allow_remote"] == "0"
    ident.write_text(ident.read_text().replace("127.0.0.1:8443", LAN))
    assert status(fw)["provisioned"] == "0"
    ident.write_text(ident.read_text().replace("allow_remote=0", "allow_remote=1"))
    assert status(fw)["provisioned"] == "1"
    # a file from before the flag (no allow_remote line) is strict
    ident.write_text("".join(ln + "\n" for ln in ident.read_text().splitlines() if not ln.startswith("allow_remote")))
    assert status(fw)["provisioned"] == "0"


@pytest.mark.parametrize("service", ["boardhost.lan:8443", "localhost:8443", "192.168.7.1", "192.168.7.1:0",
                                     "192.168.7.1:65536", "192.168.7.300:80"])
def test_names_and_bad_addresses_are_always_refused(fw, service):
    for extra in ((), ("--allow-remote-service",)):
        proc = provision(fw, service, *extra)
        assert proc.returncode == 2, (service, extra)
        assert not (fw.state / "identity").exists()


def test_from_cmdline_stays_strict(fw, tmp_path: Path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"tb.device_id={DEVICE_ID} tb.secret=abc tb.service={LAN}\n")
    proc = fw.run("tb-provision", "--from-cmdline", str(cmdline), "--no-sync")
    assert proc.returncode == 2 and "refused" in proc.stderr.decode()
    proc = fw.run("tb-provision", "--from-cmdline", str(cmdline), "--allow-remote-service", "--no-sync")
    assert proc.returncode == 2 and "--from-cmdline" in proc.stderr.decode()
    assert not (fw.state / "identity").exists()


def test_tb_tool_service_is_strict_unless_asked(fw_bin):
    def tool(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(fw_bin / "tb-tool"), "service", *args], capture_output=True, timeout=10)

    assert tool(LAN).returncode == 1
    ok = tool("--allow-remote", LAN)
    assert ok.returncode == 0 and ok.stdout.decode().split() == ["192.168.7.1", "8443"]
    assert tool("--allow-remote", "boardhost.lan:8443").returncode == 1
    assert tool("10.0.2.2:8443").returncode == 0
