"""The scenario runner: the one place that holds both boards and the service.

For each scenario: check every step against every board's capabilities, start the real
service (temp data dir) behind a wire tap, create the tenant, groups and devices, make
the boards (restored from the cached snapshot and provisioned, in parallel), run the
timeline (each step's typed action), evaluate the expectations against the evidence
the service's APIs, the tap and the boards' events give, collect the stored dumps with
their crash analysis and tear everything down, also on a failure or Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.board.capacity import capacity_warning
from testbed.board.firmware import FirmwareDriver
from testbed.board.protocols import Board, BoardFactory
from testbed.crash.symbol_dirs import default_symbol_dirs
from testbed.deadline import Deadline
from testbed.scenario.assess import Assessor, Stop
from testbed.scenario.boards import (
    capabilities_of,
    check_capabilities,
    declared_capabilities,
    describe_board,
    event_log_of,
    firmware_of,
    host_cpu_of,
    prepare_factory,
)
from testbed.scenario.boards import qemu_board_factory as qemu_board_factory
from testbed.scenario.cpu import BoardCpu
from testbed.scenario.evidence import Evidence, StoredDump
from testbed.scenario.model import Expectation, Scenario, ScenarioError, Step, format_duration
from testbed.scenario.outcomes import crash_outcomes
from testbed.scenario.progress import Progress as Progress
from testbed.scenario.progress import QuietProgress as QuietProgress
from testbed.scenario.results import (
    BoardEvent,
    ClockJump,
    Interval,
    ScenarioResult,
    StepRecord,
)
from testbed.scenario.service_side import ServiceSide
from testbed.scenario.steps import StepFailed as StepFailed
from testbed.scenario.waits import BoardWaits

#: The 5 s deadline plus margin: how long the final check waits for crashed apps to be restarted.
SETTLE_SECONDS = 6.0


class ScenarioInterrupted(KeyboardInterrupt):
    pass


@dataclass
class RunOptions:
    parallel: int = max(1, os.cpu_count() or 1)
    workdir: Path | None = None  # keep service data and logs here (default: a temp dir, removed)
    symbol_dirs: list[Path] = field(default_factory=list)
    board_factory: BoardFactory | None = None
    progress: Progress | None = None
    service_options: dict[str, Any] = field(default_factory=dict)  # extra ServiceProcess arguments
    #: Where the boards' entry (the wire tap in front of the service) listens: loopback, or the
    #: LAN address an inventory's real boards dial (only when asked: `--listen --allow-remote-boards`).
    listen: str = "127.0.0.1"


class ScenarioRun:
    """Runs one scenario; ``run()`` always returns a result and always tears down.

    It is the :class:`~testbed.scenario.steps.StepContext` the actions run against.
    """

    def __init__(self, scenario: Scenario, options: RunOptions) -> None:
        self.scenario = self.sc = scenario
        self.opt = options
        self.progress = options.progress or Progress()
        self.result = ScenarioResult(scenario.name, scenario.path, scenario.description)
        self.t0 = time.monotonic()
        self.boards: dict[str, Board] = {}
        self._firmware: dict[str, FirmwareDriver] = {}
        self.side = ServiceSide(scenario)
        self.waits = BoardWaits(lambda: self.t0)
        self.cpu = BoardCpu(lambda: self.t0)
        self._open: dict[str, Interval] = {}
        self.assess = Assessor(scenario, self.result, self.progress, self.cpu.figures, self.now)
        self._stop: Stop | None = None  # where the timeline stopped early

    # ---- what actions use (StepContext)
    @property
    def control(self) -> Any:
        return self.side.control

    @property
    def admin(self) -> Any:
        return self.side.admin

    @property
    def support(self) -> Any:
        return self.side.support

    @property
    def tenant_id(self) -> str:
        return self.side.tenant_id

    @property
    def group_ids(self) -> dict[str, str]:
        return self.side.group_ids

    @property
    def devices(self) -> dict[str, tuple[str, str]]:
        return self.side.devices

    @property
    def board_group(self) -> dict[str, str]:
        return self.side.board_group

    def board(self, name: str) -> Board:
        return self.boards[name]

    def firmware(self, name: str) -> FirmwareDriver:
        if name not in self._firmware:
            self._firmware[name] = firmware_of(self.boards[name])
        return self._firmware[name]

    def now(self) -> float:
        return time.monotonic() - self.t0

    def board_events(self, name: str) -> list[BoardEvent]:
        return self.waits.events(name)

    def fan_out(self, boards: list[str], fn: Callable[[str], Any]) -> list[Any]:
        if len(boards) == 1:
            return [fn(boards[0])]
        with ThreadPoolExecutor(max_workers=min(len(boards), max(2, self.opt.parallel * 2))) as pool:
            return list(pool.map(fn, boards))

    def event_mark(self, board: str) -> int:
        return self.waits.mark(board)

    def wait_any(self, board: str, names: tuple[str, ...], since: int, timeout: float) -> Any:
        return self.waits.wait_any(board, names, since, timeout)

    def settle(self, boards: list[str], timeout: float) -> None:
        self.waits.settle([b for b in boards if b in self.boards], timeout)

    def wait_events(self, board: str, event: str, where: dict[str, str] | None, count: int, timeout: float) -> None:
        self.waits.wait_events(board, event, where, count, timeout)

    def reprovision(self, board: str) -> None:
        from testbed.board.identity import Identity

        device_id, secret = self.devices[board]
        self.firmware(board).provision(Identity.for_port(device_id, secret, self.side.tap.port))  # type: ignore[union-attr]

    def open_interval(self, kind: str, board: str | None, label: str = "") -> None:
        self._open[f"{kind}:{board}"] = Interval(kind, self.now(), None, label, board)
        self.result.intervals.append(self._open[f"{kind}:{board}"])

    def close_interval(self, kind: str, board: str | None) -> None:
        interval = self._open.pop(f"{kind}:{board}", None)
        if interval is not None:
            interval.end = self.now()

    def clock_jump(self, seconds: float, dates: dict[str, float]) -> None:
        self.result.jumps.append(ClockJump(round(self.now(), 3), seconds, dates))

    def stored_dumps(self) -> list[StoredDump]:
        return self.side.stored_dumps()

    def sphere(self, args: list[str], command: str = "sphere") -> None:
        self.side.sphere(args, command)

    # ---- setup and teardown
    def _setup(self, stack: ExitStack) -> None:
        sc = self.sc
        factory = self.opt.board_factory or qemu_board_factory()
        prepare_factory(factory, sc)
        check_capabilities(sc, lambda b: declared_capabilities(factory, b), describe=lambda b: describe_board(factory, b))
        if self.opt.workdir is not None:
            workdir = Path(self.opt.workdir) / sc.name
            if workdir.exists():
                shutil.rmtree(workdir)
            workdir.mkdir(parents=True)
        else:
            workdir = Path(tempfile.mkdtemp(prefix=f"tb-scenario-{sc.name}-"))
            stack.callback(shutil.rmtree, workdir, True)
        self.progress.setup(sc, "starting the service")
        self.result.boards = self.side.start(stack, workdir / "service", self.opt.service_options, self.opt.listen)
        port = self.side.tap.port  # type: ignore[union-attr]
        self.progress.setup(sc, f"service at {self.side.url} (tap on 127.0.0.1:{port}); restoring "
                            f"{len(sc.boards)} board(s) from the snapshot, {self.opt.parallel} at a time")  # fmt: skip
        stack.callback(self._close_boards)
        started = time.monotonic()

        def make(name: str) -> None:
            device_id, secret = self.devices[name]
            t = time.monotonic()
            board = factory(name, device_id, secret, port)
            self.boards[name] = board
            console = getattr(board, "console", None)
            self.waits.add(name, event_log_of(board), lambda: getattr(console, "crash", None))
            self.cpu.add(name, host_cpu_of(board))
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
        check_capabilities(sc, lambda b: capabilities_of(self.boards[b]))
        self.result.host_cpu_boards = [b for b in sc.boards if b in self.cpu.monitors]
        self.progress.setup(sc, f"boards ready in {time.monotonic() - started:.1f} s")

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

    # ---- expectations
    def evidence(self) -> Evidence:
        return Evidence(
            device_ids={b: d for b, (d, _) in self.devices.items()},
            events={b: self.board_events(b) for b in self.sc.boards},
            dumps=self.side.stored_dumps(),
            requests=self.side.tap.snapshot() if self.side.tap else [],
            audit=self.side.audit(),
            blobs=self.side.stored_per_region(),
            tenant_probe=self.side.tenant_probe,
            groups=self.side.groups,
            now=self.now(),
        )

    def check(self, expectations: Iterable[Expectation], step: Step | None = None) -> None:
        ev = self.evidence()
        for exp in expectations:
            self.assess.record(exp, step, ev)

    def _evidence_after_stop(self) -> Evidence:
        self.waits.settle([b for b in self.sc.boards if b in self.boards], SETTLE_SECONDS)
        return self.evidence()

    # ---- the run
    def _run_steps(self) -> None:
        sc = self.sc
        deadline = Deadline(sc.timeout)
        self.waits.start_actions(self.now())
        after_action = False
        for step in sc.steps:
            is_action = step.action not in ("wait", "check")
            if is_action and not after_action:
                # a wait counts events from the start of the run of actions before it
                self.waits.start_actions(self.now())
            after_action = is_action
            if step.at is not None and step.at > self.now():
                time.sleep(step.at - self.now())
            if deadline.expired:
                self._stop = Stop(step.index, ran=False)
                raise StepFailed(f"the scenario timeout of {format_duration(sc.timeout)} passed")
            self.progress.step_start(sc, step)
            record = StepRecord(step.index, step.describe(), self.now(), self.now(), line=step.line)
            self.result.steps.append(record)
            try:
                if step.checks:
                    self.check(step.checks, step)
                else:
                    step.op.run(self)
            except Exception as exc:
                record.ok, record.error = False, _short(exc)
                self._stop = Stop(step.index)
                raise StepFailed(f"step {step.index + 1} (line {step.line}: {step.describe()}) failed: "
                                 f"{_short(exc)}") from exc  # fmt: skip
            finally:
                record.end = self.now()
                self.progress.step_end(sc, step, record)

    def run(self) -> ScenarioResult:
        res = self.result
        res.started_wall = time.time()
        started = time.monotonic()
        with ExitStack() as stack:
            try:
                self._setup(stack)
                self.t0 = time.monotonic()
                res.t0_wall = time.time()
                self._run_steps()
                self.waits.settle(self.sc.boards, SETTLE_SECONDS)
                self.check(self.sc.expect, None)
            except KeyboardInterrupt:
                res.error = "interrupted (Ctrl-C): boards and service were torn down"
                self.assess.rest(self._stop, self.evidence, interrupted=True)
                self._finish(started)
                raise
            except Exception as exc:  # noqa: BLE001 (the run's error is the scenario's verdict)
                if isinstance(exc, StepFailed | ScenarioError):
                    res.error = _short(exc)
                else:
                    res.error = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=-4))
                self.assess.rest(self._stop, self._evidence_after_stop)
            finally:
                self._open.clear()  # a fault still on at the end keeps end None: "until the end", not a link up
                try:
                    self.cpu.attach(res, {b: self.board_events(b) for b in self.sc.boards}, self.now())
                except Exception as exc:  # noqa: BLE001 (figures are evidence, not the verdict)
                    res.error = res.error or f"reading the boards' host CPU failed: {exc}"
                if self.side.running:
                    try:
                        res.dumps = self.side.collect_dumps(self.opt.symbol_dirs)
                        res.audit = self.side.audit()
                    except Exception as exc:  # noqa: BLE001
                        res.error = res.error or f"collecting dumps failed: {exc}"
        res.service_log = self.side.log_tail
        res.crashes = crash_outcomes(res)  # after teardown: the boards' events are in the result
        self._finish(started)
        return res

    def _finish(self, started: float) -> None:
        self.result.duration = time.monotonic() - started


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
    tail = getattr(getattr(board, "console", None), "tail", None)  # the rendered lines
    return "\n".join(tail(400)) if callable(tail) else ""


def run_scenarios(scenarios: list[Scenario], options: RunOptions) -> list[ScenarioResult]:
    """Run scenarios one after another (each with its boards in parallel); Ctrl-C stops after teardown.

    Every scenario's steps are checked against the boards' declared capabilities first.
    """
    progress = options.progress or Progress()
    options.progress = progress
    if not options.symbol_dirs:
        options.symbol_dirs = default_symbol_dirs()
    if options.board_factory is not None:
        for sc in scenarios:
            prepare_factory(options.board_factory, sc)
            check_capabilities(sc, lambda b: declared_capabilities(options.board_factory, b),
                               describe=lambda b: describe_board(options.board_factory, b))  # fmt: skip
    results: list[ScenarioResult] = []
    for i, sc in enumerate(scenarios, 1):
        progress.scenario_start(sc, i, len(scenarios))
        if options.board_factory is None:  # emulated boards share this machine's CPUs
            warning = capacity_warning(len(sc.boards))
            if warning:
                progress.say(f"  {warning}")
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
