"""Putting the firmware onto a running board: over SSH, or through its console.

The firmware comes from the built image (``ensure_image()`` keeps the installed tree and
its build hash, testbed.image.firmware_tree); :meth:`FirmwareDriver.install` decides
whether the board needs it (build hash), checks every file on the board and puts it in
place. This module only moves bytes:

- :class:`SshUploader` writes a file through an SSH exec channel (``cat > tmp``): dropbear
  serves exec channels without an SFTP server, which small boards often lack;
- :class:`ConsoleUploader` types it through the serial console as xz (or gzip) + base64
  lines (``printf``, then ``base64 -d | unxz``), for a board without SSH.
"""

from __future__ import annotations

import base64
import gzip
import lzma
import shlex
from pathlib import Path
from typing import Any

from testbed.board.errors import BoardError
from testbed.image.firmware_tree import FirmwareBundle, bundle_of

#: Base64 characters per typed line: well under a tty's 4096-byte line limit.
LINE_CHARS = 2048
#: Lines per console round trip (each round trip waits for the shell's answer).
LINES_PER_COMMAND = 8


def firmware_bundle(image: Any = None) -> FirmwareBundle:
    """The firmware of the built image (the current sources' image by default)."""
    if image is None:
        from testbed.image.build import ensure_image

        image = ensure_image()
    try:
        return bundle_of(image.path)
    except ValueError as exc:
        raise BoardError(str(exc)) from None


class SshUploader:
    def __init__(self, ssh: Any, timeout: float = 120) -> None:
        self.ssh = ssh  # a testbed.board.ssh.SshConnection
        self.timeout = timeout
        self.unpack: str | None = None

    def __call__(self, local: Path, remote: str) -> None:
        self.ssh.push(local, remote, timeout=self.timeout)


class ConsoleUploader:
    """Types a file through the console's shell (gzip, base64, in checked round trips)."""

    def __init__(self, console: Any, name: str = "board", timeout: float = 30) -> None:
        self.console = console
        self.name = name
        self.timeout = timeout
        self.unpack: str | None = None

    def _run(self, cmd: str) -> None:
        output, code = self.console.run(cmd, timeout=self.timeout)
        if code != 0:
            raise BoardError(f"{self.name}: uploading through the console failed (exit {code}): {output.strip()[-300:]}")

    def _unpacker(self) -> str:
        """xz when the board has unxz (about 15% fewer bytes through a slow UART than gzip), else gzip."""
        if self.unpack is None:
            _, code = self.console.run("command -v unxz >/dev/null", timeout=self.timeout)
            self.unpack = "unxz" if code == 0 else "gunzip"
        return self.unpack

    def __call__(self, local: Path, remote: str) -> None:
        data = Path(local).read_bytes()
        unpack = self._unpacker()
        if unpack == "unxz":  # a 1 MiB dictionary: a small board's unxz needs little memory
            packed = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                                   filters=[{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 20}])  # fmt: skip
        else:
            packed = gzip.compress(data, mtime=0)
        text = base64.b64encode(packed).decode()
        staging = shlex.quote(remote + ".b64")
        self._run(f": > {staging}")
        lines = [text[i:i + LINE_CHARS] for i in range(0, len(text), LINE_CHARS)]
        for i in range(0, len(lines), LINES_PER_COMMAND):
            batch = lines[i:i + LINES_PER_COMMAND]
            self._run("\n".join(f"printf '%s\\n' '{line}' >> {staging}" for line in batch))
        self._run(f"base64 -d {staging} | {unpack} > {shlex.quote(remote)}; s=$?; rm -f {staging}; [ $s = 0 ]")


def install_firmware(board: Any, bundle: FirmwareBundle, ssh: Any = None) -> bool:
    """Install ``bundle`` on ``board`` (a RealBoard) unless it has that build; True when it installed."""
    upload = SshUploader(ssh) if ssh is not None else ConsoleUploader(board.console, board.name)
    return board.firmware.install(bundle, upload)
