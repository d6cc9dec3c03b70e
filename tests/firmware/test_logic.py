"""Pure logic of the firmware, host-built: SHA-256, signatures, the decision table, JSON, addresses."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from fw_helpers import make_core, parse_kv

from testbed.crash.signature import signature, signature_of_core


def tool(fw_bin: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(fw_bin / "tb-tool"), *args], input=input, capture_output=True, timeout=10)


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 65536 + 7])
def test_sha256_matches_hashlib(fw_bin, tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    out = tool(fw_bin, "sha256", str(path)).stdout.decode().strip()
    assert out == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "exe,build_id,sig,off",
    [
        ("crashapp", "0123456789abcdef0123456789abcdef01234567", 11, 0x104D4),
        ("crashapp-x1", "-", 6, 0),
        ("crashsvc", "", 8, 0xFFFFFFFF),
        ("c", "ab", 4, 0x7FFF_FFFF_FFFF),
    ],
)
def test_signature_matches_python(fw_bin, exe, build_id, sig, off):
    out = tool(fw_bin, "signature", exe, build_id, str(sig), f"{off:x}").stdout.decode().strip()
    expected = signature(exe, None if build_id in ("", "-") else build_id, sig, off)
    assert out == expected
    assert len(out) == 32 and int(out, 16) >= 0


def test_signature_stable_across_runs_and_aslr(fw_bin, tmp_path):
    """Same crash twice (a PIE binary, so ASLR moves it): same signature; other crash sites differ."""
    try:
        a = make_core(fw_bin, tmp_path / "a", "--mode", "segv")
        b = make_core(fw_bin, tmp_path / "b", "--mode", "segv", "--heap-kib", "64")
        c = make_core(fw_bin, tmp_path / "c", "--mode", "abort")
        d = make_core(fw_bin, tmp_path / "d", "--mode", "segv", "--id", "x1")
        e = make_core(fw_bin, tmp_path / "e", "--mode", "segv", "--id", "x2")
    except RuntimeError as exc:
        pytest.skip(str(exc))
    from testbed.crash.elfcore import read_core

    sig_a, sig_b = signature_of_core(a), signature_of_core(b)
    assert sig_a == sig_b
    assert len({sig_a, signature_of_core(c), signature_of_core(d), signature_of_core(e)}) == 4
    assert read_core(d).executable == "crashapp-x1"
    # and the C side agrees on each
    for core in (a, c, d):
        path = tmp_path / "x.core"
        path.write_bytes(core)
        assert parse_kv(tool(fw_bin, "core", str(path)).stdout.decode())["signature"] == signature_of_core(core)


NOW = 1_790_000_000
V = 172800


@pytest.mark.parametrize(
    "provisioned,synced,optin,last_ok,now,throttled,size,expected",
    [
        (0, 1, 1, NOW, NOW, 0, 1000, "optout"),          # no identity
        (1, 0, 0, 0, NOW, 0, 1000, "optout"),            # never synced
        (1, 1, 0, NOW, NOW, 0, 1000, "optout"),          # opted out
        (1, 1, 1, NOW, NOW + V, 0, 1000, "upload"),      # exactly at the validity: still valid
        (1, 1, 1, NOW, NOW + V + 1, 0, 1000, "stale-sync"),  # 48 h + 1 s on the board clock
        (1, 1, 1, NOW, NOW - 10, 0, 1000, "stale-sync"),  # clock set back before the last sync
        (1, 1, 0, NOW, NOW + V + 1, 0, 1000, "optout"),  # opt-out wins over staleness
        (1, 1, 1, NOW, NOW + 5, 1, 1000, "throttled"),
        (1, 1, 1, NOW, NOW + 5, 0, 262145, "too-large"),
        (1, 1, 1, NOW, NOW + 5, 1, 262145, "throttled"),  # throttled before the size matters
        (1, 1, 1, NOW, NOW + 5, 0, -1, "upload"),         # size not known yet
    ],
)
def test_decision_table(fw_bin, provisioned, synced, optin, last_ok, now, throttled, size, expected):
    args = [str(x) for x in (provisioned, synced, optin, V, last_ok, now, throttled, size, 262144)]
    assert tool(fw_bin, "decide", *args).stdout.decode().strip() == expected


SYNC_BODY = (
    b'{"optIn": true, "regionalDataBoundary": "EU", "validitySeconds": 172800, "serverTime": 1790000000,'
    b' "throttledSignatures": ["3f0c0000000000000000000000000000", "aa"], "note": "a \\"quoted\\", value",'
    b' "deviceGroupId": null, "maxUploadBytes": 262144}'
)


@pytest.mark.parametrize(
    "key,kind,expected",
    [
        ("optIn", "bool", "true"),
        ("regionalDataBoundary", "str", "EU"),
        ("validitySeconds", "int", "172800"),
        ("maxUploadBytes", "int", "262144"),
        ("note", "str", 'a "quoted", value'),
        ("throttledSignatures", "array", "3f0c0000000000000000000000000000\naa"),
        ("deviceGroupId", "str", None),
        ("missing", "int", None),
        ("optIn", "int", None),
    ],
)
def test_json_scanner(fw_bin, key, kind, expected):
    proc = tool(fw_bin, "json", key, kind, input=SYNC_BODY)
    if expected is None:
        assert proc.returncode == 1
    else:
        assert proc.returncode == 0
        assert proc.stdout.decode().strip() == expected


@pytest.mark.parametrize("body", [b"", b"[1,2]", b'{"a": {"nested": 1}, "optIn": true}', b'{"optIn": tru', b"{"])
def test_json_scanner_rejects_malformed(fw_bin, body):
    assert tool(fw_bin, "json", "optIn", "bool", input=body).returncode == 1


@pytest.mark.parametrize(
    "address,ok",
    [
        ("10.0.2.2:8080", True),
        ("127.0.0.1:1", True),
        ("127.3.4.5:65535", True),
        ("10.0.2.3:8080", False),
        ("192.168.1.1:80", False),
        ("8.8.8.8:53", False),
        ("example.com:80", False),
        ("localhost:80", False),
        ("10.0.2.2", False),
        ("10.0.2.2:0", False),
        ("10.0.2.2:70000", False),
        ("10.0.2.2:80x", False),
        ("127.0.0.1.5:80", False),
    ],
)
def test_service_address_only_host_loopback(fw_bin, address, ok):
    proc = tool(fw_bin, "service", address)
    assert (proc.returncode == 0) == ok, proc.stderr
    if not ok:
        assert proc.stderr.strip()


def test_python_signature_rejects_what_the_firmware_cannot_produce():
    from testbed.crash.signature import is_signature, signature_text

    assert signature_text("crashapp", None, 11, 0x104D4) == "crashapp|-|11|104d4"
    for bad in (("a|b", None, 11, 0), ("x", "XYZ", 11, 0), ("x", None, -1, 0), ("x", None, 11, -5)):
        with pytest.raises(ValueError):
            signature_text(*bad)
    assert is_signature("0" * 32) and not is_signature("0" * 31) and not is_signature("A" * 32)


def test_json_scanner_survives_random_input(fw_bin):
    import random

    rng = random.Random(7)
    alphabet = b'{}[]",:\\ truefalsnul0123456789-eE.abcXYZ\n\t'
    for i in range(150):
        if i % 2:
            body = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 200)))
        else:  # mutations of a valid body
            body = bytearray(SYNC_BODY)
            for _ in range(rng.randrange(1, 8)):
                body[rng.randrange(len(body))] = rng.choice(alphabet)
            body = bytes(body)
        for key, kind in (("optIn", "bool"), ("throttledSignatures", "array"), ("validitySeconds", "int")):
            proc = tool(fw_bin, "json", key, kind, input=body)
            assert proc.returncode in (0, 1), (body, proc.returncode, proc.stderr)
