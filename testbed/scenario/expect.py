"""Evaluating an expectation against evidence (the classes are in :mod:`testbed.scenario.expectations`)."""

from __future__ import annotations

from testbed.scenario.evidence import Evidence, Finding, StoredDump, region_matches
from testbed.scenario.model import Expectation


def evaluate(exp: Expectation, ev: Evidence) -> tuple[bool, str]:
    """(held, detail) for one expectation. The detail says what was seen, pass or fail."""
    finding = exp.check.evaluate(ev)
    return finding.passed, finding.detail


def find(exp: Expectation, ev: Evidence) -> Finding:
    """The full finding (with the broken timing promises) of one expectation."""
    return exp.check.evaluate(ev)


__all__ = ["Evidence", "Finding", "StoredDump", "evaluate", "find", "region_matches"]
