"""A small writer for the cpio "newc" format the Linux initramfs uses.

Written in Python so the image needs no root (device nodes, uid 0) and is
byte-for-byte reproducible (fixed mtimes, sorted entries).
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Entry:
    path: str  # inside the archive, without a leading slash
    mode: int  # full st_mode (type and permission bits)
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


class CpioWriter:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = Entry(d, stat.S_IFDIR | 0o755)

    def add_dir(self, path: str, perm: int = 0o755) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = Entry(path, stat.S_IFDIR | perm)

    def add_file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = Entry(path, stat.S_IFREG | perm, data)

    def add_symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = Entry(path, stat.S_IFLNK | 0o777, target.encode())

    def add_chardev(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = Entry(path, stat.S_IFCHR | perm, rdev=(major, minor))

    def add_tree(self, source: Path, prefix: str = "") -> None:
        """Add a host directory tree (files keep their permission bits)."""
        for item in sorted(source.rglob("*")):
            rel = item.relative_to(source).as_posix()
            dest = f"{prefix.strip('/')}/{rel}".strip("/")
            st = item.lstat()
            if stat.S_ISLNK(st.st_mode):
                self.add_symlink(dest, str(item.readlink()))
            elif stat.S_ISDIR(st.st_mode):
                self.add_dir(dest, stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                self.add_file(dest, item.read_bytes(), stat.S_IMODE(st.st_mode))

    def to_bytes(self) -> bytes:
        out = bytearray()
        ino = 1
        for name in sorted(self.entries):
            e = self.entries[name]
            out += _header(ino, e.mode, len(e.data), e.rdev, name)
            out += e.data
            out += b"\0" * (-len(out) % 4)
            ino += 1
        out += _header(0, 0, 0, (0, 0), "TRAILER!!!")
        out += b"\0" * (-len(out) % 512)
        return bytes(out)

    def write_gz(self, path: Path, level: int = 6) -> None:
        path.write_bytes(gzip.compress(self.to_bytes(), compresslevel=level, mtime=0))


def _header(ino: int, mode: int, size: int, rdev: tuple[int, int], name: str) -> bytes:
    encoded = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(encoded), 0]
    header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    data = header + encoded
    return data + b"\0" * (-len(data) % 4)
