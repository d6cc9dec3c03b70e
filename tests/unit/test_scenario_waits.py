"""The wait step's counting rule, on event logs fed by hand, and on fake boards through the runner.

An outcome counts for a wait when it belongs to a crash of the actions just before it; a spool
retry's outcome (spooled=1) counts when its crash happened in this scenario (linked by upload id,
else by signature); nothing of a crash from before the scenario counts. A wait that times out
says what came, what it saw and why that did not count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from testbed.eventlog import EventLog
from testbed.paths import REPO_ROOT
from testbed.scenario.results import BoardEvent
from testbed.scenario.runner import QuietProgress, RunOptions, ScenarioRun
from testbed.scenario.schema import load_scenario, scenario_from_data
from testbed.scenario.spooled import spool_retries, still_spooled
from testbed.scenario.steps import StepFailed
from testbed.scenario.waits import BoardWaits

STORY = REPO_ROOT / "scenarios" / "story-crash-offline-three-days.yaml"
UID = "0123456789abcdef0123456789abcdef"
T0 = 1000.0  # the fake scenario's zero on the monotonic clock


@dataclass(frozen=True)
class Ev:
    name: str
    fields: dict[str, str]
    monotonic: float
    wall: float = 0.0


class Log:
    """A board's event log written at chosen scenario times, and the waits on it."""

    def __init__(self) -> None:
        self.log: EventLog[Ev] = EventLog()
        self.waits = BoardWaits(lambda: T0)
        self.waits.add("b-1", self.log, lambda: None)

    def at(self, t: float, name: str, **fields: str) -> Log:
        self.log.append(Ev(name, dict(fields), T0 + t))
        return self

    def actions(self, t: float) -> Log:
        """A run of actions begins at scenario time t (the runner's start_actions)."""
        self.waits.start_actions(t)
        return self

    def wait(self, event: str, where: dict[str, str] | None = None, count: int = 1) -> None:
        self.waits.wait_events("b-1", event, where, count, 0.05)

    def fails(self, event: str, where: dict[str, str] | None = None, count: int = 1) -> str:
        with pytest.raises(StepFailed) as info:
            self.wait(event, where, count)
        return str(info.value)


def crash_cut_off(log: Log, t: float, uid: str | None = UID, sig: str = "aa") -> Log:
    """A crash while the link is down: upload-fail (its dump spooled), the app restarted."""
    fail = {"app": "crashapp", "sig": sig, "reason": "connect", **({"upload_id": uid} if uid else {})}
    return (log.at(t, "crash", app="crashapp", sig=sig)
               .at(t + 0.1, "upload-fail", **fail)
               .at(t + 0.2, "app-restart", app="crashapp", reason="crash"))  # fmt: skip


def retry(log: Log, t: float, name: str = "upload-ok", uid: str | None = UID, sig: str = "aa", **more: str) -> Log:
    fields = {"sig": sig, "spooled": "1", **({"upload_id": uid} if uid else {}), **more}
    return log.at(t, "sync-ok").at(t + 0.1, name, **fields)


def test_a_spooled_upload_of_a_crash_of_this_scenario_counts_for_a_plain_wait():
    log = crash_cut_off(Log().actions(0.0), 1.0)
    log.wait("upload-fail")
    retry(log.actions(5.0), 6.0)  # link_up, sync: the spool's upload
    log.wait("upload-ok")
    log.wait("upload-ok", {"spooled": "1"})  # the old spelling still works


def test_a_spooled_dump_skipped_and_a_dump_without_upload_id_are_linked_by_signature():
    # a dump spooled after the deadline (gzip too slow) has no upload id in its first upload-fail
    log = crash_cut_off(Log().actions(0.0), 1.0, uid=None)
    retry(log.actions(5.0), 6.0, uid="f" * 32)
    log.wait("upload-ok")
    # a retry dropped because its signature became throttled prints only the signature
    log2 = crash_cut_off(Log().actions(0.0), 1.0, sig="bb")
    retry(log2.actions(5.0), 6.0, name="dump-skipped", uid=None, sig="bb", reason="throttled")
    log2.wait("dump-skipped", {"reason": "throttled"})


