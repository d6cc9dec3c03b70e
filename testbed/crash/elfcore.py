"""Reading ELF core files: the crash facts a dump carries.

Supports the cores the testbed meets: 32-bit little-endian ARM (the boards)
and 64-bit little-endian x86-64 (host builds of the firmware, in tests).
Only the standard library is used, so the service can validate uploads with
it cheaply.

Layouts used (Linux ``struct elf_prstatus`` / ``elf_prpsinfo``):

* ARM (EM_ARM, ELFCLASS32): prstatus desc 148 bytes, ``pr_cursig`` at 12,
  ``pr_pid`` at 24, ``pr_reg[18]`` at 72 (r0..r15, cpsr, orig_r0), so SP is
  at 124, LR at 128, PC at 132. prpsinfo ``pr_fname[16]`` at 28.
* x86-64 (EM_X86_64, ELFCLASS64): prstatus desc 336 bytes, ``pr_cursig`` at
  12, ``pr_pid`` at 32, ``pr_reg[27]`` at 112 (rip is index 16, rsp 19).
  prpsinfo ``pr_fname[16]`` at 40.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field

ELF_MAGIC = b"\x7fELF"
ET_CORE = 4
EM_ARM = 40
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
NT_PRSTATUS = 1
NT_PRPSINFO = 3
NT_AUXV = 6
NT_GNU_BUILD_ID = 3
NT_FILE = 0x46494C45
NT_SIGINFO = 0x53494749

#: Bytes of a file needed to tell whether it is an ELF core.
HEADER_BYTES = 20
ELFCLASS32 = 1
ELFCLASS64 = 2
#: Size of the ELF header and of one program header, by ELF class.
EHDR_SIZE = {ELFCLASS32: 52, ELFCLASS64: 64}
PHDR_SIZE = {ELFCLASS32: 32, ELFCLASS64: 56}
#: ``struct elf_prstatus`` (the NT_PRSTATUS note's desc) by machine.
PRSTATUS_SIZE = {EM_ARM: 148, EM_X86_64: 336}
MACHINE_NAMES = {EM_ARM: "arm", EM_X86_64: "x86_64"}


class CoreFormatError(ValueError):
    """The bytes are not an ELF core this module can read."""


@dataclass(frozen=True)
class Mapping:
    """A file-backed mapping of the crashed process (from NT_FILE)."""

    start: int
    end: int
    file_offset: int
    path: str


@dataclass(frozen=True)
class Segment:
    """A PT_LOAD segment: memory of the process, as far as the core holds it."""

    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int


@dataclass
class CoreInfo:
    """What a core says about its crash."""

    machine: int
    elf_class: int
    signal: int
    pid: int
    registers: dict[str, int]
    executable: str = ""
    mappings: list[Mapping] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    build_id: str | None = None

    @property
    def arch(self) -> str:
        return {EM_ARM: "arm", EM_X86_64: "x86_64"}.get(self.machine, f"machine-{self.machine}")

    @property
    def pc(self) -> int:
        return self.registers["pc"]

    @property
    def sp(self) -> int:
        return self.registers["sp"]

    @property
    def lr(self) -> int | None:
        return self.registers.get("lr")

    def mapping_at(self, address: int) -> Mapping | None:
        """The file mapping that holds ``address``, if the core names one."""
        for mapping in self.mappings:
            if mapping.start <= address < mapping.end:
                return mapping
        return None

    def pc_offset(self) -> int:
        """PC relative to the load address of the file that holds it (stable across ASLR).

        The load address is the start of that file's mapping at file offset 0;
        without NT_FILE information the absolute PC is returned.
        """
        mapping = self.mapping_at(self.pc)
        if mapping is None:
            return self.pc
        base = min(
            (m.start - m.file_offset for m in self.mappings if m.path == mapping.path),
            default=mapping.start - mapping.file_offset,
        )
        return self.pc - base


def is_elf_core(data: bytes) -> bool:
    """True when ``data`` starts like an ELF core file (magic, class, data, ET_CORE)."""
    if len(data) < HEADER_BYTES or data[:4] != ELF_MAGIC:
        return False
    elf_class, elf_data = data[4], data[5]
    if elf_class not in (1, 2) or elf_data not in (1, 2):
        return False
    endian = "<" if elf_data == 1 else ">"
    (e_type,) = struct.unpack_from(endian + "H", data, 16)
    return e_type == ET_CORE


class _Reader:
    def __init__(self, data: bytes, elf_class: int, endian: str) -> None:
        self.data = data
        self.endian = endian
        self.word = "I" if elf_class == 1 else "Q"
        self.word_size = 4 if elf_class == 1 else 8

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        layout = _struct(self.endian, self.word, fmt)
        if offset < 0 or offset + layout.size > len(self.data):
            raise CoreFormatError(f"truncated core: needs {layout.format!r} at offset {offset}")
        return layout.unpack_from(self.data, offset)


@functools.lru_cache(maxsize=128)
def _struct(endian: str, word: str, fmt: str) -> struct.Struct:
    """The compiled layout of ``fmt`` ("W": the class's word) in ``endian`` (checks read many)."""
    return struct.Struct(endian + fmt.replace("W", word))


@dataclass(frozen=True)
class ProgramHeader:
    type: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int


@dataclass(frozen=True)
class ElfLayout:
    """The ELF header fields of a core and its program headers (as written, unchecked)."""

    elf_class: int
    endian: str
    machine: int
    phentsize: int
    phoff: int
    headers: list[ProgramHeader]


def elf_layout(data: bytes) -> ElfLayout:
    """Read the ELF header and the program header table; CoreFormatError when they do not fit."""
    if not is_elf_core(data):
        raise CoreFormatError("not an ELF core file (bad magic, class or e_type)")
    elf_class, elf_data = data[4], data[5]
    reader = _Reader(data, elf_class, "<" if elf_data == 1 else ">")
    (machine,) = reader.unpack("H", 18)
    if elf_class == ELFCLASS32:
        (phoff,) = reader.unpack("I", 28)
        phentsize, phnum = reader.unpack("HH", 42)
    else:
        (phoff,) = reader.unpack("Q", 32)
        phentsize, phnum = reader.unpack("HH", 54)
    headers = []
    for i in range(phnum):
        at = phoff + i * phentsize
        if elf_class == ELFCLASS32:
            p_type, p_offset, p_vaddr, _pa, p_filesz, p_memsz, p_flags = reader.unpack("IIIIIII", at)
        else:
            p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz = reader.unpack("IIQQQQQ", at)
        headers.append(ProgramHeader(p_type, p_offset, p_vaddr, p_filesz, p_memsz, p_flags))
    return ElfLayout(elf_class, reader.endian, machine, phentsize, phoff, headers)


def iter_notes(data: bytes, layout: ElfLayout, offset: int, size: int):
    """(name, type, desc) of each note in ``data[offset:offset+size]``; CoreFormatError when one is torn."""
    return _notes(_Reader(data, layout.elf_class, layout.endian), offset, size)


def _notes(reader: _Reader, offset: int, size: int):
    end = min(offset + size, len(reader.data))
    pos = offset
    while pos + 12 <= end:
        namesz, descsz, note_type = reader.unpack("III", pos)
        name_start = pos + 12
        desc_start = name_start + ((namesz + 3) & ~3)
        desc_end = desc_start + descsz
        if desc_end > end:
            raise CoreFormatError(f"truncated note of type {note_type:#x} at offset {pos}")
        name = reader.data[name_start : name_start + namesz].rstrip(b"\0")
        yield name, note_type, reader.data[desc_start:desc_end]
        pos = desc_start + ((descsz + 3) & ~3)


def _registers(machine: int, desc: bytes, endian: str) -> tuple[int, int, dict[str, int]]:
    if machine == EM_ARM:
        if len(desc) < 148:
            raise CoreFormatError(f"ARM NT_PRSTATUS is {len(desc)} bytes, expected 148")
        (signal,) = struct.unpack_from(endian + "H", desc, 12)
        (pid,) = struct.unpack_from(endian + "i", desc, 24)
        regs = struct.unpack_from(endian + "18I", desc, 72)
        names = [f"r{i}" for i in range(13)] + ["sp", "lr", "pc", "cpsr", "orig_r0"]
        return signal, pid, dict(zip(names, regs, strict=True))
    if machine == EM_X86_64:
        if len(desc) < 336:
            raise CoreFormatError(f"x86-64 NT_PRSTATUS is {len(desc)} bytes, expected 336")
        (signal,) = struct.unpack_from(endian + "H", desc, 12)
        (pid,) = struct.unpack_from(endian + "i", desc, 32)
        regs = struct.unpack_from(endian + "27Q", desc, 112)
        names = [
            "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax",
            "rcx", "rdx", "rsi", "rdi", "orig_rax", "pc", "cs", "eflags", "sp", "ss",
            "fs_base", "gs_base", "ds", "es", "fs", "gs",
        ]  # fmt: skip
        return signal, pid, dict(zip(names, regs, strict=True))
    raise CoreFormatError(f"unsupported ELF machine {machine} (ARM and x86-64 are read)")


def _file_mappings(reader: _Reader, desc: bytes) -> list[Mapping]:
    sub = _Reader(desc, 1 if reader.word_size == 4 else 2, reader.endian)
    count, _page_size = sub.unpack("WW", 0)
    table = 2 * sub.word_size
    names_at = table + count * 3 * sub.word_size
    if names_at > len(desc):
        raise CoreFormatError("truncated NT_FILE note")
    names = desc[names_at:].split(b"\0")
    if len(names) < count:
        raise CoreFormatError("NT_FILE note names fewer files than it counts")
    mappings = []
    for i in range(count):
        start, end, page_offset = sub.unpack("WWW", table + i * 3 * sub.word_size)
        mappings.append(
            Mapping(start, end, page_offset * _page_size, names[i].decode(errors="replace"))
        )
    return mappings


def _read_memory(reader: _Reader, segments: list[Segment], vaddr: int, size: int) -> bytes | None:
    for seg in segments:
        if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.filesz:
            start = seg.offset + (vaddr - seg.vaddr)
            return reader.data[start : start + size]
    return None


def _build_id(reader: _Reader, segments: list[Segment], mappings: list[Mapping], exe: str) -> str | None:
    """The GNU build id of the executable, when the core holds its first page."""
    bases = [m.start for m in mappings if m.file_offset == 0 and m.path.endswith("/" + exe)]
    bases += [m.start for m in mappings if m.file_offset == 0 and m not in bases]
    for base in bases:
        header = _read_memory(reader, segments, base, 64)
        if not header or header[:4] != ELF_MAGIC:
            continue
        elf_class = header[4]
        hdr = _Reader(header, elf_class, reader.endian)
        try:
            if elf_class == 1:
                (phoff,) = hdr.unpack("I", 28)
                phentsize, phnum = hdr.unpack("HH", 42)
            else:
                (phoff,) = hdr.unpack("Q", 32)
                phentsize, phnum = hdr.unpack("HH", 54)
        except CoreFormatError:
            continue
        table = _read_memory(reader, segments, base + phoff, phentsize * phnum)
        if table is None:
            continue
        ph = _Reader(table, elf_class, reader.endian)
        for i in range(phnum):
            at = i * phentsize
            if elf_class == 1:
                p_type, p_offset, _va, _pa, p_filesz = ph.unpack("IIIII", at)
            else:
                p_type, _flags, p_offset, _va, _pa, p_filesz = ph.unpack("IIQQQQ", at)
            if p_type != PT_NOTE:
                continue
            blob = _read_memory(reader, segments, base + p_offset, p_filesz)
            if blob is None:
                continue
            try:
                for name, note_type, desc in _notes(_Reader(blob, elf_class, reader.endian), 0, len(blob)):
                    if name == b"GNU" and note_type == NT_GNU_BUILD_ID:
                        return desc.hex()
            except CoreFormatError:
                continue
    return None


def read_core(data: bytes) -> CoreInfo:
    """Parse an ELF core: signal, pid, registers, executable name, mappings, build id.

    Raises :class:`CoreFormatError` with a reason for anything else.
    """
    layout = elf_layout(data)
    elf_class, machine = layout.elf_class, layout.machine
    reader = _Reader(data, elf_class, layout.endian)
    if not layout.headers:
        raise CoreFormatError("core has no program headers")

    segments: list[Segment] = []
    notes: list[tuple[int, int]] = []
    for ph in layout.headers:
        if ph.type == PT_NOTE:
            notes.append((ph.offset, ph.filesz))
        elif ph.type == PT_LOAD:
            filesz = max(0, min(ph.filesz, len(data) - ph.offset))
            segments.append(Segment(ph.vaddr, ph.memsz, ph.offset, filesz, ph.flags))
    if not notes:
        raise CoreFormatError("core has no PT_NOTE segment")

    prstatus: bytes | None = None
    executable = ""
    mappings: list[Mapping] = []
    for offset, size in notes:
        for name, note_type, desc in _notes(reader, offset, size):
            if name != b"CORE":
                continue
            if note_type == NT_PRSTATUS and prstatus is None:
                prstatus = desc  # the first thread's is the one that crashed
            elif note_type == NT_PRPSINFO:
                fname_at = 28 if elf_class == 1 else 40
                executable = desc[fname_at : fname_at + 16].split(b"\0")[0].decode(errors="replace")
            elif note_type == NT_FILE:
                mappings = _file_mappings(reader, desc)
    if prstatus is None:
        raise CoreFormatError("core has no NT_PRSTATUS note")
    signal, pid, registers = _registers(machine, prstatus, reader.endian)
    info = CoreInfo(machine, elf_class, signal, pid, registers, executable, mappings, segments)
    info.build_id = _build_id(reader, segments, mappings, executable) if mappings else None
    return info
