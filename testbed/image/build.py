"""Build the board image: pinned Debian armhf kernel + busybox (+ dropbear), the
firmware stubs, and an initramfs with the testbed's init, cached by content hash.

``ensure_image()`` is the entry point the board code uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testbed.image import firmware_tree
from testbed.image.apt import AptError, PrivateApt
from testbed.image.cpio import CpioWriter
from testbed.image.errors import ImageError
from testbed.image.lock import IMAGES_DIR, LOCK_FILE, LockedPackage, kernel_package, read_lock
from testbed.image.modules import resolve_modules
from testbed.image.toolchain import CROSS_CC, check_cross_toolchain
from testbed.paths import REPO_ROOT, cache_dir

FIRMWARE_DIR = REPO_ROOT / "firmware_stubs"
BUILDER_DIR = Path(__file__).resolve().parent

#: Kernel modules the board needs (their dependencies are found from .modinfo).
#: virtio_balloon reports free guest pages to QEMU, which drops them: less RSS per board.
WANTED_MODULES = ("virtio_mmio", "virtio_net", "virtio_balloon")
#: Packages whose shared libraries go into the image (for dropbear).
LIBRARY_PACKAGES = ("libc6", "libcrypt1", "libtomcrypt1", "libtommath1", "libgmp10", "zlib1g")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Image:
    """A built board image in the cache."""

    path: Path
    hash: str
    vmlinuz: Path
    initramfs: Path
    kernel_version: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def symbols_dir(self) -> Path:
        """The unstripped firmware programs of this image (empty or missing for an image without firmware)."""
        return self.path / SYMBOLS_DIR

    @classmethod
    def from_dir(cls, path: Path) -> Image:
        path = Path(path)
        meta_file = path / "image.json"
        if not meta_file.exists():
            raise ImageError(f"{path} is not a built board image (no image.json); run `testbed image build`")
        meta = json.loads(meta_file.read_text())
        image = cls(
            path=path,
            hash=meta["hash"],
            vmlinuz=path / "vmlinuz",
            initramfs=path / "initramfs.cpio.gz",
            kernel_version=meta["kernel_version"],
            meta=meta,
        )
        for f in (image.vmlinuz, image.initramfs):
            if not f.exists():
                raise ImageError(f"{f} is missing from the image; run `testbed image build --force`")
        return image


def _stderr_progress(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def images_dir() -> Path:
    d = cache_dir() / "images"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _hash_tree(digest, root: Path, skip_dirs: tuple[str, ...] = ()) -> None:
    if not root.exists():
        digest.update(f"missing:{root.name}\0".encode())
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in skip_dirs and not d.startswith(".") and d != "__pycache__"
        )
        for name in sorted(filenames):
            if name.endswith((".o", ".pyc", ".a", ".d")) or name.startswith("."):
                continue
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            digest.update(f"{root.name}/{rel}\0{stat.S_IMODE(st.st_mode) & 0o111}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(p).encode())
            else:
                digest.update(p.read_bytes())
            digest.update(b"\0")


def content_hash() -> str:
    """Hash of everything the image is made from: lock file, images/, firmware_stubs/ sources, builder code."""
    digest = hashlib.sha256(b"testbed-image-v1\0")
    _hash_tree(digest, IMAGES_DIR)
    _hash_tree(digest, FIRMWARE_DIR, skip_dirs=("build",))
    _hash_tree(digest, BUILDER_DIR)
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    lock_path = images_dir() / ".build.lock"
    with lock_path.open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _stderr_progress("another image build is running; waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


#: How many built images the cache keeps (the most recently used ones).
KEEP_IMAGES = 6


def prune_cache_dir(parent: Path, keep: int, protect: Path | None = None) -> list[Path]:
    """Remove all but the ``keep`` most recently used entries (by mtime) of a cache folder."""
    entries = sorted(
        (p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for old in entries[keep:]:
        if protect is not None and old == protect:
            continue
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    return removed


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def ensure_image(force: bool = False, progress: Progress | None = None, firmware: bool = True) -> Image:
    """The image for the current sources, built if it is not in the cache yet.

    ``firmware=False``: the stock image (kernel, busybox, dropbear, no firmware), e.g. for a
    stand-in of a real board that gets the firmware installed while it runs."""
    progress = progress or _stderr_progress
    digest = content_hash() + ("" if firmware else "-stock")
    target = images_dir() / digest
    if not force and (target / "image.json").exists():
        _touch(target)
        return Image.from_dir(target)
    with _build_lock():
        if not force and (target / "image.json").exists():
            return Image.from_dir(target)
        image = _build(digest, target, progress, with_firmware=firmware)
        for old in prune_cache_dir(images_dir(), KEEP_IMAGES, protect=target):
            progress(f"removed an old image from the cache: {old.name}")
        return image


def _extract_deb(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageError(f"cannot unpack {deb.name}: {result.stderr.strip()}")


def _build_firmware(staging: Path, progress: Progress) -> dict:
    makefile = FIRMWARE_DIR / "Makefile"
    if not makefile.exists():
        progress("firmware_stubs/Makefile not found: image without firmware")
        return {"included": False}
    progress("building firmware_stubs for armhf (make armhf-install)")
    result = subprocess.run(
        ["make", "-C", str(FIRMWARE_DIR), "armhf-install", f"DESTDIR={staging}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ImageError(
            f"the firmware build failed (make -C firmware_stubs armhf-install, exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    return {"included": True, "files": files}


#: Folder of an image holding the unstripped firmware programs it was built with
#: (same build ids as in the initramfs), for function names in crash analyses.
SYMBOLS_DIR = "symbols"


def _keep_symbols(dest: Path) -> None:
    """Copy the unstripped armhf firmware programs beside the image, so its symbols outlive the source tree's build folder."""
    dest.mkdir()
    for program in sorted((FIRMWARE_DIR / "build" / "armhf").glob("*")):
        if program.is_file() and program.read_bytes()[:4] == b"\x7fELF":
            shutil.copy2(program, dest / program.name)


