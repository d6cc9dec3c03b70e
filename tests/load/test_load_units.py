"""Unit tests of the load glue: fixtures, buckets, percentiles, shapes, loopback checks, the board HTTP client."""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time

import pytest
from click.testing import CliRunner

from testbed.load import report
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
    chart = report.svg_chart("Users", "users", {"users": [(0.0, 1.0), (10.0, 4.0), (20.0, 4.0)]})
    assert "seconds since the start of the run" in chart
    assert all(f">{x}</text>" in chart for x in ("0", "5", "10", "15", "20"))  # ticks, not only the end
    summary = {"checks": {"exactly_n": {"ok": False, "wrong": 2}, "locust_ran": {"ok": True}},
               "requests": {"sync": {"requests": 3, "failures": 0, "per_second": 1.5, "p50_ms": 4, "p99_ms": 7}}}
    page = tmp_path / "s.html"
    report.write_html(page, "t", summary, [chart], {})
    text = page.read_text()
    assert "<td>exactly_n</td>" in text and "FAIL" in text and "wrong=2" in text
    assert "<td>sync</td><td>3</td><td>0</td><td>1.5</td><td>4</td><td>7</td>" in text
    assert "<details>" in text  # the raw JSON is still there, folded
