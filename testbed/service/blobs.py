"""The blob stores: one directory per region, ``blobs/<Region>/<dump id>.gz``, and the file
helpers the ingest writer, its materializer and recovery use (create, fsync, rename)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

REGIONS = ("EU", "EastUS", "WestUS")
BLOB_SUFFIX = ".gz"
TMP_PREFIX = ".tmp-"
#: A stored dump's file: its id (32 hex) and the suffix.
BLOB_NAME_RE = re.compile(r"[0-9a-f]{32}\.gz\Z")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> bool:
    """fsync ``path``; False when it does not exist (swept meanwhile)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def write_file(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Create ``path`` (it must not exist) holding ``data``; fsync it before returning when ``durable``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    write_file(path, data, durable=True)


class BlobStore:
    """Where each dump's bytes live, by region."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def make_dirs(self) -> None:
        for region in REGIONS:
            self.region_dir(region).mkdir(parents=True, exist_ok=True)

    def region_dir(self, region: str) -> Path:
        return self.root / region

    @staticmethod
    def name(region: str, dump_id: str) -> str:
        """The blob name kept in the dump's row."""
        return f"{region}/{dump_id}{BLOB_SUFFIX}"

    def path(self, blob: str) -> Path:
        return self.root / blob

    def final_path(self, region: str, dump_id: str) -> Path:
        return self.region_dir(region) / f"{dump_id}{BLOB_SUFFIX}"

    def tmp_path(self, region: str, dump_id: str) -> Path:
        return self.region_dir(region) / f"{TMP_PREFIX}{dump_id}"

    async def read_settled(self, blob: str, wait_materialized: Callable[[float], Any]) -> bytes | None:
        """The blob's bytes; a dump acknowledged a moment ago has its file written just after
        the 201, so a missing file is read again once the materializer has caught up.
        None when it is gone (removed by retention)."""
        path = self.path(blob)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            pass
        await asyncio.to_thread(wait_materialized, 10.0)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    def storage(self) -> dict[str, dict[str, int]]:
        """What each region's directory physically holds: dump files and their bytes, and
        any other files (journals not yet flushed, temporary files)."""
        out: dict[str, dict[str, int]] = {}
        for region in REGIONS:
            dumps = size = other = 0
            directory = self.region_dir(region)
            if directory.is_dir():
                for entry in os.scandir(directory):
                    if not entry.is_file():
                        continue
                    if BLOB_NAME_RE.match(entry.name):
                        dumps += 1
                        size += entry.stat().st_size
                    else:
                        other += 1
            out[region] = {"dumps": dumps, "bytes": size, "otherFiles": other}
        return out
