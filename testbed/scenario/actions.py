"""The timeline's actions: one class each, run against the run's :class:`StepContext`.

Every firmware operation goes through the board's firmware driver; every wait for an
event goes through the run's event logs; each action declares the board capabilities
it uses (checked against every board before any board boots).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from testbed.board.protocols import Capability
from testbed.contract.commands import CRASH_MODES
from testbed.contract.events import EventName
from testbed.deadline import Deadline
from testbed.scenario.fields import (
    ALL_BOARDS,
    App,
    Boards,
    Bool,
    CrashId,
    Duration,
    Event,
    Expectations,
    FieldError,
    Group,
    Groups,
    Int,
    OneOf,
    Scope,
    Text,
    Where,
    arg,
    check_reason,
)
from testbed.scenario.model import format_duration
from testbed.scenario.registry import Action, action
from testbed.scenario.steps import StepContext, StepFailed

FAULT_MODES: tuple[str, ...] = ("delay", "hang", "drip", "status")
BOUNDARIES: tuple[str, ...] = ("None", "EU")
#: What the board prints when a crash is asked of an app that is not running (yet).
NO_RUNNING_APP = "no running app"


@action("sync", needs={Capability.COMMANDS, Capability.EVENTS}, shorthand="boards")
@dataclass(kw_only=True)
class Sync(Action):
    """run one sync now on the boards and wait for sync-ok (or sync-fail)"""

    boards: list[str] = arg(Boards())
    expect: str = arg(OneOf(("ok", "fail", "any")), "ok")
    timeout: float = arg(Duration(), 20.0)

    def run(self, ctx: StepContext) -> None:
        def sync(b: str) -> None:
            mark = ctx.event_mark(b)
            out, code = ctx.firmware(b).sync_now(timeout=self.timeout)
            try:
                got = ctx.wait_any(b, (EventName.SYNC_OK, EventName.SYNC_FAIL), mark, self.timeout)
            except StepFailed:
                if code != 0:
                    raise StepFailed(f"{b}: the sync exited {code}: {out.strip()[-300:]}") from None
                raise
            if self.expect == "ok" and got.name != EventName.SYNC_OK:
                raise StepFailed(f"{b}: sync failed ({got.fields.get('reason', '?')})")
            if self.expect == "fail" and got.name != EventName.SYNC_FAIL:
                raise StepFailed(f"{b}: sync succeeded, the step expected it to fail")

        ctx.fan_out(self.boards, sync)


#: At most this long a warp waits for the outcomes of crashes before it (the 5 s deadline and a margin).
WARP_SETTLE_SECONDS = 8.0


@action("crash", needs={Capability.COMMANDS}, shorthand="boards")
@dataclass(kw_only=True)
class Crash(Action):
    """make an app crash on the boards now (retried while a just-restarted app does not listen yet; done when the
    board reports the crash); heap_kib: fill that much heap first, so the dump is bigger; id: crash as a
    different bug, so a different signature"""

    boards: list[str] = arg(Boards())
    app: str = arg(App(), "crashapp")
    mode: str = arg(OneOf(CRASH_MODES), "segv")
    heap_kib: int | None = arg(Int(), None)
    id: str | None = arg(CrashId(), None)

    def validate(self, scope: Scope) -> None:
        for board in self.boards:
            fleet = next(f for f in scope.fleet.values() if board in f.board_names())
            if self.app not in fleet.apps:
                raise FieldError(f"board {board} does not run app {self.app!r} (fleet {fleet.name} runs: "
                                 f"{', '.join(fleet.apps)})", "app")  # fmt: skip

    def run(self, ctx: StepContext, timeout: float = 15.0) -> None:
        def crash(b: str) -> None:
            deadline = Deadline(timeout)
            while True:
                mark = ctx.event_mark(b)
                out, code = ctx.firmware(b).crash(self.app, self.mode, self.heap_kib, self.id, timeout=timeout)
                if code == 0:
                    # the command only signals the app: the step is done when the board says it crashed, so
                    # the next step (a warp, a link cut) comes after the crash, as the timeline reads
                    if Capability.EVENTS in ctx.board(b).capabilities:
                        ctx.wait_any(b, (EventName.CRASH,), mark, max(deadline.remaining_or(timeout), 1.0))
                    return
                if NO_RUNNING_APP not in out or deadline.expired:
                    raise StepFailed(f"{b}: crashing {self.app} ({self.mode}) exited {code}: {out.strip()[-300:]}")
                deadline.sleep(0.05)

        ctx.fan_out(self.boards, crash)


@action("wait", needs={Capability.EVENTS})
@dataclass(kw_only=True)
class Wait(Action):
    """wait until each board printed `count` new matching events since the run of actions before this wait
    began; outcomes (upload-ok, upload-fail, dump-skipped) and restarts count only when they belong to a crash
    of that run, a retry's outcome from the spool (spooled=1) when its crash happened in this scenario"""

    boards: list[str] = arg(Boards(), ALL_BOARDS)
    event: str = arg(Event())
    where: dict[str, str] | None = arg(Where(), None)
    count: int = arg(Int(1), 1)
    timeout: float = arg(Duration(), 30.0)

    def validate(self, scope: Scope) -> None:
        if self.where and "reason" in self.where:
            try:
                check_reason(self.event, self.where["reason"])
            except FieldError as exc:
                raise FieldError(str(exc), "where.reason") from None

    def reach(self) -> set[str] | None:
        return set()  # it watches; the evidence is what the boards printed anyway

    def run(self, ctx: StepContext) -> None:
        ctx.fan_out(self.boards, lambda b: ctx.wait_events(b, self.event, self.where, self.count, self.timeout))


