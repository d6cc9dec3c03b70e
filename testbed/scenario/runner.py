"""The scenario runner: the one place that holds both boards and the service.

For each scenario: start the real service (temp data dir) behind a wire tap,
create the tenant, groups and devices through the public API, restore the
boards from the cached snapshot in parallel and provision them, run the
timeline, evaluate the expectations against the service's database, the
tap and the boards' events, collect the evidence (dumps with their crash
analysis, audit rows, console logs) and tear everything down, also on a
failure or Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from testbed.scenario.expect import Evidence, evaluate
from testbed.scenario.results import (
    BoardEvent,
    BoardRecord,
    DumpRecord,
    ExpectationResult,
    Interval,
    ScenarioResult,
    StepRecord,
)
from testbed.scenario.schema import Expectation, Scenario, Step, format_duration
from testbed.scenario.tap import WireTap
from testbed.scenario.timeline import OUTCOMES, RESTARTS, crash_episodes

#: Guest commands of the firmware (docs/firmware.md).
SYNC_NOW = "syncd --now"
#: The 5 s deadline plus margin: how long the final check waits for crashed apps to be restarted.
SETTLE_SECONDS = 6.0


def crash_command(app: str, mode: str, heap_kib: int | None = None, crash_id: str | None = None) -> str:
    """The console command that makes the running app (or OS component) crash (crashapp.c)."""
    cmd = f"crashapp --app {app} --mode {mode}"
    if heap_kib is not None:
        cmd += f" --heap-kib {heap_kib}"
    if crash_id:
        cmd += f" --id {crash_id}"
    return cmd


class StepFailed(RuntimeError):
    """A step could not be carried out (a board did not answer, an event never came)."""


class ScenarioInterrupted(KeyboardInterrupt):
    pass


# ---------------------------------------------------------------- boards


class BoardLike(Protocol):
    """What the runner needs of a board (testbed.board.QemuBoard provides it)."""

    name: str
    console: Any

    def link_down(self) -> None: ...
    def link_up(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def reset(self, wait: bool = True, timeout: float | None = None) -> None: ...
    def provision(self, identity: Any, timeout: float = 20) -> str: ...
    def close(self) -> None: ...

    @property
    def events(self) -> list[Any]: ...


#: (board name, device id, secret, tap port) -> a restored, provisioned board
BoardFactory = Callable[[str, str, str, int], BoardLike]


def qemu_board_factory() -> BoardFactory:
    """Boards restored from the cached snapshot of the current image (made once if missing)."""
    from testbed.board.identity import Identity
    from testbed.board.qemu import QemuBoard
    from testbed.board.snapshot import ensure_snapshot
    from testbed.image.build import ensure_image

    image = ensure_image()
    snapshot = ensure_snapshot(image)

    def make(name: str, device_id: str, secret: str, port: int) -> BoardLike:
        board = QemuBoard(image, name=name, ssh=False)
        try:
            board.restore(snapshot)
            board.provision(Identity.for_port(device_id, secret, port))
        except BaseException:
            board.close()
            raise
        return board

    return make


def identity_for(device_id: str, secret: str, port: int) -> Any:
    from testbed.board.identity import Identity

    return Identity.for_port(device_id, secret, port)


# ---------------------------------------------------------------- progress


class Progress:
    """Live progress; the default prints one line per step and per expectation to stderr."""

    def __init__(self, stream=None, color: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.color = self.stream.isatty() if color is None else color
        self.passed = 0
        self.failed = 0
        self._lock = threading.Lock()

    def _c(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def scenario_start(self, sc: Scenario, index: int, total: int) -> None:
        self.say(self._c(f"\n== [{index}/{total}] {sc.name} ({sc.path}): {len(sc.boards)} board(s), "
                         f"{len(sc.steps)} steps", "1"))  # fmt: skip

    def setup(self, sc: Scenario, text: str) -> None:
        self.say(f"   [{sc.name}] {text}")

    def step_start(self, sc: Scenario, step: Step) -> None:
        self.say(f"   [{sc.name}] step {step.index + 1}/{len(sc.steps)}: {step.describe()}")

    def step_end(self, sc: Scenario, step: Step, record: StepRecord) -> None:
        if not record.ok:
            self.say(self._c(f"   [{sc.name}] step {step.index + 1} FAILED: {record.error}", "31"))

    def expectation(self, sc: Scenario, res: ExpectationResult) -> None:
        if res.passed:
            self.passed += 1
        else:
            self.failed += 1
        mark = self._c("PASS", "32") if res.passed else self._c("FAIL", "31")
        self.say(f"   [{sc.name}] {mark} {res.text}: {res.detail}   (so far {self.passed} passed, {self.failed} failed)")

    def scenario_end(self, res: ScenarioResult) -> None:
        verdict = self._c("PASS", "32;1") if res.passed else self._c("FAIL", "31;1")
        self.say(f"== {res.name}: {verdict} in {res.duration:.1f} s")


class QuietProgress(Progress):
    def say(self, text: str) -> None:
        pass


# ---------------------------------------------------------------- one scenario


@dataclass
class RunOptions:
    parallel: int = max(1, os.cpu_count() or 1)
    workdir: Path | None = None  # keep service data and logs here (default: a temp dir, removed)
    symbol_dirs: list[Path] = field(default_factory=list)
    board_factory: BoardFactory | None = None
    progress: Progress | None = None
    service_options: dict[str, Any] = field(default_factory=dict)  # extra ServiceProcess arguments


def default_symbol_dirs() -> list[Path]:
    """Where the firmware's unstripped app binaries are (for function names in the crash analysis)."""
    from testbed.image.build import SYMBOLS_DIR, images_dir
    from testbed.paths import REPO_ROOT, cache_dir

    dirs = [Path(p) for p in os.environ.get("TESTBED_SYMBOLS", "").split(os.pathsep) if p]
    # each built image keeps its programs' symbols; the build id picks the right one
    dirs += sorted(images_dir().glob(f"*/{SYMBOLS_DIR}"))
    dirs += [REPO_ROOT / "firmware_stubs" / "build", cache_dir() / "firmware"]
    return dirs


