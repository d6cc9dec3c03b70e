"""The uvicorn event loop and HTTP parser, shared by the service and the bench's sink.

uvloop and httptools when importable (they are dependencies: less CPU per
request), asyncio and h11 otherwise. Both servers make the same choice, so the
bench compares ingest work, not server plumbing.
"""

from __future__ import annotations

import importlib.util


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


UVICORN_LOOP = "uvloop" if _have("uvloop") else "asyncio"
UVICORN_HTTP = "httptools" if _have("httptools") else "h11"
