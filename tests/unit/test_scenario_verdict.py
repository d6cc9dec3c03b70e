"""The third verdict: a timing expectation broken on a board the host starved is INCONCLUSIVE."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO

from testbed.scenario.cli import EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS, exit_code
from testbed.scenario.evidence import Evidence
from testbed.scenario.junit import junit_tree
from testbed.scenario.progress import Progress
from testbed.scenario.results import BoardEvent, ExpectationResult, ScenarioResult, Verdict
from testbed.scenario.runner import RunOptions, ScenarioRun
from testbed.scenario.schema import scenario_from_data
from testbed.scenario.verdict import STARVED_SHARE, CpuFigures, judge

A = "a" * 128


def _exp(kind: str, **args):
    data = {"groups": {"P/G": {}}, "fleet": {"b": {"boards": 1, "group": "P/G"}}, "steps": [{"sync": "all"}],
            "expect": [{kind: args}]}  # fmt: skip
    return scenario_from_data(data, "<t>").expect[0]


def _late_restart() -> Evidence:
    events = [BoardEvent("crash", {"app": "crashapp"}, 1.0), BoardEvent("upload-fail", {"reason": "timeout"}, 5.9),
              BoardEvent("app-restart", {"app": "crashapp", "after_ms": "6300"}, 7.3)]  # fmt: skip
    return Evidence(device_ids={"b-1": A}, events={"b-1": events}, dumps=[], now=10.0)


def _cpu(share: float | None):
    def lookup(board: str, start: float, end: float) -> CpuFigures | None:
        return None if share is None else CpuFigures(board, start, end, 1.0, share * (end - start), end - start)

    return lookup


def test_a_late_restart_on_a_starved_board_is_inconclusive_with_the_figures():
    exp = _exp("app_restarted", within="5s")
    finding = exp.check.evaluate(_late_restart())
    assert not finding.passed and finding.timing_only and [(x.board, x.start, x.end) for x in finding.late] == [("b-1", 1.0, 7.3)]
    judged = judge(exp.check, finding, _cpu(0.5), 10.0)
    assert judged.verdict == Verdict.INCONCLUSIVE
    assert judged.detail.startswith("INCONCLUSIVE (host starved: board b-7 waited".replace("b-7", "b-1"))
    assert "board b-1 waited 3.1 s of its 6.3 s episode for a CPU" in judged.detail
    assert "restarted 6.300s after its crash" in judged.detail  # what was seen stays in the detail
    assert judged.figures[0].to_dict()["starved"] is True


def test_a_late_store_is_timing_another_outcome_is_not():
    ev = _late_restart()
    ev.events["b-1"] += [BoardEvent("crash", {"app": "crashapp"}, 8.0), BoardEvent("upload-ok", {}, 11.5),
                         BoardEvent("app-restart", {"app": "crashapp"}, 11.6)]  # fmt: skip
    exp = _exp("stored_within", within="3s")
    finding = exp.check.evaluate(ev)
    assert "b-1: crashapp stored 3.500s after its crash (limit 3s)" in finding.detail
    assert "crash of crashapp at 1.00s was not stored (fail:timeout)" in finding.detail
    assert judge(exp.check, finding, _cpu(0.9), 12.0).verdict == Verdict.FAIL  # the failed upload is functional
    ev.events["b-1"] = ev.events["b-1"][3:]
    judged = judge(exp.check, exp.check.evaluate(ev), _cpu(0.9), 12.0)
    assert judged.verdict == Verdict.INCONCLUSIVE and "waited 3.1 s of its 3.5 s episode" in judged.detail
    assert judge(exp.check, _exp("stored_within", within="4s").check.evaluate(ev), _cpu(0.9), 12.0).verdict == Verdict.PASS


def test_a_late_restart_the_host_did_not_starve_fails():
    exp = _exp("app_restarted", within="5s")
    judged = judge(exp.check, exp.check.evaluate(_late_restart()), _cpu(STARVED_SHARE / 2), 10.0)
    assert judged.verdict == Verdict.FAIL and "the host did not starve it" in judged.detail and "(12%)" in judged.detail


def test_without_a_measurement_a_timing_failure_stays_a_failure_and_says_so():
    exp = _exp("app_restarted", within="5s")
    judged = judge(exp.check, exp.check.evaluate(_late_restart()), _cpu(None), 10.0)
    assert judged.verdict == Verdict.FAIL and "host starvation not measured on b-1" in judged.detail


def test_functional_expectations_are_never_softened():
    ev = _late_restart()
    for exp in (_exp("upload", result="ok"), _exp("dump_stored"), _exp("events", event="upload-ok")):
        judged = judge(exp.check, exp.check.evaluate(ev), _cpu(0.9), 10.0)
        assert judged.verdict == Verdict.FAIL
    # a timing expectation that also broke a functional promise (no completed upload) fails
    exp = _exp("app_restarted", within="5s", after_upload=True)
    judged = judge(exp.check, exp.check.evaluate(ev), _cpu(0.9), 10.0)
    assert judged.verdict == Verdict.FAIL and "had no completed upload" in judged.detail


def _result(*verdicts: Verdict, error: str = "") -> ScenarioResult:
    exps = [ExpectationResult(f"e{i}", "app_restarted", v == Verdict.PASS, "d", verdict=v) for i, v in enumerate(verdicts)]
    return ScenarioResult("s", "s.yaml", expectations=exps, error=error)


def test_run_verdicts_and_exit_codes():
    ok, starved, failed = _result(Verdict.PASS), _result(Verdict.PASS, Verdict.INCONCLUSIVE), _result(Verdict.INCONCLUSIVE, Verdict.FAIL)
    assert (ok.verdict, starved.verdict, failed.verdict) == ("PASS", "INCONCLUSIVE", "FAIL")
    assert not starved.passed and starved.inconclusive and not starved.failures
    assert exit_code([ok]) == EXIT_PASS == 0 and exit_code([ok, starved]) == EXIT_INCONCLUSIVE == 3
    assert exit_code([starved, failed]) == EXIT_FAIL == 1 and exit_code([_result(Verdict.PASS, error="x")]) == EXIT_FAIL
    root = junit_tree([ok, starved, failed]).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("5", "1", "2")
    skipped = root.findall(".//testcase/skipped")
    assert skipped and skipped[0].get("message") == "d"


STORM = {
    "name": "storm",
    "groups": {"P/G": {"allow_crash_dumps": True, "boundary": "EU"}},
    "fleet": {"b": {"boards": 2, "group": "P/G", "apps": ["crashapp"]}},
    "steps": [{"sync": "all"}, {"crash": "all"}, {"wait": {"boards": "all", "event": "app-restart", "timeout": "5s"}}],
    "expect": [{"app_restarted": {"within": "100ms"}}, {"dump_stored": {"count": 1}}],
}  # fmt: skip


def _storm(fake_factory, tmp_path, starved: dict[str, float]):
    factory = fake_factory(starved=starved, restart_s=0.3)
    out = StringIO()
    runner = ScenarioRun(scenario_from_data(STORM, "<storm>"), RunOptions(
        parallel=2, workdir=tmp_path, board_factory=factory, progress=Progress(out, color=False)))  # fmt: skip
    res = runner.run()
    runner.progress.scenario_end(res)
    return res, out.getvalue(), factory


def test_a_starved_storm_is_inconclusive_and_every_episode_and_step_carries_the_figures(tmp_path, fake_factory):
    res, progress, factory = _storm(fake_factory, tmp_path, {"b-1": 0.6, "b-2": 0.4})
    assert not res.error, res.error
    restarted, stored = res.expectations
    assert restarted.verdict == Verdict.INCONCLUSIVE and restarted.timing
    assert "INCONCLUSIVE (host starved: board b-1 waited" in restarted.detail and "board b-2 waited" in restarted.detail
    assert {f["board"] for f in restarted.host_cpu} == {"b-1", "b-2"}
    assert stored.verdict == Verdict.PASS and res.verdict == "INCONCLUSIVE"
    assert "INCONCLUSIVE app_restarted: within=100ms" in progress and "1 inconclusive" in progress
    assert "== storm: INCONCLUSIVE" in progress
    assert len(res.episodes) == 2 and all(e.host_cpu and e.host_cpu["starved"] for e in res.episodes)
    assert res.host_cpu_boards == ["b-1", "b-2"]
    assert all(set(s.host_cpu) == {"b-1", "b-2"} for s in res.steps)


def test_one_fed_board_makes_a_late_storm_a_failure(tmp_path, fake_factory):
    res, _, _ = _storm(fake_factory, tmp_path, {"b-1": 0.6, "b-2": 0.1})
    restarted = res.expectations[0]
    assert restarted.verdict == Verdict.FAIL and res.verdict == "FAIL" and "the host did not starve it" in restarted.detail


def test_unmeasured_boards_keep_pass_and_fail(tmp_path, fake_factory):
    res, _, _ = _storm(fake_factory, tmp_path, {})
    assert res.expectations[0].verdict == Verdict.FAIL and "not measured" in res.expectations[0].detail
    assert res.host_cpu_boards == [] and all(e.host_cpu is None for e in res.episodes)


def test_pytest_reports_an_inconclusive_scenario_as_skipped(tmp_path):
    test = tmp_path / "test_starved.py"
    test.write_text(
        "from testbed.scenario.api import result_ok\n"
        "from testbed.scenario.results import ExpectationResult, ScenarioResult\n"
        "def test_storm():\n"
        "    e = ExpectationResult('app_restarted: within=5s', 'app_restarted', False, 'INCONCLUSIVE (host starved: "
        "board b-7 waited 2.4 s of its 5.3 s episode for a CPU)', verdict='INCONCLUSIVE')\n"
        "    result_ok(ScenarioResult('storm', 's.yaml', expectations=[e]))\n"
        "def test_failed():\n"
        "    e = ExpectationResult('dumps', 'dumps', False, 'none stored')\n"
        "    result_ok(ScenarioResult('bad', 's.yaml', expectations=[e]))\n"
    )  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "pytest", str(test), "-rs", "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert "1 failed, 1 skipped" in proc.stdout, proc.stdout
    assert "INCONCLUSIVE" in proc.stdout and "board b-7 waited 2.4 s of its 5.3 s episode for a CPU" in proc.stdout


def test_the_report_and_the_results_json_carry_the_third_verdict(tmp_path, fake_factory):
    from testbed.scenario.report import render_html
    from testbed.scenario.results import load_results, save_results

    res, _, _ = _storm(fake_factory, tmp_path, {"b-1": 0.6, "b-2": 0.4})
    save_results([res], str(tmp_path / "r.json"))
    (back,) = load_results(str(tmp_path / "r.json"))
    assert back.verdict == Verdict.INCONCLUSIVE and back.expectations[0].verdict is Verdict.INCONCLUSIVE
    assert back.episodes[0].host_cpu["starved"] and back.steps[1].host_cpu["b-1"]["wait_s"] > 0
    html = render_html([back])
    assert '<span class="badge inconclusive">INCONCLUSIVE</span>' in html
    assert "1 inconclusive (a board waited more than 25% of an episode for a host CPU" in html
    assert "host CPU starvation measured on b-1, b-2" in html and "(60%)" in html
