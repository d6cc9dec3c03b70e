"""The board profile: the MT3620-like machine a QEMU board emulates, and what it declares.

Changing PROFILE invalidates saved snapshots (it is part of their key).
"""

from __future__ import annotations

from typing import TypedDict

from testbed.board.protocols import Capability

QEMU = "qemu-system-arm"
#: TCG translation cache of a board, MiB, chosen by `testbed bench board-profile` (docs/board.md,
#: "The profile"): 12 made every exec on the board ~4x dearer (51 vs 12-14 ms of QEMU CPU) and a
#: crash + restart with collection off 7x (0.30 vs 0.04 s); 24, 32 and 64 cost the same there
#: and settle at ~125 MiB RSS, but 24 still flushed on the upload path. Even full, 32 keeps a
#: board under RSS_LIMIT_MB (~138 MB estimated; 64 full would not).
TRANSLATION_CACHE_MIB = 32
#: What one board may use (MB): 24 GiB hold well over 100 boards.
RSS_LIMIT_MB = 160


class Profile(TypedDict):
    """The machine a board emulates (what PROFILE holds)."""

    machine: str
    cpu: str
    smp: int
    memory_mib: int
    nic: str
    balloon: str
    mac: str
    accel: str
    append: str


#: The MT3620-like profile. Changing it invalidates saved snapshots (it is part of their key).
PROFILE: Profile = {
    "machine": "virt",
    "cpu": "cortex-a7",
    "smp": 1,
    "memory_mib": 64,
    "nic": "virtio-net-device",
    # The guest reports free pages; QEMU drops them (lower RSS, zero pages in snapshots).
    "balloon": "virtio-balloon-device,free-page-reporting=on",
    "mac": "52:54:00:12:34:56",
    # No zeroing of every allocated page (Debian's default init_on_alloc=1): with the balloon,
    # it keeps a board's RSS down (docs/board.md).
    "accel": f"tcg,tb-size={TRANSLATION_CACHE_MIB}",
    "append": "console=ttyAMA0 quiet init_on_alloc=0",
}
NIC_ID = "nic0"
#: What a QEMU board can do: everything; HOST_CPU is ``host_cpu``, the QEMU process's CPU time
#: and run delay (testbed.board.hostcpu).
CAPABILITIES: frozenset[Capability] = frozenset(Capability)
