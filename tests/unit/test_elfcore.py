"""testbed.crash.elfcore against real cores made on the host, and against bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from testbed.crash.elfcore import CoreFormatError, is_elf_core, read_core

CRASHER = r"""
#include <stdlib.h>
#include <string.h>
__attribute__((noinline)) int crash_here(volatile int *p) { return *p; }
int main(void) {
    char *heap = malloc(64 * 1024);
    memset(heap, 0x5a, 64 * 1024);
    return crash_here((volatile int *)0) + heap[1];
}
"""


@pytest.fixture(scope="module")
def host_core(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A static host program that dereferences NULL, and the core gdb wrote at the fault."""
    if not shutil.which("gdb"):
        pytest.fail("gdb is needed to make a host core (bootstrap.sh installs it)")
    work = tmp_path_factory.mktemp("core")
    (work / "crasher.c").write_text(CRASHER)
    exe = work / "crasher"
    subprocess.run(
        ["gcc", "-O1", "-g", "-static", "-Wl,--build-id", "-o", str(exe), str(work / "crasher.c")],
        check=True,
    )
    core = work / "crasher.core"
    subprocess.run(
        ["gdb", "-batch", "-nx", "-ex", "run", "-ex", f"generate-core-file {core}", str(exe)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert core.exists(), "gdb did not write the core"
    return exe, core


def _symbol_range(exe: Path, name: str) -> tuple[int, int]:
    with exe.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        sym = symtab.get_symbol_by_name(name)[0]
        return sym["st_value"], sym["st_value"] + sym["st_size"]


def _build_id(exe: Path) -> str:
    with exe.open("rb") as f:
        for note in ELFFile(f).get_section_by_name(".note.gnu.build-id").iter_notes():
            return note["n_desc"]
    raise AssertionError("no build id")


def test_reads_signal_pc_and_build_id_of_a_real_crash(host_core: tuple[Path, Path]) -> None:
    exe, core = host_core
    info = read_core(core.read_bytes())
    assert info.arch == "x86_64"
    assert info.signal == 11
    start, end = _symbol_range(exe, "crash_here")
    assert start <= info.pc < end, f"PC {info.pc:#x} not in crash_here [{start:#x}, {end:#x})"
    assert info.sp != 0
    assert info.build_id == _build_id(exe)
    assert info.mapping_at(info.pc) is not None
    # a static non-PIE executable loads at its link address: the offset is stable
    assert info.pc_offset() == info.pc - min(m.start for m in info.mappings if m.path == str(exe))


def test_truncated_core_is_refused_with_a_reason(host_core: tuple[Path, Path]) -> None:
    data = host_core[1].read_bytes()
    assert is_elf_core(data[:64])
    with pytest.raises(CoreFormatError):
        read_core(data[:200])


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x7fELF", b"not an elf at all, just text....", b"\x7fELF\x01\x01\x01" + b"\0" * 9 + b"\x02\x00" + b"\0" * 40],
    ids=["empty", "magic-only", "text", "executable-not-core"],
)
def test_non_cores_are_not_cores(blob: bytes) -> None:
    assert not is_elf_core(blob)
    with pytest.raises(CoreFormatError):
        read_core(blob)


def test_crash_analyze_command_names_the_function(host_core: tuple[Path, Path]) -> None:
    """`testbed crash analyze CORE --symbols DIR` on a core brought from elsewhere."""
    from click.testing import CliRunner

    from testbed.cli import main

    exe, core = host_core
    r = CliRunner().invoke(main, ["crash", "analyze", str(core), "--symbols", str(exe.parent)])
    assert r.exit_code == 0, r.output
    assert "SIGSEGV" in r.output and "crash_here+" in r.output and "call chain" in r.output
    bad = CliRunner().invoke(main, ["crash", "analyze", str(exe)])  # not a core
    assert bad.exit_code == 1 and str(exe) in bad.output
