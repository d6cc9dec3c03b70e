"""The error body every route of the service answers with, as the public v2 API does.

A JSON array of ``{"ErrorCode", "Title", "Detail"}`` objects.
"""

from __future__ import annotations

from typing import Any

ERROR_CODE = "ErrorCode"
ERROR_TITLE = "Title"
ERROR_DETAIL = "Detail"


def error_body(code: str, title: str, detail: str = "") -> list[dict[str, str]]:
    return [{ERROR_CODE: code, ERROR_TITLE: title, ERROR_DETAIL: detail or title}]


def error_codes(body: Any) -> list[str]:
    """The ErrorCodes of an error body; [] when the body is not one."""
    if not isinstance(body, list):
        return []
    return [str(item.get(ERROR_CODE)) for item in body if isinstance(item, dict) and ERROR_CODE in item]


def error_text(body: Any) -> str:
    """One line for a person: ``Code: Detail; ...``."""
    if not isinstance(body, list):
        return str(body)
    parts = []
    for item in body:
        if isinstance(item, dict):
            parts.append(f"{item.get(ERROR_CODE, '?')}: {item.get(ERROR_DETAIL) or item.get(ERROR_TITLE, '')}")
    return "; ".join(parts) or str(body)
