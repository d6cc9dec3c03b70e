"""A run that stops early (a failed step, the timeout) on fake boards against the real service: every
expectation whose evidence exists is evaluated, the others are NOT EVALUATED with the reason; JUnit,
summary and results JSON carry each expectation by its name and the failed step on its own."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from io import StringIO
from pathlib import Path

from testbed.scenario.cli import EXIT_FAIL, _summary, exit_code
from testbed.scenario.junit import write_junit
from testbed.scenario.results import ScenarioResult, Verdict, load_results, save_results
from testbed.scenario.runner import Progress, RunOptions, ScenarioRun
from testbed.scenario.schema import scenario_from_data

GROUPS = {"P/On": {"allow_crash_dumps": True, "boundary": "EU"}, "P/Off": {}}
FLEET = {"on": {"boards": 1, "group": "P/On", "apps": ["crashapp"]},
         "off": {"boards": 1, "group": "P/Off", "apps": ["crashapp"]}}  # fmt: skip

#: Step 3 of 7 waits for an upload-fail that never comes (on-1 uploads fine); the steps after it act on off-1.
STOPPED = {
    "name": "stopped",
    "groups": GROUPS,
    "fleet": FLEET,
    "steps": [
        {"sync": "all"},
        {"crash": "on-1"},
        {"wait": {"boards": "on-1", "event": "upload-fail", "timeout": "300ms"}},
        {"crash": {"boards": "off-1", "id": "b2"}},
        {"wait": {"boards": "off-1", "event": "dump-skipped", "timeout": "5s"}},
        {"check": [{"name": "on-1 stored before the check", "dump_stored": {"boards": "on-1", "count": 1}},
                   {"no_request": "off-1"}]},
        {"link_down": "off-1"},
    ],
    "expect": [
        {"requests": {"path": "upload", "boards": "on-1", "count": 1, "name": "one upload from on-1"}},
        {"app_restarted": {"within": "5s", "boards": "on-1"}},
        {"dump_skipped": {"boards": "off-1", "reason": "optout", "count": 1}},
        {"blobs": {"region": "EU", "count": 1}},
        {"dump_stored": {"boards": "on-1", "count": 2}},  # wrong on purpose: on-1 crashed once
    ],
}  # fmt: skip


def run(data: dict, factory, tmp_path: Path) -> tuple[ScenarioResult, str]:
    out = StringIO()
    runner = ScenarioRun(scenario_from_data(data, "<stopped>"), RunOptions(
        parallel=2, workdir=tmp_path, board_factory=factory, progress=Progress(out, color=False)))  # fmt: skip
    return runner.run(), out.getvalue()


def test_after_a_failed_wait_the_expectations_with_evidence_are_evaluated_the_rest_say_why(tmp_path, fake_factory):
    factory = fake_factory()
    res, progress = run(STOPPED, factory, tmp_path)
    assert res.error.startswith("step 3 (line 0: wait boards=on-1 event=upload-fail count=1) failed")
    assert res.verdict == Verdict.FAIL and exit_code([res]) == EXIT_FAIL
    # the steps after the failure never ran
    assert [s.index for s in res.steps] == [0, 1, 2] and factory.made["off-1"].calls == []
    got = {e.name: (e.verdict, e.step, e.detail) for e in res.expectations}
    assert list(got) == ["on-1 stored before the check", "no_request: boards=off-1", "one upload from on-1",
                         "app_restarted: within=5s boards=on-1", "dump_skipped: reason=optout boards=off-1 count=1",
                         "blobs: region=EU count=1", "dump_stored: boards=on-1 count=2"]  # fmt: skip
    verdicts = {name: v for name, (v, _, _) in got.items()}
    assert verdicts == {
        "on-1 stored before the check": "PASS",  # the crash off-1 before the check does not touch on-1
        "no_request: boards=off-1": "NOT EVALUATED",
        "one upload from on-1": "PASS",
        "app_restarted: within=5s boards=on-1": "PASS",
        "dump_skipped: reason=optout boards=off-1 count=1": "NOT EVALUATED",
        "blobs: region=EU count=1": "NOT EVALUATED",  # about the service as a whole: the off-1 crash is missing
        "dump_stored: boards=on-1 count=2": "FAIL",  # an honest failure on the evidence that exists
    }
    assert got["on-1 stored before the check"][1] == 5  # it keeps its place in the timeline
    reason = got["dump_skipped: reason=optout boards=off-1 count=1"][2]
    assert reason == ("not evaluated: the step 3/7 `wait` failed before its evidence existed "
                      "(step 4/7 `crash boards=off-1 app=crashapp mode=segv id=b2` never ran)")  # fmt: skip
    assert "on-1 has 1 dump(s)" in got["dump_stored: boards=on-1 count=2"][2]
    # what was evaluated says on which evidence
    assert got["one upload from on-1"][2].endswith("(evaluated on the evidence up to the stop: the step 3/7 `wait` failed)")
    # progress: each by its name (a given name with what it checks), the not evaluated counted apart
    assert "PASS one upload from on-1 [requests: path=upload boards=on-1 count=1]: 1 upload request(s)" in progress
    assert "NOT EVALUATED blobs: region=EU count=1: not evaluated: the step 3/7 `wait` failed" in progress
    assert "(so far 3 passed, 1 failed, 3 not evaluated)" in progress


def test_junit_summary_and_json_carry_every_expectation_and_the_failed_step(tmp_path, fake_factory, capsys):
    res, _ = run(STOPPED, fake_factory(), tmp_path)
    root = ET.parse(write_junit([res], tmp_path / "junit.xml")).getroot()
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("8", "1", "1", "3")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    step = cases["step 3: wait boards=on-1 event=upload-fail count=1"]
    assert "on-1: 1 new upload-fail did not come within 300ms" in step.find("error").get("message")
    assert cases["one upload from on-1"].find("failure") is None and cases["one upload from on-1"].find("skipped") is None
    prop = cases["one upload from on-1"].find("properties/property")
    assert prop.get("name") == "checks" and prop.get("value") == "requests: path=upload boards=on-1 count=1"
    skipped = cases["blobs: region=EU count=1"].find("skipped")
    assert skipped.get("message").startswith("not evaluated: the step 3/7 `wait` failed before its evidence existed")
    assert cases["dump_stored: boards=on-1 count=2"].find("failure") is not None
    # the terminal summary
    assert _summary([res], tmp_path / "r.html", None) == EXIT_FAIL
    out = capsys.readouterr().out
    assert "FAIL stopped: 3/7 expectations held, 1 failed, 3 not evaluated, 1 dump(s)" in out
    assert "     error: step 3 (line 0: wait" in out
    # the not evaluated ones, grouped by their reason
    assert ("     not evaluated (3: no_request: boards=off-1, dump_skipped: reason=optout boards=off-1 count=1, "
            "blobs: region=EU count=1): the step 3/7 `wait` failed before its evidence existed (step 4/7 "
            "`crash boards=off-1 app=crashapp mode=segv id=b2` never ran)") in out
    assert "     failed: dump_stored: boards=on-1 count=2 (line 0): " in out
    # the report: each by its name, the not evaluated in a badge of their own
    from testbed.scenario.report import render_html

    html = render_html([res])
    assert "<b>one upload from on-1</b> <code>requests: path=upload boards=on-1 count=1</code>" in html
    assert html.count('<span class="badge not-evaluated">NOT EVALUATED</span>') == 3
    # the results JSON keeps names and the fourth state
    save_results([res], str(tmp_path / "r.json"))
    (back,) = load_results(str(tmp_path / "r.json"))
    assert [e.name for e in back.expectations] == [e.name for e in res.expectations]
    assert [e.verdict for e in back.not_evaluated] == ["NOT EVALUATED"] * 3


def test_a_failure_before_a_service_wide_step_leaves_every_later_expectation_not_evaluated(tmp_path, fake_factory):
    data = {**STOPPED, "steps": [{"sync": "all"}, {"crash": "on-1"},
                                 {"wait": {"boards": "on-1", "event": "upload-fail", "timeout": "300ms"}},
                                 {"service_fault": {"mode": "status", "status": 503}}, {"crash": "on-1"}],
            "expect": [{"dump_stored": {"boards": "on-1", "count": 1}}, {"no_request": "off-1"}]}  # fmt: skip
    res, _ = run(data, fake_factory(), tmp_path)
    assert [e.verdict for e in res.expectations] == ["NOT EVALUATED", "NOT EVALUATED"]
    assert res.expectations[1].detail == ("not evaluated: the step 3/5 `wait` failed before its evidence existed "
                                          "(step 4/5 `service_fault mode=status status=503` never ran)")  # fmt: skip


def test_the_timeout_stops_the_run_and_says_where(tmp_path, fake_factory):
    data = {**STOPPED, "timeout": "1s",
            "steps": [{"sync": "all"}, {"crash": "on-1"}, {"wait": {"boards": "on-1", "event": "upload-ok"}},
                      {"idle": "1200ms"}, {"crash": "off-1"}],
            "expect": [{"dump_stored": {"boards": "on-1", "count": 1}}, {"no_request": "off-1"}]}  # fmt: skip
    res, _ = run(data, fake_factory(), tmp_path)
    assert "the scenario timeout of 1s passed" in res.error
    assert [e.verdict for e in res.expectations] == ["PASS", "NOT EVALUATED"]
    assert res.expectations[1].detail == ("not evaluated: the scenario's timeout stopped the run at step 5/5 `crash` "
                                          "before its evidence existed")  # fmt: skip


def test_a_run_that_broke_in_setup_marks_everything_not_evaluated(tmp_path, capsys):
    class Broken:
        def __call__(self, name, device_id, secret, port):
            raise RuntimeError("no board today")

    res, _ = run(STOPPED, Broken(), tmp_path)
    assert res.error.startswith("board setup failed: ")
    assert len(res.not_evaluated) == len(res.expectations) == 7
    assert res.expectations[0].detail.startswith("not evaluated: the run broke before its evidence existed "
                                                 "(board setup failed: ")  # fmt: skip
    assert _summary([res], tmp_path / "r.html", None) == EXIT_FAIL
    out = capsys.readouterr().out
    assert "FAIL stopped: 0/7 expectations held, 7 not evaluated, 0 dump(s)" in out
    assert ("     not evaluated (7: on-1 stored before the check, no_request: boards=off-1, one upload from on-1 and "
            "4 more): the run broke before its evidence existed (board setup failed: ") in out
