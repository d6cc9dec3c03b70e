"""YAML loading that keeps line numbers, so scenario errors can name file, line and field.

PyYAML's node API (``yaml.compose``) keeps the start mark of every node; this
module turns the node tree into plain Python values whose mappings and lists
remember where each key and item came from.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor


class LocMap(dict):
    """A mapping from YAML with the line of itself, of each key and of each value (1-based)."""

    line: int
    key_lines: dict[str, int]
    value_lines: dict[str, int]


class LocList(list):
    """A sequence from YAML with the line of itself and of each item (1-based)."""

    line: int
    item_lines: list[int]


class YamlSyntaxError(ValueError):
    """The text is not YAML; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


_constructor = SafeConstructor()


def _convert(node: yaml.Node, problems: list[YamlSyntaxError] | None = None) -> Any:
    """The node's value; a duplicate key is raised, or, with ``problems``, noted there (the first
    value is kept) so the rest of the file is still read."""
    if isinstance(node, yaml.MappingNode):
        out = LocMap()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        out.value_lines = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError("a mapping key must be a plain value", key_node.start_mark.line + 1)
            key = _constructor.construct_object(key_node)
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                dup = YamlSyntaxError(f"duplicate key {key!r} (first at line {out.key_lines[key]})",
                                      key_node.start_mark.line + 1)  # fmt: skip
                if problems is None:
                    raise dup
                problems.append(dup)
                continue
            out[key] = _convert(value_node, problems)
            out.key_lines[key] = key_node.start_mark.line + 1
            out.value_lines[key] = value_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        items = LocList(_convert(item, problems) for item in node.value)
        items.line = node.start_mark.line + 1
        items.item_lines = [item.start_mark.line + 1 for item in node.value]
        return items
    return _constructor.construct_object(node)


def load_located(text: str, problems: list[YamlSyntaxError] | None = None) -> Any:
    """Parse one YAML document into LocMap / LocList / scalars. Empty text gives None.

    A duplicate key raises YamlSyntaxError, or, when ``problems`` is a list, is appended to it
    (the key's first value kept) and the rest is read, so a checker can report every mistake."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise YamlSyntaxError(f"not valid YAML: {exc.problem or exc}", line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"not valid YAML: {exc}", 0) from None
    if node is None:
        return None
    return _convert(node, problems)


def line_of(container: Any, key: Any = None, *, value: bool = False) -> int:
    """Best line for ``container[key]`` (or the container itself when key is None)."""
    if key is None:
        return getattr(container, "line", 0)
    if isinstance(container, LocMap):
        table = container.value_lines if value else container.key_lines
        return table.get(key, container.line)
    if isinstance(container, LocList) and isinstance(key, int) and 0 <= key < len(container.item_lines):
        return container.item_lines[key]
    return getattr(container, "line", 0)


def locate_plain(value: Any) -> Any:
    """Wrap plain Python dicts/lists (the Python API) as LocMap/LocList with line 0."""
    if isinstance(value, dict):
        out = LocMap((str(k), locate_plain(v)) for k, v in value.items())
        out.line = 0
        out.key_lines = {str(k): 0 for k in value}
        out.value_lines = dict(out.key_lines)
        return out
    if isinstance(value, list | tuple):
        items = LocList(locate_plain(v) for v in value)
        items.line = 0
        items.item_lines = [0] * len(items)
        return items
    return value
