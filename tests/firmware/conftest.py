"""Fixtures for the host-built firmware tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fw_helpers import FakeDeviceApi, FwEnv, build_host, make_env


@pytest.fixture(scope="session")
def fw_bin() -> Path:
    return build_host()


@pytest.fixture
def fw(tmp_path: Path, fw_bin: Path) -> FwEnv:
    return make_env(tmp_path, fw_bin)


@pytest.fixture
def api() -> Iterator[FakeDeviceApi]:
    server = FakeDeviceApi()
    yield server
    server.close()
