"""Short bounded runs of each load scenario against the real service on loopback, asserting their invariants.

Each test starts its own service (a real uvicorn process, real SQLite, real
fsyncs), claims devices through the public API, runs Locust in its own
processes, and checks the results against the service's own records.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from testbed.load.scenarios import RunOptions, run_scenario

pytestmark = pytest.mark.load


def _run(tmp_path: Path, scenario: str, **kw) -> dict:
    summary = run_scenario(RunOptions(scenario=scenario, out_dir=tmp_path / scenario, progress=lambda m: None, **kw))
    out = Path(summary["output_dir"])
    # every run leaves Locust's CSV and HTML report and our summary
    for name in ("summary.json", "summary.html", "locust.html", "locust_stats.csv", "locust_stats_history.csv"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["scenario"] == scenario
    return summary


def _failed(summary: dict) -> dict:
    return {k: v for k, v in summary["checks"].items() if not v.get("ok")}


def test_sizes_ramp_reports_every_bucket_and_ramps_users(tmp_path):
    s = _run(tmp_path, "sizes", users=12, duration=8)
    assert not _failed(s), _failed(s)
    assert set(s["per_bucket"]) == {"le8k", "8-16k", "16-32k", "32-64k"}
    assert all(b["requests"] > 0 and b["failures"] == 0 for b in s["per_bucket"].values())
    with open(Path(s["output_dir"]) / "locust_stats_history.csv") as fh:
        users = [int(r["User Count"]) for r in csv.DictReader(fh) if r["Name"] == "Aggregated"]
    assert min(u for u in users if u > 0) < 12 and max(users) == 12  # a step ramp, not all at once


def test_throttling_stores_exactly_n_per_signature_across_two_workers(tmp_path):
    s = _run(tmp_path, "throttling", users=60, duration=10, workers=2, throttle_limit=3,
             params={"rotate_seconds": 3.0, "signatures": 3})
    assert not _failed(s), _failed(s)
    t = s["throttling"]
    assert t["throttle_limit"] == 3
    assert t["signatures"] >= 6 and t["signatures_at_exactly_n"] == t["signatures"]
    # exactly N stored per signature is checked on the service above; the 201s the clients
    # counted are a lower bound (a worker's last counters can miss the master's final report,
    # a request in flight at the stop can be stored after its user is gone), never more
    assert 0 < s["counters"]["stored"] <= 3 * t["signatures"]
    assert t["share_skipped_at_intent"] + t["share_skipped_on_device"] > 0.5
    assert t["bytes_saved"] > 0


def test_deadline_no_client_past_5_2_s_and_service_recovers(tmp_path):
    s = _run(tmp_path, "deadline", users=30, duration=32)
    assert not _failed(s), _failed(s)
    d = s["deadline"]
    assert d["max_crash_handling_s"] <= 5.2
    assert d["gave_up"] > 0 and d["time_to_give_up_s"]["min"] >= 4.9
    assert 0.8 <= d["rss_ratio"] <= 1.2
    assert d["connections_left"] == 0


def test_fleet_syncs_on_a_compressed_schedule(tmp_path):
    s = _run(tmp_path, "fleet", users=10, devices=1000, duration=10, params={"sync_period": 5.0})
    assert not _failed(s), _failed(s)
    f = s["fleet"]
    assert f["target_syncs_per_s"] == 200.0
    assert f["devices_synced"] == 1000 and f["failed"] == 0
    assert f["syncs"] >= 0.8 * 2000 and f["sync_latency"]["per_second"] >= 180


def test_durability_zero_acknowledged_uploads_lost_over_three_kills(tmp_path):
    s = _run(tmp_path, "durability", users=16, duration=14, params={"kills": 3})
    assert not _failed(s), _failed(s)
    assert len(s["kills"]) == 3
    d = s["durability"]
    assert d["acknowledged"] > 100
    assert d["missing"] == 0 and d["content_differs"] == 0 and d["half_written_visible"] == 0


def test_bench_ingest_reports_both_targets_and_ratio(tmp_path):
    from testbed.load.bench import run_bench

    s = run_bench(tmp_path / "bench", users=8, duration=3, rounds=1, workers=0, say=lambda m: None)
    for target in ("sink", "durable", "sink_at_half_sink_rate", "durable_at_half_sink_rate"):
        assert s[target]["uploads_per_s"] > 0 and s[target]["failures"] == 0
        assert s[target]["p50_ms"] <= s[target]["p99_ms"]
        assert s[target]["server_cpu_ms_per_upload"] > 0
        assert s[target]["client_cpu_ms_per_upload"] > 0 and s[target]["client_cpu_cores"] > 0
        assert s[target]["bottleneck"]
        assert s[target]["machine_cpu_cores"] >= s[target]["other_cpu_cores"] >= 0
    assert s["ratio_uploads_per_s"] == pytest.approx(s["durable"]["uploads_per_s"] / s["sink"]["uploads_per_s"], abs=0.01)
    html = Path(s["html"]).read_text()
    assert html.count("<svg") == 3 and "<polyline" in html
    assert s["durable_at_half_sink_rate"]["offered_per_s"] == pytest.approx(0.5 * s["sink"]["uploads_per_s"], rel=0.01)
    # both sides' server CPU per upload, their cost ratio and the bottleneck of each, from the same client
    cpu = s["server_cpu_ms_per_upload"]
    assert cpu == {"sink": s["sink"]["server_cpu_ms_per_upload"], "durable": s["durable"]["server_cpu_ms_per_upload"]}
    assert s["cpu_cost_ratio"] == pytest.approx(cpu["durable"] / cpu["sink"], abs=0.01)
    assert set(s["bottleneck"]) == {"sink", "durable"} and all(s["bottleneck"].values())
    assert s["client"]["same_for_both_sides"] and s["client"]["locust_processes"] == 1
    assert isinstance(s["targets"]["cpu_cost_met"], bool)


def docs_locustfile() -> str:
    """The how-to's locustfile in docs/load.md ("Your own locustfile"), as a user copies it."""
    from testbed.paths import REPO_ROOT

    text = (REPO_ROOT / "docs" / "load.md").read_text()
    found = re.search(r"```python\n# mine\.py\n(.*?)```", text, re.S)
    assert found, "docs/load.md has no ```python block starting with '# mine.py'"
    return found.group(1)


