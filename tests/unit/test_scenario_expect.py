"""Expectation rules on hand-made evidence, the wire tap on a loopback HTTP server, and the CLI's early errors."""

from __future__ import annotations

import http.server
import threading

import httpx
import pytest
from click.testing import CliRunner

from testbed.contract.device_api import INTENT_PATH, SYNC_PATH, UPLOAD_PATH
from testbed.scenario.expect import Evidence, StoredDump, evaluate
from testbed.scenario.results import BoardEvent
from testbed.scenario.schema import scenario_from_data
from testbed.scenario.tap import TappedRequest, WireTap

A, B = "a" * 128, "b" * 128


def ev(name, t, **f):
    return BoardEvent(name, dict(f), t)


def exp(kind, **args):
    data = {
        "groups": {"P/G": {}},
        "fleet": {"x": {"boards": 2, "group": "P/G"}},
        "steps": [{"sync": "all"}],
        "expect": [{kind: args or None}],
    }
    return scenario_from_data(data, "<t>").expect[0]


def dump(device, region="EU", size=10000, sig="s" * 32, comp="crashapp"):
    return StoredDump(f"d{device[0]}{region}{size}", device, region, size, sig, comp)


def evidence(**kw):
    base = dict(device_ids={"x-1": A, "x-2": B}, events={"x-1": [], "x-2": []}, dumps=[])
    base.update(kw)
    return Evidence(**base)


def test_dump_stored_per_board_and_region():
    e = evidence(dumps=[dump(A), dump(B, "WestUS")])
    assert evaluate(exp("dump_stored", region="EU", boards="x-1"), e)[0]
    ok, detail = evaluate(exp("dump_stored", region="EU"), e)
    assert not ok and "x-2 has 0 dump(s) in region EU" in detail and "WestUS" in detail
    assert evaluate(exp("dump_stored", region="US", boards="x-2", count=1), e)[0]
    assert not evaluate(exp("dump_stored", region="US", boards="x-2", count=2), e)[0]


def test_dumps_by_signature_of_an_app():
    events = {"x-1": [ev("crash", 1, app="crashapp", sig="s" * 32)], "x-2": []}
    e = evidence(events=events, dumps=[dump(A), dump(A, sig="t" * 32)])
    assert evaluate(exp("dumps", signature_of="crashapp", count=1), e)[0]
    assert evaluate(exp("dumps", count=2), e)[0]
    ok, detail = evaluate(exp("dumps", signature_of="crashsvc", count=0), e)
    assert not ok and "signature is unknown" in detail


def test_no_request_uses_the_tap_and_the_db():
    e = evidence(requests=[TappedRequest(0, A, "POST", SYNC_PATH, 0),
                           TappedRequest(0, B, "POST", INTENT_PATH, 90, 90)])  # fmt: skip
    assert evaluate(exp("no_request", boards="x-1"), e)[0]  # a sync is not a crash-dump request
    ok, detail = evaluate(exp("no_request", boards="x-2"), e)
    assert not ok and "1 crash-dump request(s) (90 body bytes)" in detail
    assert not evaluate(exp("no_request", boards="x-1"), evidence(dumps=[dump(A)]))[0]


def test_app_restarted_within_after_upload_and_slack():
    events = {"x-1": [ev("crash", 1.0, app="crashapp", sig="s" * 32), ev("upload-ok", 1.3, sig="s" * 32, ms="300"),
                      ev("app-restart", 1.35, app="crashapp", after_ms="350")],
              "x-2": [ev("crash", 1.0, app="crashapp"), ev("upload-fail", 6.0, reason="timeout"),
                      ev("app-restart", 6.0, app="crashapp", after_ms="5000")]}  # fmt: skip
    e = evidence(events=events)
    assert evaluate(exp("app_restarted", within="5s"), e)[0]
    ok, detail = evaluate(exp("app_restarted", within="4s"), e)
    assert not ok and "x-2: crashapp restarted 5.000s after its crash" in detail
    assert evaluate(exp("app_restarted", boards="x-1", within="1s", after_upload=True, upload_slack="100ms"), e)[0]
    assert not evaluate(exp("app_restarted", boards="x-1", within="1s", upload_slack="10ms"), e)[0]
    ok, detail = evaluate(exp("app_restarted", boards="x-2", within="6s", after_upload=True), e)
    assert not ok and "no completed upload (fail:timeout)" in detail
    ok, detail = evaluate(exp("app_restarted", within="6s"), evidence(events={"x-1": [ev("crash", 1, app="crashapp")], "x-2": []}))
    assert not ok and "never followed by app-restart" in detail
    assert not evaluate(exp("app_restarted", within="6s"), evidence())[0]  # no crash at all is not a pass


