"""A private apt setup for downloading the image's armhf packages.

Everything apt needs (sources, lists, cache, an empty dpkg status) lives
under ``<cache>/apt``; the system's apt configuration is never touched.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from testbed.image.lock import IMAGES_DIR, LockedPackage
from testbed.paths import cache_dir

SOURCES = IMAGES_DIR / "apt-sources.list"

Progress = Callable[[str], None]


class AptError(Exception):
    """A package could not be fetched or verified."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class PrivateApt:
    def __init__(self, root: Path | None = None, progress: Progress | None = None):
        self.root = root or cache_dir() / "apt"
        self.archives = self.root / "debs"
        self.progress = progress or (lambda message: None)
        for sub in ("lists/partial", "cache/archives/partial", "etc/sources.list.d", "debs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        shutil.copyfile(SOURCES, self.root / "etc" / "sources.list")
        self._updated = False

    def options(self) -> list[str]:
        r = self.root
        return [
            "-oAPT::Architecture=armhf",
            "-oAPT::Architectures=armhf",
            f"-oDir::State::Lists={r / 'lists'}",
            f"-oDir::Cache={r / 'cache'}",
            f"-oDir::Etc::SourceList={r / 'etc' / 'sources.list'}",
            f"-oDir::Etc::SourceParts={r / 'etc' / 'sources.list.d'}",
            f"-oDir::State::Status={r / 'status'}",
            "-oDebug::NoLocking=1",
            "-oAcquire::Languages=none",
            "-oAPT::Sandbox::User=root",
        ]

    def _run(self, args: list[str], cwd: Path | None = None, show: bool = False):
        """Run an apt command; with ``show`` its output goes live to our stderr (not captured)."""
        if shutil.which(args[0]) is None:
            raise AptError(f"{args[0]} not found: the image builder needs apt (Debian/Ubuntu)")
        return subprocess.run(
            [args[0], *self.options(), *args[1:]],
            cwd=cwd,
            text=True,
            stdout=sys.stderr if show else subprocess.PIPE,
            stderr=None if show else subprocess.STDOUT,
        )

    def update(self) -> bool:
        """Refresh the private package index. A failure is reported, not fatal."""
        if self._updated:
            return True
        self.progress("refreshing the armhf package index (private apt lists)")
        result = self._run(["apt-get", "update"])
        self._updated = True
        if result.returncode != 0:
            tail = "\n".join((result.stdout or "").strip().splitlines()[-3:])
            self.progress(f"warning: the index refresh reported an error (going on):\n{tail}")
            return False
        return True

    def show(self, package: str) -> dict[str, str]:
        """The candidate version's fields (Version, SHA256, Size, Filename, Depends...)."""
        result = self._run(["apt-cache", "show", "--no-all-versions", package])
        if result.returncode != 0 or not result.stdout.strip():
            raise AptError(f"package {package} (armhf) not found in the index: {result.stdout.strip()}")
        fields: dict[str, str] = {}
        key = None
        for line in result.stdout.splitlines():
            if not line.strip():
                if fields:
                    break
                continue
            if line[0] in " \t" and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        return fields

    def fetch(self, pkg: LockedPackage) -> Path:
        """The verified .deb of a pinned package, downloading it if not cached."""
        target = self.archives / pkg.deb_name
        if target.exists():
            if sha256_file(target) == pkg.sha256:
                return target
            target.unlink()
        self.update()
        self.progress(f"downloading {pkg.package} {pkg.version} ({pkg.size / 1e6:.1f} MB)")
        # On a terminal apt shows its own download progress; otherwise its output is
        # captured for the error message.
        live = sys.stderr.isatty()
        result = self._run(["apt-get", "download", f"{pkg.package}={pkg.version}"], cwd=self.archives, show=live)
        if result.returncode != 0 or not target.exists():
            out = (result.stdout or "").strip() if not live else "(apt's messages are above)"
            raise AptError(
                f"cannot download {pkg.package} version {pkg.version} (armhf) from the mirror:\n{out}\n"
                "The pinned version may have left the mirror: run `testbed image lock --update` "
                "to pin the current versions, then `testbed image build`."
            )
        actual = sha256_file(target)
        if actual != pkg.sha256:
            bad = target.with_suffix(".deb.bad")
            target.replace(bad)
            raise AptError(
                f"sha256 mismatch for {pkg.package} {pkg.version}: the lock file says {pkg.sha256}, "
                f"the download is {actual} (kept as {bad}). If the lock file is out of date, "
                "run `testbed image lock --update`; otherwise the mirror served a different file."
            )
        return target
