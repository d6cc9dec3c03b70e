"""The host's side of the service address rule (testbed.board.identity) and the provision command."""

from __future__ import annotations

import pytest

from testbed.board.identity import Identity, check_service_address, is_local_service
from testbed.contract import commands

DEVICE = "ab" * 64


@pytest.mark.parametrize("service", ["10.0.2.2:8443", "127.0.0.1:1", "127.9.8.7:65535"])
def test_local_addresses_pass_either_way(service: str) -> None:
    assert is_local_service(service)
    assert check_service_address(service) == service
    assert check_service_address(service, allow_remote=True) == service


def test_a_lan_address_only_with_allow_remote() -> None:
    assert not is_local_service("192.168.7.1:8443")
    with pytest.raises(ValueError, match="10.0.2.2"):
        check_service_address("192.168.7.1:8443")
    assert check_service_address("192.168.7.1:8443", allow_remote=True) == "192.168.7.1:8443"


@pytest.mark.parametrize("service", ["board-host.lan:8443", "localhost:80", "192.168.7.1", "192.168.7.1:0",
                                     "192.168.7.1:65536", "192.168.7.256:80", "1.2.3:80"])
def test_names_and_bad_ports_always_refused(service: str) -> None:
    for allow in (False, True):
        with pytest.raises(ValueError):
            check_service_address(service, allow_remote=allow)


def test_provision_command_carries_the_flag_only_when_asked() -> None:
    strict = commands.provision(DEVICE, "s", "10.0.2.2:8443")
    assert "--allow-remote-service" not in strict
    remote = commands.provision(DEVICE, "s", "192.168.7.1:8443", allow_remote=True)
    assert remote == strict.replace("10.0.2.2:8443", "192.168.7.1:8443") + " --allow-remote-service"


def test_identity_with_a_remote_service() -> None:
    with pytest.raises(ValueError):
        Identity(DEVICE, "s", "192.168.7.1:8443")
    ident = Identity(DEVICE, "s", "192.168.7.1:8443", allow_remote=True)
    assert ident.provision_command().endswith("--service 192.168.7.1:8443 --allow-remote-service")
    with pytest.raises(ValueError, match="kernel command line"):
        ident.kernel_args()  # tb-provision --from-cmdline stays strict
    assert "--allow-remote" not in Identity(DEVICE, "s", "10.0.2.2:1").provision_command()