def _build_helpers(out_dir: Path, dynamic: bool, progress: Progress) -> list[Path]:
    """Compile the image's own small C helpers (images/src/*.c) for armhf."""
    sources = sorted((IMAGES_DIR / "src").glob("*.c"))
    if not sources:
        return []
    built = []
    for src in sources:
        target = out_dir / src.stem
        cmd = [CROSS_CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-Os", "-s", "-o", str(target), str(src)]
        if not dynamic:
            cmd.insert(1, "-static")
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ImageError(f"building {src.relative_to(REPO_ROOT)} failed:\n{result.stdout}{result.stderr}")
        built.append(target)
    progress("built " + ", ".join(p.name for p in built) + (" (dynamic)" if dynamic else " (static)"))
    return built


def _add_libraries(cpio: CpioWriter, root: Path) -> list[str]:
    added = []
    for top in ("lib", "usr/lib"):
        base = root / top
        if not base.exists():
            continue
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if "/gconv/" in rel or "/audit/" in rel or ".so" not in p.name:
                continue
            if p.is_symlink():
                cpio.add_symlink(rel, os.readlink(p))
            elif p.is_file():
                cpio.add_file(rel, p.read_bytes(), 0o755)
            added.append(rel)
    return added


def _build(digest: str, target: Path, progress: Progress, with_firmware: bool = True) -> Image:
    started = time.monotonic()
    progress(f"building board image {digest} (sources changed or not built yet)")
    progress("checking the armhf cross toolchain: " + check_cross_toolchain())  # names the package to install
    try:
        packages = read_lock(LOCK_FILE)
    except Exception as exc:  # LockError carries the advice
        raise ImageError(str(exc)) from exc
    kernel = kernel_package(packages)
    kernel_version = kernel.package.removeprefix("linux-image-")
    by_name = {p.package: p for p in packages}
    for needed in ("busybox-static",):
        if needed not in by_name:
            raise ImageError(f"the lock file does not pin {needed}; add it to images/packages.in and run `testbed image lock --update`")

    apt = PrivateApt(progress=progress)
    debs: dict[str, Path] = {}
    for i, pkg in enumerate(packages, start=1):
        progress(f"[{i}/{len(packages)}] {pkg.package} {pkg.version}")
        try:
            debs[pkg.package] = apt.fetch(pkg)
        except AptError as exc:
            raise ImageError(str(exc)) from exc

    work = Path(tempfile.mkdtemp(prefix=f".build-{digest}-", dir=images_dir()))
    try:
        progress("unpacking packages")
        unpacked: dict[str, Path] = {}
        for name, deb in debs.items():
            unpacked[name] = work / "pkgs" / name
            _extract_deb(deb, unpacked[name])

        kroot = unpacked[kernel.package]
        vmlinuz = kroot / "boot" / f"vmlinuz-{kernel_version}"
        if not vmlinuz.exists():
            raise ImageError(f"{kernel.package} has no boot/vmlinuz-{kernel_version}")
        modules = resolve_modules(kroot / "lib" / "modules" / kernel_version, WANTED_MODULES)
        progress("kernel modules: " + ", ".join(m.name for m in modules))

        cpio = CpioWriter()
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "root",
                  "mnt", "var/lib/testbed", "var/log", "etc/testbed/rc.d", "lib/modules"):
            cpio.add_dir(d)
        cpio.add_dir("tmp", 0o1777)
        cpio.add_chardev("dev/console", 5, 1)
        cpio.add_chardev("dev/null", 1, 3, 0o666)
        busybox = unpacked["busybox-static"] / "bin" / "busybox"
        cpio.add_file("bin/busybox", busybox.read_bytes(), 0o755)
        cpio.add_symlink("bin/sh", "busybox")
        cpio.add_file("init", (IMAGES_DIR / "init").read_bytes(), 0o755)
        cpio.add_tree(IMAGES_DIR / "rootfs")
        for ko in modules:
            cpio.add_file(f"lib/modules/{ko.name}", ko.read_bytes(), 0o644)
        cpio.add_file("etc/testbed/modules.load", "".join(f"{ko.name}\n" for ko in modules).encode())

        dropbear_included = False
        if "dropbear-bin" in unpacked:
            droot = unpacked["dropbear-bin"]
            for rel in ("usr/sbin/dropbear", "usr/bin/dropbearkey"):
                if (droot / rel).exists():
                    cpio.add_file(rel, (droot / rel).read_bytes(), 0o755)
            libs = []
            for name in LIBRARY_PACKAGES:
                if name in unpacked:
                    libs += _add_libraries(cpio, unpacked[name])
            dropbear_included = True
            progress(f"dropbear with {len(libs)} library files")

        helpers_dir = work / "helpers"
        helpers_dir.mkdir()
        # Dynamically linked against the glibc that dropbear brings (a few KB each), else static.
        for helper in _build_helpers(helpers_dir, dynamic=dropbear_included, progress=progress):
            cpio.add_file(f"usr/sbin/{helper.name}", helper.read_bytes(), 0o755)

        fw_stage = work / "firmware-root"
        fw_stage.mkdir()
        firmware = _build_firmware(fw_stage, progress) if with_firmware else {"included": False}
        if firmware["included"]:
            firmware["build"] = firmware_tree.stamp_build(fw_stage)
            cpio.add_tree(fw_stage)

        out = work / "out"
        out.mkdir()
        if firmware["included"]:
            _keep_symbols(out / SYMBOLS_DIR)
            firmware_tree.keep_tree(fw_stage, out)
        progress("writing initramfs.cpio.gz")
        cpio.write_gz(out / "initramfs.cpio.gz")
        shutil.copyfile(vmlinuz, out / "vmlinuz")
        meta = {
            "hash": digest,
            "kernel_version": kernel_version,
            "packages": {p.package: p.version for p in packages},
            "modules": [ko.name for ko in modules],
            "dropbear": dropbear_included,
            "firmware": firmware,
            "initramfs_bytes": (out / "initramfs.cpio.gz").stat().st_size,
            "built_at": int(time.time()),
        }
        (out / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"image {digest} built in {time.monotonic() - started:.1f} s: {target}")
    return Image.from_dir(target)