def test_skips_uploads_events_requests_sizes_audit_blobs():
    events = {"x-1": [ev("dump-skipped", 1, reason="throttled"), ev("upload-fail", 2, reason="connect")],
              "x-2": [ev("dump-skipped", 1, reason="optout")]}  # fmt: skip
    reqs = [TappedRequest(0, A, "POST", UPLOAD_PATH, 10, 10, 201),
            TappedRequest(0, A, "POST", INTENT_PATH, 10, 10, 200)]  # fmt: skip
    e = evidence(events=events, requests=reqs, dumps=[dump(A, size=5000), dump(B, size=90000)],
                 audit=[{"action": "read", "reason": "r1"}, {"action": "list", "reason": ""}],
                 blobs={"EU": 2, "WestUS": 1})  # fmt: skip
    assert evaluate(exp("dump_skipped", reason="throttled", boards="x-1", count=1), e)[0]
    ok, detail = evaluate(exp("dump_skipped", reason="throttled"), e)
    assert not ok and "other reasons seen: optout" in detail
    assert evaluate(exp("upload", result="fail", reason="connect", boards="x-1"), e)[0]
    assert evaluate(exp("events", event="dump-skipped", where={"reason": "optout"}, boards="x-2", count=1), e)[0]
    assert evaluate(exp("requests", path="upload", count=1), e)[0]
    assert evaluate(exp("requests", path="intent", count=1), e)[0]
    assert evaluate(exp("requests", path="sync", count=0), e)[0]
    assert evaluate(exp("dump_sizes", min_bytes=1000, max_bytes=100000), e)[0]
    ok, detail = evaluate(exp("dump_sizes", max_bytes=65536), e)
    assert not ok and "90000" in detail
    assert evaluate(exp("audit_rows", count=1), e)[0] and evaluate(exp("audit_rows", reason="r1"), e)[0]
    assert evaluate(exp("blobs", region="US", count=1), e)[0] and evaluate(exp("blobs", count=3), e)[0]


def test_groups_and_tenant_probe():
    current = {"P/G": {"AllowCrashDumpsCollection": True, "RegionalDataBoundary": "EU"}}
    e = evidence(groups=lambda: current, dumps=[dump(A)], tenant_probe=lambda ids: [] if ids else ["x"])
    assert evaluate(exp("groups", group="P/G", allow_crash_dumps=True, boundary="EU"), e)[0]
    ok, detail = evaluate(exp("groups", group="all", allow_crash_dumps=False), e)
    assert not ok and "AllowCrashDumpsCollection is True" in detail
    assert evaluate(exp("tenant_denied", boards="x-1"), e)[0]
    ok, detail = evaluate(exp("tenant_denied", boards="x-2"), e)
    assert not ok and "nothing was tried" in detail


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_wire_tap_records_and_forwards():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with WireTap("127.0.0.1", server.server_address[1]) as tap:
            body = b"x" * 5000
            r = httpx.post(f"http://127.0.0.1:{tap.port}{UPLOAD_PATH}", content=body,
                           headers={"Authorization": f"Device {A}:secret", "Connection": "close"})  # fmt: skip
            assert r.status_code == 201 and r.content == body
            (req,) = tap.for_device(A)
            assert (req.method, req.path, req.content_length, req.body_bytes, req.status) == (
                "POST", UPLOAD_PATH, 5000, 5000, 201)  # fmt: skip
            assert tap.for_device(B) == []
    finally:
        server.shutdown()


def test_cli_rejects_a_typo_before_anything_starts(tmp_path, monkeypatch):
    from testbed.scenario import cli, runner

    def boom(*a, **k):
        raise AssertionError("nothing may start for an invalid file")

    monkeypatch.setattr(runner, "qemu_board_factory", boom)
    monkeypatch.setattr(runner.ScenarioRun, "_setup", boom)
    good = tmp_path / "good.yaml"
    good.write_text("groups: {P/G: {}}\nfleet: {x: {group: P/G}}\nsteps: [{sync: all}]\nexpect: [{dumps: {count: 0}}]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups: {P/G: {}}\nfleet: {x: {group: P/G, aps: [crashapp]}}\nsteps: [{sync: all}]\n")
    result = CliRunner().invoke(cli.scenario, ["run", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2: field 'fleet.x.aps': unknown field (did you mean 'apps'?)" in result.output
    missing_app = tmp_path / "app.yaml"
    missing_app.write_text("groups: {P/G: {}}\nfleet: {x: {group: P/G}}\nsteps:\n  - crash: {boards: x-1, app: crashap}\n")
    result = CliRunner().invoke(cli.scenario, ["run", str(missing_app)])
    assert result.exit_code == 1 and f"{missing_app}:4: step 1/1, field 'crash.app': unknown app 'crashap'" in result.output
    # every mistake at once: the file has no expectation either
    assert f"{missing_app}:1: field 'expect': a scenario needs at least one expectation" in result.output
    result = CliRunner().invoke(cli.scenario, ["check", str(good)])
    assert result.exit_code == 0 and "ok" in result.output


@pytest.mark.parametrize("n", [1, 3])
def test_boards_option_resizes(tmp_path, n):
    from testbed.scenario import cli

    path = tmp_path / "s.yaml"
    path.write_text("groups: {P/G: {}}\nfleet: {x: {boards: 2, group: P/G}}\nsteps: [{sync: all}]\nexpect: [{dumps: {count: 0}}]\n")
    (sc,) = cli._load((str(path),), n)
    assert len(sc.boards) == n and sc.steps[0].args["boards"] == sc.boards
