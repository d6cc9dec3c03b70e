"""Is the armhf cross toolchain really usable? Compile and link a small C program, static and
dynamic, before anything is built with it; when that fails, say which Debian package is missing
and the command that installs it (not the compiler's message about some internal header).

Used by the image builder (before a build) and by ``testbed doctor``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from testbed.image.errors import ImageError

CROSS_CC = "arm-linux-gnueabihf-gcc"
#: The cross compiler, and the armhf C library it compiles and links against. The second is only
#: a Recommends of the first, so `apt-get install --no-install-recommends` leaves it out.
COMPILER_PACKAGE = "gcc-arm-linux-gnueabihf"
LIBC_PACKAGE = "libc6-dev-armhf-cross"
TOOLCHAIN_PACKAGES = (COMPILER_PACKAGE, LIBC_PACKAGE)

#: Uses the C library's headers (stdio.h pulls in the armhf bits/ headers) and needs it to link.
PROBE_SOURCE = '#include <stdio.h>\n#include <stdlib.h>\nint main(void) { puts("armhf"); return EXIT_SUCCESS; }\n'
LINK_MODES = ("static", "dynamic")
EM_ARM = 40

Runner = Callable[..., subprocess.CompletedProcess]


class ToolchainError(ImageError):
    """The armhf cross toolchain cannot build the firmware; the message names the fix."""


def install_command(packages: Sequence[str]) -> str:
    return f"apt-get install {' '.join(packages)}"


def package_installed(package: str, run: Runner = subprocess.run) -> bool | None:
    """Whether dpkg has ``package`` installed; None when there is no dpkg to ask."""
    try:
        result = run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    except OSError:
        return None
    return result.returncode == 0 and result.stdout.strip().endswith("ok installed")


def _is_arm_elf(path: Path) -> bool:
    try:
        head = path.read_bytes()[:20]
    except OSError:
        return False
    return head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == EM_ARM


def _missing_message(what: str, missing: list[str]) -> str:
    if missing == [LIBC_PACKAGE]:
        cause = (f"the Debian package {LIBC_PACKAGE} (the armhf C library: headers and libraries "
                 f"the cross compiler needs) is not installed")
    else:
        cause = "these Debian packages are not installed: " + ", ".join(missing)
    return (f"the armhf cross toolchain cannot {what}: {cause}.\n"
            f"Install {'it' if len(missing) == 1 else 'them'} as root: {install_command(missing)}\n"
            f"(or run ./bootstrap.sh setup, which installs everything testbed needs)")


def check_cross_toolchain(
    cc: str = CROSS_CC,
    run: Runner = subprocess.run,
    which: Callable[[str], str | None] = shutil.which,
    installed: Callable[[str], bool | None] | None = None,
) -> str:
    """Compile and link the probe program static and dynamic; returns the compiler's version line.

    Raises ToolchainError naming the Debian package(s) to install and the command. ``run``,
    ``which`` and ``installed`` are there for unit tests to fake the system.
    """
    def is_installed(package: str) -> bool | None:
        return installed(package) if installed else package_installed(package, run)

    if which(cc) is None:
        missing = [COMPILER_PACKAGE] + [LIBC_PACKAGE] * (is_installed(LIBC_PACKAGE) is not True)
        raise ToolchainError(_missing_message(f"run: {cc} is not found", missing))
    with tempfile.TemporaryDirectory(prefix="testbed-toolchain-") as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text(PROBE_SOURCE)
        for mode in LINK_MODES:
            out = Path(tmp) / f"probe-{mode}"
            cmd = [cc, "-std=c11", "-Wall", "-o", str(out), str(source)]
            if mode == "static":
                cmd.insert(1, "-static")
            result = run(cmd, capture_output=True, text=True)
            what = f"compile and link a {mode} C program"
            if result.returncode == 0 and _is_arm_elf(out):
                continue
            # Not installed -> that is the fix (the compiler's own message would only name a header).
            missing = [p for p in TOOLCHAIN_PACKAGES if is_installed(p) is False]
            if missing:
                raise ToolchainError(_missing_message(what, missing))
            said = "\n".join(f"    {line}" for line in (result.stderr or result.stdout or "").strip().splitlines()[-6:])
            if result.returncode == 0:
                said = f"    {out.name} is not a 32-bit ARM ELF program"
            raise ToolchainError(
                f"the armhf cross toolchain cannot {what} ({' '.join(cmd[:-3])} ...), although "
                f"{' and '.join(TOOLCHAIN_PACKAGES)} look installed. The compiler said:\n{said}\n"
                f"Reinstall them as root: apt-get install --reinstall {' '.join(TOOLCHAIN_PACKAGES)}"
            )
    version = run([cc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    return f"{version[0] if version else cc}: static and dynamic armhf C programs link"
