"""ELF core parsing in C (tb-tool core) against real cores, cross-checked with testbed.crash.elfcore."""

from __future__ import annotations

import gzip
import random
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from fw_helpers import HOST_BIN, make_core, parse_kv

from testbed.crash.elfcore import read_core
from testbed.crash.signature import core_signature
from testbed.paths import REPO_ROOT

ARM_CORES = sorted((REPO_ROOT / "testbed" / "load" / "cores").glob("*.core.gz"))


def c_parse(fw_bin: Path, core: bytes, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "in.core"
    path.write_bytes(core)
    proc = subprocess.run([str(fw_bin / "tb-tool"), "core", str(path)], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    return parse_kv(proc.stdout)


@pytest.fixture(scope="module")
def host_cores(fw_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    work = tmp_path_factory.mktemp("cores")
    try:
        return {
            mode: make_core(fw_bin, work / mode, "--mode", mode, "--heap-kib", "16")
            for mode in ("segv", "abort", "fpe", "stack")
        }
    except RuntimeError as exc:
        pytest.skip(f"cannot make host cores: {exc}")


def assert_same_as_python(c: dict[str, str], core: bytes) -> None:
    info = read_core(core)
    assert int(c["signal"]) == info.signal
    assert int(c["pid"]) == info.pid
    assert int(c["pc"], 16) == info.pc
    assert int(c["sp"], 16) == info.sp
    if info.lr is not None:
        assert int(c["lr"], 16) == info.lr
    assert c["exe"] == info.executable
    assert c["build_id"] == (info.build_id or "-")
    assert int(c["pc_offset"], 16) == info.pc_offset()
    assert c["signature"] == core_signature(info)


@pytest.mark.parametrize("mode,signal", [("segv", 11), ("abort", 6), ("fpe", 8), ("stack", 11)])
def test_host_core_matches_python_reader(fw_bin, host_cores, tmp_path, mode, signal):
    core = host_cores[mode]
    c = c_parse(fw_bin, core, tmp_path)
    assert int(c["signal"]) == signal
    assert c["exe"] == "crashapp"
    assert len(c["build_id"]) == 40  # built with --build-id=sha1
    assert_same_as_python(c, core)


def test_segv_pc_is_the_faulting_store(fw_bin, host_cores, tmp_path):
    """The PC offset lands inside crash_segv of the very binary that crashed."""
    c = c_parse(fw_bin, host_cores["segv"], tmp_path)
    with (HOST_BIN / "crashapp").open("rb") as fh:  # the binary that crashed
        elf = ELFFile(fh)
        build_id = next(
            note["n_desc"] for sec in elf.iter_sections() if sec["sh_type"] == "SHT_NOTE"
            for note in sec.iter_notes() if note["n_type"] == "NT_GNU_BUILD_ID"
        )
        sym = elf.get_section_by_name(".symtab").get_symbol_by_name("crash_segv")[0]
    assert c["build_id"] == build_id
    offset = int(c["pc_offset"], 16)
    assert sym["st_value"] <= offset < sym["st_value"] + sym["st_size"], (hex(offset), hex(sym["st_value"]))


@pytest.mark.parametrize("path", ARM_CORES, ids=lambda p: p.name)
def test_arm_cores_match_python_reader(fw_bin, tmp_path, path):
    core = gzip.decompress(path.read_bytes())
    c = c_parse(fw_bin, core, tmp_path)
    assert c["machine"] == "40" and c["class"] == "1"
    info = read_core(core)
    # 32-bit ARM NT_PRSTATUS layout: cursig @12, PC @132, SP @124, LR @128
    assert int(c["signal"]) in (6, 8, 11)
    assert int(c["lr"], 16) == info.lr
    assert_same_as_python(c, core)


def test_mutated_cores_never_crash_the_parser(fw_bin, host_cores, tmp_path):
    """Truncations and byte flips give a parse or a clear error, never a crash of the reader."""
    rng = random.Random(4)
    base = host_cores["segv"]
    arm = gzip.decompress(ARM_CORES[0].read_bytes()) if ARM_CORES else base
    path = tmp_path / "bad.core"
    for i in range(150):
        src = base if i % 2 else arm
        data = bytearray(src[: rng.randrange(0, len(src))] if i % 3 == 0 else src)
        for _ in range(rng.randrange(1, 40)):
            pos = rng.randrange(0, min(len(data), 4096) or 1) if data else 0
            if data:
                data[pos] = rng.randrange(256)
        path.write_bytes(bytes(data))
        proc = subprocess.run([str(fw_bin / "tb-tool"), "core", str(path)], capture_output=True, timeout=10)
        assert proc.returncode in (0, 1), (i, proc.returncode, proc.stderr)
        if proc.returncode == 1:
            assert proc.stderr.strip(), "an error must say why"


@pytest.mark.parametrize(
    "data,why",
    [
        (b"", "not an ELF"),
        (b"hello world, not a core at all" * 3, "not an ELF"),
        (b"\x7fELF\x01\x01\x01" + b"\0" * 9 + b"\x02\x00" + b"\0" * 40, "ET_CORE"),
    ],
)
def test_not_a_core_is_a_clear_error(fw_bin, tmp_path, data, why):
    path = tmp_path / "x"
    path.write_bytes(data)
    proc = subprocess.run([str(fw_bin / "tb-tool"), "core", str(path)], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1
    assert why in proc.stderr
