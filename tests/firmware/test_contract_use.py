"""The firmware spells no protocol name itself: every one comes from the generated tb_contract.h.

Scans the C sources (comments dropped) for string literals that are a device API path, header,
body field, event name or reason of testbed.contract (the event prefix included), and for its
defaults as numbers. Event keys are short words (app, pid, ms) and are not scanned for.
"""

from __future__ import annotations

import re
from enum import StrEnum

import pytest
from fw_helpers import FW_DIR

from testbed.contract import device_api, events

SRC = FW_DIR / "src"
GENERATED = "tb_contract.h"
#: Words of other seams that happen to equal a protocol name.
OTHER_SEAMS = {
    "tb_notify.h": {"crash", "done"},  # the reporter -> appmgr datagram words
    "crashapp.c": {"exit"},  # crashapp --mode exit
    "files.c": {"gzip"},  # the gzip program's name (TB_GZIP's default)
    "spool.c": {"component"},  # a key of the spool's own .meta file
    "tb-tool.c": {"signature"},  # a tb-tool subcommand
}


def _values(*enums: type[StrEnum]) -> set[str]:
    return {m.value for e in enums for m in e}


NAMES = (
    {device_api.SYNC_PATH, device_api.INTENT_PATH, device_api.UPLOAD_PATH, device_api.AUTHORIZATION,
     device_api.CONTENT_TYPE, device_api.GZIP_CONTENT_TYPE, device_api.JSON_CONTENT_TYPE,
     device_api.SIGNATURE_HEADER, device_api.COMPONENT_CLASS_HEADER, device_api.COMPONENT_NAME_HEADER,
     device_api.CRASH_TIME_HEADER, device_api.UPLOAD_ID_HEADER, device_api.RETRY_AFTER_HEADER}
    | _values(device_api.ComponentClass, device_api.SyncRequest, device_api.SyncResponse, device_api.IntentRequest,
              device_api.IntentResponse, device_api.IntentAction, device_api.UploadResponse, device_api.SkipReason)
    | _values(events.EventName, events.DumpSkipReason, events.UploadFailReason, events.SyncFailReason,
              events.RestartReason, events.RestartUpload, events.UploadStage)
)
DEFAULTS = {str(v) for v in (device_api.VALIDITY_SECONDS, device_api.MAX_UPLOAD_BYTES,
                             device_api.MAX_INFLATED_BYTES, device_api.UPLOAD_DEADLINE_MS)}


def _code(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def sources() -> list:
    return sorted(p for p in SRC.iterdir() if p.suffix in (".c", ".h") and p.name != GENERATED)


@pytest.mark.parametrize("path", sources(), ids=lambda p: p.name)
def test_no_protocol_name_outside_the_generated_header(path):
    code = _code(path.read_text())
    allowed = OTHER_SEAMS.get(path.name, set())
    literals = re.findall(r'"((?:[^"\\\n]|\\.)*)"', code)
    hits = sorted({s for s in literals if s in NAMES - allowed or "/device/" in s or s.startswith("@tb ")})
    assert hits == [], f"{path.name} spells {hits}: take them from tb_contract.h"
    numbers = sorted(set(re.findall(r"\b\d+\b", code)) & DEFAULTS)
    assert numbers == [], f"{path.name} spells the contract's defaults {numbers}"