def update_lock(progress: Progress | None = None) -> list[tuple[str, str | None, str]]:
    """Pin the current mirror versions of images/packages.in; returns (package, old, new) rows."""
    from testbed.image.lock import PACKAGES_IN, read_wanted, write_lock

    progress = progress or _stderr_progress
    apt = PrivateApt(progress=progress)
    if not apt.update():
        progress("warning: using whatever index could be fetched")
    try:
        old = {p.package: p.version for p in read_lock(LOCK_FILE)}
    except Exception:
        old = {}
    pinned: list[LockedPackage] = []
    for name, meta in read_wanted(PACKAGES_IN):
        try:
            fields = apt.show(name)
            if meta:
                deps = [d.strip().split(" ")[0] for d in fields.get("Depends", "").split(",")]
                targets = [d for d in deps if d.startswith("linux-image-")]
                if not targets:
                    raise ImageError(f"meta package {name} depends on no linux-image package")
                name = targets[0]
                fields = apt.show(name)
        except AptError as exc:
            raise ImageError(str(exc)) from exc
        pinned.append(
            LockedPackage(name, fields["Version"], fields["SHA256"], int(fields["Size"]), fields["Filename"])
        )
    write_lock(pinned, LOCK_FILE)
    return [(p.package, old.get(p.package), p.version) for p in pinned]
