"""The armhf build and install the image builder uses (make armhf-install DESTDIR=...)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from fw_helpers import FW_DIR

pytestmark = pytest.mark.skipif(shutil.which("arm-linux-gnueabihf-gcc") is None,
                                reason="arm-linux-gnueabihf-gcc not installed (Debian gcc-arm-linux-gnueabihf)")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    proc = subprocess.run(["make", "-C", str(FW_DIR), "armhf-install", f"DESTDIR={root}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


@pytest.mark.parametrize("path", ["usr/sbin/crash-reporter", "usr/sbin/syncd", "usr/sbin/tb-provision",
                                  "usr/sbin/appmgr", "usr/sbin/crashsvc", "usr/bin/crashapp", "usr/bin/tb-tool"])
def test_static_armhf_binaries(installed, path):
    f = installed / path
    assert f.stat().st_mode & 0o111
    with f.open("rb") as fh:
        elf = ELFFile(fh)
        assert elf["e_machine"] == "EM_ARM" and elf.elfclass == 32
        assert not any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments()), "must be static"
        notes = [n for s in elf.iter_sections() if s["sh_type"] == "SHT_NOTE" for n in s.iter_notes()]
        assert any(n["n_type"] == "NT_GNU_BUILD_ID" for n in notes)


def test_init_script_and_apps(installed):
    script = installed / "etc/testbed/rc.d/50-firmware"
    assert script.stat().st_mode & 0o111
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    apps = (installed / "etc/testbed/apps").read_text()
    assert "crashapp /usr/bin/crashapp --mode idle" in apps


def test_install_needs_destdir():
    proc = subprocess.run(["make", "-C", str(FW_DIR), "armhf-install"], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "DESTDIR" in proc.stderr
