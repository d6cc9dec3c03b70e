"""Crash signatures, as the firmware computes them (docs/device-api.md).

The first 16 bytes of SHA-256 over ``<executable>|<build id hex or "-">|<signal>|<PC offset hex>``
as 32 lowercase hex characters. The executable is the core's ``NT_PRPSINFO``
``pr_fname`` (the process name, at most 15 characters), the build id that of
the executable's mapping (see :func:`testbed.crash.elfcore.read_core`), the PC
offset the PC minus the load address of the file mapping holding it (the
absolute PC when the core names no file mappings), in lowercase hex without
``0x`` or leading zeros. The C side is ``tb_signature`` in
``firmware_stubs/src/elfcore.c``; tests hold the two to the same answers.
"""

from __future__ import annotations

import hashlib
import re

from testbed.crash.elfcore import CoreInfo, read_core

SIGNATURE_RE = re.compile(r"^[0-9a-f]{32}$")


def signature_text(executable: str, build_id: str | None, signal: int, pc_offset: int) -> str:
    """The string that is hashed; raises ValueError on input the firmware could not produce."""
    if "|" in executable:
        raise ValueError(f"executable name {executable!r} contains '|'")
    if signal < 0 or pc_offset < 0:
        raise ValueError("signal and PC offset must not be negative")
    if build_id is not None and not re.fullmatch(r"[0-9a-f]*", build_id):
        raise ValueError(f"build id {build_id!r} is not lowercase hex")
    return f"{executable}|{build_id or '-'}|{signal}|{pc_offset:x}"


def signature(executable: str, build_id: str | None, signal: int, pc_offset: int) -> str:
    """The 32-hex-character crash signature of one crash site."""
    text = signature_text(executable, build_id, signal, pc_offset)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def core_signature(info: CoreInfo) -> str:
    """The signature of the crash a parsed core describes."""
    return signature(info.executable, info.build_id, info.signal, info.pc_offset())


def signature_of_core(data: bytes) -> str:
    """The signature of a raw ELF core (not gzip'd)."""
    return core_signature(read_core(data))


def is_signature(value: str) -> bool:
    """True when ``value`` has the form the device API accepts."""
    return bool(SIGNATURE_RE.match(value))
