"""The reference of every step action and expectation, made from the registry.

docs/scenarios.md holds the tables between marker comments; a unit test fails when
they are stale, ``python -m testbed.scenario.reference --write`` (or
``testbed scenario reference --write-docs``) rewrites them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from testbed.scenario.registry import ACTIONS, EXPECTATIONS, Op, load_all

BEGIN = "<!-- reference:{} begin (generated from testbed/scenario/registry.py; do not edit) -->"
END = "<!-- reference:{} end -->"


def fields_text(cls: type[Op]) -> str:
    parts = []
    for key, spec in cls.specs().items():
        text = f"`{key}`" + ("*" if spec.required else "")
        kind = spec.kind.doc()
        if kind not in ("boards", key):
            text += f" {kind}"
        default = spec.default_text()
        if default and default not in kind:
            text += f" ({default})"
        parts.append(text)
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|") if "\\|" not in text else text.replace("\n", " ")


def steps_table() -> str:
    load_all()
    rows = ["| action | fields (* required) | board capabilities | what it does |", "|---|---|---|---|"]
    for name, cls in ACTIONS.items():
        needs = ", ".join(sorted(c.value for c in cls.needs)) or "-"
        short = f" Shorthand: `{name}: <{cls.shorthand}>`." if cls.shorthand else ""
        rows.append(f"| `{name}` | {fields_text(cls)} | {needs} | {_cell(cls.help)}.{short} |")
    return "\n".join(rows)


def expectations_table() -> str:
    load_all()
    rows = ["| kind | fields (* required) | about | held when |", "|---|---|---|---|"]
    for name, cls in EXPECTATIONS.items():
        about = "timing" if cls.timing else "function"
        short = f" Shorthand: `{name}: <{cls.shorthand}>`." if cls.shorthand else ""
        rows.append(f"| `{name}` | {fields_text(cls)} | {about} | {_cell(cls.help)}.{short} |")
    return "\n".join(rows)


TABLES = {"steps": steps_table, "expectations": expectations_table}


def render_docs(text: str) -> str:
    """``text`` (docs/scenarios.md) with every generated table replaced by the registry's."""
    for name, make in TABLES.items():
        begin, end = BEGIN.format(name), END.format(name)
        head, sep, rest = text.partition(begin)
        if not sep:
            raise ValueError(f"docs/scenarios.md has no marker {begin}")
        _, sep2, tail = rest.partition(end)
        if not sep2:
            raise ValueError(f"docs/scenarios.md has no marker {end}")
        text = f"{head}{begin}\n{make()}\n{end}{tail}"
    return text


def docs_path() -> Path:
    from testbed.paths import REPO_ROOT

    return REPO_ROOT / "docs" / "scenarios.md"


def write_docs(path: Path | None = None) -> bool:
    """Rewrite the tables; True when the file changed."""
    path = path or docs_path()
    old = path.read_text(encoding="utf-8")
    new = render_docs(old)
    if new != old:
        path.write_text(new, encoding="utf-8")
    return new != old


if __name__ == "__main__":  # pragma: no cover
    if "--write" in sys.argv:
        print("updated" if write_docs() else "up to date", docs_path())
    else:
        print(steps_table() + "\n\n" + expectations_table())
