"""Is this a whole ELF core of the board's kind? The one check of an uploaded core.

The service runs it on every upload's inflated bytes (``testbed.service.checks``)
before anything is stored. It reads the ELF header, the program headers and the
notes with :mod:`testbed.crash.elfcore` and refuses, naming what is wrong:

- not ELF, not 32-bit little-endian, not ``ET_CORE``, not ``EM_ARM`` (x86-64 too
  when asked: host-built firmware in tests makes those);
- a program header size other than the class's, no program headers, or the
  table past the end of the body;
- no ``PT_NOTE`` segment, one past the end of the body, a torn note, or no
  ``NT_PRSTATUS`` of the machine's size (148 bytes on ARM) in the ``CORE`` notes;
- a body shorter than its segments say (the largest ``p_offset + p_filesz``):
  a truncated core.
"""

from __future__ import annotations

from testbed.crash.elfcore import (
    EHDR_SIZE,
    ELF_MAGIC,
    ELFCLASS32,
    ELFCLASS64,
    ET_CORE,
    MACHINE_NAMES,
    NT_PRSTATUS,
    PHDR_SIZE,
    PRSTATUS_SIZE,
    PT_NOTE,
    CoreFormatError,
    elf_layout,
    iter_notes,
)

#: What the boards make: 32-bit little-endian ARM.
BOARD_MACHINES = ("arm",)
_CLASS_OF = {"arm": ELFCLASS32, "x86_64": ELFCLASS64}
_MACHINE_OF = {name: number for number, name in MACHINE_NAMES.items()}


class CoreCheckError(ValueError):
    """The bytes are not a whole ELF core of an accepted kind; the message says what is wrong."""


class NeedMoreBytes(Exception):
    """The check needs bytes past the prefix it was given (headers or notes further in)."""


def check_core_file(data: bytes, machines: tuple[str, ...] = BOARD_MACHINES, size: int | None = None) -> None:
    """Raise :class:`CoreCheckError` unless ``data`` is a whole ELF core of one of ``machines``.

    ``data`` may be a prefix of the core when ``size`` is its whole length: the headers and
    notes (at the start of a Linux core) are read from the prefix, the segments' end is
    checked against ``size``; :class:`NeedMoreBytes` when the prefix does not hold them.
    """
    size = len(data) if size is None else size
    if data[:4] != ELF_MAGIC:
        raise CoreCheckError("no ELF magic at the start")
    classes = {_CLASS_OF[m] for m in machines}
    elf_class = data[4] if size > 4 else 0
    if elf_class not in classes:
        raise CoreCheckError(f"ELF class {elf_class}; expected {' or '.join(str(c) for c in sorted(classes))} (32-bit for ARM)")
    if size < EHDR_SIZE[elf_class]:
        raise CoreCheckError(f"{size} bytes: shorter than the {EHDR_SIZE[elf_class]}-byte ELF header")
    if data[5] != 1:
        raise CoreCheckError(f"ELF data encoding {data[5]}; expected 1 (little-endian)")
    if int.from_bytes(data[16:18], "little") != ET_CORE:
        raise CoreCheckError(f"e_type {int.from_bytes(data[16:18], 'little')}; expected {ET_CORE} (ET_CORE)")
    machine = int.from_bytes(data[18:20], "little")
    if MACHINE_NAMES.get(machine) not in machines or _CLASS_OF[MACHINE_NAMES[machine]] != elf_class:
        raise CoreCheckError(f"e_machine {machine}; expected {' or '.join(str(_MACHINE_OF[m]) for m in machines)} ({', '.join(machines)})")
    if elf_class == ELFCLASS32:
        phoff = int.from_bytes(data[28:32], "little")
        phentsize, phnum = int.from_bytes(data[42:44], "little"), int.from_bytes(data[44:46], "little")
    else:
        phoff = int.from_bytes(data[32:40], "little")
        phentsize, phnum = int.from_bytes(data[54:56], "little"), int.from_bytes(data[56:58], "little")
    table_end = phoff + phentsize * phnum
    if table_end > size:
        raise CoreCheckError(f"program header table past the end of the body ({table_end} > {size} bytes)")
    if table_end > len(data):
        raise NeedMoreBytes(table_end)
    try:
        layout = elf_layout(data)
    except CoreFormatError as exc:
        raise CoreCheckError(f"program header table past the end of the body ({size} bytes): {exc}") from None
    if layout.phentsize != PHDR_SIZE[elf_class]:
        raise CoreCheckError(f"e_phentsize {layout.phentsize}; expected {PHDR_SIZE[elf_class]}")
    if not layout.headers:
        raise CoreCheckError("no program headers")
    notes = [ph for ph in layout.headers if ph.type == PT_NOTE]
    if not notes:
        raise CoreCheckError("no PT_NOTE segment")
    end = max(ph.offset + ph.filesz for ph in layout.headers)
    if end > size:
        raise CoreCheckError(f"truncated: the segments end at byte {end}, the body has {size}")
    notes_end = max(ph.offset + ph.filesz for ph in notes)
    if notes_end > len(data):
        raise NeedMoreBytes(notes_end)
    want = PRSTATUS_SIZE[machine]
    found: list[int] = []
    for ph in notes:
        try:
            for name, note_type, desc in iter_notes(data, layout, ph.offset, ph.filesz):
                if name == b"CORE" and note_type == NT_PRSTATUS:
                    found.append(len(desc))
        except CoreFormatError as exc:
            raise CoreCheckError(f"PT_NOTE segment at {ph.offset}: {exc}") from None
    if not found:
        raise CoreCheckError("no NT_PRSTATUS note")
    if any(n != want for n in found):
        raise CoreCheckError(f"NT_PRSTATUS of {found[0] if found[0] != want else next(n for n in found if n != want)} bytes; {MACHINE_NAMES[machine]}'s is {want}")
