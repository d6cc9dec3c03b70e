"""Issue 10 item 1: only a whole ELF core of the board's kind is stored.

The one checker (testbed.crash.corecheck) as a unit, and the service against
truncated, fake and bit-flipped real cores: every answer 201 or 4xx, a refusal
stores nothing, and whatever is stored is a whole core.
"""

from __future__ import annotations

import gzip
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import control_of, core_files, new_signature, snapshot

from testbed.contract.errors import error_codes
from testbed.crash.corecheck import CoreCheckError, NeedMoreBytes, check_core_file


def raw_core(name: str = "segv-xs.core.gz") -> bytes:
    return gzip.decompress(next(p for p in core_files() if p.name == name).read_bytes())


def fake_header() -> bytes:
    """A bare 52-byte ELF32 header with e_type ET_CORE and e_machine ARM, nothing else."""
    return b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8) + struct.pack("<HHI", 4, 40, 1) + bytes(32)


# ------------------------------------------------------------------ the checker


def test_every_recorded_core_passes() -> None:
    for path in core_files():  # qemu-user and board-recorded ARM cores
        check_core_file(gzip.decompress(path.read_bytes()))


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda d: d[:20], "shorter than the 52-byte ELF header"),
        (lambda d: d[:52], "program header table past the end"),
        (lambda d: d[:200], "program header table past the end"),
        (lambda d: d[:1000], "truncated: the segments end at"),
        (lambda d: d[:-1], "truncated: the segments end at"),
        (lambda d: fake_header(), "e_phentsize 0"),
        (lambda d: d[:4] + b"\x02" + d[5:], "ELF class 2"),
        (lambda d: d[:5] + b"\x02" + d[6:], "data encoding 2"),
        (lambda d: d[:16] + b"\x02\x00" + d[18:], "e_type 2"),
        (lambda d: d[:18] + b"\x3e\x00" + d[20:], "e_machine 62"),
        (lambda d: b"\x00ELF" + d[4:], "no ELF magic"),
    ],
)
def test_checker_names_what_is_wrong(mutate, reason: str) -> None:
    with pytest.raises(CoreCheckError, match=reason):
        check_core_file(mutate(raw_core()))


def test_checker_wants_prstatus_of_the_arm_size() -> None:
    data = bytearray(raw_core())
    # the first note of the PT_NOTE segment is the crashed thread's NT_PRSTATUS: shrink its
    # descsz, and the segment to end just after it (the notes after it would be misaligned)
    phoff = struct.unpack_from("<I", data, 28)[0]
    for i in range(struct.unpack_from("<H", data, 44)[0]):
        at = phoff + 32 * i
        p_type, p_offset = struct.unpack_from("<II", data, at)
        if p_type == 4:
            namesz, descsz, ntype = struct.unpack_from("<III", data, p_offset)
            assert (ntype, descsz) == (1, 148)
            struct.pack_into("<I", data, p_offset + 4, 144)
            struct.pack_into("<I", data, at + 16, 12 + ((namesz + 3) & ~3) + 144)  # p_filesz
            break
    with pytest.raises(CoreCheckError, match="NT_PRSTATUS of 144 bytes; arm's is 148"):
        check_core_file(bytes(data))


def test_host_cores_only_when_asked() -> None:
    with pytest.raises(CoreCheckError, match="ELF class 1"):
        check_core_file(raw_core(), machines=("x86_64",))


def test_notes_past_the_kept_prefix_are_read_by_inflating_again(monkeypatch, core_gz: bytes) -> None:
    from testbed.service import checks
    from testbed.service.errors import ApiError

    inflater = checks.CappedInflater(4 << 20, keep=200)  # the notes start at byte 340
    inflater.feed(core_gz)
    with pytest.raises(NeedMoreBytes):
        inflater.finish()
    monkeypatch.setattr(checks, "KEEP", 200)
    assert checks.check_core(core_gz, 4 << 20) == len(gzip.decompress(core_gz))
    with pytest.raises(ApiError) as err:  # and a truncated one is still refused on that path
        checks.check_core(gzip.compress(gzip.decompress(core_gz)[:-1]), 4 << 20)
    assert err.value.code == "BadCore"


# ------------------------------------------------------------------ against the service


@pytest.fixture
def device(claimed_device):
    dev = claimed_device()
    with dev.client() as c:
        yield c


@pytest.mark.parametrize("cut", [20, 52, 64, 200, 1000, -1])
def test_truncated_cores_are_refused_and_nothing_stored(service, device, cut: int) -> None:
    body = gzip.compress(raw_core()[:cut])
    before = snapshot(service)
    r = device.upload_raw(body, new_signature())
    assert r.status_code == 400, r.text
    assert error_codes(r.json())[0] in ("BadCore", "NotElfCore")
    assert snapshot(service) == before


def test_bare_elf_header_is_refused(service, device) -> None:
    before = snapshot(service)
    r = device.upload_raw(gzip.compress(fake_header()), new_signature())
    assert r.status_code == 400 and error_codes(r.json()) == ["BadCore"]
    assert "e_phentsize" in r.json()[0]["Detail"]
    assert snapshot(service) == before


def test_recorded_cores_are_stored(device) -> None:
    for path in core_files():
        r = device.upload_raw(path.read_bytes(), new_signature())
        assert r.status_code == 201, (path.name, r.text)


CORE = None


def _core() -> bytes:
    global CORE
    if CORE is None:
        CORE = raw_core()
    return CORE


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    cut=st.one_of(st.none(), st.integers(0, 307200)),
    flips=st.lists(st.tuples(st.integers(0, 2047), st.integers(0, 7)), max_size=4),
    far_flips=st.lists(st.tuples(st.integers(0, 307199), st.integers(0, 7)), max_size=2),
)
def test_fuzz_truncations_and_bit_flips(service, device, cut, flips, far_flips) -> None:
    data = bytearray(_core())
    for at, bit in flips + far_flips:  # most flips in the headers and notes, a few anywhere
        data[at] ^= 1 << bit
    if cut is not None:
        del data[cut:]
    before = snapshot(service)
    r = device.upload_raw(gzip.compress(bytes(data), 1), new_signature())
    assert r.status_code == 201 or 400 <= r.status_code < 500, r.text
    if r.status_code == 201:  # whatever is stored is a whole core
        with control_of(service) as control:
            check_core_file(gzip.decompress(control.blob(r.json()["id"])))
    else:
        assert snapshot(service) == before
