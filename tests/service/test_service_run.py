"""`testbed service run` as a user runs it: Ctrl-C stops it cleanly (exit 0), `--log-level info` logs each request.

The command runs in a process group of its own, as in a terminal, and Ctrl-C is a SIGINT to that group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from testbed.deadline import Deadline


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "service", "run", "--data-dir", str(tmp_path / "data"), "--port", "0",
         "--ready-file", str(ready), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    deadline = Deadline(30)
    while not (ready.exists() and ready.stat().st_size):
        if proc.poll() is not None or deadline.expired:
            _interrupt(proc)
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"the service did not start (exit {proc.returncode}): {out}{err}")
        deadline.sleep(0.05)
    return proc, json.loads(ready.read_text())["url"]


def _interrupt(proc: subprocess.Popen) -> None:
    """What Ctrl-C in its terminal does: SIGINT to the foreground process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("level", ["info", "warning"])
def test_ctrl_c_stops_the_service_cleanly_and_info_logs_each_request(tmp_path, level):
    proc, url = _start(tmp_path, "--log-level", level)
    try:
        assert _get(url + "/healthz") == 200
        assert _get(url + "/v2/no-such-thing") == 404
    finally:
        _interrupt(proc)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"Ctrl-C did not stop the service: {out}{err}")
    both = out + err
    assert proc.returncode == 0, both
    assert "Aborted!" not in both and "Traceback" not in both and "KeyboardInterrupt" not in both, both
    assert err.rstrip().endswith("testbed service stopped"), err
    logged = [line for line in both.splitlines() if '"GET /' in line]
    if level == "info":  # one line per request: client, method, path, status
        assert any('"GET /healthz HTTP/1.1" 200' in line for line in logged), both
        assert any('"GET /v2/no-such-thing HTTP/1.1" 404' in line for line in logged), both
    else:
        assert logged == [], both  # quiet by default


def test_a_data_dir_of_the_per_file_blob_layout_is_refused_with_a_clear_error(tmp_path):
    """No conversion: the service says what it found and what to do, changes nothing, exits 1."""
    data = tmp_path / "data"
    (data / "blobs" / "EU").mkdir(parents=True)
    old_blob = data / "blobs" / "EU" / ("ab" * 16 + ".gz")
    old_blob.write_bytes(b"\x1f\x8b old")
    proc = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "service", "run", "--data-dir", str(data), "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "older per-file blob layout" in proc.stderr and "new --data-dir" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert old_blob.read_bytes() == b"\x1f\x8b old"
    assert not (data / "service.db").exists()
