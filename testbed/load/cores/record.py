"""Record the load-test core fixtures (developer tool; CI uses the committed files).

Builds ``crashapp.c`` as a static armhf binary, runs it under qemu-user
(Debian package ``qemu-user``) so that it crashes and leaves a real 32-bit ARM
ELF core, gzips the core and writes ``manifest.json`` with each fixture's size,
signal, PC and crash signature (the algorithm of docs/device-api.md).

    python testbed/load/cores/record.py
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from testbed.crash.signature import signature_of_core  # noqa: E402

HERE = Path(__file__).resolve().parent

#: name -> (mode, heap KiB, entropy percent): compressed sizes spread over the buckets.
FIXTURES: dict[str, tuple[str, int, int]] = {
    "segv-xs": ("segv", 1, 5),
    "abort-s": ("abort", 16, 10),
    "segv-m": ("segv", 48, 16),
    "fpe-l": ("fpe", 80, 20),
}

SIGNALS = {"segv": 11, "abort": 6, "fpe": 8}


def _notes(data: bytes) -> list[tuple[str, int, bytes]]:
    """Parse the PT_NOTE segments of a 32-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise ValueError("not a 32-bit little-endian ELF file")
    e_phoff, = struct.unpack_from("<I", data, 28)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 42)
    out = []
    for i in range(e_phnum):
        p_type, p_offset, _va, _pa, p_filesz = struct.unpack_from("<IIIII", data, e_phoff + i * e_phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            name = data[pos + 12 : pos + 12 + namesz].rstrip(b"\0").decode()
            dpos = pos + 12 + ((namesz + 3) & ~3)
            out.append((name, ntype, data[dpos : dpos + descsz]))
            pos = dpos + ((descsz + 3) & ~3)
    return out


def _load_base(data: bytes) -> int:
    e_phoff, = struct.unpack_from("<I", data, 28)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 42)
    bases = []
    for i in range(e_phnum):
        p_type, _off, p_vaddr = struct.unpack_from("<III", data, e_phoff + i * e_phentsize)
        if p_type == 1:  # PT_LOAD
            bases.append(p_vaddr)
    return min(bases)


def signature(exe: Path, core: bytes) -> tuple[str, int, int]:
    exe_data = exe.read_bytes()
    build_id = "-"
    for name, ntype, desc in _notes(exe_data):
        if name == "GNU" and ntype == 3:  # NT_GNU_BUILD_ID
            build_id = desc.hex()
    prstatus = next(desc for name, ntype, desc in _notes(core) if name == "CORE" and ntype == 1)
    if len(prstatus) != 148:
        raise ValueError(f"NT_PRSTATUS is {len(prstatus)} bytes, expected 148 (32-bit ARM)")
    cursig, = struct.unpack_from("<H", prstatus, 12)
    pc, = struct.unpack_from("<I", prstatus, 132)
    offset = pc - _load_base(exe_data)
    text = f"{exe.name}|{build_id}|{cursig}|{offset:x}"
    return hashlib.sha256(text.encode()).hexdigest()[:32], cursig, pc


def main() -> int:
    for tool in ("arm-linux-gnueabihf-gcc", "qemu-arm"):
        if shutil.which(tool) is None:
            print(f"record.py: {tool} not found (Debian packages gcc-arm-linux-gnueabihf, qemu-user)", file=sys.stderr)
            return 1
    manifest = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        exe = tmp / "crashapp"
        subprocess.run(["arm-linux-gnueabihf-gcc", "-static", "-O1", "-o", str(exe), str(HERE / "crashapp.c")], check=True)
        for name, (mode, heap_kib, entropy) in FIXTURES.items():
            for old in tmp.glob("*.core"):
                old.unlink()
            subprocess.run(
                ["qemu-arm", "-s", "65536", str(exe), mode, str(heap_kib), str(entropy)],
                cwd=tmp, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (-1, -1)),
                stderr=subprocess.DEVNULL, check=False,
            )
            cores = list(tmp.glob("*.core"))
            if len(cores) != 1:
                print(f"record.py: {name}: expected one core, found {cores}", file=sys.stderr)
                return 1
            raw = cores[0].read_bytes()
            _old_sig, cursig, pc = signature(exe, raw)
            sig = signature_of_core(raw)  # the repository's one implementation (same as the firmware's)
            if cursig != SIGNALS[mode]:
                raise SystemExit(f"{name}: core says signal {cursig}, expected {SIGNALS[mode]}")
            body = gzip.compress(raw, compresslevel=9, mtime=0)
            out = HERE / f"{name}.core.gz"
            out.write_bytes(body)
            manifest.append({
                "file": out.name, "signal": cursig, "pc": f"0x{pc:08x}", "signature": sig,
                "raw_bytes": len(raw), "gzip_bytes": len(body),
                "made_by": f"qemu-arm -s 65536 crashapp {mode} {heap_kib} {entropy}",
            })
            print(f"{out.name}: {len(body)} B gzip of {len(raw)} B core, signal {cursig}, signature {sig}")
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
