"""Crash analysis view: what a stored dump says, in terms a person reads.

Signal (number and name), the registers, and, when the crashed app's ELF with
symbols is at hand, the function that faulted (and the caller, from LR),
resolved with pyelftools. The facts come from :func:`testbed.crash.elfcore.read_core`.
"""

from __future__ import annotations

import gzip
import signal as signal_module
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from testbed.crash.elfcore import CoreFormatError, CoreInfo, read_core


@dataclass
class Symbol:
    name: str
    offset: int  # bytes from the symbol's start


@dataclass
class CrashAnalysis:
    signal: int
    signal_name: str
    executable: str
    arch: str
    pid: int
    pc: int
    sp: int
    lr: int | None
    pc_offset: int
    registers: dict[str, int]
    build_id: str | None = None
    function: Symbol | None = None
    caller: Symbol | None = None
    symbols_from: str | None = None
    stack_scan: list[Symbol] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def where(self) -> str:
        """``func+0x12`` or ``pc 0x…`` when no symbols are known."""
        if self.function:
            return f"{self.function.name}+{self.function.offset:#x}"
        return f"pc {self.pc:#x} (offset {self.pc_offset:#x}, no symbols)"


def signal_name(number: int) -> str:
    try:
        return signal_module.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def decompress(data: bytes) -> bytes:
    """The ELF core inside ``data`` (gzip'd as uploaded, or raw)."""
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise CoreFormatError(f"bad gzip: {exc}") from None
    return data


@dataclass
class _SymbolTable:
    path: str
    is_pie: bool
    build_id: str | None
    functions: list[tuple[int, int, str]]  # (start, size, name), sorted

    def lookup(self, address: int) -> Symbol | None:
        best = None
        for start, size, name in self.functions:
            if start > address:
                break
            if address < start + max(size, 1) or (size == 0 and best is None):
                best = (start, name)
        if best is None:
            return None
        return Symbol(best[1], address - best[0])


@lru_cache(maxsize=64)
def _load_symbols(path: str, mtime: float) -> _SymbolTable | None:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import NoteSection, SymbolTableSection

    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            build_id = None
            for section in elf.iter_sections():
                if isinstance(section, NoteSection):  # what pyelftools makes of every SHT_NOTE section
                    for note in section.iter_notes():
                        if note["n_type"] == "NT_GNU_BUILD_ID":
                            build_id = note["n_desc"]
            functions: list[tuple[int, int, str]] = []
            symtab = elf.get_section_by_name(".symtab")
            if isinstance(symtab, SymbolTableSection):
                for sym in symtab.iter_symbols():
                    if sym["st_info"]["type"] == "STT_FUNC" and sym.name and sym["st_value"]:
                        # ARM thumb functions have bit 0 set
                        functions.append((sym["st_value"] & ~1, sym["st_size"], sym.name))
            functions.sort()
            return _SymbolTable(path, elf.header["e_type"] == "ET_DYN", build_id, functions)
    except (OSError, ELFError):
        return None


def find_symbols(executable: str, search: Iterable[str | Path], build_id: str | None = None) -> _SymbolTable | None:
    """The first ELF named ``executable`` under the search directories that has function symbols.

    When the core carries a build id and the ELF has one too, they must match.
    """
    dirs = [Path(base) for base in search if Path(base).is_dir()]
    if executable:
        for base in dirs:
            for candidate in sorted(base.rglob(executable)):
                table = _table(candidate)
                if table is None:
                    continue
                if build_id and table.build_id and table.build_id != build_id:
                    continue
                return table
    if build_id:  # the same binary installed under another name (crashsvc is crashapp)
        for base in dirs:
            for candidate in sorted(base.rglob("*")):
                table = _table(candidate)
                if table is not None and table.build_id == build_id:
                    return table
    return None


def _table(candidate: Path) -> _SymbolTable | None:
    try:
        if not candidate.is_file() or candidate.stat().st_size > 64 << 20:
            return None
        with open(candidate, "rb") as fh:
            if fh.read(4) != b"\x7fELF":
                return None
        table = _load_symbols(str(candidate), candidate.stat().st_mtime)
    except OSError:
        return None
    return table if table is not None and table.functions else None


STACK_SCAN_BYTES = 4096
STACK_SCAN_FRAMES = 12


def _stack_words(core: CoreInfo, data: bytes, limit: int = STACK_SCAN_BYTES) -> list[int]:
    """The words on the crashed thread's stack from SP upwards, as far as the core holds them."""
    size = 4 if core.elf_class == 1 else 8
    for seg in core.segments:
        if seg.vaddr <= core.sp < seg.vaddr + seg.filesz:
            start = seg.offset + (core.sp - seg.vaddr)
            end = min(seg.offset + seg.filesz, start + limit, len(data))
            raw = data[start:end]
            return [int.from_bytes(raw[i : i + size], "little") for i in range(0, len(raw) - size + 1, size)]
    return []


def _scan(core: CoreInfo, data: bytes, table: _SymbolTable, base: int) -> list[Symbol]:
    """Probable callers: stack words that point inside a function (not at its start). A heuristic."""
    out: list[Symbol] = []
    thumb = core.arch == "arm" and bool(core.registers.get("cpsr", 0) & 0x20)
    for word in _stack_words(core, data):
        if not word or (thumb and not word & 1):
            continue  # a Thumb return address has bit 0 set
        sym = table.lookup((word & ~1) - base)
        if sym is None or sym.offset == 0:
            continue
        size = next((sz for _st, sz, name in table.functions if name == sym.name), 0)
        if not size or sym.offset >= size:
            continue
        if out and out[-1].name == sym.name:
            continue
        out.append(sym)
        if len(out) >= STACK_SCAN_FRAMES or sym.name.startswith("__libc_start"):
            break  # below the C runtime's entry the stack holds only start-up leftovers
    return out


def analyze(core: CoreInfo, symbol_dirs: Iterable[str | Path] = (), data: bytes | None = None) -> CrashAnalysis:
    """The analysis of a parsed core, with function names when symbols are found.

    With the core's bytes (``data``), the stack is also scanned for probable callers.
    """
    result = CrashAnalysis(
        signal=core.signal,
        signal_name=signal_name(core.signal),
        executable=core.executable,
        arch=core.arch,
        pid=core.pid,
        pc=core.pc,
        sp=core.sp,
        lr=core.lr,
        pc_offset=core.pc_offset(),
        registers=dict(core.registers),
        build_id=core.build_id,
    )
    table = find_symbols(core.executable, symbol_dirs, core.build_id)
    if table is None:
        result.notes.append(f"no symbols found for {core.executable or 'the executable'}")
        return result
    result.symbols_from = table.path
    base = core.pc - result.pc_offset if table.is_pie else 0
    result.function = table.lookup(core.pc - base)
    if core.lr is not None and core.arch == "arm":
        result.caller = table.lookup((core.lr & ~1) - base)
    if data is not None:
        result.stack_scan = _scan(core, data, table, base)
    return result


def analyze_bytes(data: bytes, symbol_dirs: Iterable[str | Path] = ()) -> CrashAnalysis:
    """Analyse a dump as stored (gzip'd ELF core) or a raw core."""
    raw = decompress(data)
    return analyze(read_core(raw), symbol_dirs, raw)
