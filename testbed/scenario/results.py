"""What a scenario run produced: the evidence the report and JUnit XML are made from.

Plain dataclasses, so a run can be saved as JSON and a report rebuilt from it.
Times ``t`` are seconds since the scenario's start on the host's monotonic clock.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


@dataclass
class BoardEvent:
    """One ``@tb event=<name> k=v ...`` line a board printed."""

    name: str
    fields: dict[str, str]
    t: float
    wall: float = 0.0


@dataclass
class Interval:
    """A fault over time (link down, paused, service fault); ``end`` None means until the end."""

    kind: str
    start: float
    end: float | None
    label: str = ""
    board: str | None = None  # None: the service (applies to every board)


@dataclass
class ClockJump:
    """A warp: at scenario time ``t`` the clocks moved by ``seconds``; ``dates`` is what each clock
    read just after it (epoch seconds): ``"service"`` (the control API's answer) and each warped board
    (its ``date +%s``)."""

    t: float
    seconds: float
    dates: dict[str, float] = field(default_factory=dict)


@dataclass
class BoardRecord:
    name: str
    device_id: str = ""
    group: str = ""
    apps: list[str] = field(default_factory=list)
    events: list[BoardEvent] = field(default_factory=list)
    console: str = ""


@dataclass
class StepRecord:
    index: int
    text: str
    start: float
    end: float
    ok: bool = True
    error: str = ""
    line: int = 0
    host_cpu: dict[str, dict[str, Any]] = field(default_factory=dict)  # board -> CpuFigures.to_dict()


class Verdict(StrEnum):
    """An expectation's verdict (testbed.scenario.verdict decides INCONCLUSIVE). NOT EVALUATED: a run
    that stopped early (a failed step) never made its evidence; it is no verdict on the device."""

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    NOT_EVALUATED = "NOT EVALUATED"


PASS, FAIL, INCONCLUSIVE, NOT_EVALUATED = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.NOT_EVALUATED


@dataclass
class ExpectationResult:
    text: str
    kind: str
    passed: bool
    detail: str = ""
    line: int = 0
    step: int | None = None  # index of the check step, None for the final expectations
    t: float = 0.0
    verdict: str = ""  # PASS, FAIL, INCONCLUSIVE or NOT EVALUATED (default: from passed)
    timing: bool = False  # an expectation about how long something took
    host_cpu: list[dict[str, Any]] = field(default_factory=list)  # the late episodes' CpuFigures
    name: str = ""  # its name in the scenario (unique there); ``text`` says what it checks

    def __post_init__(self) -> None:
        self.verdict = Verdict(self.verdict) if self.verdict else PASS if self.passed else FAIL
        self.name = self.name or self.text


@dataclass
class EpisodeRecord:
    """A crash and what followed on one board, with the board's host CPU over it (when measured)."""

    board: str
    app: str
    crash: float
    outcome: str
    restart: float | None
    to_restart: float | None
    host_cpu: dict[str, Any] | None = None


@dataclass
class ChainLink:
    """One step of a crash's outcome chain: ``crash``, ``skipped``, ``failed``, ``spooled``,
    ``retry-failed``, ``dropped``, ``stored``, ``lost`` or ``waiting`` (in the spool at the end)."""

    what: str
    t: float | None  # scenario time of the event (None: known from the firmware's rules, no event)
    detail: str = ""


@dataclass
class CrashOutcome:
    """One crash and where its dump went: the chain of what happened and its end (``fate``)."""

    board: str
    app: str
    crash: float
    fate: str  # stored, stored-from-spool, skipped, dropped, lost, in-spool, no-outcome
    chain: list[ChainLink] = field(default_factory=list)
    signature: str = ""
    upload_id: str = ""
    dump_id: str = ""  # the stored dump (as the board's upload-ok printed it)
    stored_t: float | None = None  # scenario time of the upload-ok
    stored_at: float | None = None  # the dump's createdAt at the service (its clock, epoch seconds)
    crash_at: float | None = None  # the board's clock at the crash, as it sent it with the dump
    to_stored: float | None = None  # crash line to upload-ok line (host clock)
    restart: float | None = None
    to_restart: float | None = None


@dataclass
class DumpRecord:
    id: str
    board: str
    device_id: str
    region: str
    size: int
    signature: str = ""
    component: str = ""
    created: float = 0.0
    analysis: dict[str, Any] | None = None
    analysis_error: str = ""
    upload_id: str = ""
    crash_time: float = 0.0  # the board's clock at the crash, as the board sent it (epoch seconds; 0: none)


@dataclass
class ScenarioResult:
    name: str
    path: str
    description: str = ""
    started_wall: float = 0.0
    duration: float = 0.0
    boards: list[BoardRecord] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    expectations: list[ExpectationResult] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    dumps: list[DumpRecord] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""  # a run that could not finish (setup failure, step failure, Ctrl-C)
    service_log: str = ""
    episodes: list[EpisodeRecord] = field(default_factory=list)
    host_cpu_boards: list[str] = field(default_factory=list)  # boards whose host CPU was measured
    t0_wall: float = 0.0  # the host's wall clock at scenario time 0 (epoch seconds)
    jumps: list[ClockJump] = field(default_factory=list)  # clock warps
    crashes: list[CrashOutcome] = field(default_factory=list)  # every crash's outcome chain

    @property
    def passed(self) -> bool:
        return not self.error and bool(self.expectations) and all(e.verdict == PASS for e in self.expectations)

    @property
    def failures(self) -> list[ExpectationResult]:
        return [e for e in self.expectations if e.verdict == FAIL]

    @property
    def inconclusives(self) -> list[ExpectationResult]:
        return [e for e in self.expectations if e.verdict == INCONCLUSIVE]

    @property
    def not_evaluated(self) -> list[ExpectationResult]:
        return [e for e in self.expectations if e.verdict == NOT_EVALUATED]

    @property
    def verdict(self) -> str:
        """PASS; FAIL when the run broke (so some expectation may be NOT EVALUATED) or any expectation
        failed; else INCONCLUSIVE when any is."""
        if self.error or not self.expectations or self.failures or self.not_evaluated:
            return FAIL
        return INCONCLUSIVE if self.inconclusives else PASS

    @property
    def inconclusive(self) -> bool:
        return self.verdict == INCONCLUSIVE

    def board(self, name: str) -> BoardRecord:
        for b in self.boards:
            if b.name == name:
                return b
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioResult:
        data = dict(data)
        data["boards"] = [
            BoardRecord(**{**b, "events": [BoardEvent(**e) for e in b.get("events", [])]})
            for b in data.get("boards", [])
        ]
        data["steps"] = [StepRecord(**s) for s in data.get("steps", [])]
        data["expectations"] = [ExpectationResult(**e) for e in data.get("expectations", [])]
        data["intervals"] = [Interval(**i) for i in data.get("intervals", [])]
        data["dumps"] = [DumpRecord(**d) for d in data.get("dumps", [])]
        data["episodes"] = [EpisodeRecord(**e) for e in data.get("episodes", [])]
        data["jumps"] = [ClockJump(**j) for j in data.get("jumps", [])]
        data["crashes"] = [
            CrashOutcome(**{**c, "chain": [ChainLink(**link) for link in c.get("chain", [])]})
            for c in data.get("crashes", [])
        ]
        return cls(**data)


def save_results(results: list[ScenarioResult], path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump([r.to_dict() for r in results], fh, indent=1)


def load_results(path: str) -> list[ScenarioResult]:
    with open(path, encoding="utf-8") as fh:
        return [ScenarioResult.from_dict(d) for d in json.load(fh)]
