"""Evaluating a run's expectations, also after a run that stopped early (a failed step, the timeout).

:class:`Assessor` evaluates each expectation on an evidence snapshot, judges its verdict
(:mod:`testbed.scenario.verdict`) and records it. After a stop, the steps after it never
run. An expectation is still evaluated, on the evidence up to the stop (the boards' events,
what the service holds, what reached it), when no step that did not run before its place in
the timeline would have made or changed its evidence: no step acting on one of its boards,
no step acting on the service (a fault, a warp of the service's clock, a group change, a
support read, an idle). ``Action.reach`` says what a step touches; a wait or a check only
watches, so a failed wait leaves the evidence whole. The others are NOT EVALUATED, with the
reason: which step stopped the run, and which step that never ran would have made their
evidence. The run's verdict stays FAIL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from testbed.scenario.evidence import Evidence, Finding
from testbed.scenario.model import Expectation, Scenario, Step
from testbed.scenario.progress import Progress
from testbed.scenario.registry import Check
from testbed.scenario.results import ExpectationResult, ScenarioResult, Verdict
from testbed.scenario.verdict import HostCpuLookup, Judgement, judge


@dataclass(frozen=True)
class Stop:
    """Where a run stopped: the step of ``index`` failed (``ran``) or never began (the timeout)."""

    index: int
    ran: bool = True


def concerns(check: Check) -> set[str] | None:
    """The boards whose evidence the expectation reads; None: the service's as a whole (all of it)."""
    boards = check.as_dict().get("boards") if "boards" in check.specs() else None
    return set(boards) if isinstance(boards, list) else None


def missing_step(scenario: Scenario, stop: Stop, step: Step | None, exp: Expectation) -> Step | None:
    """The first step, from the one that stopped the run up to the expectation's place (a check
    step, or the end), that never ran (or broke half-way) and would have made its evidence."""
    until = step.index if step is not None else len(scenario.steps)
    wanted = concerns(exp.check)
    for s in scenario.steps[stop.index:until]:
        reach = s.op.reach()
        if reach is None or (reach and (wanted is None or reach & wanted)):
            return s
    return None


def stop_text(scenario: Scenario, stop: Stop) -> str:
    n = len(scenario.steps)
    step = scenario.steps[stop.index]
    if stop.ran:
        return f"the step {stop.index + 1}/{n} `{step.action}` failed"
    return f"the scenario's timeout stopped the run at step {stop.index + 1}/{n} `{step.action}`"


def not_evaluated_reason(scenario: Scenario, stop: Stop, step: Step | None, exp: Expectation) -> str | None:
    """Why the expectation cannot be evaluated after the stop; None when its evidence exists."""
    lacking = missing_step(scenario, stop, step, exp)
    if lacking is None:
        return None
    why = stop_text(scenario, stop)
    if lacking.index == stop.index:
        return f"not evaluated: {why} before its evidence existed"
    return (f"not evaluated: {why} before its evidence existed (step {lacking.index + 1}/{len(scenario.steps)} "
            f"`{lacking.describe()}` never ran)")  # fmt: skip


class Assessor:
    """Evaluates a run's expectations and records each result (also the ones never evaluated)."""

    def __init__(self, scenario: Scenario, result: ScenarioResult, progress: Progress, host_cpu: HostCpuLookup,
                 now: Callable[[], float]) -> None:  # fmt: skip
        self.sc, self.result, self.progress, self.host_cpu, self.now = scenario, result, progress, host_cpu, now
        self.judged: set[int] = set()  # the expectations recorded, by id

    def record(self, exp: Expectation, step: Step | None, ev: Evidence | None, why_not: str = "",
               note: str = "") -> ExpectationResult:  # fmt: skip
        """Evaluate one expectation on ``ev``; without evidence, record it NOT EVALUATED ``why_not``.
        ``note`` follows the detail (what the evidence was, after a stop)."""
        if ev is None:
            judged = Judgement(Verdict.NOT_EVALUATED, why_not)
        else:
            try:
                finding = exp.check.evaluate(ev)
            except Exception as exc:  # noqa: BLE001 (a broken check is a failed expectation)
                finding = Finding(False, f"could not be checked: {exc}")
            judged = judge(exp.check, finding, self.host_cpu, ev.now)
            judged.detail += note
        res = ExpectationResult(exp.text, exp.kind, judged.verdict == Verdict.PASS, judged.detail, exp.line,
                                step.index if step else None, self.now(), verdict=judged.verdict,
                                timing=exp.check.timing, host_cpu=[f.to_dict() for f in judged.figures],
                                name=exp.name)  # fmt: skip
        self.judged.add(id(exp))
        self.result.expectations.append(res)
        self.progress.expectation(self.sc, res)
        return res

    def rest(self, stop: Stop | None, evidence: Callable[[], Evidence], interrupted: bool = False) -> None:
        """After a run that stopped early: evaluate every expectation not yet recorded whose evidence
        exists (``evidence()`` reads it, up to the stop), and record the others NOT EVALUATED with the reason."""
        pending = [(s, e) for s, e in self.sc.all_expectations() if id(e) not in self.judged]
        if not pending:
            return
        if interrupted or stop is None:
            first = (self.result.error or "the run stopped").splitlines()[0]
            ran_all = len(self.result.steps) == len(self.sc.steps) and all(r.ok for r in self.result.steps)
            why = ("not evaluated: the run was interrupted (Ctrl-C)" if interrupted else
                   f"not evaluated: its evidence could not be read ({first})" if ran_all else
                   f"not evaluated: the run broke before its evidence existed ({first})")  # fmt: skip
            for s, e in pending:
                self.record(e, s, None, why)
            return
        reasons = [not_evaluated_reason(self.sc, stop, s, e) for s, e in pending]
        ev: Evidence | None = None
        unread = ""
        if any(r is None for r in reasons):
            try:
                ev = evidence()
            except Exception as exc:  # noqa: BLE001 (the service may be what broke)
                unread = f"not evaluated: its evidence could not be read after the failure: {str(exc)[:500]}"
        note = f" (evaluated on the evidence up to the stop: {stop_text(self.sc, stop)})"
        for (s, e), reason in zip(pending, reasons, strict=True):
            self.record(e, s, ev if reason is None else None, reason or unread, note)