def test_a_retry_that_fails_again_then_succeeds_counts_both_outcomes():
    log = crash_cut_off(Log().actions(0.0), 1.0)
    retry(log.actions(5.0), 6.0, name="upload-fail", reason="connect")
    log.wait("upload-fail")
    retry(log.actions(8.0), 9.0)
    log.wait("upload-ok")
    events = log.waits.events("b-1")
    linked = spool_retries(events)
    assert [r.event.name for r in linked] == ["upload-fail", "upload-ok"]
    assert all(r.episode is not None and r.episode.crash.t == 1.0 for r in linked)
    assert still_spooled(events) == []


def test_a_spooled_upload_of_a_crash_before_the_scenario_does_not_count_and_says_why():
    log = crash_cut_off(Log(), -30.0)  # e.g. from before the snapshot or an earlier scenario on this board
    retry(log.actions(0.0), 1.0)
    msg = log.fails("upload-ok")
    assert "b-1: 1 new upload-ok" in msg and "did not come within 50ms: 0 came" in msg
    assert "upload-ok(spooled) at 1.1s: a retry from the spool of the crash at -30.0s, before this scenario began" in msg


def test_a_spooled_upload_whose_crash_was_never_seen_does_not_count():
    log = retry(Log().actions(0.0), 1.0, uid="e" * 32, sig="cc")
    msg = log.fails("upload-ok", {"spooled": "1"})
    assert "a retry from the spool of a dump whose crash is not in this scenario" in msg
    # an upload id of another dump is not taken for this crash's, even with the same signature
    log2 = crash_cut_off(Log().actions(0.0), 1.0, sig="cc")
    retry(log2.actions(5.0), 6.0, uid="e" * 32, sig="cc")
    assert "whose crash is not in this scenario" in log2.fails("upload-ok")


def test_the_outcome_of_a_crash_of_earlier_actions_does_not_count_and_the_message_says_what_to_write():
    log = Log().actions(0.0).at(1.0, "crash", app="crashapp", sig="aa").at(1.2, "app-restart", app="crashapp")
    log.actions(2.0).at(2.5, "upload-ok", app="crashapp", sig="aa", region="EU")
    msg = log.fails("upload-ok")
    assert "0 came" in msg
    assert ("upload-ok at 2.5s: the outcome of the crash at 1.0s, before this wait's actions began (at 2.0s)"
            in msg)  # fmt: skip
    assert "wait for it before the next action" in msg and "`events: {event: upload-ok}`" in msg


def test_a_wait_that_is_not_met_says_what_came_and_what_did_not_fit():
    log = Log().actions(0.0)
    for i, region in enumerate(("EU", "WestUS")):
        log.at(i + 1.0, "crash", app="crashapp", sig=f"s{i}").at(i + 1.1, "upload-ok", app="crashapp", sig=f"s{i}",
                                                                   region=region)  # fmt: skip
    msg = log.fails("upload-ok", {"region": "EU"}, count=2)
    assert "2 new upload-ok region=EU" in msg and ": 1 came;" in msg
    assert "upload-ok at 2.1s: has region=WestUS; the wait asks region=EU" in msg
    # an event that is no outcome: same shape
    log.at(3.0, "sync-fail", reason="connect")
    msg = log.fails("sync-ok")
    assert "1 new sync-ok did not come within 50ms: 0 came" in msg and "sync-fail(connect) at 3.0s" in msg


