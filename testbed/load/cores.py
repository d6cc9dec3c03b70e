"""Upload bodies for simulated devices: real gzip'd ARM ELF cores, grouped by size bucket.

The fixtures live in ``testbed/load/cores/`` (see its README for how each was
made). Request names in Locust's statistics carry the bucket, so throughput
and latency are reported per size.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CORES_DIR = Path(__file__).resolve().parent / "cores"

#: (label, upper bound in bytes, exclusive) of the compressed size; the last one is open.
BUCKETS: tuple[tuple[str, int], ...] = (
    ("le8k", 8 * 1024),
    ("8-16k", 16 * 1024),
    ("16-32k", 32 * 1024),
    ("32-64k", 64 * 1024),
    ("gt64k", 1 << 62),
)


def bucket_of(size: int) -> str:
    """The size bucket label of a compressed body of ``size`` bytes."""
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    for label, upper in BUCKETS:
        if size < upper:
            return label
    return BUCKETS[-1][0]


@dataclass(frozen=True)
class CoreFixture:
    """One upload body: the gzip of a real ELF core and its crash signature."""

    name: str
    body: bytes
    signature: str

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def bucket(self) -> str:
        return bucket_of(len(self.body))


def check_core_gzip(body: bytes, *, name: str = "body") -> None:
    """Raise ValueError unless ``body`` is the gzip of a 32-bit ARM ELF core file."""
    try:
        raw = gzip.decompress(body)
    except (OSError, EOFError) as exc:
        raise ValueError(f"{name}: not a valid gzip stream: {exc}") from exc
    if raw[:4] != b"\x7fELF":
        raise ValueError(f"{name}: inflated data is not an ELF file")
    if len(raw) < 52:
        raise ValueError(f"{name}: ELF header truncated")
    e_type, e_machine = struct.unpack_from("<HH", raw, 16)
    if e_type != 4:
        raise ValueError(f"{name}: ELF e_type is {e_type}, not ET_CORE (4)")
    if e_machine != 40:
        raise ValueError(f"{name}: ELF e_machine is {e_machine}, not ARM (40)")


def _signature(body: bytes) -> str | None:
    """The crash signature the firmware computes for this core (testbed.crash.signature), if it can be read."""
    from testbed.crash.signature import signature_of_core

    try:
        return signature_of_core(gzip.decompress(body))
    except ValueError:
        return None


def _stand_in_signature(name: str) -> str:
    return hashlib.sha256(f"fixture|{name}".encode()).hexdigest()[:32]


@lru_cache(maxsize=4)
def load_cores(directory: str | None = None) -> tuple[CoreFixture, ...]:
    """All ``*.core.gz`` fixtures of ``directory`` (default: the packaged ones), smallest first.

    Each is checked to be a gzip'd ARM ELF core; a broken fixture is a clear error.
    """
    root = Path(directory) if directory else CORES_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"core fixture directory {root} does not exist")
    manifest: dict[str, str] = {}
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        for entry in json.loads(manifest_path.read_text()):
            manifest[entry["file"]] = entry["signature"]
    fixtures = []
    for path in sorted(root.glob("*.core.gz")):
        body = path.read_bytes()
        check_core_gzip(body, name=str(path))
        stem = path.name.removesuffix(".core.gz")
        fixtures.append(CoreFixture(stem, body, _signature(body) or manifest.get(path.name) or _stand_in_signature(stem)))
    if not fixtures:
        raise FileNotFoundError(f"no *.core.gz fixtures in {root}")
    return tuple(sorted(fixtures, key=lambda f: f.size))


def variant_signature(fixture: CoreFixture, variant: int) -> str:
    """A distinct, well-formed signature for ``variant`` of a fixture's crash.

    Variant 0 is the fixture's own signature; others stand for different
    crash sites with the same body size (the service treats signatures as opaque).
    """
    if variant == 0:
        return fixture.signature
    return hashlib.sha256(f"{fixture.signature}|{variant}".encode()).hexdigest()[:32]
