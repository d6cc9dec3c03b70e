"""Unit tests of the load glue: fixtures, buckets, percentiles, shapes, loopback checks, the board HTTP client."""

from __future__ import annotations

import gzip
import json
import re
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from testbed.load import page, report
from testbed.load.cores import BUCKETS, bucket_of, check_core_gzip, load_cores, variant_signature
from testbed.load.provision import check_loopback_url
from testbed.load.schedule import stage_at, step_users


def test_fixtures_are_gzipped_arm_cores_spanning_the_buckets():
    cores = load_cores()
    assert len(cores) >= 4
    for core in cores:
        raw = gzip.decompress(core.body)
        e_type, e_machine = struct.unpack_from("<HH", raw, 16)
        assert (raw[:4], e_type, e_machine) == (b"\x7fELF", 4, 40)
        assert len(core.signature) == 32 and int(core.signature, 16) >= 0
        assert 4 * 1024 <= core.size <= 64 * 1024  # a few KiB to tens of KiB, as boards make
    assert len({c.bucket for c in cores}) >= 4


def test_bucket_edges():
    assert bucket_of(0) == "le8k"
    assert bucket_of(8 * 1024 - 1) == "le8k"
    assert bucket_of(8 * 1024) == "8-16k"
    assert bucket_of(64 * 1024) == BUCKETS[-1][0]
    with pytest.raises(ValueError):
        bucket_of(-1)


def test_check_core_gzip_rejects_non_cores():
    with pytest.raises(ValueError, match="gzip"):
        check_core_gzip(b"not gzip")
    with pytest.raises(ValueError, match="ELF"):
        check_core_gzip(gzip.compress(b"hello world" * 10))
    exe = bytearray(gzip.decompress(load_cores()[0].body))
    exe[16:18] = struct.pack("<H", 2)  # ET_EXEC
    with pytest.raises(ValueError, match="ET_CORE"):
        check_core_gzip(gzip.compress(bytes(exe)))


def test_variant_signatures_are_distinct_and_well_formed():
    core = load_cores()[0]
    sigs = {variant_signature(core, k) for k in range(50)}
    assert len(sigs) == 50
    assert variant_signature(core, 0) == core.signature
    assert all(len(s) == 32 for s in sigs)


def test_percentile_of_locust_histogram():
    hist = {"10": 50, "20": 40, "100": 9, "900": 1}
    assert report.percentile(hist, 0.5) == 10
    assert report.percentile(hist, 0.9) == 20
    assert report.percentile(hist, 0.99) == 100
    assert report.percentile(hist, 1.0) == 900
    assert report.percentile({}, 0.5) is None
    assert report.exact_percentile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_step_ramp_shape():
    assert [step_users(40, 4, k) for k in range(4)] == [10, 20, 30, 40]
    assert step_users(3, 4, 0) == 1
    assert [stage_at(t, 10.0, 4) for t in (0, 9.9, 10, 35, 99)] == [0, 0, 1, 3, 3]


@pytest.mark.parametrize("url", ["http://10.0.0.1:80", "http://example.com:80", "https://127.0.0.1:1",
                                 "http://127.0.0.1:80/path", "http://192.168.1.2"])
def test_non_loopback_targets_are_refused(url):
    with pytest.raises(ValueError):
        check_loopback_url(url)


def test_loopback_targets_are_accepted():
    assert check_loopback_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert check_loopback_url("http://127.1.2.3:1") == "http://127.1.2.3:1"


