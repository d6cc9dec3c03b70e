"""Scenarios written in Python, the runner's verdicts and reports, and the CLI's exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from testbed.scenario.api import ScenarioBuilder, describe_failures, result_ok
from testbed.scenario.schema import ScenarioError

pytestmark = pytest.mark.e2e


def eu_upload(name: str = "py-eu-upload") -> ScenarioBuilder:
    return (
        ScenarioBuilder(name, "an EU board crashes twice; the second time the service is slow")
        .group("DW100/Field", allow_crash_dumps=True, boundary="EU")
        .fleet("eu", boards=1, group="DW100/Field")
        .sync("all")
        .crash("eu-1", app="crashapp", mode="segv")
        .wait("eu-1", "upload-ok", timeout="10s")
        .service_fault(mode="delay", delay="1s")
        .crash("eu-1", app="crashapp", mode="abort")
        .wait("eu-1", "app-restart", timeout="10s")
        .service_clear()
    )


def test_python_scenario_passes_with_evidence(scenario_runner):
    sc = eu_upload().expect("dump_stored", boards="eu-1", region="EU", count=2).expect(
        "app_restarted", app="crashapp", within="4s", after_upload=True
    ).build()
    result = result_ok(scenario_runner(sc))
    assert [d.region for d in result.dumps] == ["EU", "EU"]
    assert all(d.analysis and d.analysis["signal_name"] in ("SIGSEGV", "SIGABRT") for d in result.dumps)
    # the firmware's build carries symbols: the report names the faulting function
    assert any(d.analysis["function"] for d in result.dumps), [d.analysis for d in result.dumps]
    kinds = {i.kind for i in result.intervals}
    assert "service-fault" in kinds


def test_a_wrong_expectation_fails_and_says_why(scenario_runner):
    sc = eu_upload("py-wrong-region").expect("dump_stored", boards="eu-1", region="US").build()
    result = scenario_runner(sc)
    assert not result.passed and not result.error
    (failure,) = result.failures
    assert "eu-1 has 0 dump(s) in region US" in failure.detail and "EU" in failure.detail
    assert "py-wrong-region" in describe_failures(result)


def test_builder_errors_name_the_python_line():
    builder = ScenarioBuilder("bad").group("P/G").fleet("f", group="P/G")
    line = sys._getframe().f_lineno + 1
    builder.crash("f-1", app="nosuchapp")
    with pytest.raises(ScenarioError) as info:
        builder.build()
    # every mistake at once: the bad app, and no expectation at all (at the builder's own line)
    (app,) = [e for e in info.value.errors if e.field == "steps[0].crash.app"]
    assert app.file == __file__ and app.line == line
    assert {e.field for e in info.value.errors} == {"steps[0].crash.app", "expect"}


def _testbed(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], capture_output=True, text=True,
                          timeout=300, **kwargs)  # fmt: skip


def test_cli_exit_code_junit_and_report(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(eu_upload("cli-good").expect("dumps", count=2).to_yaml())
    bad = tmp_path / "bad.yaml"
    bad.write_text(eu_upload("cli-bad").expect("dumps", region="US", min=1).to_yaml())
    junit, report = tmp_path / "junit.xml", tmp_path / "report.html"
    proc = _testbed("scenario", "run", str(good), str(bad), "--junit", str(junit), "--report", str(report))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "PASS cli-good" in proc.stdout and "FAIL cli-bad" in proc.stdout
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "1" and root.get("tests") == "2"
    html = report.read_text()
    assert "<svg" in html and "cli-good" in html and "cli-bad" in html
    proc = _testbed("scenario", "run", str(good), "--report", str(tmp_path / "r2.html"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _children_qemu(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "qemu-system-arm"], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_tears_down_and_writes_a_partial_report(tmp_path, signum):
    sc = tmp_path / "long.yaml"
    sc.write_text(eu_upload("ctrl-c").step("idle", for_="120s").expect("dumps", count=2).to_yaml())
    report = tmp_path / "partial.html"
    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "scenario", "run", str(sc), "--report", str(report),
                             "--workdir", str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    seen = ""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "idle" in line and "step" in line:
            break
        assert line, seen
    qemus = _children_qemu(proc.pid)
    assert qemus, "the board should be running during the idle step"
    service_pids = subprocess.run(["pgrep", "-f", f"testbed.service run --data-dir {work}"], capture_output=True,
                                  text=True).stdout.split()  # fmt: skip
    assert service_pids, "the service should be running during the idle step"
    proc.send_signal(signum)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, seen + rest
    assert report.exists() and "interrupted" in report.read_text()
    for pid in [*qemus, *map(int, service_pids)]:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_reboot_pause_and_move(scenario_runner):
    sc = (
        ScenarioBuilder("py-reboot-pause-move", "board faults and a device moved between groups")
        .group("DW100/EU", allow_crash_dumps=True, boundary="EU")
        .group("DW100/US", allow_crash_dumps=True)
        .fleet("b", boards=1, group="DW100/EU")
        .sync("all")
        .crash("b-1")
        .pause("b-1")
        .idle(for_="1s")
        .resume("b-1")
        .wait("b-1", "upload-ok", timeout="15s")
        .reboot("b-1")
        .sync("b-1")
        .move("b-1", group="DW100/US")
        .sync("b-1")
        .crash("b-1", id="moved")
        .wait("b-1", "upload-ok", timeout="15s")
        .expect("dump_stored", boards="b-1", region="EU", count=1)
        .expect("dump_stored", boards="b-1", region="US", count=1)
        .expect("events", boards="b-1", event="boot-ready", min=1)
        .build()
    )
    result = result_ok(scenario_runner(sc))
    kinds = [i.kind for i in result.intervals]
    assert "paused" in kinds and "reboot" in kinds
    paused = next(i for i in result.intervals if i.kind == "paused")
    assert paused.end is not None and paused.end - paused.start >= 1.0
