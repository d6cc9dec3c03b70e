""".ci/fresh-root finds this machine's Debian mirror in both apt source formats, and the pip
configuration files it must copy into the root (the script itself runs in CI)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

from testbed.paths import REPO_ROOT


def _script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("fresh_root", str(REPO_ROOT / ".ci" / "fresh-root"))
    spec = importlib.util.spec_from_loader("fresh_root", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_mirror_and_suites_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    fr = _script()
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    (tmp_path / "sources.list.d" / "other.list").write_text(
        "deb [arch=amd64 signed-by=/x.gpg] https://vendor.example/apt stable main\n")
    (tmp_path / "sources.list.d" / "old.list.disabled").write_text("deb http://disabled.example/debian bookworm main\n")
    (tmp_path / "sources.list").write_text("# deb http://commented.example/debian bookworm main\n")

    sources = fr.debian_sources(tmp_path)
    assert sources == [
        ("http://mirror.example/debian", "bookworm", ["main"]),
        ("http://mirror.example/debian", "bookworm-updates", ["main"]),
        ("http://security.example/debian-security", "bookworm-security", ["main"]),
    ]
    mirror, sources_list = fr.root_sources(sources)
    assert mirror == "http://mirror.example/debian"
    assert sources_list.splitlines()[2] == (
        f"deb [signed-by={fr.KEYRING}] http://security.example/debian-security bookworm-security main")


def test_no_debian_entry_falls_back_to_the_debian_mirror(tmp_path: Path) -> None:
    fr = _script()
    (tmp_path / "sources.list").write_text("deb http://archive.ubuntu.com/ubuntu jammy main\n")
    mirror, sources_list = fr.root_sources(fr.debian_sources(tmp_path))
    assert mirror == fr.FALLBACK_MIRROR
    assert sources_list == f"deb [signed-by={fr.KEYRING}] {fr.FALLBACK_MIRROR} bookworm main\n"


def test_files_named_by_pip_config_are_copied_but_not_the_system_bundle(tmp_path: Path, monkeypatch) -> None:
    fr = _script()
    for var in ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_CONSTRAINT"):
        monkeypatch.delenv(var, raising=False)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2\n")
    cert = tmp_path / "extra.pem"
    cert.write_text("pem")
    conf_dir = tmp_path / "xdg"
    conf_dir.mkdir()
    (conf_dir / "pip.conf").write_text(f"[global]\nconstraint = {constraints}\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\ncert = {fr.SYSTEM_BUNDLE}\n[install]\nclient-cert = {cert}\n")
    assert fr.files_named_by_pip_config([conf, conf_dir]) == [cert, constraints]
