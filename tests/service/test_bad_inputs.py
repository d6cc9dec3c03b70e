"""Bad input: every class answers 4xx with a JSON error and leaves the data directory unchanged.

Also: hypothesis over uploads and the public API (no 5xx, nothing stored on
a refusal), and the gzip bomb stopping early (unit test of CappedInflater).
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import zlib

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import new_signature, snapshot

from testbed.service.checks import CappedInflater
from testbed.service.errors import ApiError


def elf_header(e_type: int) -> bytes:
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHI", e_type, 40, 1) + bytes(32)


def bomb(inflated: int) -> bytes:
    """gzip of an ELF core header followed by zeros: tiny compressed, huge inflated."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [z.compress(elf_header(4))]
    block = bytes(1 << 20)
    for _ in range(inflated >> 20):
        out.append(z.compress(block))
    out.append(z.flush())
    return b"".join(out)


# ---------------------------------------------------------------- unit: CappedInflater


def test_bomb_inflation_stops_at_the_cap() -> None:
    data = bomb(200 << 20)  # 200 MiB inflated from ~200 KiB
    inflater = CappedInflater(4 << 20)
    with pytest.raises(ApiError) as err:
        for i in range(0, len(data), 16384):
            inflater.feed(data[i : i + 16384])
    assert err.value.status == 413
    assert inflater.inflated <= (4 << 20) + 64 * 1024  # at most one step past the cap
    assert inflater.consumed < len(data) // 10  # most of the input was never inflated


def test_inflater_accepts_a_core_in_any_chunking(core_gz: bytes) -> None:
    for step in (1, 7, 4096, len(core_gz)):
        inflater = CappedInflater(4 << 20)
        for i in range(0, len(core_gz), step):
            inflater.feed(core_gz[i : i + step])
        assert inflater.finish() == len(gzip.decompress(core_gz))


@pytest.mark.parametrize(
    "body,code",
    [
        (b"not gzip at all", "BadGzip"),
        (gzip.compress(elf_header(4) + bytes(1000))[:-9], "BadGzip"),
        (gzip.compress(elf_header(4) + bytes(1000)) + b"trailing", "BadGzip"),
        (gzip.compress(elf_header(2) + bytes(1000)), "NotElfCore"),
        (gzip.compress(b"hello world" * 100), "NotElfCore"),
        (gzip.compress(b"\x7fELF"), "NotElfCore"),
        (zlib.compress(elf_header(4) + bytes(1000)), "BadGzip"),
    ],
)
def test_inflater_refuses(body: bytes, code: str) -> None:
    inflater = CappedInflater(4 << 20)
    with pytest.raises(ApiError) as err:
        inflater.feed(body)
        inflater.finish()
    assert err.value.status == 400 and err.value.code == code


# ---------------------------------------------------------------- against the service


@pytest.fixture
def device(claimed_device):
    dev = claimed_device()
    with dev.client() as c:
        yield c


def _post(device, body: bytes | None, headers: dict[str, str], chunked: bool = False) -> httpx.Response:
    h = {"Content-Type": "application/gzip", "X-Crash-Signature": new_signature(), **headers}
    h = {k: v for k, v in h.items() if v is not None}
    if chunked:
        def gen():
            yield body or b""

        return device.http.post("/device/v1/crashdumps", content=gen(), headers=h)
    return device.http.post("/device/v1/crashdumps", content=body, headers=h)


