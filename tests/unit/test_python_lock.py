"""requirements.lock (what ./bootstrap.sh installs, hashes checked) matches pyproject.toml:
every dependency pyproject names, in its `dependencies`, its `dev` extra and the build
backend's requirements, is pinned to one exact version that satisfies pyproject's specifier,
with hashes. `.ci/lock-deps` rewrites the lock when this fails."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from testbed.paths import REPO_ROOT

LOCK = REPO_ROOT / "requirements.lock"
PYPROJECT = REPO_ROOT / "pyproject.toml"
FIX = "run .ci/lock-deps to update requirements.lock"


def _pyproject_requirements() -> list[Requirement]:
    data = tomllib.loads(PYPROJECT.read_text())
    names = [*data["project"]["dependencies"], *data["project"]["optional-dependencies"]["dev"],
             *data["build-system"]["requires"]]
    return [Requirement(r) for r in names]


def parse_lock(text: str) -> dict[str, tuple[Version, Marker | None, list[str]]]:
    """name -> (pinned version, marker, hashes) of a pip-compile --generate-hashes file."""
    pins: dict[str, tuple[Version, Marker | None, list[str]]] = {}
    logical = re.sub(r"\\\n", " ", text)  # join continuation lines
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        hashes = re.findall(r"--hash=(sha256:[0-9a-f]{64})", line)
        spec = re.sub(r"--hash=\S+", "", line).strip()
        req = Requirement(spec)
        pinned = [s for s in req.specifier if s.operator == "=="]
        assert len(pinned) == 1 and len(req.specifier) == 1, f"{spec!r} is not one exact pin"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{name} pinned twice in requirements.lock"
        pins[name] = (Version(pinned[0].version), req.marker, hashes)
    return pins


def test_every_pyproject_dependency_is_pinned_in_the_lock_within_its_specifier() -> None:
    pins = parse_lock(LOCK.read_text())
    problems = []
    for req in _pyproject_requirements():
        if req.marker is not None and not req.marker.evaluate({"sys_platform": "linux"}):
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req} is not in requirements.lock")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req} is not satisfied by the lock's {name}=={pins[name][0]}")
    assert not problems, "; ".join(problems) + f": {FIX}"


def test_every_pin_carries_hashes() -> None:
    pins = parse_lock(LOCK.read_text())
    assert len(pins) > 20
    unhashed = sorted(name for name, (_, _, hashes) in pins.items() if not hashes)
    assert not unhashed, f"pins without --hash: {unhashed}: {FIX}"


def test_the_lock_parser_catches_a_stale_or_loose_pin() -> None:
    text = "click==8.1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via testbed\n"
    assert parse_lock(text)["click"][0] == Version("8.1.0")
    assert not Requirement("click>=8.2").specifier.contains(parse_lock(text)["click"][0])
    with pytest.raises(AssertionError, match="not one exact pin"):
        parse_lock("click>=8.1 \\\n    --hash=sha256:" + "a" * 64 + "\n")