class ScenarioRun:
    """Runs one scenario; ``run()`` always returns a result and always tears down."""

    def __init__(self, scenario: Scenario, options: RunOptions) -> None:
        self.sc = scenario
        self.opt = options
        self.progress = options.progress or Progress()
        self.result = ScenarioResult(scenario.name, scenario.path, scenario.description)
        self.t0 = time.monotonic()
        self.boards: dict[str, BoardLike] = {}
        self.devices: dict[str, tuple[str, str]] = {}
        self.group_ids: dict[str, str] = {}
        self.board_group: dict[str, str] = {}
        self.action_mark: dict[str, int] = {}
        self.action_mark_t = 0.0
        self.service: Any = None
        self.tap: WireTap | None = None
        self.admin: Any = None
        self.support: Any = None
        self.control: Any = None
        self.tenant_id = ""
        self.admin_token = ""
        self._open: dict[str, Interval] = {}
        self.workdir: Path | None = None

    # ---- helpers
    def now(self) -> float:
        return time.monotonic() - self.t0

    def board_events(self, name: str) -> list[BoardEvent]:
        board = self.boards.get(name)
        if board is None:
            return []
        return [BoardEvent(e.name, dict(e.fields), e.monotonic - self.t0, e.wall) for e in list(board.events)]

    def _fan_out(self, boards: list[str], fn: Callable[[str], Any]) -> list[Any]:
        if len(boards) == 1:
            return [fn(boards[0])]
        with ThreadPoolExecutor(max_workers=min(len(boards), max(2, self.opt.parallel * 2))) as pool:
            return list(pool.map(fn, boards))

    def _open_interval(self, kind: str, board: str | None, label: str = "") -> None:
        self._open[f"{kind}:{board}"] = Interval(kind, self.now(), None, label, board)
        self.result.intervals.append(self._open[f"{kind}:{board}"])

    def _close_interval(self, kind: str, board: str | None) -> None:
        interval = self._open.pop(f"{kind}:{board}", None)
        if interval is not None:
            interval.end = self.now()

    # ---- setup
    def _setup(self, stack: ExitStack) -> None:
        from testbed.service.client import Client, ControlClient
        from testbed.service.process import ServiceProcess

        sc = self.sc
        check = getattr(self.opt.board_factory, "check_scenario", None)
        if check is not None:  # boards that declare what they can do (an inventory): refuse before any boots
            try:
                check(sc)
            except Exception as exc:  # noqa: BLE001 (the refusal is the scenario's verdict)
                raise StepFailed(f"refused before any board booted: {exc}") from None
        if self.opt.workdir is not None:
            self.workdir = Path(self.opt.workdir) / sc.name
            if self.workdir.exists():
                shutil.rmtree(self.workdir)
            self.workdir.mkdir(parents=True)
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"tb-scenario-{sc.name}-"))
            stack.callback(shutil.rmtree, self.workdir, True)
        self.progress.setup(sc, "starting the service")
        self.service = ServiceProcess(self.workdir / "service", enable_control=True,
                                      **{**sc.service, **self.opt.service_options})
        self.service.start()
        stack.callback(self._stop_service)
        self.tap = WireTap("127.0.0.1", self.service.port).start()
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
            group = self.admin.create_device_group(
                self.tenant_id, products[g.product], g.name,
                AllowCrashDumpsCollection=g.allow_crash_dumps, RegionalDataBoundary=g.boundary,
            )  # fmt: skip
            self.group_ids[key] = group["Id"]
        for name in sc.boards:
            fleet = sc.fleet_of(name)
            claimed = self.admin.claim_device(self.tenant_id, self.group_ids[fleet.group])
            self.devices[name] = (claimed["DeviceId"], claimed["DeviceSecret"])
            self.board_group[name] = fleet.group
            self.result.boards.append(BoardRecord(name, claimed["DeviceId"], fleet.group, list(fleet.apps)))
        self.progress.setup(sc, f"service at {self.service.url} (tap on 127.0.0.1:{self.tap.port}); "
                            f"restoring {len(sc.boards)} board(s) from the snapshot, {self.opt.parallel} at a time")  # fmt: skip
        factory = self.opt.board_factory or qemu_board_factory()
        stack.callback(self._close_boards)
        started = time.monotonic()

        def make(name: str) -> None:
            device_id, secret = self.devices[name]
            t = time.monotonic()
            self.boards[name] = factory(name, device_id, secret, self.tap.port)
            self.progress.setup(sc, f"{name} restored and provisioned in {time.monotonic() - t:.1f} s "
                                f"(device {device_id[:12]}..., group {self.board_group[name]})")  # fmt: skip

        with ThreadPoolExecutor(max_workers=self.opt.parallel) as pool:
            errors = []
            for name, fut in [(n, pool.submit(make, n)) for n in sc.boards]:
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001 (all are reported)
                    errors.append(f"{name}: {exc}")
            if errors:
                raise StepFailed("board setup failed: " + "; ".join(errors))
        self.progress.setup(sc, f"boards ready in {time.monotonic() - started:.1f} s")

    def _stop_service(self) -> None:
        if self.service is not None:
            self.result.service_log = self.service.log_tail(200)
            self.service.stop()

    def _close_boards(self) -> None:
        for name, board in list(self.boards.items()):
            rec = next((b for b in self.result.boards if b.name == name), None)
            if rec is not None:
                rec.events = self.board_events(name)
                rec.console = _console_text(board)
            try:
                board.close()
            except Exception:  # noqa: BLE001 (teardown goes on)
                pass

    # ---- evidence
    def _db_dumps(self) -> list[dict[str, Any]]:
        db = self.service.data_dir / "service.db"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute(
                "SELECT * FROM dumps WHERE tenant_id = ? ORDER BY created_at, id", (self.tenant_id,)
            ).fetchall()
        finally:
            conn.close()
        return [dict(r) for r in rows]

    def _wait_materialized(self, rows: list[dict[str, Any]], limit: float = 5.0) -> None:
        """The service writes a dump's blob file a few ms after its 201 (from its journal): poll for them."""
        root = self.service.data_dir / "blobs"
        deadline = time.monotonic() + limit
        missing = [r for r in rows if not (root / r["blob"]).exists()]
        while missing and time.monotonic() < deadline:
            time.sleep(0.02)
            missing = [r for r in missing if not (root / r["blob"]).exists()]

    def _blobs(self) -> dict[str, int]:
        self._wait_materialized(self._db_dumps())
        root = self.service.data_dir / "blobs"
        out: dict[str, int] = {}
        if root.is_dir():
            for region in root.iterdir():
                if region.is_dir():
                    out[region.name] = sum(1 for p in region.iterdir() if p.is_file() and p.name.endswith(".gz")
                                           and not p.name.startswith("."))  # fmt: skip
        return out

    def _tenant_probe(self, dump_ids: list[str]) -> list[str]:
        """Try every way to dumps with the tenant's Administrator token; all must be refused."""
        problems = []
        before = len(self.support.audit())
        with httpx.Client(base_url=self.service.url, timeout=10,
                          headers={"Authorization": f"Bearer {self.admin_token}",
                                   "X-Support-Reason": "tenant probe"}) as c:  # fmt: skip
            r = c.get("/support/v1/crashdumps")
            if r.status_code not in (401, 403):
                problems.append(f"tenant listing answered {r.status_code}")
            for dump_id in dump_ids:
                for path in (f"/support/v1/crashdumps/{dump_id}", f"/v2/tenants/{self.tenant_id}/crashdumps/{dump_id}"):
                    r = c.get(path)
                    if r.status_code < 400 or r.content[:2] == b"\x1f\x8b":
                        problems.append(f"GET {path} with the tenant token answered {r.status_code}")
        after = len(self.support.audit())
        if after != before:
            problems.append(f"refused tenant requests left {after - before} audit row(s)")
        return problems

    def evidence(self) -> Evidence:
        return Evidence(
            device_ids={b: d for b, (d, _) in self.devices.items()},
            events={b: self.board_events(b) for b in self.sc.boards},
            dumps=self._db_dumps(),
            requests=self.tap.snapshot() if self.tap else [],
            audit=self.support.audit(),
            blobs=self._blobs(),
            tenant_probe=self._tenant_probe,
            groups=self._groups,
        )

    def _groups(self) -> dict[str, dict[str, Any]]:
        by_id = {g["Id"]: g for g in self.admin.device_groups(self.tenant_id, max_page_size=1000)}
        return {key: by_id[gid] for key, gid in self.group_ids.items() if gid in by_id}

    def check(self, expectations: Iterable[Expectation], step: Step | None) -> None:
        ev = self.evidence()
        for exp in expectations:
            try:
                passed, detail = evaluate(exp, ev)
            except Exception as exc:  # noqa: BLE001 (a broken check is a failed expectation)
                passed, detail = False, f"could not be checked: {exc}"
            res = ExpectationResult(exp.text, exp.kind, passed, detail, exp.line,
                                    step.index if step else None, self.now())  # fmt: skip
            self.result.expectations.append(res)
            self.progress.expectation(self.sc, res)

    def _collect_dumps(self) -> None:
        from testbed.crash.analysis import analyze_bytes

        board_of = {d: b for b, (d, _) in self.devices.items()}
        rows = self._db_dumps()
        self._wait_materialized(rows)
        for row in rows:
            rec = DumpRecord(row["id"], board_of.get(row["device_id"], "?"), row["device_id"], row["region"],
                             row["size"], row["signature"], row["component_name"], row["created_at"])  # fmt: skip
            path = self.service.data_dir / "blobs" / row["blob"]
            try:
                rec.analysis = analyze_bytes(path.read_bytes(), self.opt.symbol_dirs).to_dict()
            except Exception as exc:  # noqa: BLE001 (shown in the report)
                rec.analysis_error = f"{type(exc).__name__}: {exc}"
            self.result.dumps.append(rec)
        self.result.audit = self.support.audit()

    # ---- steps
    def _wait_new_events(self, board: str, event: str, where: dict[str, str] | None, count: int,
                         baseline: int, timeout: float) -> None:  # fmt: skip
        deadline = time.monotonic() + timeout
        b = self.boards[board]
        # An outcome or a restart is counted only when it belongs to a crash of this run of actions,
        # so a late restart of an earlier crash is not taken for the new one's.
        by_crash = event in (*OUTCOMES, *RESTARTS) and (where or {}).get("spooled") != "1"
        while True:
            events = list(b.events)[baseline:]
            if by_crash:
                n = 0
                for ep in crash_episodes(self.board_events(board)):
                    got = ep.restart if event in RESTARTS else ep.outcome
                    if (ep.crash.t >= self.action_mark_t and got is not None and got.name == event
                            and all(got.fields.get(k) == v for k, v in (where or {}).items())):  # fmt: skip
                        n += 1
            else:
                n = sum(1 for e in events if e.name == event and all(e.fields.get(k) == v for k, v in (where or {}).items()))
            if n >= count:
                return
            crash = getattr(b.console, "crash", None)
            if crash is not None:
                raise StepFailed(f"{board}: the kernel crashed: {crash}")
            if time.monotonic() > deadline:
                seen = ", ".join(e.name + ("(" + e.fields.get("reason", "") + ")" if e.fields.get("reason") else "")
                                 for e in events[-8:]) or "none"  # fmt: skip
                raise StepFailed(f"{board}: {count} new {event}{' ' + str(where) if where else ''} did not come within "
                                 f"{format_duration(timeout)} (events since the previous step: {seen})")  # fmt: skip
            time.sleep(0.02)

    def _run_cmd(self, board: str, cmd: str, timeout: float = 20) -> str:
        out, code = self.boards[board].console.run(cmd, timeout=timeout)
        if code != 0:
            raise StepFailed(f"{board}: `{cmd}` exited {code}: {out.strip()[-300:]}")
        return out

    def _settle(self, limit: float = SETTLE_SECONDS) -> None:
        """Before the final verdict: wait (polling, bounded) until every crash seen has its restart."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            pending = [
                b for b in self.sc.boards
                if any(ep.restart is None for ep in crash_episodes(self.board_events(b)) if ep.crash.t >= 0)
            ]  # fmt: skip
            if not pending:
                return
            time.sleep(0.05)

    def _crash(self, board: str, cmd: str, timeout: float = 15.0) -> None:
        """Send the crash command; a just-restarted app may not listen yet, so poll until it does."""
        deadline = time.monotonic() + timeout
        while True:
            out, code = self.boards[board].console.run(cmd, timeout=timeout)
            if code == 0:
                return
            if "no running app" not in out or time.monotonic() > deadline:
                raise StepFailed(f"{board}: `{cmd}` exited {code}: {out.strip()[-300:]}")
            time.sleep(0.05)

    def _sphere(self, args: list[str], command: str = "sphere") -> None:
        """Run `testbed sphere ...` (or `testbed crashdumps ...`) as a user would, against this service."""
        env = dict(os.environ, TESTBED_SERVICE_URL=self.service.url, TESTBED_TOKEN=self.admin_token)
        env.pop("TESTBED_TENANT", None)
        cmd = [sys.executable, "-m", "testbed.cli", command, *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise StepFailed(f"`testbed {command} {' '.join(args)}` exited {proc.returncode}: "
                             f"{(proc.stderr or proc.stdout).strip()[-400:]}")  # fmt: skip

    def do_step(self, step: Step) -> None:
        a = step.args
        act = step.action
        boards: list[str] = a.get("boards") or []
        baseline = self.action_mark
        if act == "sync":
            def sync(b: str) -> None:
                mark = len(self.boards[b].events)
                self._run_cmd(b, SYNC_NOW, timeout=a["timeout"])
                deadline = time.monotonic() + a["timeout"]
                while True:
                    new = [e for e in list(self.boards[b].events)[mark:] if e.name in ("sync-ok", "sync-fail")]
                    if new:
                        got = new[0].name
                        if a["expect"] == "ok" and got != "sync-ok":
                            raise StepFailed(f"{b}: sync failed ({new[0].fields.get('reason', '?')})")
                        if a["expect"] == "fail" and got != "sync-fail":
                            raise StepFailed(f"{b}: sync succeeded, the step expected it to fail")
                        return
                    if time.monotonic() > deadline:
                        raise StepFailed(f"{b}: no sync-ok or sync-fail within {format_duration(a['timeout'])}")
                    time.sleep(0.02)

            self._fan_out(boards, sync)
        elif act == "crash":
            cmd = crash_command(a["app"], a["mode"], a.get("heap_kib"), a.get("id"))
            self._fan_out(boards, lambda b: self._crash(b, cmd))
        elif act == "wait":
            self._fan_out(boards, lambda b: self._wait_new_events(
                b, a["event"], a.get("where"), a["count"], baseline.get(b, 0), a["timeout"]))  # fmt: skip
        elif act in ("link_down", "link_up", "pause", "resume"):
            for b in boards:
                getattr(self.boards[b], act)()
                kind = "link-down" if act.startswith("link") else "paused"
                if act in ("link_down", "pause"):
                    self._open_interval(kind, b)
                else:
                    self._close_interval(kind, b)
        elif act == "reboot":
            def reboot(b: str) -> None:
                self._open_interval("reboot", b)
                board = self.boards[b]
                board.reset(wait=True, timeout=a["timeout"])
                device_id, secret = self.devices[b]
                board.provision(identity_for(device_id, secret, self.tap.port))
                self._close_interval("reboot", b)

            self._fan_out(boards, reboot)
        elif act == "service_fault":
            delay_ms = int((a.get("delay") or 0) * 1000)
            self.control.set_fault(a["mode"], delay_ms=delay_ms, status=a.get("status") or 503, count=a.get("count"))
            self._close_interval("service-fault", None)
            label = a["mode"] + (f" {delay_ms} ms" if delay_ms else "") + (f" {a['status']}" if a.get("status") else "")
            self._open_interval("service-fault", None, label)
        elif act == "service_clear":
            self.control.clear_faults()
            self._close_interval("service-fault", None)
        elif act == "warp":
            if a["service"]:
                self.control.advance_clock(a["by"])
            if boards:
                secs = int(a["by"])
                self._fan_out(boards, lambda b: self._run_cmd(b, f"date -s @$(( $(date +%s) + {secs} )) >/dev/null"))
        elif act == "set_group":
            for key in a["group"]:
                group = self.sc.groups[key]
                if a["via"] == "script":
                    continue  # one bulk command for all the groups, below
                if a["via"] == "api":
                    fields: dict[str, Any] = {}
                    if a["allow_crash_dumps"] is not None:
                        fields["AllowCrashDumpsCollection"] = a["allow_crash_dumps"]
                    if a["boundary"] is not None:
                        fields["RegionalDataBoundary"] = a["boundary"]
                    self.admin.update_device_group(self.tenant_id, self.group_ids[key], **fields)
                else:
                    args = ["device-group", "update", "--product", group.product, "--device-group", group.name]
                    if a["allow_crash_dumps"] is not None:
                        args += ["--allow-crash-dumps-collection", "Enabled" if a["allow_crash_dumps"] else "Disabled"]
                    if a["boundary"] is not None:
                        args += ["--regional-data-boundary", a["boundary"]]
                    self._sphere(args)
            if a["via"] == "script":
                args = ["configure", "--set", "on" if a["allow_crash_dumps"] else "off", "--yes"]
                if set(a["group"]) != set(self.sc.groups):
                    for key in a["group"]:
                        args += ["--device-group", self.group_ids[key]]
                if a.get("page_size"):
                    args += ["--page-size", str(a["page_size"])]
                self._sphere(args, command="crashdumps")
        elif act == "move":
            for b in boards:
                self.admin.move_device(self.tenant_id, self.devices[b][0], self.group_ids[a["group"]])
                self.board_group[b] = a["group"]
        elif act == "support_read":
            wanted = {self.devices[b][0] for b in boards}
            for row in self._db_dumps():
                if row["device_id"] in wanted:
                    self.support.support_read(row["id"], a["reason"])
        elif act == "idle":
            time.sleep(a["for"])
        elif act == "check":
            self.check(step.checks, step)
        else:  # pragma: no cover (the schema knows every action)
            raise StepFailed(f"unknown action {act}")

    # ---- the run
    def run(self) -> ScenarioResult:
        sc = self.sc
        res = self.result
        res.started_wall = time.time()
        started = time.monotonic()
        with ExitStack() as stack:
            try:
                self._setup(stack)
                self.t0 = time.monotonic()
                deadline = self.t0 + sc.timeout
                self.action_mark = {b: len(self.boards[b].events) for b in sc.boards}
                after_action = False
                for step in sc.steps:
                    is_action = step.action not in ("wait", "check")
                    if is_action and not after_action:
                        # a wait counts events from the start of the run of actions before it
                        self.action_mark = {b: len(self.boards[b].events) for b in sc.boards}
                        self.action_mark_t = self.now()
                    after_action = is_action
                    if step.at is not None:
                        wait = step.at - self.now()
                        if wait > 0:
                            time.sleep(wait)
                    if time.monotonic() > deadline:
                        raise StepFailed(f"the scenario timeout of {format_duration(sc.timeout)} passed")
                    self.progress.step_start(sc, step)
                    record = StepRecord(step.index, step.describe(), self.now(), self.now(), line=step.line)
                    res.steps.append(record)
                    try:
                        self.do_step(step)
                    except Exception as exc:
                        record.ok, record.error = False, _short(exc)
                        raise StepFailed(f"step {step.index + 1} (line {step.line}: {step.describe()}) failed: "
                                         f"{_short(exc)}") from exc  # fmt: skip
                    finally:
                        record.end = self.now()
                        self.progress.step_end(sc, step, record)
                self._settle()
                self.check(sc.expect, None)
            except KeyboardInterrupt:
                res.error = "interrupted (Ctrl-C): boards and service were torn down"
                self._finish(started)
                raise
            except Exception as exc:  # noqa: BLE001 (the run's error is the scenario's verdict)
                if isinstance(exc, StepFailed):
                    res.error = _short(exc)
                else:
                    res.error = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=-4))
            finally:
                for interval in list(self._open.values()):
                    interval.end = self.now()
                self._open.clear()
                if self.service is not None and self.service.running:
                    try:
                        self._collect_dumps()
                    except Exception as exc:  # noqa: BLE001
                        res.error = res.error or f"collecting dumps failed: {exc}"
        self._finish(started)
        return res

    def _finish(self, started: float) -> None:
        self.result.duration = time.monotonic() - started
        if self.result.steps:
            # the timeline's zero is the first step; setup time is shown in the duration only
            pass


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 2000 else text[:2000] + " ..."


def _console_text(board: Any) -> str:
    path = getattr(board, "log_path", None)
    if path is not None:
        try:
            return Path(path).read_text(errors="replace")[-200_000:]
        except OSError:
            pass
    lines = getattr(getattr(board, "console", None), "lines", None)
    return "\n".join(lines) if lines else ""


# ---------------------------------------------------------------- many scenarios


def run_scenarios(scenarios: list[Scenario], options: RunOptions) -> list[ScenarioResult]:
    """Run scenarios one after another (each with its boards in parallel); Ctrl-C stops after teardown."""
    progress = options.progress or Progress()
    options.progress = progress
    if not options.symbol_dirs:
        options.symbol_dirs = default_symbol_dirs()
    results: list[ScenarioResult] = []
    for i, sc in enumerate(scenarios, 1):
        progress.scenario_start(sc, i, len(scenarios))
        run = ScenarioRun(sc, options)
        try:
            res = run.run()
        except KeyboardInterrupt:
            results.append(run.result)
            progress.scenario_end(run.result)
            raise ScenarioInterrupted(results) from None
        results.append(res)
        progress.scenario_end(res)
    return results
