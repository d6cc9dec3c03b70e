"""Board snapshots: a booted, unprovisioned board saved to a file once per image,
from which new boards start in well under a second (QMP migrate / -incoming).

The snapshot's key covers the image hash, the board profile and the QEMU
version, so a change to any of them makes a new snapshot instead of loading
a stale one.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testbed.board.errors import BoardError
from testbed.board.profile import PROFILE, QEMU
from testbed.board.qemu import QemuBoard
from testbed.deadline import Deadline
from testbed.image.build import Image, ensure_image
from testbed.paths import cache_dir

Progress = Callable[[str], None]
#: How many snapshots the cache keeps (the most recently used ones; ~40 MB each).
KEEP_SNAPSHOTS = 6


@dataclass(frozen=True)
class Snapshot:
    path: Path
    image_hash: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def state_file(self) -> Path:
        return self.path / "state.bin"

    def image(self) -> Image:
        """The image this snapshot was made from (it must still be in the cache)."""
        from testbed.image.build import images_dir

        return Image.from_dir(images_dir() / self.image_hash)

    @classmethod
    def from_dir(cls, path: Path) -> Snapshot:
        meta = json.loads((path / "snapshot.json").read_text())
        snap = cls(path, meta["image_hash"], meta)
        if not snap.state_file.exists():
            raise BoardError(f"snapshot {path} has no state.bin")
        return snap


@functools.cache
def qemu_version() -> str:
    out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


def snapshot_key(image: Image) -> str:
    digest = hashlib.sha256(
        json.dumps({"image": image.hash, "profile": PROFILE, "qemu": qemu_version()}, sort_keys=True).encode()
    )
    return f"{image.hash}-{digest.hexdigest()[:10]}"


def snapshots_dir() -> Path:
    d = cache_dir() / "snapshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    with (snapshots_dir() / f".{name}.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _progress(message: str) -> None:
    print(f"[snapshot] {message}", file=sys.stderr, flush=True)


def _wait_rss_settled(board: QemuBoard, timeout: float = 8.0, steady: float = 1.0) -> None:
    """Poll QEMU's RSS until it has not dropped for ``steady`` seconds (free page reporting done)."""
    deadline = Deadline(timeout)
    lowest = board.rss_bytes()[0]
    since = Deadline(None)  # how long the RSS has not dropped
    while deadline.sleep(0.1):
        current = board.rss_bytes()[0]
        if current < lowest - (256 << 10):
            lowest, since = current, Deadline(None)
        elif since.elapsed >= max(steady, 2.5):
            return


def save_snapshot(board: QemuBoard, path: Path, note: str = "") -> Snapshot:
    """Save a running board's state as a snapshot in directory ``path``; the board is closed."""
    path.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    board.save_state(path / "state.bin")
    meta = {
        "image_hash": board.image.hash,
        "profile": PROFILE,
        "qemu": qemu_version(),
        "created": int(time.time()),
        "save_seconds": round(time.monotonic() - started, 3),
        "state_bytes": (path / "state.bin").stat().st_size,
        "note": note,
    }
    (path / "snapshot.json").write_text(json.dumps(meta, indent=2) + "\n")
    board.close()
    return Snapshot(path, board.image.hash, meta)


def ensure_snapshot(
    image: Image | None = None,
    *,
    boot_timeout: float = 60,
    progress: Progress | None = None,
    force: bool = False,
) -> Snapshot:
    """The cached snapshot of a freshly booted, unprovisioned board for ``image``; made if missing."""
    image = image or ensure_image()
    progress = progress or _progress
    key = snapshot_key(image)
    target = snapshots_dir() / key
    if not force and (target / "snapshot.json").exists():
        with contextlib.suppress(OSError):
            os.utime(target)
        return Snapshot.from_dir(target)
    with _lock(key):
        if not force and (target / "snapshot.json").exists():
            return Snapshot.from_dir(target)
        progress(f"cold-booting a board to snapshot image {image.hash} (once per image)")
        work = snapshots_dir() / f".{key}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        board = QemuBoard(image, name=f"snapshot-{image.hash[:8]}", boot_timeout=boot_timeout)
        try:
            board.boot()
            assert board.console is not None  # booted
            # Let the boot settle: page cache written and dropped, and the free pages
            # reported to QEMU (dropped there), so the snapshot carries them as zero pages.
            board.console.run("sync; echo 3 > /proc/sys/vm/drop_caches", timeout=10)
            _wait_rss_settled(board)
            snap = save_snapshot(board, work, note="booted, unprovisioned")
        finally:
            board.close()
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
        from testbed.image.build import prune_cache_dir

        prune_cache_dir(snapshots_dir(), KEEP_SNAPSHOTS, protect=target)
        progress(f"snapshot saved: {target} ({snap.meta['state_bytes'] / 1e6:.1f} MB, {snap.meta['save_seconds']} s)")
        return Snapshot.from_dir(target)


def restored_board(snapshot: Snapshot | None = None, image: Image | None = None, **kwargs) -> QemuBoard:
    """A new board started from ``snapshot`` (the cached one by default); the caller closes it."""
    if image is None:
        image = snapshot.image() if snapshot is not None else ensure_image()
    snapshot = snapshot or ensure_snapshot(image)
    board = QemuBoard(image, **kwargs)
    try:
        board.restore(snapshot)
    except BaseException:
        board.close()
        raise
    return board
