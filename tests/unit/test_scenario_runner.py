"""The runner end to end with fake boards against the real service (a loopback process, seconds)."""

from __future__ import annotations

import pytest

from testbed.board.protocols import Capability
from testbed.scenario.boards import check_capabilities
from testbed.scenario.model import ScenarioError
from testbed.scenario.runner import QuietProgress, RunOptions, ScenarioRun
from testbed.scenario.schema import scenario_from_data

STORY = {
    "name": "fake-story",
    "groups": {"P/On": {"allow_crash_dumps": True, "boundary": "EU"}, "P/Off": {}},
    "fleet": {"on": {"boards": 1, "group": "P/On", "apps": ["crashapp"]},
              "off": {"boards": 1, "group": "P/Off", "apps": ["crashapp"]}},
    "steps": [
        {"sync": "all"},
        {"crash": "all"},
        {"wait": {"boards": "on-1", "event": "upload-ok", "timeout": "10s"}},
        {"wait": {"boards": "off-1", "event": "dump-skipped", "timeout": "10s"}},
        {"link_down": "off-1"},
        {"crash": {"boards": "off-1", "id": "b2"}},
        {"wait": {"boards": "off-1", "event": "app-restart", "timeout": "10s"}},
        {"link_up": "off-1"},
        {"warp": {"by": "1h", "service": False}},
        {"check": [{"dump_stored": {"boards": "on-1", "region": "EU", "count": 1}}]},
    ],
    "expect": [
        {"no_request": "off-1"},
        {"blobs": {"region": "EU", "count": 1}},
        {"app_restarted": {"within": "5s"}},
        {"dump_skipped": {"boards": "off-1", "reason": "optout", "count": 2}},
        {"requests": {"path": "upload", "boards": "on-1", "count": 1}},
        {"dump_stored": {"boards": "off-1", "count": 1}},  # wrong on purpose: off-1 never uploads
    ],
}  # fmt: skip


def run(data: dict, factory, tmp_path) -> ScenarioRun:
    sc = scenario_from_data(data, "<test>")
    runner = ScenarioRun(sc, RunOptions(parallel=2, workdir=tmp_path, board_factory=factory, progress=QuietProgress()))
    runner.run()
    return runner


def test_a_scenario_runs_through_the_runner_with_fake_boards(tmp_path, fake_factory):
    factory = fake_factory()
    res = run(STORY, factory, tmp_path).result
    assert not res.error, res.error
    verdicts = {e.kind + ("@" + str(e.step) if e.step is not None else ""): e.passed for e in res.expectations}
    assert verdicts == {"dump_stored@9": True, "no_request": True, "blobs": True, "app_restarted": True,
                        "dump_skipped": True, "requests": True, "dump_stored": False}  # fmt: skip
    failed = res.failures[0]
    assert "off-1 has 0 dump(s) in region any" in failed.detail
    # the evidence came through the service's APIs: the stored dump, its bytes analysed
    (dump,) = res.dumps
    assert dump.board == "on-1" and dump.region == "EU" and dump.analysis and dump.analysis["signal_name"] == "SIGSEGV"
    # board operations went to the boards, firmware operations through the firmware driver
    on, off = factory.made["on-1"], factory.made["off-1"]
    assert off.calls == ["link_down", "link_up"] and on.calls == []
    assert on.fw.clock_offset == off.fw.clock_offset == 3600
    assert any(c.startswith("crashapp --app crashapp --mode segv --id b2") for c in off.fw.commands)
    assert [i.kind for i in res.intervals] == ["link-down"] and res.intervals[0].end is not None
    # events were kept for the report, with scenario times (provisioning is before zero)
    assert [e.name for e in res.board("on-1").events][:2] == ["provisioned", "sync-ok"]
    assert res.board("on-1").events[0].t < 0 < res.board("on-1").events[-1].t
    assert all(b.closed for b in factory.made.values())


def test_a_wait_that_never_comes_fails_the_step_and_says_what_came(tmp_path, fake_factory):
    data = {**STORY, "steps": [{"sync": "all"}, {"crash": "on-1"},
                               {"wait": {"boards": "on-1", "event": "upload-fail", "timeout": "300ms"}}]}  # fmt: skip
    res = run(data, fake_factory(), tmp_path).result
    assert "step 3 (line 0: wait" in res.error
    assert "on-1: 1 new upload-fail did not come within 300ms" in res.error and "upload-ok" in res.error
    assert res.steps[-1].ok is False
    # the failed wait was the last step: every expectation's evidence exists, so each was evaluated
    assert len(res.expectations) == 6 and not res.not_evaluated and res.verdict == "FAIL"


