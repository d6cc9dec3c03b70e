"""The image's lock file: each pinned Debian package with its version and sha256.

Format of ``images/packages.lock`` (one package a line, ``#`` comments)::

    <package> <version> <sha256> <size> <pool filename>
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from testbed.paths import REPO_ROOT

IMAGES_DIR = REPO_ROOT / "images"
LOCK_FILE = IMAGES_DIR / "packages.lock"
PACKAGES_IN = IMAGES_DIR / "packages.in"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

HEADER = """\
# Pinned Debian armhf packages of the board image (written by `testbed image lock --update`).
# The image builder downloads exactly these and checks each sha256 itself.
# package version sha256 size filename
"""


class LockError(Exception):
    """The lock file or the package list is malformed or missing."""


@dataclass(frozen=True)
class LockedPackage:
    package: str
    version: str
    sha256: str
    size: int
    filename: str

    @property
    def deb_name(self) -> str:
        """The file name apt-get download gives it (the epoch's colon escaped)."""
        return f"{self.package}_{self.version.replace(':', '%3a')}_armhf.deb"

    def line(self) -> str:
        return f"{self.package} {self.version} {self.sha256} {self.size} {self.filename}"


def read_lock(path: Path = LOCK_FILE) -> list[LockedPackage]:
    if not path.exists():
        raise LockError(f"{path} does not exist: run `testbed image lock --update` to create it")
    packages: list[LockedPackage] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 5:
            raise LockError(
                f"{path}:{number}: expected 'package version sha256 size filename', got {raw!r}"
            )
        package, version, sha256, size, filename = fields
        if not _SHA256.match(sha256):
            raise LockError(f"{path}:{number}: {package}: {sha256!r} is not a sha256 hex digest")
        if not size.isdigit():
            raise LockError(f"{path}:{number}: {package}: size {size!r} is not a number")
        packages.append(LockedPackage(package, version, sha256, int(size), filename))
    if not packages:
        raise LockError(f"{path} pins no packages: run `testbed image lock --update`")
    return packages


def write_lock(packages: list[LockedPackage], path: Path = LOCK_FILE) -> None:
    text = HEADER + "".join(p.line() + "\n" for p in packages)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_wanted(path: Path = PACKAGES_IN) -> list[tuple[str, bool]]:
    """The package names to pin, each with whether it is a meta package to follow."""
    wanted: list[tuple[str, bool]] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        meta = line.startswith("@")
        wanted.append((line.lstrip("@"), meta))
    return wanted


def kernel_package(packages: list[LockedPackage]) -> LockedPackage:
    kernels = [p for p in packages if re.match(r"^linux-image-\d.*-armmp$", p.package)]
    if len(kernels) != 1:
        raise LockError(
            f"the lock file must pin exactly one linux-image-<version>-armmp package, found {len(kernels)}"
        )
    return kernels[0]
