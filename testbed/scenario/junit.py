"""JUnit XML of a run: one testsuite per scenario, one testcase per expectation.

A FAIL is a ``failure``; an INCONCLUSIVE verdict (the host starved a board) is ``skipped``
with its reason, so CI tools show it as neither passed nor failed; a run that broke is an
``error``.
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
    """One testsuite per scenario, one testcase per expectation (plus one for a run error)."""
    root = ET.Element("testsuites", name="testbed scenarios")
    total = failures = errors = skipped = 0
    for r in results:
        suite = ET.SubElement(root, "testsuite", name=r.name, file=r.path, time=f"{r.duration:.3f}")
        n_fail = n_err = n_skip = 0
        if r.error:
            case = ET.SubElement(suite, "testcase", classname=r.name, name="run", time=f"{r.duration:.3f}")
            ET.SubElement(case, "error", message=clean_text(r.error.splitlines()[0])).text = clean_text(r.error)
            n_err += 1
        for i, e in enumerate(r.expectations):
            name = f"{i + 1:02d} {e.text}"
            case = ET.SubElement(suite, "testcase", classname=r.name, name=name, file=r.path,
                                 line=str(e.line))  # fmt: skip
            if e.verdict == Verdict.FAIL:
                ET.SubElement(case, "failure", message=clean_text(e.detail) or "expectation did not hold").text = clean_text(e.detail)
                n_fail += 1
            elif e.verdict == Verdict.INCONCLUSIVE:
                ET.SubElement(case, "skipped", message=clean_text(e.detail)).text = clean_text(e.detail)
                n_skip += 1
        consoles = "\n".join(f"===== {b.name} =====\n{clean_text(b.console)}" for b in r.boards)
        if consoles:
            ET.SubElement(suite, "system-out").text = consoles
        n_cases = len(r.expectations) + (1 if r.error else 0)
        suite.set("tests", str(n_cases))
        suite.set("failures", str(n_fail))
        suite.set("errors", str(n_err))
        suite.set("skipped", str(n_skip))
        total += n_cases
        failures += n_fail
        errors += n_err
        skipped += n_skip
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    root.set("skipped", str(skipped))
    return ET.ElementTree(root)


def write_junit(results: list[ScenarioResult], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = junit_tree(results)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
