"""The measured storm capacity in the cache, and the runner's warning line."""

from __future__ import annotations

import json
import os

import pytest

from testbed.board import capacity as cap
from testbed.board.capacity import Capacity, capacity_warning, measured_capacity, save_capacity


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path))
    return tmp_path


def _capacity(boards: int = 24, lower_bound: bool = False, cores: int | None = None) -> Capacity:
    return Capacity(boards=boards, lower_bound=lower_bound, cores=cores or os.cpu_count() or 1, loadavg_1m=0.4,
                    measured_at="2026-12-02T08:10:00Z", deadline_s=5.0, tb_size_mib=32,
                    qemu_cpu_per_crash_s={"off": 0.05}, tried=[{"boards": 32, "held": False, "why": "x"}])  # fmt: skip


def test_nothing_measured_means_no_capacity_and_no_warning():
    assert measured_capacity() is None
    assert capacity_warning(1000) is None


def test_saved_capacity_round_trips_and_warns_only_above_it(cache):
    path = save_capacity(_capacity(24))
    assert path.parent == cache and json.loads(path.read_text())["boards"] == 24
    got = measured_capacity()
    assert got == _capacity(24)
    assert capacity_warning(24) is None and capacity_warning(8) is None
    line = capacity_warning(32)
    assert line is not None and "\n" not in line
    assert "32 boards" in line and "24 boards" in line and f"{got.cores} cores" in line
    assert "INCONCLUSIVE" in line and "load 0.4" in line


def test_a_lower_bound_is_said_as_such():
    line = capacity_warning(64, _capacity(48, lower_bound=True))
    assert line is not None and "at least 48" in line and "largest storm measured" in line


@pytest.mark.parametrize("content", ["not json", json.dumps({"version": 999, "boards": 3}), json.dumps({"version": 1})])
def test_an_unreadable_or_other_version_file_is_ignored(cache, content):
    (cache / cap.CAPACITY_FILE).write_text(content)
    assert measured_capacity() is None


def test_a_measurement_from_a_machine_with_other_cores_is_ignored():
    save_capacity(_capacity(24, cores=(os.cpu_count() or 1) + 6))
    assert measured_capacity() is None


# -- the bounded search of testbed bench fleet, with storms made up ------------------------


def _fake_storms(monkeypatch, holds_up_to: int, wall_per_board: float = 1.0) -> list[int]:
    from testbed.scenario import fleet_bench

    tried: list[int] = []

    def run_storm(n: int, parallel: int, tb_size_mib: int | None = None, require_unstarved: bool = False) -> dict:
        tried.append(n)
        held = n <= holds_up_to
        return {"boards": n, "held": held, "why": "ok" if held else "late", "wall_s": n * wall_per_board}

    monkeypatch.setattr(fleet_bench, "run_storm", run_storm)
    monkeypatch.setattr(fleet_bench, "_say", lambda message: None)
    return tried


def test_search_doubles_then_bisects(monkeypatch):
    from testbed.scenario.fleet_bench import search

    tried = _fake_storms(monkeypatch, holds_up_to=27)
    rows = search(start=4, max_boards=48, budget_s=10_000, parallel=2)
    assert tried[:4] == [4, 8, 16, 32]  # doubling until one fails
    assert tried[4:] == [24, 28, 26]  # then halving the gap, down to an eighth of what held
    assert max(r["boards"] for r in rows if r["held"]) == 26
    assert [r["boards"] for r in rows] == sorted(tried)


def test_search_stops_at_the_cap_and_the_budget(monkeypatch):
    from testbed.scenario.fleet_bench import search

    tried = _fake_storms(monkeypatch, holds_up_to=1000)
    search(start=4, max_boards=48, budget_s=10_000, parallel=2)
    assert tried == [4, 8, 16, 32, 48]  # every storm held: the cap is a lower bound
    tried = _fake_storms(monkeypatch, holds_up_to=1000, wall_per_board=3.0)
    search(start=4, max_boards=48, budget_s=150, parallel=2)
    assert tried == [4, 8, 16]  # 32 boards at ~3 s each would overrun what is left


def test_issue_checks_from_the_sizes_tried():
    from testbed.scenario.fleet_bench import issue_checks

    def row(n: int, late: int, off: float, rss_mib: float) -> dict:
        return {"boards": n, "late_restarts": late, "upload_fail": 0, "rss_per_board_mib": {"max": rss_mib},
                "by_kind": {"off": {"qemu_cpu_per_crash_s": {"median": off}}}}  # fmt: skip

    small = issue_checks([row(8, 0, 0.05, 130.0)])
    assert small["storm_of_32_inside_deadline"] is None  # not tried: not claimed either way
    assert small["collection_off_at_most_0_1_s"] and small["rss_per_board_max_mb"] == round(130 * 2**20 / 1e6, 1)
    big = issue_checks([row(16, 0, 0.05, 130.0), row(32, 2, 0.12, 160.0)])
    assert big["storm_of_32_inside_deadline"] is False
    assert big["collection_off_at_most_0_1_s"] is False and big["rss_at_most_160_mb"] is False  # 160 MiB > 160 MB
    assert issue_checks([]) == {k: None for k in big}
