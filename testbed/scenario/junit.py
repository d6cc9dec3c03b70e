"""JUnit XML of a run: one testsuite per scenario, one testcase per expectation, named by its name.

A FAIL is a ``failure``; an INCONCLUSIVE verdict (the host starved a board) and a NOT EVALUATED
expectation (a failed step stopped the run before its evidence existed) are ``skipped`` with
their reason, so CI tools show them as neither passed nor failed; a failed step is a testcase
of its own with an ``error``, and so is any other run that broke (``run``).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from testbed.scenario.results import ScenarioResult, Verdict

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Console text without terminal escapes, carriage returns or other control characters (XML-safe)."""
    return _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "")))


def junit_tree(results: list[ScenarioResult]) -> ET.ElementTree:
    """One testsuite per scenario, one testcase per expectation (plus one for a failed step or run error)."""
    root = ET.Element("testsuites", name="testbed scenarios")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for r in results:
        suite = ET.SubElement(root, "testsuite", name=r.name, file=r.path, time=f"{r.duration:.3f}")
        counts = dict.fromkeys(totals, 0)
        if r.error:
            failed = next((s for s in r.steps if not s.ok), None)
            if failed is not None:
                case = ET.SubElement(suite, "testcase", classname=r.name, name=f"step {failed.index + 1}: {failed.text}",
                                     file=r.path, line=str(failed.line), time=f"{failed.end - failed.start:.3f}")  # fmt: skip
            else:
                case = ET.SubElement(suite, "testcase", classname=r.name, name="run", time=f"{r.duration:.3f}")
            ET.SubElement(case, "error", message=clean_text(r.error.splitlines()[0])).text = clean_text(r.error)
            counts["tests"] += 1
            counts["errors"] += 1
        for e in r.expectations:
            case = ET.SubElement(suite, "testcase", classname=r.name, name=clean_text(e.name or e.text), file=r.path,
                                 line=str(e.line))  # fmt: skip
            counts["tests"] += 1
            detail = clean_text(e.detail)
            if e.name and e.name != e.text:
                ET.SubElement(case, "properties").append(ET.Element("property", name="checks", value=clean_text(e.text)))
            if e.verdict == Verdict.FAIL:
                ET.SubElement(case, "failure", message=detail or "expectation did not hold").text = detail
                counts["failures"] += 1
            elif e.verdict in (Verdict.INCONCLUSIVE, Verdict.NOT_EVALUATED):
                ET.SubElement(case, "skipped", message=detail).text = detail
                counts["skipped"] += 1
        consoles = "\n".join(f"===== {b.name} =====\n{clean_text(b.console)}" for b in r.boards)
        if consoles:
            ET.SubElement(suite, "system-out").text = consoles
        for key, n in counts.items():
            suite.set(key, str(n))
            totals[key] += n
    for key, n in totals.items():
        root.set(key, str(n))
    return ET.ElementTree(root)


def write_junit(results: list[ScenarioResult], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = junit_tree(results)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