def test_a_wait_for_the_upload_of_a_spooled_dump_without_a_sync_says_to_sync_first():
    log = crash_cut_off(Log().actions(0.0), 1.0)
    log.actions(3.0).at(3.5, "app-start")  # link_up, but no sync
    msg = log.fails("upload-ok")
    assert "the dump of the crash(es) at 1.0s (upload-fail(connect) at 1.1s) may wait in the board's spool" in msg
    assert "put a `sync:` step (with the link up) before this wait" in msg
    # nothing contradicts: the events listed do not include an upload-ok
    assert "upload-ok at" not in msg


def run(data: dict, factory, tmp_path) -> ScenarioRun:
    sc = scenario_from_data(data, "<test>") if isinstance(data, dict) else data
    runner = ScenarioRun(sc, RunOptions(parallel=1, workdir=tmp_path, board_factory=factory, progress=QuietProgress()))
    runner.run()
    return runner


def test_the_three_day_offline_story_passes_as_written_on_fake_boards(tmp_path, fake_factory):
    sc = load_scenario(STORY)
    waits = [s.op for s in sc.steps if s.action == "wait"]
    assert waits[-1].event == "upload-ok" and not waits[-1].where  # the plain wait, as a new user writes it
    factory = fake_factory()
    res = run(sc, factory, tmp_path).result
    assert not res.error, res.error
    assert res.expectations and all(e.passed for e in res.expectations), [e.detail for e in res.failures]
    events = res.board("field-1").events
    fail = next(e for e in events if e.name == "upload-fail")
    ok = next(e for e in events if e.name == "upload-ok")
    assert ok.fields["spooled"] == "1" and ok.fields["upload_id"] == fail.fields["upload_id"]
    assert factory.made["field-1"].fw.clock_offset == 72 * 3600
    (dump,) = res.dumps
    assert dump.region == "EU"


def test_a_dump_spooled_before_the_scenario_does_not_count_on_fake_boards(tmp_path, fake_factory):
    made = fake_factory()

    def factory(name: str, device_id: str, secret: str, port: int):
        board = made(name, device_id, secret, port)
        board.fw.opt_in = True  # an earlier scenario on this board crashed it while cut off: its dump is spooled
        board.fw.link_up = False
        board.fw.crash("crashapp", "old")
        board.fw.link_up = True
        time.sleep(0.01)
        return board

    data = {"name": "old-spool", "groups": {"P/G": {"allow_crash_dumps": True}},
            "fleet": {"b": {"boards": 1, "group": "P/G", "apps": ["crashapp"]}},
            "steps": [{"sync": "all"}, {"wait": {"boards": "all", "event": "upload-ok", "timeout": "300ms"}}],
            "expect": [{"dumps": {"count": 1}}]}  # fmt: skip
    res = run(data, factory, tmp_path).result
    assert "step 2" in res.error and "b-1: 1 new upload-ok" in res.error and "0 came" in res.error
    assert "a retry from the spool of the crash at -" in res.error and "before this scenario began" in res.error


def test_still_spooled_lists_crashes_whose_dump_no_retry_took():
    events = [BoardEvent("crash", {"app": "a", "sig": "aa"}, 1.0), BoardEvent("upload-fail", {"sig": "aa"}, 1.1),
              BoardEvent("crash", {"app": "a", "sig": "bb"}, 2.0), BoardEvent("upload-ok", {"sig": "bb"}, 2.1)]  # fmt: skip
    assert [ep.crash.t for ep in still_spooled(events)] == [1.0]


def test_a_matching_event_before_the_waits_actions_is_named_as_such():
    log = crash_cut_off(Log().actions(0.0), 1.0)
    retry(log.actions(5.0), 6.0)  # link_up, idle: a periodic sync sent the spool
    log.wait("sync-ok")
    log.actions(8.0).at(8.5, "sync-ok")  # sync: the spool is empty by now
    msg = log.fails("upload-ok")
    assert "0 came" in msg and "may wait in the board's spool" not in msg
    assert ("before this wait's actions began came upload-ok(spooled) at 6.1s: a wait counts only what comes after "
            "the actions just before it") in msg  # fmt: skip