def test_a_restart_of_an_earlier_crash_is_not_taken_for_the_new_ones(tmp_path, fake_factory):
    # two crashes; the wait after the second counts only the second crash's restart
    data = {**STORY, "steps": [{"sync": "all"}, {"crash": "on-1"}, {"crash": {"boards": "on-1", "id": "x"}},
                               {"wait": {"boards": "on-1", "event": "app-restart", "count": 2, "timeout": "2s"}},
                               {"crash": {"boards": "on-1", "id": "y"}},
                               {"wait": {"boards": "on-1", "event": "app-restart", "count": 2, "timeout": "300ms"}}],
            "expect": [{"app_restarted": {"within": "5s"}}]}  # fmt: skip
    res = run(data, fake_factory(), tmp_path).result
    assert "step 6" in res.error and "2 new app-restart" in res.error


def test_a_crash_before_a_warp_is_handled_on_the_clocks_it_happened_under(tmp_path, fake_factory):
    # the crash command only signals the app; its crash, upload and restart come later. `crash` then
    # `warp` (no wait between, as a user writes "crash while cut off, three days pass") must not move
    # the clocks while the crash is being reported: the crash step ends at the crash event, the warp
    # first waits for the crash's outcome and restart.
    factory = fake_factory(crash_after_s=0.3, restart_s=0.2)
    data = {**STORY, "fleet": {"on": STORY["fleet"]["on"]},
            "steps": [{"sync": "all"}, {"link_down": "all"}, {"crash": "all"}, {"warp": "72h"},
                      {"link_up": "all"}, {"sync": "all"},
                      {"wait": {"boards": "on-1", "event": "upload-ok", "timeout": "5s"}}],
            "expect": [{"dump_stored": {"count": 1}}]}  # fmt: skip
    res = run(data, factory, tmp_path).result
    assert not res.error, res.error
    fw = factory.made["on-1"].fw
    events = {e.name: e.monotonic for e in factory.made["on-1"].events}
    warped_at = next(t for c, t in zip(fw.commands, fw.command_at, strict=True) if "date -s @$((" in c)
    crash_step, warp_step = res.steps[2], res.steps[3]
    assert crash_step.text.startswith("crash") and warp_step.text.startswith("warp")
    assert events["crash"] < warped_at and events["upload-fail"] < warped_at and events["app-restart"] < warped_at
    assert [e.passed for e in res.expectations] == [True]


def test_a_step_a_board_cannot_do_is_refused_before_any_board_is_made(tmp_path, fake_factory):
    no_link = frozenset(Capability) - {Capability.LINK}
    factory = fake_factory({"off-1": no_link})
    runner = run(STORY, factory, tmp_path)
    assert factory.made == {} and runner.side.service is None
    assert runner.result.error.startswith("<test>: step 5/10, field 'link_down': refused before any board booted: "
                                          "board off-1 cannot link down (step 5): it lacks the 'link' capability")  # fmt: skip
    assert "lacks the 'link' capability" in runner.result.error


def test_capability_check_names_file_line_step_and_capability(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("groups: {P/G: {}}\nfleet: {x: {boards: 2, group: P/G}}\nsteps:\n  - sync: all\n"
                    "  - pause: x-2\n  - warp: {by: 1h, boards: none}\nexpect: [{dumps: {count: 0}}]\n")  # fmt: skip
    from testbed.scenario.schema import load_scenario

    sc = load_scenario(path)
    caps = {"x-1": frozenset(Capability), "x-2": frozenset({Capability.COMMANDS, Capability.EVENTS})}
    check_capabilities(sc, lambda b: caps["x-1"])  # every board can do everything
    with pytest.raises(ScenarioError) as info:
        check_capabilities(sc, caps.get)
    assert str(info.value).startswith(f"{path}:5: step 2/3, field 'pause': refused before any board booted: "
                                      "board x-2 cannot pause (step 2): it lacks the 'pause' capability")  # fmt: skip
    # warp on no board needs no clock; a board whose capabilities are unknown is not checked
    check_capabilities(sc, lambda b: None)


def test_a_factory_declares_capabilities_per_board_or_for_all():
    from testbed.scenario.boards import declared_capabilities

    class PerBoard:
        def capabilities(self, name: str) -> frozenset[Capability]:
            return frozenset({Capability.LINK}) if name == "a" else frozenset()

    class AllAlike:
        capabilities = frozenset({Capability.PAUSE})

    assert declared_capabilities(PerBoard(), "a") == {Capability.LINK} and declared_capabilities(PerBoard(), "b") == set()
    assert declared_capabilities(AllAlike(), "x") == {Capability.PAUSE}
    assert declared_capabilities(lambda *a: None, "x") is None


def test_a_board_with_its_own_event_log_is_waited_on_directly():
    from types import SimpleNamespace

    from testbed.eventlog import EventLog
    from testbed.scenario.boards import event_log_of

    log: EventLog = EventLog()
    board = SimpleNamespace(events=[], console=SimpleNamespace(event_log=log))
    assert event_log_of(board) is log
