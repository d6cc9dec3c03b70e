"""The HTML report and JUnit XML, built from a hand-made run result."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from testbed.crash.analysis import analyze_bytes
from testbed.scenario.report import clean_text, render_html, timeline_svg, write_html, write_junit
from testbed.scenario.results import (
    BoardEvent,
    BoardRecord,
    DumpRecord,
    ExpectationResult,
    Interval,
    ScenarioResult,
    StepRecord,
    load_results,
    save_results,
)
from testbed.scenario.timeline import crash_episodes

CORES = Path(__file__).resolve().parents[2] / "testbed" / "load" / "cores"


def ev(name: str, t: float, **fields: str) -> BoardEvent:
    return BoardEvent(name, dict(fields), t)


def sample(passed: bool = True) -> ScenarioResult:
    events = [
        ev("sync-ok", 0.5),
        ev("crash", 1.0, app="segv", signal="11", sig="ab" * 16),
        ev("upload-ok", 1.4, id="d1", region="EU", bytes="11123", ms="350"),
        ev("app-restart", 1.45, app="segv", after_ms="450"),
        ev("crash", 3.0, app="segv", signal="11", sig="ab" * 16),
        ev("dump-skipped", 3.1, reason="throttled"),
        ev("app-restart", 3.12, app="segv", after_ms="120"),
    ]
    analysis = analyze_bytes((CORES / "segv-xs.core.gz").read_bytes()).to_dict()
    return ScenarioResult(
        name="demo <story>",
        path="scenarios/demo.yaml",
        description="EU fleet & friends",
        duration=6.0,
        boards=[
            BoardRecord("eu-1", "a" * 128, "DW100/Field", ["segv"], events, console="\x1b[6n# ls\r\r\nbin\x07\n"),
            BoardRecord("eu-2", "b" * 128, "DW100/Field", ["segv"], [ev("crash", 2.0, app="segv"),
                        ev("upload-fail", 7.0, reason="connect"), ev("app-restart", 7.0, after_ms="5000")]),
        ],
        steps=[StepRecord(0, "sync boards=eu-1,eu-2", 0.0, 0.6), StepRecord(1, "crash app=segv", 1.0, 1.01)],
        expectations=[
            ExpectationResult("dump_stored: boards=eu-1 region=EU", "dump_stored", True, "1 dump in EU", line=20),
            ExpectationResult("app_restarted: within=5s", "app_restarted", passed, "eu-2: 5.000 s", line=21),
        ],
        intervals=[Interval("link-down", 1.5, 6.0, board="eu-2"), Interval("service-fault", 4.0, None, "hang")],
        dumps=[DumpRecord("d1" * 10, "eu-1", "a" * 128, "EU", 11123, "ab" * 16, "segv", analysis=analysis)],
        audit=[{"id": 1, "dumpId": "d1", "reason": "why <not>"}],
    )


def test_episodes_pair_crash_outcome_and_restart():
    eps = crash_episodes(sample().boards[0].events)
    assert [e.outcome_name for e in eps] == ["stored", "skipped:throttled"]
    assert eps[0].to_outcome == pytest.approx(0.4)
    assert eps[0].to_restart == pytest.approx(0.45)  # after_ms wins over host timestamps
    eps2 = crash_episodes(sample().boards[1].events)
    assert eps2[0].outcome_name == "fail:connect" and eps2[0].to_restart == 5.0


def test_html_is_self_contained_and_shows_the_evidence(tmp_path):
    path = write_html([sample(), sample(passed=False)], tmp_path / "out" / "report.html")
    text = path.read_text()
    assert text.startswith("<!doctype html>")
    assert "FAIL" in text and "1 of 2 scenarios passed" in text
    # nothing is fetched: no external scripts, styles or images
    assert not re.search(r"""(src|href)=["']https?:""", text)
    assert "<svg" in text and text.count('class="timeline"') == 2
    assert "demo &lt;story&gt;" in text and "why &lt;not&gt;" in text  # escaped
    assert "11,123 B" in text and ">EU<" in text
    assert "SIGSEGV" in text and "0x000104d4" in text  # crash analysis: signal and PC
    assert "restart 450 ms" in text  # latency drawn on the timeline
    assert "<td class=\"num\">400 ms</td>" in text  # median crash to stored in the summary
    assert "\x1b" not in text and "\x07" not in text


def test_timeline_places_marks_in_time_order():
    svg = timeline_svg(sample())
    ET.fromstring(svg)  # well-formed
    xs = [float(m) for m in re.findall(r'<circle cx="([\d.]+)"', svg)]
    assert len(xs) == 3 and xs[0] < xs[1]  # eu-1 crashes at 1 s and 3 s


