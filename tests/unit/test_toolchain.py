"""The armhf toolchain check names the missing Debian package and its install command
(the compiler runs are faked here; the last test runs the real one where it is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from testbed.image import build
from testbed.image.toolchain import (
    CROSS_CC,
    LIBC_PACKAGE,
    ToolchainError,
    check_cross_toolchain,
)

HEADER_ERROR = (
    "/usr/include/features-time64.h:20:10: fatal error: bits/wordsize.h: No such file or directory\n"
    "compilation terminated.\n"
)
ARM_ELF = b"\x7fELF\x01\x01\x01" + b"\0" * 11 + (40).to_bytes(2, "little") + b"\0" * 32
X86_ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (62).to_bytes(2, "little") + b"\0" * 32


class FakeCompiler:
    """Stands in for subprocess.run: the cross compiler (per link mode) and dpkg-query."""

    def __init__(self, fail_modes: tuple[str, ...] = (), stderr: str = HEADER_ERROR,
                 output: bytes = ARM_ELF, installed: tuple[str, ...] = ()):
        self.fail_modes = fail_modes
        self.stderr = stderr
        self.output = output
        self.installed = installed
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], **_kw: object) -> subprocess.CompletedProcess:
        self.calls.append(cmd)
        if cmd[0] == "dpkg-query":
            ok = cmd[-1] in self.installed
            return subprocess.CompletedProcess(cmd, 0 if ok else 1, "install ok installed" if ok else "", "")
        if "--version" in cmd:
            return subprocess.CompletedProcess(cmd, 0, "arm-linux-gnueabihf-gcc (Debian 12.2.0-14) 12.2.0\n", "")
        mode = "static" if "-static" in cmd else "dynamic"
        if mode in self.fail_modes:
            return subprocess.CompletedProcess(cmd, 1, "", self.stderr)
        Path(cmd[cmd.index("-o") + 1]).write_bytes(self.output)
        return subprocess.CompletedProcess(cmd, 0, "", "")


def _found(_name: str) -> str:
    return "/usr/bin/" + CROSS_CC


def test_a_working_toolchain_links_static_and_dynamic() -> None:
    fake = FakeCompiler(installed=("gcc-arm-linux-gnueabihf", LIBC_PACKAGE))
    detail = check_cross_toolchain(run=fake, which=_found)
    assert "static and dynamic" in detail and "12.2.0" in detail
    compiles = [c for c in fake.calls if c[0] == CROSS_CC and "-o" in c]
    assert [("-static" in c) for c in compiles] == [True, False]


def test_missing_cross_libc_names_the_package_and_command_not_the_header() -> None:
    fake = FakeCompiler(fail_modes=("static", "dynamic"), installed=("gcc-arm-linux-gnueabihf",))
    with pytest.raises(ToolchainError) as err:
        check_cross_toolchain(run=fake, which=_found)
    message = str(err.value)
    assert LIBC_PACKAGE in message
    assert f"apt-get install {LIBC_PACKAGE}\n" in message
    assert "static C program" in message
    assert "wordsize" not in message and "features-time64" not in message


def test_a_missing_compiler_names_both_packages() -> None:
    fake = FakeCompiler()
    with pytest.raises(ToolchainError) as err:
        check_cross_toolchain(run=fake, which=lambda _n: None)
    assert "apt-get install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" in str(err.value)
    assert not [c for c in fake.calls if c[0] == CROSS_CC]


def test_only_the_dynamic_link_failing_is_caught_too() -> None:
    fake = FakeCompiler(fail_modes=("dynamic",), stderr="ld: cannot find -lc\n",
                        installed=("gcc-arm-linux-gnueabihf",))
    with pytest.raises(ToolchainError, match="dynamic C program.*\n.*apt-get install libc6-dev-armhf-cross"):
        check_cross_toolchain(run=fake, which=_found)


def test_a_failure_with_everything_installed_shows_the_compiler_and_says_reinstall() -> None:
    fake = FakeCompiler(fail_modes=("static",), stderr="ld: cannot find -lc\n",
                        installed=("gcc-arm-linux-gnueabihf", LIBC_PACKAGE))
    with pytest.raises(ToolchainError) as err:
        check_cross_toolchain(run=fake, which=_found)
    assert "ld: cannot find -lc" in str(err.value)
    assert "apt-get install --reinstall gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" in str(err.value)


def test_a_program_that_is_not_arm_fails_the_check() -> None:
    fake = FakeCompiler(output=X86_ELF, installed=("gcc-arm-linux-gnueabihf", LIBC_PACKAGE))
    with pytest.raises(ToolchainError, match="not a 32-bit ARM ELF"):
        check_cross_toolchain(run=fake, which=_found)


def test_image_build_stops_before_building_with_the_checks_message(tmp_path, monkeypatch) -> None:
    from testbed.image.cli import image

    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path))

    def missing_libc() -> str:
        raise ToolchainError(f"the armhf cross toolchain cannot ...\nInstall it as root: apt-get install {LIBC_PACKAGE}")

    monkeypatch.setattr(build, "check_cross_toolchain", missing_libc)
    monkeypatch.setattr(build, "PrivateApt", lambda **_kw: pytest.fail("the build went on to download packages"))
    result = CliRunner().invoke(image, ["build", "--force"])
    assert result.exit_code == 1
    assert f"apt-get install {LIBC_PACKAGE}" in result.output


def test_doctor_reports_the_toolchain_check(monkeypatch) -> None:
    import testbed.image.toolchain as toolchain
    from testbed.board.cli import doctor_checks

    monkeypatch.setattr(toolchain, "check_cross_toolchain",
                        lambda: (_ for _ in ()).throw(ToolchainError(f"apt-get install {LIBC_PACKAGE}")))
    row = next(r for r in doctor_checks() if r[0] == "armhf cross compiler")
    assert row[1] is False and row[3] is True
    assert f"apt-get install {LIBC_PACKAGE}" in row[2]


@pytest.mark.skipif(shutil.which(CROSS_CC) is None, reason=f"{CROSS_CC} not installed")
def test_the_real_toolchain_passes_the_check() -> None:
    assert "static and dynamic armhf C programs link" in check_cross_toolchain()
