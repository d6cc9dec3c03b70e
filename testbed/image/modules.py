"""Pick the kernel modules the board needs, with their dependencies, from an unpacked kernel package."""

from __future__ import annotations

from pathlib import Path

from testbed.image.errors import ImageError


def _module_depends(ko: Path) -> list[str]:
    data = ko.read_bytes()
    start = data.find(b"\0depends=")
    if start < 0:
        return []
    start += len(b"\0depends=")
    end = data.index(b"\0", start)
    value = data[start:end].decode()
    return [d for d in value.split(",") if d]


def resolve_modules(modules_root: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The .ko files for ``wanted`` and their dependencies, dependencies first."""
    index = {ko.name.removesuffix(".ko").replace("-", "_"): ko for ko in modules_root.rglob("*.ko")}
    ordered: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        if key in chain:
            raise ImageError(f"kernel module dependency cycle: {' -> '.join(chain + (key,))}")
        ko = index.get(key)
        if ko is None:
            raise ImageError(
                f"kernel module {key} not found under {modules_root} (needed by {chain[-1] if chain else 'the board'})"
            )
        for dep in _module_depends(ko):
            visit(dep, chain + (key,))
        seen.add(key)
        ordered.append(ko)

    for name in wanted:
        visit(name, ())
    return ordered