def test_junit_counts_failures_and_is_valid_xml(tmp_path):
    res = sample(passed=False)
    res2 = sample()
    res2.name = "broken"
    res2.error = "step 2 failed: \x1b[31mboom"
    path = write_junit([res, res2], tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    assert root.get("tests") == "5" and root.get("failures") == "1" and root.get("errors") == "1"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["demo <story>", "broken"]
    failed = [c for c in suites[0].findall("testcase") if c.find("failure") is not None]
    assert len(failed) == 1 and failed[0].find("failure").get("message") == "eu-2: 5.000 s"
    assert "boom" in suites[1].find("testcase/error").get("message")


def test_results_roundtrip_json(tmp_path):
    save_results([sample()], str(tmp_path / "r.json"))
    (back,) = load_results(str(tmp_path / "r.json"))
    assert back.boards[0].events[1].fields["app"] == "segv"
    assert render_html([back]) .count("<svg") >= 1


def test_clean_text():
    assert clean_text("a\x1b[6n\r\r\nb\x00") == "a\nb"


def _with_analysis(analysis: dict) -> ScenarioResult:
    res = sample()
    res.dumps[0].analysis = analysis
    return res


@pytest.mark.skipif(shutil.which("arm-linux-gnueabihf-gcc") is None, reason="needs gcc-arm-linux-gnueabihf")
def test_crash_analysis_names_the_faulting_function(tmp_path):
    # the load fixtures were made from this source, built the same way (static, -O1, non-PIE)
    exe = tmp_path / "crashapp"
    subprocess.run(["arm-linux-gnueabihf-gcc", "-static", "-O1", "-o", str(exe), str(CORES / "crashapp.c")],
                   check=True)  # fmt: skip
    result = analyze_bytes((CORES / "segv-xs.core.gz").read_bytes(), [tmp_path])
    assert result.signal_name == "SIGSEGV" and result.executable == "crashapp"
    assert result.function is not None and result.function.name == "main"
    assert result.symbols_from == str(exe)
    names = [s.name for s in result.stack_scan]
    assert names and names[-1].startswith("__libc_start"), names  # the scan ends at the C runtime
    text = render_html([_with_analysis(result.to_dict())])
    assert "Probable call chain" in text and "main+0x" in text
    none = analyze_bytes((CORES / "segv-xs.core.gz").read_bytes(), [tmp_path / "empty"])
    assert none.function is None and "no symbols" in none.where()


def test_bench_summary_phases_and_ratios():
    from testbed.scenario.bench import bench_scenario, summarize
    from testbed.scenario.schema import scenario_from_data

    sc = scenario_from_data(bench_scenario(2), "<bench>")
    assert sum(1 for s in sc.steps if s.action == "crash") == 8  # baseline, link_up, throttled, link_down
    events = []
    t = 1.0
    for _phase, outcome, after in (("baseline", "dump-skipped", 60), ("link_up", "upload-ok", 400), ("link_down", "upload-fail", 200)):
        for _ in range(2):
            events.append(ev("crash", t, app="crashapp", sig="c" * 32))
            fields = {"reason": "optout"} if outcome == "dump-skipped" else {"ms": "300"} if outcome == "upload-ok" else {"reason": "connect"}
            events.append(ev(outcome, t + 0.25, sig="c" * 32, **fields))
            events.append(ev("app-restart", t + after / 1000, app="crashapp", after_ms=str(after)))
            t += 1.0
        t += 1.0
    steps = [StepRecord(0, "phase baseline", 0.5, 0.6), StepRecord(1, "phase link_up", 3.5, 3.6),
             StepRecord(2, "phase link_down", 6.5, 6.6)]  # fmt: skip
    result = ScenarioResult("bench", "<bench>", boards=[BoardRecord("b-1", events=events)], steps=steps,
                            expectations=[ExpectationResult("x", "dumps", True)])  # fmt: skip
    out = summarize(result, 2)
    base, up, down = (out["phases"][p] for p in ("baseline", "link_up", "link_down"))
    assert base["crashes"] == up["crashes"] == down["crashes"] == 2
    assert base["crash_to_restart_median"] == 0.06 and up["crash_to_restart_median"] == 0.4
    assert up["crash_to_stored_host_median"] == 0.25 and up["upload_median"] == 0.3
    assert up["restart_ratio_to_baseline"] == round(0.4 / 0.06, 2)
    assert down["outcomes"] == ["fail:connect"] and out["passed"]


def test_an_os_restart_printed_before_its_crash_line_belongs_to_it():
    # a starved host: the OS restarted crashsvc 0.75 s before the reporter printed its crash line,
    # and another app's crash line came in between
    events = [ev("os-restart", 6.43, component="crashsvc", status="134"), ev("crash", 7.18, app="crashsvc"),
              ev("crash", 7.81, app="crashapp"), ev("app-restart", 10.29, app="crashapp", after_ms="3918")]  # fmt: skip
    svc, app = crash_episodes(events)
    assert (svc.app, svc.restart.name, svc.to_restart) == ("crashsvc", "os-restart", 0.0)
    assert (app.app, app.restart.name, app.to_restart) == ("crashapp", "app-restart", 3.918)
