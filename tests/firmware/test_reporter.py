"""crash-reporter, syncd and tb-provision on the host against a local device-API stand-in.

Covers the decision table end to end (what is sent, what is not), the spool,
core_pattern switching, and the 5 s total deadline against a server that hangs,
drips, or never reads.
"""

from __future__ import annotations

import gzip
import socket
import time
from pathlib import Path

import pytest
from fw_helpers import DEVICE_ID, FakeDeviceApi, FwEnv, make_core

from testbed.contract import device_api as api_c
from testbed.crash.signature import signature_of_core
from testbed.paths import REPO_ROOT

BOARD_CORE = REPO_ROOT / "testbed" / "load" / "cores" / "segv-16k.core.gz"
DEADLINE_S = 5.0
MARGIN_S = 0.4
PROCESS_MARGIN_S = 1.0  # a loaded 2-core CI machine: process start-up and exit, not the deadline


@pytest.fixture(scope="module", params=["board", "host"])
def core(request: pytest.FixtureRequest, fw_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real core: one recorded on a board (ARM, always there) and one made here (if the host allows)."""
    if request.param == "board":
        return gzip.decompress(BOARD_CORE.read_bytes())
    try:
        return make_core(fw_bin, tmp_path_factory.mktemp("core"), "--mode", "segv", "--heap-kib", "32")
    except RuntimeError as exc:
        pytest.skip(f"cannot make a host core: {exc}")


def report(fw: FwEnv, core: bytes, pid: int = 4242) -> tuple[float, object]:
    t0 = time.monotonic()
    proc = fw.run("crash-reporter", str(pid), "crashapp", "11", str(int(time.time())), input=core, timeout=30)
    return time.monotonic() - t0, proc


def provisioned(fw: FwEnv, api: FakeDeviceApi) -> None:
    proc = fw.provision(api.port)
    assert proc.returncode == 0, proc.stderr
    assert api.paths() == [api_c.SYNC_PATH]
    api.requests.clear()


def test_opted_out_sends_nothing_and_spools_nothing(fw, api, core):
    api.opt_in = False
    provisioned(fw, api)
    assert fw.core_pattern.read_text().startswith("/nonexistent")
    _, proc = report(fw, core)
    assert proc.returncode == 0
    fw.wait_event("dump-skipped", reason="optout")
    assert api.requests == []
    assert fw.spool_files() == []


def test_never_synced_is_optout(fw, api, core):
    assert fw.provision(api.port, sync=False).returncode == 0
    report(fw, core)
    fw.wait_event("dump-skipped", reason="optout")
    assert api.requests == []


def test_stale_sync_skips(fw, api, core):
    provisioned(fw, api)
    state = fw.state / "sync.state"
    old = int(time.time()) - 172800 - 60  # last good sync 48 h + 1 min ago on this clock
    text = state.read_text()
    text = "\n".join(
        f"last_ok={old}" if ln.startswith("last_ok=") else f"last_attempt={old}" if ln.startswith("last_attempt=") else ln
        for ln in text.splitlines()
    )
    state.write_text(text + "\n")
    report(fw, core)
    fw.wait_event("dump-skipped", reason="stale-sync")
    assert api.requests == []
    # syncd follows the clock too: consent lapsed, so core_pattern points nowhere
    assert fw.run("syncd", "--status").stdout.decode().splitlines()[-1] == "consent=stale-sync"


def test_throttled_from_sync_skips_before_any_request(fw, api, core):
    api.throttled = [signature_of_core(core)]
    provisioned(fw, api)
    report(fw, core)
    fw.wait_event("dump-skipped", reason="throttled")
    assert api.requests == []


def test_throttled_by_intent_sends_no_body(fw, api, core):
    api.intent_action = {"action": "skip", "reason": "throttled"}
    provisioned(fw, api)
    report(fw, core)
    fw.wait_event("dump-skipped", reason="throttled")
    assert api.paths() == [api_c.INTENT_PATH]
    assert signature_of_core(core) in (fw.state / "sync.state").read_text()


def test_too_large_for_the_service_is_skipped_before_any_request(fw, api, core):
    api.max_upload = 1000  # smaller than any gzip'd core
    provisioned(fw, api)
    report(fw, core)
    ev = fw.wait_event("dump-skipped", reason="too-large")
    assert int(ev["bytes"]) > 1000
    assert api.requests == []
    assert fw.spool_files() == []


@pytest.mark.parametrize("status,reason", [(429, "ratelimit"), (403, "optout"), (413, "too-large")])
def test_refusals_of_the_body_are_skips_not_retries(fw, api, core, status, reason):
    provisioned(fw, api)
    api.upload_status = status
    report(fw, core)
    fw.wait_event("dump-skipped", reason=reason)
    assert fw.spool_files() == []


def test_upload_ok_sends_the_core(fw, api, core):
    provisioned(fw, api)
    assert fw.core_pattern.read_text().strip() == f"|{fw.bin / 'crash-reporter'} %P %e %s %t"
    (fw.run_dir / "apps").mkdir(parents=True)
    (fw.run_dir / "apps" / "4242").write_text("myapp\n")
    elapsed, proc = report(fw, core)
    assert proc.returncode == 0, proc.stderr
    ev = fw.wait_event("upload-ok")
    assert ev["region"] == "EU" and int(ev["bytes"]) > 0
    crash = fw.wait_event("crash")
    assert crash["app"] == "myapp" and crash["class"] == "App" and crash["signal"] == "11"
    assert api.paths() == [api_c.INTENT_PATH, api_c.UPLOAD_PATH]
    upload = api.requests[1]
    assert gzip.decompress(upload.body) == core
    assert upload.headers[api_c.SIGNATURE_HEADER.lower()] == signature_of_core(core) == crash["sig"]
    assert upload.headers[api_c.CONTENT_TYPE.lower()] == api_c.GZIP_CONTENT_TYPE
    assert upload.headers[api_c.COMPONENT_CLASS_HEADER.lower()] == "App"
    assert upload.headers[api_c.AUTHORIZATION.lower()].startswith(api_c.device_authorization(DEVICE_ID, ""))
    assert fw.spool_files() == []


def test_os_component_class(fw, api, core):
    provisioned(fw, api)
    report(fw, core)
    fw.wait_event("upload-ok")
    assert api.requests[1].headers[api_c.COMPONENT_CLASS_HEADER.lower()] == "OS"


def test_failed_upload_is_spooled_and_retried_after_sync(fw, api, core):
    provisioned(fw, api)
    api.upload_status = 503
    report(fw, core)
    fw.wait_event("upload-fail", reason="http-503")
    assert len(fw.spool_files()) == 2  # .gz + .meta
    api.upload_status = 201
    api.requests.clear()
    proc = fw.run("syncd", "--now")
    assert proc.returncode == 0, proc.stderr
    fw.wait_event("upload-ok", spooled="1")
    assert fw.spool_files() == []
    assert gzip.decompress(api.requests[-1].body) == core


def test_opt_out_empties_the_spool(fw, api, core):
    provisioned(fw, api)
    api.upload_status = 503
    report(fw, core)
    assert fw.spool_files()
    api.opt_in = False
    api.requests.clear()
    assert fw.run("syncd", "--now").returncode == 0
    assert fw.spool_files() == []
    assert api.paths() == [api_c.SYNC_PATH]  # the spooled dump was not sent
    assert fw.core_pattern.read_text().startswith("/nonexistent")


def test_spool_is_bounded(fw, api, core):
    provisioned(fw, api)
    api.upload_status = 503
    for pid in range(10, 17):
        report(fw, core, pid=pid)
    gz = [p for p in fw.spool_files() if p.suffix == ".gz"]
    assert 1 <= len(gz) <= 4
    assert sum(p.stat().st_size for p in gz) <= 256 * 1024


@pytest.fixture(scope="module")
def board_core() -> bytes:
    return gzip.decompress(BOARD_CORE.read_bytes())


@pytest.mark.parametrize("mode", ["hang", "drip", "hang-upload", "drip-upload"])
def test_deadline_holds_against_hung_or_dripping_server(fw, api, board_core, mode):
    provisioned(fw, api)
    api.mode = mode
    elapsed, proc = report(fw, board_core)
    ev = fw.wait_event("upload-fail")
    assert ev["reason"] == "timeout"
    # the event's ms is the reporter's own clock from its start (the crash) to giving up
    assert DEADLINE_S * 1000 - 50 <= int(ev["ms"]) <= DEADLINE_S * 1000 + 100
    # wall time of the whole process seen from here (start-up, core read, spooling and exit included)
    assert elapsed <= DEADLINE_S + PROCESS_MARGIN_S, f"{mode}: reporter took {elapsed:.2f}s"
    assert elapsed >= DEADLINE_S - 0.2  # it did wait for the server, up to the deadline
    assert len(fw.spool_files()) == 2


def test_deadline_holds_when_the_server_never_reads(fw_bin, tmp_path):
    """Connect succeeds (backlog) but nothing is read: the send phase is bounded too."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    body = tmp_path / "body"
    body.write_bytes(b"\0" * (8 << 20))
    try:
        import subprocess

        t0 = time.monotonic()
        proc = subprocess.run(
            [str(fw_bin / "tb-tool"), "http", "127.0.0.1", str(lsock.getsockname()[1]), "/x", "5000", str(body)],
            capture_output=True, text=True, timeout=30,
        )
        elapsed = time.monotonic() - t0
    finally:
        lsock.close()
    assert "reason=timeout" in proc.stdout
    assert elapsed <= DEADLINE_S + MARGIN_S


def test_connection_refused_fails_fast(fw, api, core):
    provisioned(fw, api)
    api.close()
    elapsed, _ = report(fw, core)
    fw.wait_event("upload-fail", reason="connect")
    assert elapsed < 2.0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--device-id", "abc", "--secret", "s", "--service", "10.0.2.2:80"], "128 hex"),
        (["--device-id", DEVICE_ID, "--secret", "s", "--service", "1.2.3.4:80"], "refused"),
        (["--device-id", DEVICE_ID, "--secret", "bad secret", "--service", "10.0.2.2:80"], "secret"),
        (["--device-id", DEVICE_ID], "required"),
    ],
)
def test_provision_rejects_bad_input(fw, args, message):
    proc = fw.run("tb-provision", *args)
    assert proc.returncode == 2
    assert message in proc.stderr.decode()
    assert not (fw.state / "identity").exists()


