"""Where the host listens for boards: loopback, or a LAN address only when asked explicitly."""

from __future__ import annotations

import ipaddress

LOOPBACK = "127.0.0.1"


def check_listen(listen: str, allow_remote_boards: bool) -> str:
    """``listen`` if it is an IP address the rules allow; ValueError saying why not.

    Loopback always; any other address only with ``allow_remote_boards`` (real boards on a
    lab network dial it), never by default."""
    try:
        addr = ipaddress.ip_address(listen)
    except ValueError:
        raise ValueError(f"--listen must be an IP address, got {listen!r}") from None
    if not addr.is_loopback and not allow_remote_boards:
        raise ValueError(
            f"refusing to listen on {listen}: real boards on a network reach the service there only with "
            "--allow-remote-boards (the service listens on loopback unless asked)"
        )
    return listen
