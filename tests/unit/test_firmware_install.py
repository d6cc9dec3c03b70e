"""FirmwareDriver.install over a fake shell (unit test of the driver alone): skipped when the
board has the build, every file checked by sha256 before it is put in place, the build file
last, a program shared by two names copied on the board instead of sent twice."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import pytest

from testbed.board.errors import BoardError
from testbed.board.firmware import FirmwareDriver
from testbed.contract.commands import FIRMWARE_BUILD_FILE
from testbed.image.firmware_tree import bundle_of, stamp_build


class FakeBoard:
    """Files in a dict; understands the few command lines the driver types."""

    def __init__(self, damage: str | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[str] = []
        self.damage = damage

    def upload(self, local: Path, remote: str) -> None:
        data = Path(local).read_bytes()
        self.log.append(f"upload {remote}")
        self.files[remote] = data[:-1] if self.damage and remote.endswith(self.damage) else data

    def run(self, cmd: str, timeout: float = 30) -> tuple[str, int]:
        self.log.append(cmd)
        if cmd.startswith("cat ") and FIRMWARE_BUILD_FILE in cmd:
            data = self.files.get(FIRMWARE_BUILD_FILE)
            return (data.decode(), 0) if data is not None else ("", 1)
        if cmd.startswith("pidof syncd"):
            return "", 1
        if cmd.startswith("sha256sum "):
            path = shlex.split(cmd)[1]
            return f"{hashlib.sha256(self.files[path]).hexdigest()}  {path}", 0
        if cmd.startswith("cp "):
            _, src, dest = shlex.split(cmd)
            self.files[dest] = self.files[src]
            return "", 0
        if cmd.startswith("mkdir -p "):
            parts = shlex.split(cmd.split("&&")[2].strip())  # mv -f TMP PATH
            self.files[parts[3]] = self.files.pop(parts[2])
            return "", 0
        raise AssertionError(f"unexpected command {cmd!r}")


@pytest.fixture
def bundle(tmp_path: Path):
    root = tmp_path / "image" / "firmware"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/bin/crashapp").write_bytes(b"\x7fELF app" * 100)
    (root / "usr/sbin/crashsvc").write_bytes(b"\x7fELF app" * 100)
    (root / "usr/sbin/syncd").write_bytes(b"\x7fELF syncd" * 100)
    stamp_build(root)
    return bundle_of(tmp_path / "image")


def test_install_checks_places_and_stamps_last(bundle):
    board = FakeBoard()
    driver = FirmwareDriver(board, "bench-1")
    assert driver.install(bundle, board.upload) is True
    assert board.files["/usr/sbin/syncd"] == (bundle.root / "usr/sbin/syncd").read_bytes()
    assert board.files[FIRMWARE_BUILD_FILE].decode().strip() == bundle.build
    uploads = [line for line in board.log if line.startswith("upload ")]
    assert len(uploads) == 3  # crashapp, syncd, the build file: crashsvc is copied on the board
    assert any(line.startswith("cp /usr/bin/crashapp ") for line in board.log)
    assert uploads[-1].endswith("firmware.build")
    assert driver.status().build == bundle.build
    board.log.clear()
    assert driver.install(bundle, board.upload) is False  # the same build: nothing sent
    assert not [line for line in board.log if line.startswith("upload ")]


def test_a_damaged_file_is_never_put_in_place(bundle):
    board = FakeBoard(damage="syncd")
    with pytest.raises(BoardError, match=r"bench-1: /usr/sbin/syncd arrived damaged"):
        FirmwareDriver(board, "bench-1").install(bundle, board.upload)
    assert "/usr/sbin/syncd" not in board.files and FIRMWARE_BUILD_FILE not in board.files
