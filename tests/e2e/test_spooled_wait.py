"""The three-day offline story on a real board: a crash while cut off is spooled, and a plain
``wait: {event: upload-ok}`` after the link is back and a sync counts the spool's upload."""

from __future__ import annotations

import pytest

from testbed.paths import REPO_ROOT
from testbed.scenario.api import result_ok
from testbed.scenario.schema import load_scenario, scenario_from_data

pytestmark = pytest.mark.e2e

STORY = REPO_ROOT / "scenarios" / "story-crash-offline-three-days.yaml"
THREE_DAYS = 72 * 3600


def test_the_three_day_offline_story_passes_with_a_plain_wait_for_upload_ok(scenario_runner):
    sc = load_scenario(STORY)
    last_wait = [s for s in sc.steps if s.action == "wait"][-1]
    assert last_wait.args["event"] == "upload-ok" and not last_wait.args["where"]
    result = result_ok(scenario_runner(sc))
    assert all(s.ok for s in result.steps) and all(e.passed for e in result.expectations)
    events = result.board("field-1").events
    crash = next(e for e in events if e.name == "crash" and e.t >= 0)
    fail = next(e for e in events if e.name == "upload-fail" and e.t >= 0)
    ok = next(e for e in events if e.name == "upload-ok" and e.t >= 0)
    # the upload that counted is the spool's retry of this crash's dump (the same upload id)
    assert fail.fields["reason"] == "connect" and "spooled" not in fail.fields
    assert ok.fields["spooled"] == "1" and ok.fields["upload_id"] == fail.fields["upload_id"]
    assert ok.fields["sig"] == crash.fields["sig"]
    (dump,) = result.dumps
    assert dump.region == "EU" and dump.id == ok.fields["id"] and dump.signature == crash.fields["sig"]
    # stored three days after the crash on the service's (warped) clock
    assert dump.created >= fail.wall + THREE_DAYS - 60


def test_a_wait_for_the_spooled_upload_without_a_sync_says_to_sync_first(scenario_runner):
    data = {
        "name": "spooled-wait-without-sync",
        "groups": {"DW100/Field": {"allow_crash_dumps": True, "boundary": "EU"}},
        "fleet": {"field": {"boards": 1, "group": "DW100/Field", "apps": ["crashapp"]}},
        "steps": [{"sync": "all"}, {"link_down": "all"}, {"crash": "all"},
                  {"wait": {"boards": "all", "event": "upload-fail", "timeout": "15s"}},
                  {"link_up": "all"},
                  {"wait": {"boards": "all", "event": "upload-ok", "timeout": "3s"}}],
        "expect": [{"dumps": {"count": 0}}],
    }  # fmt: skip
    result = scenario_runner(scenario_from_data(data, str(__file__)))
    assert not result.passed and result.steps[-1].ok is False
    err = result.error
    assert "step 6" in err and "field-1: 1 new upload-ok did not come within 3s: 0 came" in err
    assert "may wait in the board's spool" in err and "put a `sync:` step (with the link up) before this wait" in err
    assert "upload-ok at" not in err  # no upload-ok was seen, and none is listed
