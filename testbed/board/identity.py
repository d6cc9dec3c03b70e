"""A board's device identity: what provisioning gives it."""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass

from testbed.contract import commands

_DEVICE_ID = re.compile(r"^[0-9a-f]{128}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


#: The host as a QEMU board sees it (user networking's gateway).
QEMU_HOST = ipaddress.IPv4Address("10.0.2.2")


def is_local_service(service: str) -> bool:
    """Whether ``host:port`` names 10.0.2.2 or 127.x: what a board dials without
    ``allow_remote`` (False for anything else, names included)."""
    host = service.rpartition(":")[0]
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return ip == QEMU_HOST or ip.is_loopback


def check_service_address(service: str, allow_remote: bool = False) -> str:
    """``host:port`` as the firmware's parser takes it: the host an IPv4 address (never a name),
    port 1..65535; without ``allow_remote`` only 10.0.2.2 (the host's loopback seen from a QEMU
    board) or 127.x; with it any IPv4 address (a real board dialling the host's LAN address)."""
    host, sep, port = service.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"service address {service!r} must be host:port, e.g. 10.0.2.2:8443")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"service address {service!r}: the host must be an IPv4 address, not a name") from None
    if not allow_remote and not is_local_service(service):
        raise ValueError(
            f"service address {service!r}: a board may only dial 10.0.2.2 (the host's loopback) or 127.x"
            " (a real board on a LAN: allow_remote)"
        )
    return service


@dataclass(frozen=True)
class Identity:
    device_id: str
    secret: str
    service: str
    #: The service is some other IPv4 address (a real board on a LAN): provisioned with
    #: ``tb-provision --allow-remote-service``; never on a kernel command line.
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if not _DEVICE_ID.match(self.device_id):
            raise ValueError("device_id must be 128 lowercase hex characters")
        if not _SECRET.match(self.secret):
            raise ValueError("secret must be 1-128 URL-safe characters (A-Z a-z 0-9 _ -)")
        check_service_address(self.service, self.allow_remote)

    @classmethod
    def for_port(cls, device_id: str, secret: str, port: int) -> Identity:
        """An identity whose service is the host's 127.0.0.1:<port>, seen by a QEMU board as 10.0.2.2."""
        return cls(device_id, secret, f"10.0.2.2:{port}")

    @staticmethod
    def random_device_id() -> str:
        return secrets.token_hex(64)

    def kernel_args(self) -> str:
        if self.allow_remote:
            raise ValueError("a remote service address cannot go on a kernel command line (tb-provision --from-cmdline is strict)")
        return f"tb.device_id={self.device_id} tb.secret={self.secret} tb.service={self.service}"

    def provision_command(self) -> str:
        """The firmware's provisioning command line for this identity (the contract's)."""
        return commands.provision(self.device_id, self.secret, self.service, allow_remote=self.allow_remote)
