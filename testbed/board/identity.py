"""A board's device identity: what provisioning gives it."""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass

from testbed.contract import commands

_DEVICE_ID = re.compile(r"^[0-9a-f]{128}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def check_service_address(service: str) -> str:
    """``host:port`` with host 10.0.2.2 (the host's loopback seen from a QEMU board) or 127.x."""
    host, sep, port = service.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"service address {service!r} must be host:port, e.g. 10.0.2.2:8443")
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"service address {service!r}: the host must be an IPv4 address, not a name") from None
    if ip != ipaddress.IPv4Address("10.0.2.2") and not ip.is_loopback:
        raise ValueError(
            f"service address {service!r}: a board may only dial 10.0.2.2 (the host's loopback) or 127.x"
        )
    return service


@dataclass(frozen=True)
class Identity:
    device_id: str
    secret: str
    service: str

    def __post_init__(self) -> None:
        if not _DEVICE_ID.match(self.device_id):
            raise ValueError("device_id must be 128 lowercase hex characters")
        if not _SECRET.match(self.secret):
            raise ValueError("secret must be 1-128 URL-safe characters (A-Z a-z 0-9 _ -)")
        check_service_address(self.service)

    @classmethod
    def for_port(cls, device_id: str, secret: str, port: int) -> Identity:
        """An identity whose service is the host's 127.0.0.1:<port>, seen by a QEMU board as 10.0.2.2."""
        return cls(device_id, secret, f"10.0.2.2:{port}")

    @staticmethod
    def random_device_id() -> str:
        return secrets.token_hex(64)

    def kernel_args(self) -> str:
        return f"tb.device_id={self.device_id} tb.secret={self.secret} tb.service={self.service}"

    def provision_command(self) -> str:
        """The firmware's provisioning command line for this identity (the contract's)."""
        return commands.provision(self.device_id, self.secret, self.service)