def test_own_locustfile_runs_on_the_testbeds_fleet_and_device_users(tmp_path):
    from testbed.load.cores import load_cores

    locustfile = tmp_path / "mine.py"  # outside the repository, as a user's
    locustfile.write_text(docs_locustfile())
    s = _run(tmp_path, "custom", users=4, duration=4, locustfile=locustfile,
             params={"bodies": "1", "crash_interval": "0.1"})
    assert not _failed(s), _failed(s)
    assert s["params"]["bodies"] == 1 and s["params"]["crash_interval"] == 0.1
    smallest = load_cores()[0].bucket
    uploads = {name for name in s["requests"] if name.startswith("upload ")}
    assert uploads == {f"upload {smallest}"}
    assert s["counters"]["stored"] > 0 and s["requests"]["sync"]["requests"] >= 4


FAILING_LOCUSTFILE = '''
from testbed.load.users import MixDevice


class CuriousDevice(MixDevice):
    """A device of the mix that first asks for a path the service does not have (a 404: a failed request)."""

    def on_start(self):
        self.client.get("/v2/no-such-thing", name="wrong path")
        super().on_start()
'''


def test_load_run_exits_1_and_names_the_failed_check_when_requests_fail(tmp_path):
    """`testbed load run` as a user runs it, with a locustfile whose users make requests that fail."""
    from click.testing import CliRunner

    from testbed.cli import main

    locustfile = tmp_path / "curious.py"
    locustfile.write_text(FAILING_LOCUSTFILE)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["load", "run", "custom", "--locustfile", str(locustfile), "--users", "2",
                                       "--duration", "3", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "custom: FAILED 1 of 2 checks:" in result.output
    assert re.search(r'no_failed_requests: failed \{"wrong path": [1-9]', result.output), result.output
    assert re.search(r"^FAIL no_failed_requests: failed", result.output, re.M)  # the table's line too
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is False and summary["requests"]["GET wrong path"]["failures"] > 0
    assert summary["checks"]["locust_ran"]["ok"]  # the run itself went fine: the check failed, not the harness
    assert result.output.strip().splitlines()[-1] == f"report: {out.resolve() / 'summary.html'}"


def test_ctrl_c_stops_locust_keeps_its_figures_and_exits_130(tmp_path):
    """Ctrl-C in the terminal of `testbed load run` (SIGINT to its process group), as with Locust itself:
    the users stop, the figures so far are summarised and printed, nothing is left running."""
    import os
    import queue
    import signal
    import subprocess
    import sys
    import threading

    from testbed.deadline import Deadline

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "load", "run", "throttling", "--users", "4",
                             "--duration", "60", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    err: list[str] = []

    def read_stderr() -> None:
        for line in proc.stderr:
            err.append(line)
            lines.put(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = Deadline(60)
        while True:  # Locust is running once a progress line with requests shows
            line = lines.get(timeout=deadline.remaining_or(60))
            if "elapsed" in line and " 0 requests" not in line:
                break
        os.killpg(proc.pid, signal.SIGINT)
        stdout = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    reader.join(timeout=10)
    text = "".join(err)
    assert proc.returncode == 130, text + stdout
    assert "Ctrl-C: stopping Locust" in text and "interrupted (Ctrl-C) after" in text, text
    assert "Traceback" not in text and "Aborted!" not in text, text
    assert "request" in stdout and "not run (stopped by Ctrl-C" in stdout, stdout  # the table, with its figures
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["wall_s"] < 50
    assert sum(r["requests"] for r in summary["requests"].values()) > 0
    assert summary["checks"]["scenario_checks"]["not_run"].startswith("stopped by Ctrl-C")
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of the run still running: {left}"


def test_the_users_own_p99_limit_fails_the_run_by_name(tmp_path):
    from click.testing import CliRunner

    from testbed.cli import main

    out = tmp_path / "out"
    # no request answers within a microsecond; none fails
    result = CliRunner().invoke(main, ["load", "run", "throttling", "--users", "3", "--duration", "3",
                                       "--check-p99-ms", "0.001", "--check-failure-ratio", "0", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "FAILED 1 of" in result.output and re.search(r"p99_within_limit: p99_ms [0-9.]+, limit_ms 0.001",
                                                         result.output), result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checks"]["failure_ratio_within_limit"]["ok"]
    assert summary["checks"]["p99_within_limit"]["p99_ms"] == summary["requests_total"]["p99_ms"] > 0
    assert summary["requests_total"]["requests"] == sum(r["requests"] for r in summary["requests"].values())


def test_locust_and_the_service_stop_when_load_run_is_killed(tmp_path):
    """Locust runs in a session of its own (Ctrl-C reaches it only through testbed): a SIGKILL of
    `testbed load run` alone must still leave nothing running."""
    import os
    import signal
    import subprocess
    import sys

    from testbed.deadline import Deadline

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "load", "run", "throttling", "--users", "3",
                             "-t", "60", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in proc.stderr:  # bounded: the run's own hard limit, and the wait below
            if "elapsed" in line and " 0 requests" not in line:
                break
        running = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
        assert len(running) >= 2, running  # Locust and the service
        proc.kill()  # testbed alone, not its group
        proc.wait(timeout=10)
        gone = Deadline(30)
        while running and not gone.expired:
            running = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
            gone.sleep(0.2)
        assert running == [], f"still running after testbed was killed: {running}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for pid in subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split():
            os.kill(int(pid), signal.SIGKILL)
