"""The board profile's translation cache: one constant, and the bench's override of it."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from testbed.board import profile, qemu
from testbed.board.profile_bench import ProfiledBoard

pytestmark = pytest.mark.skipif(shutil.which(profile.QEMU) is None, reason="qemu-system-arm not installed")


def _image() -> SimpleNamespace:
    return SimpleNamespace(vmlinuz=Path("/nonexistent/vmlinuz"), initramfs=Path("/nonexistent/initramfs"),
                           hash="0" * 16)  # fmt: skip


def _command(board: qemu.QemuBoard) -> list[str]:
    return board._command(None, 1, 2)  # console and SSH ports: any


def _accel(board: qemu.QemuBoard) -> str:
    cmd = _command(board)
    return cmd[cmd.index("-accel") + 1]


def test_the_profile_takes_its_cache_size_from_the_one_constant():
    board = qemu.QemuBoard(_image(), name="unit,profile", ssh=False)
    try:
        assert _accel(board) == f"tcg,tb-size={profile.TRANSLATION_CACHE_MIB}"
        cmd = _command(board)
        assert cmd[cmd.index("-name") + 1] == "unit,,profile,debug-threads=on"  # QEMU's comma escape
        assert qemu.Capability.HOST_CPU in board.capabilities and board.host_cpu is None  # until QEMU starts
    finally:
        board.close()


def test_a_profiled_board_overrides_only_the_cache_size():
    board = ProfiledBoard(_image(), name="unit-tb12", ssh=False, tb_size_mib=12)
    plain = qemu.QemuBoard(_image(), name="unit-tb12", ssh=False)
    plain_dir = plain.dir
    try:
        assert _accel(board) == "tcg,tb-size=12" and _accel(plain) != "tcg,tb-size=12"
        plain.dir = board.dir  # each board has its own temp dir (QMP socket): compare the rest
        a, b = _command(board), _command(plain)
        i = a.index("-accel") + 1
        assert a[:i] + a[i + 1:] == b[:i] + b[i + 1:]
    finally:
        board.close()
        plain.dir = plain_dir
        plain.close()