def test_cli_refuses_a_remote_service_before_doing_anything(tmp_path):
    from testbed.load.cli import load

    result = CliRunner().invoke(load, ["run", "sizes", "--service-url", "http://10.1.2.3:8443",
                                       "--control-token", "x", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "loopback" in result.output


def test_cli_refuses_service_url_for_durability(tmp_path):
    from testbed.load.cli import load

    result = CliRunner().invoke(load, ["run", "durability", "--service-url", "http://127.0.0.1:9",
                                       "--control-token", "x", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "starts its own" in result.output


class _Server:
    """A loopback TCP server that accepts and then misbehaves: 'hang' or 'drip' one byte a while."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            if self.mode == "drip":
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
        for i in range(len(data)):
            if self.stop.wait(0.05):
                return
            try:
                conn.sendall(data[i : i + 1])
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("mode", ["hang", "drip"])
def test_board_http_gives_up_at_the_total_deadline(mode):
    from testbed.contract.device_api import SYNC_PATH
    from testbed.deadline import Deadline
    from testbed.load.boardhttp import BoardHttp, DeadlineExceeded

    server = _Server(mode)
    try:
        client = BoardHttp(f"http://127.0.0.1:{server.port}")
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.request("POST", SYNC_PATH, {}, b"{}", Deadline(1.0, start=start))
        took = time.monotonic() - start
        # a total deadline: a dripping server (a byte every 50 ms) must not extend it
        assert 0.95 <= took <= 1.2
    finally:
        server.close()


def test_unknown_scenario_parameters_are_refused(tmp_path):
    from testbed.load.cli import load

    result = CliRunner().invoke(load, ["run", "fleet", "--param", "sync_perod=30", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "sync_perod" in result.output and "sync_period" in result.output
    assert "sync_perod (did you mean sync_period?)" in result.output


def test_bench_bottleneck_verdicts():
    from testbed.load.bench import bottleneck

    # one Locust process near one core: the client limits, whatever the server does
    assert bottleneck(0.95, 0.5, locust_processes=1, cpu_count=2) == "client CPU"
    # two Locust workers at 0.95 cores together are not saturated; with the server they fill 2 cores
    assert bottleneck(0.95, 0.9, locust_processes=2, cpu_count=2) == "machine CPU (client and server together)"
    assert bottleneck(0.3, 0.95, locust_processes=1, cpu_count=4) == "server CPU"
    assert bottleneck(0.2, 0.2, locust_processes=1, cpu_count=2).startswith("no CPU saturated")
    # neither side near a core, but the machine full: other processes took it, and the verdict says so
    assert bottleneck(0.2, 0.2, locust_processes=1, cpu_count=2, machine_cores=1.9).startswith("machine CPU (other")
    assert bottleneck(0.2, 0.2, locust_processes=1, cpu_count=2, machine_cores=0.5).startswith("no CPU saturated")


def test_a_bad_parameter_value_fails_at_once_naming_it_and_its_type(tmp_path):
    from testbed.load.cli import load

    out = tmp_path / "o"
    result = CliRunner().invoke(load, ["run", "sizes", "--param", "crash_interval=fast", "--out", str(out)])
    assert result.exit_code != 0
    assert "crash_interval='fast'" in result.output and "a number" in result.output
    assert not out.exists()  # nothing started: no service, no output directory


def test_parameters_are_typed_and_bounded():
    from testbed.load.params import ParamError
    from testbed.load.scenarios import get

    throttling = get("throttling")
    p = throttling.resolve_params({"signatures": "4", "intent": "false", "rotate_seconds": 2}, 10, 10.0, 1)
    assert p["signatures"] == 4 and p["intent"] is False and p["rotate_seconds"] == 2.0 and p["rounds"] == 5
    assert len(p["run_id"]) == 12
    for bad in ({"signatures": "1.5"}, {"signatures": 0}, {"intent": "yes"}, {"rotate_seconds": "[1]"}):
        with pytest.raises(ParamError, match=next(iter(bad))):
            throttling.resolve_params(bad, 10, 10.0, 1)
    with pytest.raises(ParamError, match="sync_period"):
        get("fleet").resolve_params({}, 10, 5.0, 1)  # shorter than one sync period


def test_every_scenario_is_registered_with_its_locustfile():
    from testbed.load.runner import SCENARIO_DIR
    from testbed.load.scenarios import SCENARIOS

    assert set(SCENARIOS) == {"sizes", "throttling", "deadline", "fleet", "durability", "custom"}
    for scenario in SCENARIOS.values():
        assert scenario.name == "custom" or (SCENARIO_DIR / scenario.locustfile).is_file()
        scenario.resolve_params({}, scenario.users, scenario.duration, 1)  # the defaults are valid


def test_custom_needs_a_locustfile_before_anything_starts(tmp_path):
    from testbed.load.cli import load

    out = tmp_path / "o"
    result = CliRunner().invoke(load, ["run", "custom", "--out", str(out)])
    assert result.exit_code != 0 and "--locustfile" in result.output and not out.exists()
    result = CliRunner().invoke(load, ["run", "custom", "--locustfile", str(tmp_path / "none.py"), "--out", str(out)])
    assert result.exit_code != 0 and "no such file" in result.output and not out.exists()


def test_stats_table_shows_percentiles_stored_and_skip_shares():
    from testbed.load.table import stats_table

    summary = {
        "requests": {"intent": {"requests": 10, "failures": 0, "per_second": 2.5, "p50_ms": 4, "p99_ms": 9},
                     "upload le8k": {"requests": 4, "failures": 1, "per_second": 1, "p50_ms": 60, "p99_ms": None}},
        "counters": {"crashes": 20, "stored": 3, "skipped_intent": 6, "skipped_local": 5},
        "checks": {"locust_ran": {"ok": True}, "no_failed_uploads": {"ok": False}},
    }
    text = stats_table(summary)
    lines = text.splitlines()
    assert lines[0].split() == ["request", "count", "failed", "per", "s", "p50", "ms", "p99", "ms"]
    assert lines[2].split() == ["intent", "10", "0", "2.5", "4", "9"]
    assert lines[3].split() == ["upload", "le8k", "4", "1", "1", "60", "-"]
    assert "stored (201s seen by devices): 3" in text
    assert "skipped at intent: 6 (30.0% of crashes)" in text and "skipped on the device: 5 (25.0% of crashes)" in text
    assert "FAIL no_failed_uploads" in text and "ok   locust_ran" in text


def test_summary_page_labels_the_time_axis_and_tables_checks_and_requests(tmp_path):
    chart = page.svg_chart("Users", "users", {"users": [(0.0, 1.0), (10.0, 4.0), (20.0, 4.0)]})
    assert page.TIME_AXIS in chart
    assert all(f">{x}</text>" in chart for x in ("0", "5", "10", "15", "20"))  # ticks, not only the end
    summary = {"checks": {"exactly_n": {"ok": False, "wrong": 2}, "locust_ran": {"ok": True}},
               "requests": {"sync": {"requests": 3, "failures": 0, "per_second": 1.5, "p50_ms": 4, "p99_ms": 7}}}
    out = tmp_path / "s.html"
    page.write_html(out, "t", summary, [chart], {})
    text = out.read_text()
    assert "<td>exactly n</td>" in text and "FAIL" in text and "wrong: 2" in text
    assert "<tr><td>sync</td><td class='n'>3</td><td class='n'>0</td><td class='n'>1.5</td><td class='n'>4</td>" in text
    assert "<details>" in text  # the raw JSON is still there, folded


def test_every_chart_titles_both_axes_with_units_and_its_legend_does_not_overlap():
    labels = [f"crash {phase} gave-up" for phase in ("baseline", "hang", "delay", "drip", "recovery", "after")]
    chart = page.svg_chart("Latency", "p99 response time (ms)",
                           {name: [(0.0, 1.0), (33.0, 480.0 + i)] for i, name in enumerate(labels)})
    assert "rotate(-90)" in chart and ">p99 response time (ms)</text>" in chart  # the value axis, with its unit
    assert f">{page.TIME_AXIS}</text>" in chart
    assert all(f">{t}</text>" in chart for t in ("0", "200", "400", "600"))  # round value ticks
    # the legend: one entry per line, each starting right of the previous one's end on its row
    entries = re.findall(r'<text x="([0-9.]+)" y="([0-9.]+)" font-size="11" font-family="sans-serif">([^<]+)</text>',
                         chart)
    legend = [(float(x), float(y), name) for x, y, name in entries if name in labels]
    assert [n for *_, n in legend] == labels
    for (x0, y0, n0), (x1, y1, _) in zip(legend, legend[1:], strict=False):
        assert y1 > y0 or x1 >= x0 + len(n0) * 6.4  # a new row, or after the previous label's text
    height = float(re.search(r'height="([0-9.]+)"', chart).group(1))
    assert max(y for _, y, _ in legend) < height  # inside the picture
    assert page.nice_ticks(0.7) == [0, 0.2, 0.4, 0.6, 0.8] and page.nice_ticks(33) == [0, 10, 20, 30, 40]


def test_summary_page_shows_every_section_as_tables_a_person_reads(tmp_path):
    summary = {
        "scenario": "deadline", "users": 30, "devices": 30, "duration_s": 39.0, "workers": 0, "wall_s": 41.2,
        "params": {"deadline": 5.0, "intent": True},
        "counters": {"crashes": 1204.0, "stored_bytes": 3_000_000.0},
        "requests": {},
        "deadline": {"max_crash_handling_s": 5.049, "rss_ratio": 1.036, "service_rss_after": 41_312_256,
                     "share_skipped": 0.25,
                     "time_to_give_up_s": {"p50": 5.001, "p99": 5.033, "histogram_0_1s": {"5.0-5.1": 40}},
                     "phases": {"hang": {"crashes": 60, "gave_up": 60, "p99_s": 5.03},
                                "recovery": {"crashes": 588, "gave_up": 0, "p99_s": 0.3}}},
        "kills": [{"at_s": 5.0, "restart_s": 3.0}, {"at_s": 10.0, "restart_s": 1.1}],
        "checks": {"no_leaked_connections": {"ok": True, "left": 0}},
    }
    text = " ".join(page.summary_tables(summary))
    plain = re.sub(r"<[^>]+>", "|", text)
    assert "{" not in plain  # no JSON left in the tables
    assert "|duration (s)||39|" in plain and "|wall time (s)||41.2|" in plain
    assert "|max crash handling (s)||5.049|" in plain
    assert "|service rss after||41,312,256 (39.4 MiB)|" in plain and "|share skipped||25.0%|" in plain
    assert "|stored bytes||3,000,000 (2.9 MiB)|" in plain and "|intent||yes|" in plain
    # a table of rows: one row per phase, a column per figure
    assert "|p99 (s)|" in plain and "|hang||60||60||5.03|" in plain
    assert "Service kills" in plain and "|restart (s)|" in plain
    assert "|p50||5.001|" in plain and "|5.0-5.1||40|" in plain  # dicts inside a cell, at any depth


def test_progress_line_reads_locusts_live_history(tmp_path):
    from testbed.load.runner import LocustPlan, _progress_line, progress_interval

    plan = LocustPlan(locustfile=tmp_path / "f.py", host="http://127.0.0.1:1", out_dir=tmp_path,
                      config_path=tmp_path / "c.json")
    assert _progress_line(plan, 1.0) is None  # nothing written yet
    head = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,"
            "100%,Total Request Count,Total Failure Count")
    rows = ["1,0,,Aggregated,0.000000,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0",
            "2,40,POST,sync,12.5,0,3,4,5,6,7,8,9,10,11,12,13,500,1",
            "2,40,,Aggregated,41.0,0.5,3,4,5,6,7,8,9,120,130,140,150,1234,3"]
    (tmp_path / "locust_stats_history.csv").write_text(head + "\n" + rows[0] + "\n")
    assert _progress_line(plan, 3.0) == "elapsed 3 s: 0 users, 0 requests (0.0/s now), 0 failures, p99 -"
    (tmp_path / "locust_stats_history.csv").write_text("\n".join([head, *rows]) + "\n")
    assert _progress_line(plan, 30.4) == ("elapsed 30 s: 40 users, 1,234 requests (41.0/s now), 3 failures, "
                                          "p99 120 ms")
    assert progress_interval(4) == 2 and progress_interval(20) == 4 and progress_interval(600) == 10


def test_load_run_exits_1_naming_each_failed_check_with_its_figures(tmp_path, monkeypatch):
    """The CLI's verdict from the summary (the run itself is tested for real in test_scenarios.py)."""
    from testbed.load import cli

    summary = {"scenario": "sizes", "output_dir": str(tmp_path), "requests": {}, "counters": {},
               "checks": {"locust_ran": {"ok": True, "exit_code": 0},
                          "no_failed_uploads": {"ok": False, "failed": {"upload le8k": 3}}}}
    monkeypatch.setattr(cli, "run_scenario", lambda opts: summary)
    (tmp_path / "summary.html").write_text("")
    result = CliRunner().invoke(cli.load, ["run", "sizes", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "FAILED 1 of 2 checks" in result.output
    assert 'no_failed_uploads: failed {"upload le8k": 3}' in result.output
    assert "FAIL no_failed_uploads: failed" in result.output and "ok   locust_ran" in result.output
    assert f"report: {tmp_path / 'summary.html'}" in result.output
    summary["checks"]["no_failed_uploads"] = {"ok": True, "failed": {}}
    result = CliRunner().invoke(cli.load, ["run", "sizes", "--out", str(tmp_path)])
    assert result.exit_code == 0 and "all 2 checks passed" in result.output


def test_request_rates_are_over_the_whole_run_not_a_names_own_few_milliseconds():
    def entry(name, n, start, last):
        return {"name": name, "method": "POST", "num_requests": n, "num_failures": 0, "start_time": start,
                "last_request_timestamp": last, "max_response_time": 5, "total_response_time": 5 * n,
                "response_times": {"5": n}}

    # one sync per device, all at the start (3 within a millisecond), and uploads over 10 s
    stats = [entry("sync", 3, 100.0, 100.001), entry("upload le8k", 50, 100.0, 110.0)]
    requests = report.summarize_stats(stats)
    assert requests["sync"]["per_second"] == 0.3 and requests["upload le8k"]["per_second"] == 5.0
    assert report.entry_summary(stats[1])["per_second"] == 5.0  # alone: its own span


def test_load_list_shows_every_scenarios_parameters_with_type_and_default():
    from testbed.load.cli import load
    from testbed.load.scenarios import SCENARIOS

    result = CliRunner().invoke(load, ["list"])
    assert result.exit_code == 0, result.output
    for spec in SCENARIOS.values():
        assert any(line.startswith(f"{spec.name} ") for line in result.output.splitlines()), spec.name
        for p in spec.params:
            default = "(computed)" if p.default is None else json.dumps(p.default)
            assert f"--param {p.name}={default}  {p.expected()}: {p.help}" in result.output
    assert "--param sync_period=60.0  a number" in result.output  # e.g. the fleet's
    assert "--param KEY=VALUE  any other" in result.output  # custom passes the rest to the locustfile


def test_spawn_rate_is_passed_to_locust_and_refused_where_a_shape_ramps(tmp_path):
    from testbed.load.cli import load
    from testbed.load.runner import LocustPlan, _head_args

    plan = LocustPlan(locustfile=tmp_path / "f.py", host="http://127.0.0.1:1", out_dir=tmp_path,
                      config_path=tmp_path / "c.json", users=8, spawn_rate=2.0, run_time=10)
    args = _head_args(plan)
    assert args[args.index("--users") + 1] == "8" and args[args.index("--spawn-rate") + 1] == "2.0"
    plan.spawn_rate = 0
    args = _head_args(plan)
    assert args[args.index("--spawn-rate") + 1] == "8"  # 0: all at once
    out = tmp_path / "o"
    result = CliRunner().invoke(load, ["run", "sizes", "--spawn-rate", "2", "--out", str(out)])
    assert result.exit_code == 1 and "drop --spawn-rate" in result.output and not out.exists()


def test_the_users_own_limits_are_checks_of_all_requests_together():
    from testbed.load.scenarios import RunOptions
    from testbed.load.scenarios.run import limit_checks

    total = {"requests": 200, "failures": 3, "p99_ms": 40.0}
    opts = RunOptions(scenario="sizes", out_dir=Path("."), max_p99_ms=50, max_failure_ratio=0.01)
    checks = limit_checks(opts, total)
    assert checks["p99_within_limit"] == {"ok": True, "p99_ms": 40.0, "limit_ms": 50}
    assert checks["failure_ratio_within_limit"]["ok"] is False
    assert checks["failure_ratio_within_limit"]["failure_ratio"] == 0.015
    assert limit_checks(RunOptions(scenario="sizes", out_dir=Path(".")), total) == {}  # none asked, none made
    assert not limit_checks(opts, None)["p99_within_limit"]["ok"]  # no requests: not within any limit


def test_stats_table_ends_with_all_requests_together():
    from testbed.load.table import stats_table

    one = {"requests": 10, "failures": 0, "per_second": 2.5, "p50_ms": 4, "p99_ms": 9}
    summary = {"requests": {"intent": one, "sync": one},
               "requests_total": {"requests": 20, "failures": 0, "per_second": 5, "p50_ms": 4, "p99_ms": 9}}
    lines = stats_table(summary).splitlines()
    assert lines[-1].split() == ["all", "requests", "20", "0", "5", "4", "9"]
    assert set(lines[-2]) == {"-", " "}  # a rule above it


def test_request_names_say_their_method_once():
    def entry(method, name):
        return {"name": name, "method": method, "num_requests": 1, "num_failures": 0, "start_time": 1.0,
                "last_request_timestamp": 2.0, "max_response_time": 5, "total_response_time": 5,
                "response_times": {"5": 1}}

    names = report.summarize_stats([entry("POST", "sync"), entry("GET", "wrong path"),
                                    entry("CRASH", "crash hang gave-up")])
    assert set(names) == {"sync", "GET wrong path", "crash hang gave-up"}


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("2.5", 2.5), ("90s", 90), ("2m", 120), ("1m30s", 90),
                                               ("1h", 3600), ("0.5m", 30)])
def test_duration_takes_seconds_or_locusts_run_time_notation(text, seconds):
    from testbed.load.cli import RunTime

    assert RunTime().convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["fast", "1x", "0", "2h", "m", ""])
def test_a_bad_duration_is_refused_before_anything_starts(tmp_path, text):
    from testbed.load.cli import load

    out = tmp_path / "o"
    result = CliRunner().invoke(load, ["run", "throttling", "-t", text, "--out", str(out)])
    assert result.exit_code == 2 and "--duration" in result.output and not out.exists()
