"""A scenario whose step fails on a real board: the expectations whose evidence exists are still
evaluated, the others are NOT EVALUATED with the reason; JUnit has each by name and the failed step."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from testbed.scenario.api import ScenarioBuilder

pytestmark = pytest.mark.e2e


def test_a_failed_wait_keeps_the_expectations_that_have_their_evidence(tmp_path):
    story = (
        ScenarioBuilder("stopped-on-a-board", "the upload succeeds, so a wait for an upload-fail fails")
        .group("DW100/Field", allow_crash_dumps=True, boundary="EU")
        .fleet("eu", boards=1, group="DW100/Field")
        .sync("all")
        .crash("eu-1", app="crashapp", mode="segv")
        .wait("eu-1", "upload-ok", timeout="20s")
        .wait("eu-1", "upload-fail", timeout="2s")  # step 4/7: fails, the dump was stored
        .check(("dump_stored", {"boards": "eu-1", "region": "EU", "count": 1, "name": "stored in the EU"}),
               ("upload", {"boards": "eu-1", "result": "fail", "count": 1}))  # fmt: skip
        .link_down("eu-1")
        .crash("eu-1", app="crashapp", mode="abort", id="b2")
        .expect("dumps", region="EU", count=2, name="both crashes stored")
    )
    path = tmp_path / "stopped.yaml"
    path.write_text(story.to_yaml())
    junit, results = tmp_path / "junit.xml", tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "testbed.cli", "scenario", "run", str(path), "--junit", str(junit),
                           "--json", str(results), "--report", str(tmp_path / "report.html")],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # a failed step is a FAIL
    # the check step after the failed wait is evaluated on the board's and the service's evidence up to it
    (res,) = json.loads(results.read_text())
    got = {e["name"]: e for e in res["expectations"]}
    assert list(got) == ["stored in the EU", "upload: boards=eu-1 result=fail count=1", "both crashes stored"]
    assert got["stored in the EU"]["verdict"] == "PASS", got["stored in the EU"]
    assert got["stored in the EU"]["detail"] == ("dumps stored: eu-1: 1 (evaluated on the evidence up to the stop: "
                                                 "the step 4/7 `wait` failed)")  # fmt: skip
    assert got["upload: boards=eu-1 result=fail count=1"]["verdict"] == "FAIL"
    assert "eu-1 printed 0 upload-fail" in got["upload: boards=eu-1 result=fail count=1"]["detail"]
    # the final one needed the second crash, which never ran
    assert got["both crashes stored"]["verdict"] == "NOT EVALUATED"
    assert got["both crashes stored"]["detail"] == (
        "not evaluated: the step 4/7 `wait` failed before its evidence existed (step 6/7 `link_down boards=eu-1` never ran)")
    assert "step 4 (line" in res["error"] and "upload-fail did not come within 2s" in res["error"]
    assert "FAIL stopped-on-a-board: 1/3 expectations held, 1 failed, 1 not evaluated" in proc.stdout, out
    # JUnit: the failed step, and every expectation by its name
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"step 4: wait boards=eu-1 event=upload-fail count=1", *got}
    assert cases["step 4: wait boards=eu-1 event=upload-fail count=1"].find("error") is not None
    assert cases["stored in the EU"].find("failure") is None and cases["stored in the EU"].find("skipped") is None
    assert cases["upload: boards=eu-1 result=fail count=1"].find("failure") is not None
    assert cases["both crashes stored"].find("skipped").get("message").startswith("not evaluated: the step 4/7")  # type: ignore[union-attr]
