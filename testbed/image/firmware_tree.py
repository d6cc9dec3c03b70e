"""The firmware as an image ships it: its installed files and their build hash.

An image with firmware keeps the firmware's installed tree (the stripped static armhf
programs, the init script and the app list, exactly as they are in the initramfs) in
``<image>/firmware/`` and its build hash in ``image.json`` (``firmware.build``). The
hash names one build of the firmware: a real board that already has it (the board's
:data:`testbed.contract.commands.FIRMWARE_BUILD_FILE`) is not installed again.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from testbed.contract.commands import FIRMWARE_BUILD_FILE

#: Folder of an image that holds the firmware's installed tree.
FIRMWARE_TREE_DIR = "firmware"
#: The build file inside the tree (relative): written last when installing.
BUILD_FILE_REL = FIRMWARE_BUILD_FILE.lstrip("/")


def build_hash(root: Path) -> str:
    """Hash of the installed firmware tree under ``root`` (names, modes, contents; not the build file)."""
    digest = hashlib.sha256(b"testbed-firmware-v1\0")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == BUILD_FILE_REL:
            continue
        digest.update(f"{rel}\0{stat.S_IMODE(path.stat().st_mode):o}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def stamp_build(stage: Path) -> str:
    """Write the build file into a staged firmware tree; returns the build hash."""
    build = build_hash(stage)
    target = stage / BUILD_FILE_REL
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(build + "\n")
    target.chmod(0o644)
    return build


def keep_tree(stage: Path, image_out: Path) -> None:
    """Copy the staged firmware tree beside the image (``<image>/firmware``)."""
    shutil.copytree(stage, image_out / FIRMWARE_TREE_DIR, symlinks=True)


@dataclass(frozen=True)
class FirmwareFile:
    rel: str  # path on the board without the leading '/'
    local: Path
    mode: int
    sha256: str

    @property
    def remote(self) -> str:
        return "/" + self.rel


@dataclass(frozen=True)
class FirmwareBundle:
    """What installing the firmware onto a board copies: files (the build file last) and the build."""

    build: str
    root: Path
    files: tuple[FirmwareFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.local.stat().st_size for f in self.files)


def bundle_of(image_path: Path) -> FirmwareBundle:
    """The firmware bundle kept by the image at ``image_path``; ValueError when it has none."""
    root = Path(image_path) / FIRMWARE_TREE_DIR
    build_file = root / BUILD_FILE_REL
    if not build_file.exists():
        raise ValueError(
            f"the image {image_path} keeps no firmware tree (built without firmware, or by an older builder): "
            "`testbed image build --force`"
        )
    build = build_file.read_text().strip()
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == BUILD_FILE_REL:
            continue
        files.append(FirmwareFile(rel, path, stat.S_IMODE(path.stat().st_mode),
                                  hashlib.sha256(path.read_bytes()).hexdigest()))  # fmt: skip
    files.append(FirmwareFile(BUILD_FILE_REL, build_file, 0o644, hashlib.sha256(build_file.read_bytes()).hexdigest()))
    return FirmwareBundle(build, root, tuple(files))