def test_provision_from_cmdline_and_new_identity_resets_consent(fw, api, tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"console=ttyAMA0 tb.device_id={DEVICE_ID} tb.secret=abc tb.service=127.0.0.1:{api.port} quiet\n")
    assert fw.run("tb-provision", "--from-cmdline", str(cmdline)).returncode == 0
    fw.wait_event("sync-ok", optin="1")
    assert "opt_in=1" in (fw.state / "sync.state").read_text()
    # a different device: consent from the old identity must not carry over
    other = "cd" * 64
    proc = fw.run("tb-provision", "--device-id", other, "--secret", "x", "--service", "127.0.0.1:1", "--no-sync")
    assert proc.returncode == 0
    assert not (fw.state / "sync.state").exists()
    assert fw.core_pattern.read_text().startswith("/nonexistent")


def test_missing_gzip_is_an_upload_fail_and_sends_nothing(fw, api, board_core):
    provisioned(fw, api)
    proc = fw.run("crash-reporter", "77", "crashapp", "11", "0", input=board_core, TB_GZIP="/nonexistent/gzip")
    assert proc.returncode == 1
    fw.wait_event("upload-fail", reason="gzip")
    assert api.requests == []


def test_a_core_it_cannot_read_is_skipped(fw, api):
    provisioned(fw, api)
    proc = fw.run("crash-reporter", "78", "crashapp", "11", "0", input=b"\x7fELF" + b"\0" * 100)
    assert proc.returncode == 1
    crash = fw.wait_event("crash")
    assert crash["sig"] == "-" and crash["signal"] == "11"
    fw.wait_event("dump-skipped", reason="bad-core")
    assert api.requests == []


def test_tells_appmgr_crash_first_and_done_after_the_upload(fw, api, board_core):
    """The seam to appmgr: datagrams "crash PID MONO_MS" at start and "done PID" after the outcome."""
    provisioned(fw, api)
    fw.run_dir.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(fw.run_dir / "appmgr.sock"))
    sock.settimeout(10)
    try:
        before = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)
        report(fw, board_core, pid=4343)
        first = sock.recv(128).decode().split()
        second = sock.recv(128).decode().split()
    finally:
        sock.close()
    assert first[:2] == ["crash", "4343"] and before <= int(first[2]) <= before + 5000
    assert second == ["done", "4343"]
    assert fw.wait_event("upload-ok")