BAD_UPLOADS = {
    "not-gzip": (b"plain text", {}, 400),
    "truncated-gzip": (None, {}, 400),
    "not-elf": (gzip.compress(b"just text " * 50), {}, 400),
    "elf-not-core": (gzip.compress(elf_header(2) + bytes(4096)), {}, 400),
    "trailing-data": (None, {}, 400),
    "empty": (b"", {}, 400),
    "bad-signature": (None, {"X-Crash-Signature": "ABC"}, 400),
    "upper-signature": (None, {"X-Crash-Signature": "A" * 32}, 400),
    "no-signature": (None, {"X-Crash-Signature": None}, 400),
    "bad-component-class": (None, {"X-Component-Class": "Kernel"}, 400),
    "bad-component-name": (None, {"X-Component-Name": "a b"}, 400),
    "bad-crash-time": (None, {"X-Crash-Time": "yesterday"}, 400),
    "wrong-content-type": (None, {"Content-Type": "application/octet-stream"}, 415),
    "no-content-type": (None, {"Content-Type": None}, 415),
    "too-large": (os.urandom(300 * 1024), {}, 413),
    "gzip-bomb": (bomb(64 << 20), {}, 413),
    "bad-auth": (None, {"Authorization": "Device x:y"}, 401),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_is_refused_and_nothing_stored(service, device, core_gz: bytes, case: str) -> None:
    body, headers, status = BAD_UPLOADS[case]
    if case == "truncated-gzip":
        body = core_gz[: len(core_gz) // 2]
    elif case == "trailing-data":
        body = core_gz + b"\x00garbage"
    elif body is None:
        body = core_gz
    before = snapshot(service)
    r = _post(device, body, headers)
    assert r.status_code == status, r.text
    errors = r.json()
    assert isinstance(errors, list) and set(errors[0]) == {"ErrorCode", "Title", "Detail"}
    assert errors[0]["Detail"]
    assert snapshot(service) == before


def test_chunked_upload_without_length_is_411(service, device, core_gz: bytes) -> None:
    before = snapshot(service)
    r = _post(device, core_gz, {}, chunked=True)
    assert r.status_code == 411 and r.json()[0]["ErrorCode"] == "LengthRequired"
    assert snapshot(service) == before


def test_good_upload_after_bad_ones_still_works(device, core_gz: bytes) -> None:
    assert _post(device, b"junk", {}).status_code == 400
    r = _post(device, core_gz, {})
    assert r.status_code == 201 and set(r.json()) == {"id", "region"}


def test_oversized_json_body_is_413(tenant_admin) -> None:
    r = tenant_admin.http.post(
        f"/v2/tenants/{tenant_admin.tenant_id}/products",
        content=json.dumps({"Name": "x", "Description": "y" * 100_000}),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413


# ---------------------------------------------------------------- hypothesis

HEADER_VALUES = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip),
    st.sampled_from(["application/gzip", "App", "OS", "0" * 32, "f" * 32, "", "1790000000"]),
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        st.builds(lambda b: gzip.compress(b), st.binary(max_size=2048)),
        st.builds(lambda t, b: gzip.compress(elf_header(t) + b), st.integers(0, 65535), st.binary(max_size=512)),
    ),
    ctype=HEADER_VALUES,
    sig=HEADER_VALUES,
    cls=HEADER_VALUES,
    name=HEADER_VALUES,
    ctime=HEADER_VALUES,
)
def test_fuzz_uploads_never_5xx_and_refusals_store_nothing(service, device, body, ctype, sig, cls, name, ctime) -> None:
    headers = {
        "Content-Type": ctype,
        "X-Crash-Signature": sig,
        "X-Component-Class": cls,
        "X-Component-Name": name,
        "X-Crash-Time": ctime,
    }
    before = snapshot(service)
    r = _post(device, body, headers)
    assert r.status_code < 500, r.text
    if r.status_code != 201:
        assert isinstance(r.json(), (list, dict))
        assert snapshot(service) == before


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=60)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=30), children, max_size=4)),
    max_leaves=8,
)
GROUP_BODIES = st.one_of(
    JSONISH,
    st.fixed_dictionaries(
        {},
        optional={
            "Name": JSONISH,
            "Description": JSONISH,
            "OsFeedType": JSONISH,
            "UpdatePolicy": JSONISH,
            "AllowCrashDumpsCollection": JSONISH,
            "RegionalDataBoundary": st.one_of(JSONISH, st.sampled_from(["EU", "None"])),
        },
    ),
)


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    route=st.sampled_from(["patch-group", "create-group", "create-product", "claim", "move", "list", "intent", "sync"]),
    body=GROUP_BODIES,
    raw=st.one_of(st.none(), st.binary(max_size=200), st.sampled_from([b"NaN", b"{\"Name\": Infinity}", b"{\"AllowCrashDumpsCollection\": NaN}", b"\xff\xfe{}", b"{\"Name\": \"\\ud800\"}"])),
    page=st.one_of(st.none(), st.text(max_size=8)),
    cont=st.one_of(st.none(), st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40)),
)
def test_fuzz_public_and_device_api_never_5xx(tenant_admin, device_group, claimed_device, route, body, raw, page, cont) -> None:
    tid = tenant_admin.tenant_id
    if not hasattr(tenant_admin, "_fuzz"):
        group = device_group()
        dev = claimed_device(group)
        tenant_admin._fuzz = (group, dev)
    group, dev = tenant_admin._fuzz
    kwargs = {"content": raw, "headers": {"Content-Type": "application/json"}} if raw is not None else {"json": body}
    c = tenant_admin.http
    if route == "patch-group":
        r = c.patch(f"/v2/tenants/{tid}/devicegroups/{group['Id']}", **kwargs)
    elif route == "create-group":
        r = c.post(f"/v2/tenants/{tid}/products/{group['ProductId']}/devicegroups", **kwargs)
    elif route == "create-product":
        r = c.post(f"/v2/tenants/{tid}/products", **kwargs)
    elif route == "claim":
        r = c.post(f"/v2/tenants/{tid}/devices", **kwargs)
    elif route == "move":
        r = c.put(f"/v2/tenants/{tid}/devices/{dev.device_id}/devicegroup", **kwargs)
    elif route == "list":
        params = {"maxPageSize": page} if page is not None else None
        headers = {"Sphere-Continuation": cont} if cont else None
        r = c.get(f"/v2/tenants/{tid}/devicegroups", params=params, headers=headers)
    else:
        with dev.client() as d:
            path = "/device/v1/crashdumps/intent" if route == "intent" else "/device/v1/sync"
            r = d.http.post(path, **kwargs)
    assert r.status_code < 500, (route, body, raw, r.text)
    assert isinstance(r.json(), (list, dict))
    if r.status_code >= 400:
        assert isinstance(r.json(), list) and "ErrorCode" in r.json()[0]
