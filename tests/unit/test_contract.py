"""The device protocol's one home: the generated C header is current, the parsers are exact."""

from __future__ import annotations

import ast
from pathlib import Path

from testbed.contract import cheader, device_api, events

ROOT = Path(__file__).resolve().parents[2]


def test_c_header_is_current() -> None:
    assert cheader.HEADER_PATH.read_text() == cheader.render(), (
        "firmware_stubs/src/tb_contract.h is stale: run `python -m testbed.contract.cheader`"
    )


def test_header_check_mode_sees_a_stale_header(tmp_path: Path) -> None:
    stale = tmp_path / "tb_contract.h"
    stale.write_text(cheader.render().replace(device_api.SYNC_PATH, device_api.SYNC_PATH + "k"))
    assert cheader.main(["--check", "--path", str(stale)]) == 1
    stale.write_text(cheader.render())
    assert cheader.main(["--check", "--path", str(stale)]) == 0


def test_contract_imports_nothing_else_from_testbed() -> None:
    for path in (ROOT / "testbed" / "contract").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("testbed"):
                assert node.module.startswith("testbed.contract"), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("testbed") or alias.name.startswith("testbed.contract")


def test_identifiers_are_full_matches() -> None:
    good = "a" * device_api.DEVICE_ID_HEX
    assert device_api.is_device_id(good)
    assert not device_api.is_device_id(good + "\n")
    assert not device_api.is_device_id(good.upper())
    assert device_api.is_signature("0" * 32)
    assert not device_api.is_signature("0" * 32 + "\n")
    assert not device_api.is_upload_id("0" * 31)


def test_device_credential_round_trip() -> None:
    did = "0123456789abcdef" * 8
    value = device_api.device_authorization(did, "s3cr-et_")
    assert value == f"Device {did}:s3cr-et_"
    cred = device_api.parse_device_authorization(value)
    assert cred is not None and cred.device_id == did and cred.secret == "s3cr-et_"
    assert device_api.parse_device_authorization(f"Bearer {did}:x") is None
    assert device_api.parse_device_authorization(f"Device {did}") is None
    assert device_api.parse_device_authorization(f"Device {did}:") is None
    assert device_api.parse_device_authorization(f"Device {did}x:abc") is None
    assert device_api.device_id_of_authorization(value) == did


def test_event_parser() -> None:
    line = "\x1b[6n[ 12.3] @tb event=dump-skipped reason=throttled sig=00ff spooled=1"
    ev = events.parse_event_line(line)
    assert ev is not None and ev.name == events.EventName.DUMP_SKIPPED
    assert ev.fields == {"reason": "throttled", "sig": "00ff", "spooled": "1"}
    assert events.parse_event_line("no event here") is None
    assert events.reason_is_known("upload-fail", "http-503")
    assert events.reason_is_known("dump-skipped", "bad-core")
    assert not events.reason_is_known("dump-skipped", "http-503")
    assert not events.reason_is_known("no-such-event", "x")
