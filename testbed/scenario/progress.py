"""Live progress of a run: one line per step and per expectation, to stderr by default."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from testbed.scenario.model import Scenario, Step
from testbed.scenario.results import ExpectationResult, ScenarioResult, StepRecord, Verdict

COLOURS: dict[str, str] = {Verdict.PASS: "32", Verdict.FAIL: "31", Verdict.INCONCLUSIVE: "33", Verdict.NOT_EVALUATED: "90"}


class Progress:
    def __init__(self, stream: TextIO | None = None, color: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.color = self.stream.isatty() if color is None else color
        self.passed = 0
        self.failed = 0
        self.inconclusive = 0
        self.not_evaluated = 0
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
        if res.verdict == Verdict.PASS:
            self.passed += 1
        elif res.verdict == Verdict.INCONCLUSIVE:
            self.inconclusive += 1
        elif res.verdict == Verdict.NOT_EVALUATED:
            self.not_evaluated += 1
        else:
            self.failed += 1
        mark = self._c(res.verdict, COLOURS[res.verdict])
        tally = f"so far {self.passed} passed, {self.failed} failed"
        if self.inconclusive:
            tally += f", {self.inconclusive} inconclusive"
        if self.not_evaluated:
            tally += f", {self.not_evaluated} not evaluated"
        self.say(f"   [{sc.name}] {mark} {expectation_title(res)}: {res.detail}   ({tally})")

    def scenario_end(self, res: ScenarioResult) -> None:
        verdict = self._c(res.verdict, COLOURS[res.verdict] + ";1")
        self.say(f"== {res.name}: {verdict} in {res.duration:.1f} s")


class QuietProgress(Progress):
    def say(self, text: str) -> None:
        pass


def expectation_title(res: ExpectationResult) -> str:
    """An expectation's name, with what it checks when it was given a name of its own."""
    name = res.name or res.text
    own = res.text and name != res.text and not name.startswith(res.text + " #")
    return f"{name} [{res.text}]" if own else name