@dataclass(kw_only=True)
class _OnBoards(Action):
    boards: list[str] = arg(Boards())
    #: (method of the board, interval kind, True: the interval opens)
    call: ClassVar[tuple[str, str, bool]] = ("", "", True)

    def run(self, ctx: StepContext) -> None:
        method, kind, opens = self.call
        for b in self.boards:
            getattr(ctx.board(b), method)()
            if opens:
                ctx.open_interval(kind, b)
            else:
                ctx.close_interval(kind, b)


@action("link_down", needs={Capability.LINK}, shorthand="boards")
@dataclass(kw_only=True)
class LinkDown(_OnBoards):
    """unplug the boards' network"""

    call = ("link_down", "link-down", True)


@action("link_up", needs={Capability.LINK}, shorthand="boards")
@dataclass(kw_only=True)
class LinkUp(_OnBoards):
    """plug the boards' network back"""

    call = ("link_up", "link-down", False)


@action("pause", needs={Capability.PAUSE}, shorthand="boards")
@dataclass(kw_only=True)
class Pause(_OnBoards):
    """stop the boards' CPUs"""

    call = ("pause", "paused", True)


@action("resume", needs={Capability.PAUSE}, shorthand="boards")
@dataclass(kw_only=True)
class Resume(_OnBoards):
    """resume the boards' CPUs"""

    call = ("resume", "paused", False)


@action("reboot", needs={Capability.RESET, Capability.COMMANDS, Capability.EVENTS}, shorthand="boards")
@dataclass(kw_only=True)
class Reboot(Action):
    """reset the boards, wait for boot-ready and provision them again"""

    boards: list[str] = arg(Boards())
    timeout: float = arg(Duration(), 60.0)

    def run(self, ctx: StepContext) -> None:
        def reboot(b: str) -> None:
            ctx.open_interval("reboot", b)
            ctx.board(b).reset(wait=True, timeout=self.timeout)
            ctx.reprovision(b)
            ctx.close_interval("reboot", b)

        ctx.fan_out(self.boards, reboot)


@action("service_fault", shorthand="mode")
@dataclass(kw_only=True)
class ServiceFault(Action):
    """make the service's device API hang, delay, drip bytes or answer a status (control API faults)"""

    mode: str = arg(OneOf(FAULT_MODES))
    delay: float | None = arg(Duration(), None)
    status: int | None = arg(Int(), None)
    count: int | None = arg(Int(1), None)

    def validate(self, scope: Scope) -> None:
        if self.mode == "status" and self.status is None:
            raise FieldError("mode status needs a status code", "status")
        if self.mode in ("delay", "drip") and self.delay is None:
            raise FieldError(f"mode {self.mode} needs a delay", "delay")

    def run(self, ctx: StepContext) -> None:
        delay_ms = int((self.delay or 0) * 1000)
        ctx.control.set_fault(self.mode, delay_ms=delay_ms, status=self.status or 503, count=self.count)
        ctx.close_interval("service-fault", None)
        label = self.mode + (f" {delay_ms} ms" if delay_ms else "") + (f" {self.status}" if self.status else "")
        ctx.open_interval("service-fault", None, label)


@action("service_clear")
@dataclass(kw_only=True)
class ServiceClear(Action):
    """remove all service faults"""

    def run(self, ctx: StepContext) -> None:
        ctx.control.clear_faults()
        ctx.close_interval("service-fault", None)


