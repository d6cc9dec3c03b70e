"""Fixtures for the service tests: real gzip'd ARM cores (recorded by the load work)."""

from __future__ import annotations

import pytest
from service_helpers import core_files


@pytest.fixture(scope="session")
def core_gz() -> bytes:
    """A real gzip'd ELF core of an ARM app (the smallest recorded one)."""
    return min(core_files(), key=lambda p: p.stat().st_size).read_bytes()


@pytest.fixture(scope="session")
def cores() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in core_files()}
