"""Three verdicts: PASS, FAIL and INCONCLUSIVE (the host starved the board, so a timing verdict says
nothing about the device).

An emulated board shares the host's CPUs with every other board; a real device has its own.
When a timing expectation (restart within, upload slack) does not hold on a board that, during
that episode, waited for a host CPU more than :data:`STARVED_SHARE` of the time, the failure is
the host's, not the device's: INCONCLUSIVE, with the figures. A board whose starvation is not
measured (it lacks the host-cpu capability) keeps PASS/FAIL, and the detail says it was not
measured. Functional expectations (what was stored, where, how many, which events) are never
softened. docs/scenarios.md ("Verdicts") documents the threshold. An expectation a stopped run
never made the evidence of is NOT EVALUATED (:mod:`testbed.scenario.assess`), no verdict at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from testbed.board.hostcpu import STARVED_SHARE
from testbed.scenario.evidence import Finding
from testbed.scenario.registry import Check
from testbed.scenario.results import Verdict


class CpuWindow(Protocol):
    """What a host-CPU monitor's ``window(t0, t1)`` gives (testbed.board.hostcpu)."""

    cpu_s: float
    wait_s: float
    wall_s: float


class HostCpuMonitor(Protocol):
    """A board's host-CPU monitor (``board.host_cpu`` on a board with the host-cpu capability)."""

    def window(self, t0_monotonic: float, t1_monotonic: float) -> CpuWindow: ...


@dataclass(frozen=True)
class CpuFigures:
    """A board's host CPU between ``start`` and ``end`` (scenario seconds): the CPU time its
    emulator got and the time it was runnable but waited for a CPU."""

    board: str
    start: float
    end: float
    cpu_s: float
    wait_s: float
    wall_s: float

    @property
    def share(self) -> float:
        return self.wait_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def starved(self) -> bool:
        return self.share > STARVED_SHARE

    def text(self) -> str:
        return f"board {self.board} waited {self.wait_s:.1f} s of its {self.wall_s:.1f} s episode for a CPU"

    def to_dict(self) -> dict[str, Any]:
        figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}
        return {**figures, "share": round(self.share, 3), "starved": self.starved}


#: (board, start, end in scenario seconds) -> the figures, or None when the board's are not measured
HostCpuLookup = Callable[[str, float, float], CpuFigures | None]


@dataclass
class Judgement:
    verdict: Verdict
    detail: str
    figures: list[CpuFigures] = field(default_factory=list)


def judge(check: Check, finding: Finding, host_cpu: HostCpuLookup, now: float) -> Judgement:
    """The verdict of one evaluated expectation."""
    if finding.passed:
        return Judgement(Verdict.PASS, finding.detail)
    if not check.timing or not finding.timing_only or not finding.late:
        return Judgement(Verdict.FAIL, finding.detail)
    figures: list[CpuFigures] = []
    unmeasured: list[str] = []
    for late in finding.late:
        got = host_cpu(late.board, late.start, late.end if late.end is not None else now)
        if got is None:
            unmeasured.append(late.board)
        else:
            figures.append(got)
    if unmeasured:
        boards = ", ".join(dict.fromkeys(unmeasured))
        return Judgement(Verdict.FAIL, f"{finding.detail} (host starvation not measured on {boards})", figures)
    if all(f.starved for f in figures):
        why = "; ".join(dict.fromkeys(f.text() for f in figures))
        return Judgement(Verdict.INCONCLUSIVE, f"INCONCLUSIVE (host starved: {why}): {finding.detail}", figures)
    fed = "; ".join(dict.fromkeys(f"{f.text()} ({f.share:.0%})" for f in figures if not f.starved))
    return Judgement(Verdict.FAIL, f"{finding.detail} (the host did not starve it: {fed})", figures)
