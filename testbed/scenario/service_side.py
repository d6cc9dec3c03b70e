"""The service's side of a scenario run: the service process behind a wire tap, its principals,
the tenant, groups and devices of the scenario, and the evidence read back.

Evidence comes through the service's own APIs only: stored dumps, their bytes and the
stores' contents from the control API (``/testbed/v1``), the audit log from the support
API, group settings from the public API. Nothing here opens the service's database or
its files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from testbed import settings
from testbed.scenario.evidence import StoredDump
from testbed.scenario.model import Scenario
from testbed.scenario.results import BoardRecord, DumpRecord
from testbed.scenario.steps import StepFailed
from testbed.scenario.tap import WireTap

#: The tenant-facing paths a tenant token must be refused on (tenant_denied).
SUPPORT_LISTING = "/support/v1/crashdumps"


class ServiceSide:
    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        self.service: Any = None
        self.tap: WireTap | None = None
        self.control: Any = None
        self.admin: Any = None
        self.support: Any = None
        self.tenant_id = ""
        self.admin_token = ""
        self.group_ids: dict[str, str] = {}
        self.devices: dict[str, tuple[str, str]] = {}  # board -> (device id, secret)
        self.board_group: dict[str, str] = {}
        self.log_tail = ""

    @property
    def url(self) -> str:
        return self.service.url

    def start(self, stack: ExitStack, data_dir: Path, options: dict[str, Any],
              listen: str = "127.0.0.1") -> list[BoardRecord]:  # fmt: skip
        """Start the service and the tap, make the tenant, groups and one device per board.

        The service listens on loopback; the boards dial the tap, which listens on ``listen``
        (loopback, reached by a QEMU board as 10.0.2.2; a LAN address only when asked)."""
        from testbed.service.client import Client, ControlClient
        from testbed.service.process import ServiceProcess

        sc = self.sc
        self.service = ServiceProcess(data_dir, enable_control=True, **{**sc.service, **options})
        self.service.start()
        stack.callback(self.stop)
        self.tap = WireTap(listen, self.service.port).start()
        stack.callback(self.tap.stop)
        self.control = ControlClient(self.service.url, self.service.control_token)
        stack.callback(self.control.close)
        tenant = self.control.create_tenant(sc.tenant)
        self.tenant_id, self.admin_token = tenant["Id"], tenant["Token"]
        self.admin = Client(self.service.url, self.admin_token)
        stack.callback(self.admin.close)
        self.support = Client(self.service.url, self.control.create_token("Support", label="scenario-runner"))
        stack.callback(self.support.close)
        products: dict[str, str] = {}
        for key, g in sc.groups.items():
            if g.product not in products:
                products[g.product] = self.admin.create_product(self.tenant_id, g.product)["Id"]
            group = self.admin.create_device_group(self.tenant_id, products[g.product], g.name,
                                                   AllowCrashDumpsCollection=g.allow_crash_dumps,
                                                   RegionalDataBoundary=g.boundary)  # fmt: skip
            self.group_ids[key] = group["Id"]
        records = []
        for name in sc.boards:
            fleet = sc.fleet_of(name)
            claimed = self.admin.claim_device(self.tenant_id, self.group_ids[fleet.group])
            self.devices[name] = (claimed["DeviceId"], claimed["DeviceSecret"])
            self.board_group[name] = fleet.group
            records.append(BoardRecord(name, claimed["DeviceId"], fleet.group, list(fleet.apps)))
        return records

    @property
    def running(self) -> bool:
        return self.service is not None and self.service.running

    def stop(self) -> None:
        if self.service is not None:
            self.log_tail = self.service.log_tail(200)
            self.service.stop()

    # ---- evidence
    def stored_dumps(self) -> list[StoredDump]:
        """The tenant's durable dumps (the control API waits for the writer to settle)."""
        return [StoredDump.from_api(item) for item in self.control.dumps(tenant_id=self.tenant_id)]

    def stored_per_region(self) -> dict[str, int]:
        """Dumps physically in each region's store."""
        return {region: int(v.get("dumps", 0)) for region, v in self.control.storage().items()}

    def audit(self) -> list[dict[str, Any]]:
        return self.support.audit()

    def groups(self) -> dict[str, dict[str, Any]]:
        by_id = {g["Id"]: g for g in self.admin.device_groups(self.tenant_id, max_page_size=1000)}
        return {key: by_id[gid] for key, gid in self.group_ids.items() if gid in by_id}

    def tenant_probe(self, dump_ids: list[str]) -> list[str]:
        """Try every way to dumps with the tenant's Administrator token; all must be refused."""
        problems = []
        before = len(self.audit())
        with httpx.Client(base_url=self.service.url, timeout=10,
                          headers={"Authorization": f"Bearer {self.admin_token}",
                                   "X-Support-Reason": "tenant probe"}) as c:  # fmt: skip
            r = c.get(SUPPORT_LISTING)
            if r.status_code not in (401, 403):
                problems.append(f"tenant listing answered {r.status_code}")
            for dump_id in dump_ids:
                for path in (f"{SUPPORT_LISTING}/{dump_id}", f"/v2/tenants/{self.tenant_id}/crashdumps/{dump_id}"):
                    r = c.get(path)
                    if r.status_code < 400 or r.content[:2] == b"\x1f\x8b":
                        problems.append(f"GET {path} with the tenant token answered {r.status_code}")
        after = len(self.audit())
        if after != before:
            problems.append(f"refused tenant requests left {after - before} audit row(s)")
        return problems

    def collect_dumps(self, symbol_dirs: list[Path]) -> list[DumpRecord]:
        """Every stored dump with its crash analysis (from the bytes the control API gives)."""
        from testbed.crash.analysis import analyze_bytes

        board_of = {d: b for b, (d, _) in self.devices.items()}
        out = []
        for dump in self.stored_dumps():
            rec = DumpRecord(dump.id, board_of.get(dump.device_id, "?"), dump.device_id, dump.region, dump.size,
                             dump.signature, dump.component_name, dump.created_at,
                             upload_id=dump.upload_id, crash_time=dump.crash_time)  # fmt: skip
            try:
                rec.analysis = analyze_bytes(self.control.blob(dump.id), symbol_dirs).to_dict()
            except Exception as exc:  # noqa: BLE001 (shown in the report)
                rec.analysis_error = f"{type(exc).__name__}: {exc}"
            out.append(rec)
        return out

    # ---- the admin CLIs, as a user runs them
    def sphere(self, args: list[str], command: str = "sphere") -> None:
        """Run `testbed sphere ...` (or `testbed crashdumps ...`) against this service."""
        env = dict(os.environ, **{settings.SERVICE_URL: self.service.url, settings.TOKEN: self.admin_token})
        env.pop(settings.TENANT, None)
        cmd = [sys.executable, "-m", "testbed.cli", command, *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise StepFailed(f"`testbed {command} {' '.join(args)}` exited {proc.returncode}: "
                             f"{(proc.stderr or proc.stdout).strip()[-400:]}")  # fmt: skip
