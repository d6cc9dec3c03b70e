"""The image builder's parts: cpio writer, lock file, module resolution, content hash, cache."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time

import pytest

from testbed.image import build
from testbed.image.apt import AptError, PrivateApt
from testbed.image.build import ImageError, content_hash, ensure_image, resolve_modules
from testbed.image.cpio import CpioWriter
from testbed.image.lock import LockedPackage, LockError, kernel_package, read_lock, write_lock

SHA = "a" * 64


def test_cpio_archive_is_read_by_the_system_cpio(tmp_path):
    w = CpioWriter()
    w.add_file("etc/testbed/boot", b"#!/bin/sh\necho hi\n", 0o755)
    w.add_symlink("bin/sh", "busybox")
    w.add_chardev("dev/console", 5, 1)
    w.add_dir("tmp", 0o1777)
    archive = tmp_path / "initramfs.cpio.gz"
    w.write_gz(archive)
    raw = gzip.decompress(archive.read_bytes())
    assert len(raw) % 512 == 0
    listing = subprocess.run(["cpio", "-itv"], input=raw, capture_output=True, check=True).stdout.decode()
    lines = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in listing.splitlines()}
    assert lines["dev/console"].startswith("crw-------")
    assert "-> busybox" in lines["bin/sh"]
    assert lines["etc/testbed/boot"].startswith("-rwxr-xr-x")
    assert lines["tmp"].startswith("drwxrwxrwt")
    assert "etc/testbed" in lines and "etc" in lines  # parents made
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "etc/testbed/boot"], input=raw, cwd=out, check=True)
    assert (out / "etc/testbed/boot").read_bytes() == b"#!/bin/sh\necho hi\n"


def test_cpio_output_is_reproducible(tmp_path):
    def make() -> bytes:
        w = CpioWriter()
        w.add_file("b", b"2")
        w.add_file("a/c", b"1")
        w.write_gz(tmp_path / "o.gz")
        return (tmp_path / "o.gz").read_bytes()

    first = make()
    time.sleep(0.01)
    assert make() == first


def test_lock_file_round_trip_and_errors(tmp_path):
    lock = tmp_path / "packages.lock"
    pkgs = [
        LockedPackage("linux-image-6.1.0-50-armmp", "6.1.176-1", SHA, 10, "pool/l.deb"),
        LockedPackage("busybox-static", "1:1.35.0-4", "b" * 64, 20, "pool/b.deb"),
    ]
    write_lock(pkgs, lock)
    assert read_lock(lock) == pkgs
    assert pkgs[1].deb_name == "busybox-static_1%3a1.35.0-4_armhf.deb"
    assert kernel_package(pkgs).package == "linux-image-6.1.0-50-armmp"

    lock.write_text("busybox-static 1.0 nothex 20 pool/b.deb\n")
    with pytest.raises(LockError, match="not a sha256"):
        read_lock(lock)
    lock.write_text("busybox-static 1.0\n")
    with pytest.raises(LockError, match=":1: expected"):
        read_lock(lock)
    with pytest.raises(LockError, match="image lock --update"):
        read_lock(tmp_path / "missing.lock")
    with pytest.raises(LockError, match="exactly one"):
        kernel_package(pkgs[1:])


def test_the_repository_lock_pins_kernel_and_busybox():
    names = {p.package for p in read_lock()}
    assert "busybox-static" in names and "dropbear-bin" in names
    assert kernel_package(read_lock()).package.endswith("-armmp")


def _ko(path, depends: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF junk\0license=GPL\0depends=" + depends.encode() + b"\0vermagic=6.1\0")


def test_module_dependencies_come_first(tmp_path):
    _ko(tmp_path / "drivers/net/virtio_net.ko", "net_failover")
    _ko(tmp_path / "drivers/net/net_failover.ko", "failover")
    _ko(tmp_path / "net/core/failover.ko", "")
    _ko(tmp_path / "drivers/virtio/virtio_mmio.ko", "")
    order = [p.name for p in resolve_modules(tmp_path, ("virtio_mmio", "virtio_net"))]
    assert order == ["virtio_mmio.ko", "failover.ko", "net_failover.ko", "virtio_net.ko"]

    _ko(tmp_path / "a.ko", "b")
    _ko(tmp_path / "b.ko", "a")
    with pytest.raises(ImageError, match="cycle"):
        resolve_modules(tmp_path, ("a",))
    with pytest.raises(ImageError, match="nosuch not found"):
        resolve_modules(tmp_path, ("nosuch",))


def test_content_hash_follows_sources_but_not_build_output(tmp_path, monkeypatch):
    images, firmware, builder = tmp_path / "images", tmp_path / "firmware_stubs", tmp_path / "builder"
    for d in (images, firmware / "src", builder):
        d.mkdir(parents=True)
    (images / "init").write_text("#!/bin/sh\n")
    (firmware / "src" / "a.c").write_text("int main(){}\n")
    (builder / "build.py").write_text("x = 1\n")
    monkeypatch.setattr(build, "IMAGES_DIR", images)
    monkeypatch.setattr(build, "FIRMWARE_DIR", firmware)
    monkeypatch.setattr(build, "BUILDER_DIR", builder)

    first = content_hash()
    assert content_hash() == first
    (firmware / "build" / "armhf").mkdir(parents=True)
    (firmware / "build" / "armhf" / "crashapp").write_bytes(b"\x7fELF")
    (firmware / "src" / "a.o").write_bytes(b"obj")
    assert content_hash() == first  # build output does not count
    (images / "init").chmod(0o755)
    assert content_hash() != first  # the executable bit counts
    second = content_hash()
    (firmware / "src" / "a.c").write_text("int main(){return 1;}\n")
    assert content_hash() != second


def test_a_second_build_rebuilds_nothing():
    first = ensure_image()
    again = ensure_image()
    assert again.path == first.path and again.hash == first.hash
    assert json.loads((again.path / "image.json").read_text())["built_at"] == first.meta["built_at"]
    result = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "image", "build", "--json"], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout)["built_at"] == first.meta["built_at"]
    assert "building board image" not in result.stderr


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt")
def test_download_errors_name_the_package_and_the_fix(tmp_path):
    apt = PrivateApt(root=tmp_path / "apt")
    bogus = LockedPackage("busybox-static", "9.9.9-nosuch", SHA, 1, "pool/x.deb")
    with pytest.raises(AptError) as info:
        apt.fetch(bogus)
    assert "busybox-static" in str(info.value) and "9.9.9-nosuch" in str(info.value)
    assert "testbed image lock --update" in str(info.value)

    real = next(p for p in read_lock() if p.package == "zlib1g")
    wrong = LockedPackage(real.package, real.version, SHA, real.size, real.filename)
    with pytest.raises(AptError, match="sha256 mismatch for zlib1g"):
        apt.fetch(wrong)
    assert apt.fetch(real).exists()  # the right sum passes


def test_firmware_build_failure_stops_the_image_with_its_output(tmp_path, monkeypatch):
    firmware = tmp_path / "firmware_stubs"
    firmware.mkdir()
    (firmware / "Makefile").write_text("armhf-install:\n\t@echo 'crashapp.c:3: error: boom' >&2; exit 1\n")
    monkeypatch.setattr(build, "FIRMWARE_DIR", firmware)
    staging = tmp_path / "root"
    staging.mkdir()
    with pytest.raises(ImageError) as info:
        build._build_firmware(staging, lambda m: None)
    assert "crashapp.c:3: error: boom" in str(info.value) and "armhf-install" in str(info.value)

    (firmware / "Makefile").write_text(
        "armhf-install:\n\tmkdir -p $(DESTDIR)/usr/bin && echo x > $(DESTDIR)/usr/bin/tool\n"
    )
    result = build._build_firmware(staging, lambda m: None)
    assert result == {"included": True, "files": ["usr/bin/tool"]}

    (firmware / "Makefile").unlink()
    assert build._build_firmware(staging, lambda m: None) == {"included": False}


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt")
def test_lock_update_pins_what_the_meta_package_points_to(tmp_path, monkeypatch):
    import testbed.image.lock as lock_module

    wanted = tmp_path / "packages.in"
    wanted.write_text("# comment\n@linux-image-armmp\nbusybox-static\n")
    lock = tmp_path / "packages.lock"
    monkeypatch.setattr(lock_module, "PACKAGES_IN", wanted)
    monkeypatch.setattr(build, "LOCK_FILE", lock)
    rows = build.update_lock(progress=lambda m: None)
    pinned = read_lock(lock)
    assert [p.package for p in pinned][1] == "busybox-static"
    assert kernel_package(pinned).package.startswith("linux-image-6.")
    assert all(len(p.sha256) == 64 and p.size > 0 and p.filename.startswith("pool/") for p in pinned)
    assert [r[0] for r in rows] == [p.package for p in pinned] and all(r[1] is None for r in rows)
