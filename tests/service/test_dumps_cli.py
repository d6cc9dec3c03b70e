"""`testbed dumps list|get|analyze` through the audited support API, against the real service."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from click.testing import CliRunner
from service_helpers import new_signature

from testbed.cli import main
from testbed.service.client import Client


def test_list_get_analyze_leave_audit_rows(service, support_client: Client, claimed_device, device_group,
                                           core_gz: bytes, tmp_path: Path) -> None:  # fmt: skip
    dev = claimed_device(device_group(allow_crash_dumps=True, boundary="EU"))
    with dev.client() as c:
        stored = c.upload(core_gz, new_signature())
    env = {"TESTBED_SERVICE_URL": service.url, "TESTBED_TOKEN": support_client.token}
    runner = CliRunner()
    before = len(support_client.audit())
    listed = runner.invoke(main, ["dumps", "list", "--device", dev.device_id, "-o", "json", "-r", "triage"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [d["id"] for d in json.loads(listed.output)] == [stored["id"]]
    out = tmp_path / "dump.core.gz"
    got = runner.invoke(main, ["dumps", "get", stored["id"], "--reason", f"ticket {uuid.uuid4().hex[:6]}", "-O", str(out)], env=env)
    assert got.exit_code == 0, got.output
    assert out.read_bytes() == core_gz
    analyzed = runner.invoke(main, ["dumps", "analyze", stored["id"], "-r", "triage", "--json"], env=env)
    assert analyzed.exit_code == 0, analyzed.output
    assert json.loads(analyzed.output)["signal"] > 0
    rows = support_client.audit()[before:]
    assert [r["action"] for r in rows] == ["list", "read", "read"]
    assert rows[1]["dumpId"] == stored["id"] and rows[1]["reason"].startswith("ticket")
    # a read without a reason is refused by the CLI before any request
    noreason = runner.invoke(main, ["dumps", "get", stored["id"]], env=env)
    assert noreason.exit_code == 2 and "--reason" in noreason.output
