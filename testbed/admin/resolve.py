"""Finding products and device groups the way az does: by name (any case) or id (any case),
a group also as ``Product/Group`` (the scenario files' notation), with "did you mean"."""

from __future__ import annotations

import difflib
from typing import Any

from testbed.service.client import Client


def _suggest(ref: str, names: list[str]) -> str:
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.6)
    if not close:
        close = [n for n in names if n.lower() == ref.lower()]
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def product(client: Client, tenant_id: str, ref: str) -> dict[str, Any]:
    products = client.products(tenant_id)
    for p in products:
        if _same(p["Id"], ref) or _same(p["Name"], ref):
            return p
    raise ValueError(f"no product {ref!r}{_suggest(ref, [p['Name'] for p in products])}")


def product_names(client: Client, tenant_id: str) -> dict[str, str]:
    """Product id -> name."""
    return {p["Id"]: p["Name"] for p in client.products(tenant_id)}


def device_group(client: Client, tenant_id: str, ref: str, product_ref: str | None = None) -> dict[str, Any]:
    """A group by id, name (within ``product_ref`` if given) or ``Product/Group``."""
    if product_ref is None and "/" in ref:
        product_ref, _, ref = ref.partition("/")
    product_id = product(client, tenant_id, product_ref)["Id"] if product_ref else None
    groups = client.device_groups(tenant_id, 1000, product_id)
    for g in groups:
        if _same(g["Id"], ref):
            return g
    named = [g for g in groups if _same(g["Name"], ref)]
    if len(named) == 1:
        return named[0]
    where = f" in product {product_ref!r}" if product_ref else ""
    if not named:
        raise ValueError(f"no device group {ref!r}{where}{_suggest(ref, sorted({g['Name'] for g in groups}))}")
    names = product_names(client, tenant_id)
    owners = ", ".join(sorted(f"{names.get(g['ProductId'], g['ProductId'])}/{g['Name']}" for g in named))
    raise ValueError(f"{len(named)} device groups are named {ref!r} ({owners}): give --product/-p, "
                     "Product/Group or the group id")  # fmt: skip
