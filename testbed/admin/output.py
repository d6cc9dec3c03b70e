"""``--output/-o`` and ``--query`` as the az CLI has them: json, jsonc, table, tsv, yaml, none.

``--query`` is a JMESPath expression applied to the result before it is printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
import jmespath
import jmespath.exceptions
import yaml

FORMATS = ("json", "jsonc", "table", "tsv", "yaml", "none")
DEFAULT_FORMAT = "json"

#: A command's table view of one item of its result (az's table transformers): an ordered mapping.
TableRow = Callable[[dict[str, Any]], dict[str, Any]]


def apply_query(value: Any, query: str | None) -> Any:
    if not query:
        return value
    try:
        return jmespath.search(query, value)
    except jmespath.exceptions.JMESPathError as exc:
        raise click.BadParameter(f"{query!r} is not a valid JMESPath query: {exc}", param_hint="'--query'") from None


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


_COLOR = {"key": "\x1b[94m", "str": "\x1b[32m", "num": "\x1b[33m", "lit": "\x1b[36m", "end": "\x1b[0m"}


def to_jsonc(value: Any, indent: int = 0) -> str:
    """Indented JSON with ANSI colours (keys, strings, numbers, literals)."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    c = _COLOR
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f'{inner}{c["key"]}{json.dumps(k, ensure_ascii=False)}{c["end"]}: {to_jsonc(value[k], indent + 1)}'
                 for k in sorted(value)]  # fmt: skip
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + to_jsonc(v, indent + 1) for v in value) + f"\n{pad}]"
    if isinstance(value, str):
        return f"{c['str']}{json.dumps(value, ensure_ascii=False)}{c['end']}"
    if isinstance(value, bool) or value is None:
        return f"{c['lit']}{json.dumps(value)}{c['end']}"
    return f"{c['num']}{json.dumps(value)}{c['end']}"


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    return str(value)


def _header(key: str) -> str:
    return key[:1].upper() + key[1:]


def to_table(value: Any, row: TableRow | None = None) -> str:
    """Rows of the scalar fields (of ``row(item)`` when the command has a table view)."""
    items = value if isinstance(value, list) else [value]
    rows: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            view = row(item) if row else item
            rows.append({k: v for k, v in view.items() if _scalar(v)})
        else:
            rows.append({"Result": item})
    if not rows:
        return ""
    headers: list[str] = []
    for r in rows:
        headers += [k for k in r if k not in headers]
    cells = [[_cell(r.get(h)) for h in headers] for r in rows]
    widths = [max(len(_header(h)), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(_header(h).ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]  # fmt: skip
    lines += ["  ".join(c.ljust(w) for c, w in zip(cs, widths, strict=True)).rstrip() for cs in cells]
    return "\n".join(lines)


def to_tsv(value: Any) -> str:
    """Tab-separated scalar values, one line per item (keys in sorted order, no header)."""
    items = value if isinstance(value, list) else [value]
    lines = []
    for item in items:
        if isinstance(item, dict):
            lines.append("\t".join(_cell(item[k]) for k in sorted(item) if _scalar(item[k])))
        elif isinstance(item, list):
            lines.append("\t".join(_cell(v) for v in item if _scalar(v)))
        else:
            lines.append(_cell(item))
    return "\n".join(lines)


def to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True, allow_unicode=True).rstrip("\n")


def render(value: Any, fmt: str = DEFAULT_FORMAT, query: str | None = None, row: TableRow | None = None) -> str | None:
    """The text to print for ``value`` (None for ``-o none``)."""
    value = apply_query(value, query)
    fmt = fmt.lower()
    if fmt == "none":
        return None
    if fmt == "json":
        return to_json(value)
    if fmt == "jsonc":
        return to_jsonc(value)
    if fmt == "table":
        return to_table(value, None if query else row)
    if fmt == "tsv":
        return to_tsv(value)
    if fmt == "yaml":
        return to_yaml(value)
    raise click.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="'--output'")