@action("warp", needs={Capability.CLOCK}, shorthand="by")
@dataclass(kw_only=True)
class Warp(Action):
    """move the service's clock (retention sweeps at once) and the boards' clocks forward, once the crashes before
    it have their outcome and restart (a bounded wait); the report draws the jump with what each clock read after it"""

    by: float = arg(Duration())
    service: bool = arg(Bool(), True)
    boards: list[str] = arg(Boards(optional=True), "all")

    def reach(self) -> set[str] | None:
        return None if self.service else set(self.boards)

    def run(self, ctx: StepContext) -> None:
        # a crash just before the warp is handled first on the clocks it happened under (its sync still
        # valid, its upload dated then), not decided after the jump (a stale-sync skip for a crash "before")
        ctx.settle(ctx.scenario.boards if self.service else self.boards, WARP_SETTLE_SECONDS)
        dates: dict[str, float] = {}
        if self.service:
            answer = ctx.control.advance_clock(self.by)
            if isinstance(answer, dict) and answer.get("serverTime") is not None:
                dates["service"] = float(answer["serverTime"])
        if self.boards:
            after = ctx.fan_out(self.boards, lambda b: ctx.firmware(b).warp(self.by))
            dates.update({b: float(d) for b, d in zip(self.boards, after, strict=True) if d is not None})
        ctx.clock_jump(self.by, dates)


@action("set_group")
@dataclass(kw_only=True)
class SetGroup(Action):
    """change device-group settings through the public API, the sphere CLI (device-group update) or the bulk
    script (crashdumps configure, following continuation pages of page_size; allow_crash_dumps only)"""

    group: list[str] = arg(Groups())
    allow_crash_dumps: bool | None = arg(Bool(), None)
    boundary: str | None = arg(OneOf(BOUNDARIES), None)
    via: str = arg(OneOf(("api", "cli", "script")), "api")
    page_size: int | None = arg(Int(1), None)

    def validate(self, scope: Scope) -> None:
        if self.allow_crash_dumps is None and self.boundary is None:
            raise FieldError("nothing to set: give allow_crash_dumps and/or boundary")
        if self.via == "script" and (self.boundary is not None or self.allow_crash_dumps is None):
            raise FieldError("the bulk script sets allow_crash_dumps only", "via")

    def run(self, ctx: StepContext) -> None:
        if self.via == "script":
            args = ["configure", "--set", "on" if self.allow_crash_dumps else "off", "--yes"]
            if set(self.group) != set(ctx.scenario.groups):
                for key in self.group:
                    args += ["--device-group", ctx.group_ids[key]]
            if self.page_size:
                args += ["--page-size", str(self.page_size)]
            ctx.sphere(args, command="crashdumps")
            return
        for key in self.group:
            group = ctx.scenario.groups[key]
            if self.via == "api":
                fields: dict[str, Any] = {}
                if self.allow_crash_dumps is not None:
                    fields["AllowCrashDumpsCollection"] = self.allow_crash_dumps
                if self.boundary is not None:
                    fields["RegionalDataBoundary"] = self.boundary
                ctx.admin.update_device_group(ctx.tenant_id, ctx.group_ids[key], **fields)
                continue
            args = ["device-group", "update", "--product", group.product, "--device-group", group.name]
            if self.allow_crash_dumps is not None:
                args += ["--allow-crash-dumps-collection", "Enabled" if self.allow_crash_dumps else "Disabled"]
            if self.boundary is not None:
                args += ["--regional-data-boundary", self.boundary]
            ctx.sphere(args)


@action("move")
@dataclass(kw_only=True)
class Move(Action):
    """move the boards' devices to another group"""

    boards: list[str] = arg(Boards())
    group: str = arg(Group())

    def run(self, ctx: StepContext) -> None:
        for b in self.boards:
            ctx.admin.move_device(ctx.tenant_id, ctx.devices[b][0], ctx.group_ids[self.group])
            ctx.board_group[b] = self.group


@action("support_read")
@dataclass(kw_only=True)
class SupportRead(Action):
    """read every stored dump of the boards through an audited support session (one audit row each)"""

    boards: list[str] = arg(Boards(optional=True), "all")
    reason: str = arg(Text(), "scenario investigation")

    def targets(self) -> list[str]:
        return []  # it reads at the service, not on the boards

    def run(self, ctx: StepContext) -> None:
        wanted = {ctx.devices[b][0] for b in self.boards}
        for dump in ctx.stored_dumps():
            if dump.device_id in wanted:
                ctx.support.support_read(dump.id, self.reason)


@action("idle", shorthand="for")
@dataclass(kw_only=True)
class Idle(Action):
    """let scenario time pass"""

    for_: float = arg(Duration(), key="for")

    def describe(self) -> str:
        return f"idle for={format_duration(self.for_)}"

    def run(self, ctx: StepContext) -> None:
        time.sleep(self.for_)


@action("check", shorthand="expect")
@dataclass(kw_only=True)
class CheckNow(Action):
    """evaluate expectations now (they appear in the report as "after step N")"""

    expect: Any = arg(Expectations())

    def as_dict(self) -> dict[str, Any]:
        return {}

    def reach(self) -> set[str] | None:
        return set()

    def run(self, ctx: StepContext) -> None:
        raise AssertionError("the runner evaluates a check step's expectations itself")
