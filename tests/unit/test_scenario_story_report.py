"""The report tells the story in time: each crash's outcome chain, the clocks over a run, times people read,
and a timeline whose labels do not overlap (its SVG geometry), from recorded-shaped events."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from testbed.scenario.evidence import Evidence
from testbed.scenario.expectations_board import AppRestarted, StoredWithin
from testbed.scenario.outcomes import crash_outcomes
from testbed.scenario.report import _stats, clock_rows, render_html
from testbed.scenario.report_svg import legend_svg, timeline_svg
from testbed.scenario.results import (
    BoardEvent,
    BoardRecord,
    ClockJump,
    DumpRecord,
    Interval,
    ScenarioResult,
    StepRecord,
    load_results,
    save_results,
)
from testbed.scenario.timeline import board_episodes, crash_episodes
from testbed.scenario.when import date, dates_at, duration, is_epoch, jump

SIG_A, SIG_B, SIG_C = "a1" * 16, "b2" * 16, "c3" * 16
UID_1, UID_2 = "11" * 16, "22" * 16
T0 = 1_796_000_000.0


def ev(name: str, t: float, **fields: str) -> BoardEvent:
    return BoardEvent(name, dict(fields), t, T0 + t)


def offline_story() -> ScenarioResult:
    """The events a board printed in the three-day offline story (the firmware's keys, docs/firmware.md):
    a crash stored at once, one while the link is down (spooled), three days, link back, sync, the
    spooled dump sent again and stored, then a crash the service refuses (400: lost)."""
    events = [
        ev("sync-ok", 0.4, optin="1"),
        ev("crash", 1.0, app="crashapp", **{"class": "app"}, pid="211", signal="11", sig=SIG_A, pc="0x104d4"),
        ev("upload-ok", 1.35, id="d-first", region="EU", bytes="11123", ms="310", sig=SIG_A, upload_id="33" * 16),
        ev("app-restart", 1.36, app="crashapp", after_ms="360", upload="done"),
        # the link is down: connect fails, the app restarts at once, the dump is spooled
        ev("crash", 3.0, app="crashapp", **{"class": "app"}, pid="240", signal="6", sig=SIG_B),
        ev("upload-fail", 3.02, reason="connect", stage="intent", sig=SIG_B, ms="15", upload_id=UID_1),
        ev("app-restart", 3.03, app="crashapp", after_ms="30", upload="done"),
        ev("sync-fail", 4.0, reason="connect"),
        ev("sync-ok", 6.5, optin="1"),
        ev("upload-ok", 6.7, id="d-spooled", region="EU", bytes="9000", ms="120", sig=SIG_B, spooled="1",
           upload_id=UID_1),
        # the service answers 400: not retried, the dump is lost
        ev("crash", 8.0, app="crashapp", **{"class": "app"}, pid="260", signal="8", sig=SIG_C),
        ev("upload-fail", 8.05, reason="http-400", stage="body", sig=SIG_C, ms="40", upload_id=UID_2),
        ev("app-restart", 8.06, app="crashapp", after_ms="60", upload="done"),
    ]
    return ScenarioResult(
        name="offline", path="offline.yaml", t0_wall=T0, started_wall=T0 - 20, duration=12.0,
        boards=[BoardRecord("remote-1", "e" * 128, "DW100/Remote", ["crashapp"], events)],
        intervals=[Interval("link-down", 2.5, 5.5, board="remote-1")],
        jumps=[ClockJump(4.5, 72 * 3600, {"service": T0 + 4.5 + 72 * 3600, "remote-1": T0 + 4.5 + 72 * 3600 + 1})],
        dumps=[DumpRecord("d-first", "remote-1", "e" * 128, "EU", 11123, SIG_A, "crashapp", T0 + 1.3, upload_id="33" * 16),
               DumpRecord("d-spooled", "remote-1", "e" * 128, "EU", 9000, SIG_B, "crashapp", T0 + 6.7 + 72 * 3600,
                          upload_id=UID_1, crash_time=T0 + 3)],
        audit=[{"id": 1, "at": int(T0 + 7 + 72 * 3600), "actor": "support", "action": "read", "dumpId": "d-first",
                "reason": "look"}],
    )  # fmt: skip


def test_each_crash_has_its_chain_to_the_stored_dump_or_its_loss():
    first, spooled, lost = crash_outcomes(offline_story())
    assert first.fate == "stored" and [link.what for link in first.chain] == ["crash", "stored"]
    assert first.dump_id == "d-first" and first.to_stored == pytest.approx(0.35)
    # the spooled crash is linked to the dump stored from the spool, with the service's time of it
    assert [link.what for link in spooled.chain] == ["crash", "failed", "spooled", "stored"]
    assert spooled.fate == "stored-from-spool" and spooled.dump_id == "d-spooled" and spooled.upload_id == UID_1
    assert spooled.stored_t == pytest.approx(6.7) and spooled.to_stored == pytest.approx(3.7)
    assert spooled.stored_at == T0 + 6.7 + 72 * 3600 and spooled.crash_at == T0 + 3  # before the warp
    assert spooled.chain[1].detail == "connect, at the intent" and spooled.chain[2].t is None  # spooling prints no event
    assert lost.fate == "lost" and [link.what for link in lost.chain] == ["crash", "failed", "lost"]
    assert lost.dump_id == "" and lost.to_stored is None and lost.to_restart == pytest.approx(0.06)


def test_a_retry_goes_to_its_own_crash_by_upload_id():
    """Two dumps in the spool; the second is sent first: each upload-ok goes to the crash with its id."""
    events = [
        ev("crash", 1.0, app="a", sig=SIG_A), ev("upload-fail", 1.1, reason="timeout", stage="body", sig=SIG_A,
                                                  upload_id=UID_1),
        ev("crash", 2.0, app="a", sig=SIG_B), ev("upload-fail", 2.1, reason="http-503", stage="body", sig=SIG_B,
                                                  upload_id=UID_2),
        ev("upload-ok", 5.0, id="d2", spooled="1", sig=SIG_B, upload_id=UID_2),
        ev("upload-fail", 5.1, reason="connect", stage="intent", spooled="1", sig=SIG_A, upload_id=UID_1),
        ev("upload-ok", 9.0, id="d1", spooled="1", sig=SIG_A, upload_id=UID_1),
    ]  # fmt: skip
    res = ScenarioResult("r", "r.yaml", boards=[BoardRecord("b-1", "f" * 128, events=events)])
    one, two = crash_outcomes(res)
    assert [link.what for link in one.chain] == ["crash", "failed", "spooled", "retry-failed", "stored"]
    assert one.dump_id == "d1" and one.to_stored == pytest.approx(8.0)
    assert [link.what for link in two.chain] == ["crash", "failed", "spooled", "stored"] and two.dump_id == "d2"
    assert "the service lists no such dump" in two.chain[-1].detail  # the board said stored; the service has none


def test_spooled_dumps_dropped_skipped_or_still_waiting():
    events = [
        ev("crash", 1.0, app="a", sig=SIG_A), ev("dump-skipped", 1.05, reason="optout", app="a", sig=SIG_A),
        ev("crash", 2.0, app="a", sig=SIG_B), ev("upload-fail", 2.1, reason="connect", sig=SIG_B, upload_id=UID_1),
        ev("crash", 3.0, app="a", sig=SIG_C), ev("upload-fail", 3.1, reason="bad-response", sig=SIG_C,
                                                  upload_id=UID_2),
        # a spooled dump whose signature became throttled: dropped (the skip prints no upload id)
        ev("dump-skipped", 6.0, reason="throttled", sig=SIG_C, spooled="1"),
        ev("crash", 7.0, app="a", sig=SIG_A),  # no outcome line ever came
    ]  # fmt: skip
    res = ScenarioResult("r", "r.yaml", boards=[BoardRecord("b-1", events=events)])
    fates = [c.fate for c in crash_outcomes(res)]
    assert fates == ["skipped", "in-spool", "dropped", "no-outcome"]


def test_a_dump_is_found_by_upload_id_when_the_board_printed_no_id():
    res = offline_story()
    spooled_ok = res.boards[0].events[9]
    del spooled_ok.fields["id"]
    spooled = crash_outcomes(res)[1]
    assert spooled.dump_id == "d-spooled" and spooled.stored_at == T0 + 6.7 + 72 * 3600


def test_the_summary_counts_a_dump_stored_from_the_spool():
    res = offline_story()
    assert _stats(res) == {"crashes": "3", "stored": "2.0 s", "restart": "60 ms"}  # median of 0.35 s and 3.7 s
    res.boards[0].events = res.boards[0].events[4:10]  # only the spooled crash
    assert _stats(res)["stored"] == "3.7 s"


def test_results_json_keeps_chains_and_clock_jumps(tmp_path):
    res = offline_story()
    res.crashes = crash_outcomes(res)
    save_results([res], str(tmp_path / "r.json"))
    (back,) = load_results(str(tmp_path / "r.json"))
    assert back.crashes == res.crashes and back.jumps == res.jumps
    assert back.crashes[1].chain[3].what == "stored" and back.dumps[1].upload_id == UID_1


def test_one_episode_iterator_serves_restart_and_stored_expectations():
    res = offline_story()
    events = {"remote-1": res.boards[0].events}
    assert [ep.crash.t for _, ep in board_episodes(events, ["remote-1"], "crashapp")] == [1.0, 3.0, 8.0]
    assert list(board_episodes(events, ["remote-1"], "other")) == []
    evidence = Evidence({"remote-1": "e" * 128}, events, [])
    restarted = AppRestarted(within=5.0, boards=["remote-1"]).evaluate(evidence)
    assert restarted.passed and "3 crash(es)" in restarted.detail
    stored = StoredWithin(within=5.0, boards=["remote-1"]).evaluate(evidence)
    # the spooled crash was stored from the spool within 5 s; the refused one was not stored
    assert not stored.passed and "was not stored (fail:http-400)" in stored.detail and "3.00s" not in stored.detail
    late = StoredWithin(within=2.0, boards=["remote-1"], app="crashapp").evaluate(
        Evidence({}, {"remote-1": res.boards[0].events[:10]}, [])
    )
    assert not late.passed and "stored from the spool 3.700s after the crash" in late.detail and not late.late


def test_episode_pairing_is_unchanged_for_the_first_outcome():
    eps = crash_episodes(offline_story().boards[0].events)
    assert [e.outcome_name for e in eps] == ["stored", "fail:connect", "fail:http-400"]
    assert eps[1].stored is not None and eps[1].stored.fields["id"] == "d-spooled" and not eps[1].in_spool


def test_durations_and_dates_for_people():
    assert [duration(x) for x in (0.0123, 0.35, 5, 59.94, 125, 3720, 72 * 3600, 74 * 3600 + 300)] == [
        "12 ms", "350 ms", "5.0 s", "59.9 s", "2 min 5 s", "1 h 2 min", "3 d", "3 d 2 h"]  # fmt: skip
    assert duration(None) == "-" and jump(72 * 3600) == "+3 d" and jump(-3600) == "-1 h"
    assert date(1796188478) == "2026-12-02 05:14:38 UTC" and date(0) == "-"
    assert is_epoch("at", 1796188478) and is_epoch("createdAt", 1796188478.5)
    assert not is_epoch("id", 1796188478) and not is_epoch("at", 12) and not is_epoch("at", True)


def test_what_the_clocks_read_before_and_after_a_warp():
    res = offline_story()
    before, after = dates_at(res, 4.0), dates_at(res, 5.0)
    assert before == {"service": T0 + 4.0, "remote-1": T0 + 4.0}
    assert after["service"] == pytest.approx(T0 + 5.0 + 72 * 3600)
    assert after["remote-1"] == pytest.approx(T0 + 5.0 + 72 * 3600 + 1)  # as the board said it
    rows = clock_rows(res)
    assert [r["what"] for r in rows] == ["start", "link down (remote-1)", "clock warp +3 d", "link up (remote-1)"]
    # a run that stopped with the link still down: no "link up" the scenario never did
    for i in res.intervals:
        if i.kind == "link-down":
            i.end = None
    assert [r["what"] for r in clock_rows(res)] == ["start", "link down (remote-1), until the end", "clock warp +3 d"]
    assert rows[0]["boards"] == rows[0]["service"] == date(T0)
    assert rows[2]["service"] == date(T0 + 4.5 + 72 * 3600) and rows[2]["boards"] == date(T0 + 4.5 + 72 * 3600 + 1)


def test_the_host_wall_clock_at_zero_comes_from_the_events_when_not_recorded():
    res = offline_story()
    res.t0_wall = 0.0
    assert dates_at(res, 1.0)["service"] == pytest.approx(T0 + 1.0)


# ---- the timeline's geometry

NS = "{http://www.w3.org/2000/svg}"


def text_boxes(svg: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Every text's box, 0.64 em a character (DejaVu Sans digits; most sans-serif letters are narrower)."""
    root = ET.fromstring(svg)
    size = float(root.get("font-size", "11"))
    out = []
    for t in root.iter(NS + "text"):
        text = "".join(t.itertext()).strip()
        title = t.find(NS + "title")
        if title is not None and title.text:
            text = text.replace(title.text.strip(), "", 1).strip()
        x, y, w = float(t.get("x")), float(t.get("y")), len(text) * 0.64 * size
        anchor = t.get("text-anchor", "start")
        x0 = x - w / 2 if anchor == "middle" else x - w if anchor == "end" else x
        out.append((text, (x0, y - 0.8 * size, x0 + w, y + 0.2 * size)))
    return out


def overlaps(svg: str) -> list[tuple[str, str]]:
    boxes = text_boxes(svg)
    bad = []
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(boxes):
        for b, (bx0, by0, bx1, by1) in boxes[i + 1 :]:
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                bad.append((a, b))
    return bad


def crowded() -> ScenarioResult:
    """Twenty steps in two seconds of a minute, markers 6 ms apart, repeated syncs, close warps, a
    crash every 0.4 s with its latencies."""
    events = [ev("crash", 10.0, app="a", sig="s1"), ev("upload-fail", 10.006, reason="connect", sig="s1"),
              ev("app-restart", 10.012, app="a", after_ms="12")]  # fmt: skip
    events += [ev("sync-ok", 20.0 + i * 0.001) for i in range(5)]
    for i in range(8):
        t = 30 + i * 0.4
        events += [ev("crash", t, app="a", sig=f"x{i}"), ev("upload-ok", t + 0.3, id=f"d{i}", sig=f"x{i}"),
                   ev("app-restart", t + 0.31, app="a", after_ms="310")]  # fmt: skip
    boards = [BoardRecord(f"field-{n}", events=list(events)) for n in (1, 2)]
    steps = [StepRecord(i, f"step {i}", 1.0 + i * 0.1, 1.05 + i * 0.1) for i in range(20)]
    steps.append(StepRecord(20, "late", 60.0, 61.0))
    jumps = [ClockJump(40.0, 72 * 3600, {"service": T0 + 3e5, "field-1": T0 + 3e5, "field-2": T0 + 3e5}),
             ClockJump(40.5, 3600, {"service": T0 + 3.1e5, "field-1": T0 + 3.1e5})]  # fmt: skip
    return ScenarioResult("crowded", "c.yaml", t0_wall=T0, boards=boards, steps=steps, jumps=jumps,
                          intervals=[Interval("link-down", 5.0, 12.0, board="field-1")])  # fmt: skip


def test_no_two_labels_overlap_on_a_crowded_timeline():
    svg = timeline_svg(crowded())
    assert overlaps(svg) == []
    texts = [t for t, _ in text_boxes(svg)]
    numbers = [t for t in texts if t.isdigit()]
    assert "1" in numbers and "21" in numbers and len(numbers) < 21  # thinned, never run together
    assert "+3 d" in texts and "+1 h" not in texts or overlaps(svg) == []


def test_markers_a_few_ms_apart_are_stacked_and_repeats_counted():
    svg = timeline_svg(crowded())
    root = ET.fromstring(svg)
    # crash, upload-fail and restart 6 ms apart on field-1: three markers at three heights
    crash_y = {c.get("cy") for c in root.iter(NS + "circle")}
    assert len(crash_y) >= 2  # the crashes 0.4 s apart (1.4 px) share a spot with their outcomes: stacked
    shapes = re.findall(r'<(?:circle|path|rect|line)[^>]*>(?:<title>)([^<]*)', svg)
    at_10 = [s for s in shapes if s.startswith("t=10.0")]
    assert len(at_10) == 6  # 3 markers on each board
    # five syncs within 4 ms: one marker with its count
    syncs = [s for s in shapes if s.startswith("t=20.000s sync-ok")]
    assert svg.count(">×5</text>") == 2 and len(syncs) == 2


def test_a_warp_is_a_marked_break_with_its_jump_and_the_dates():
    svg = timeline_svg(offline_story())
    assert overlaps(svg) == []
    texts = [t for t, _ in text_boxes(svg)]
    assert "+3 d" in texts
    after = "Thu 03 Dec"  # T0 is Mon 30 Nov 2026; three days later
    assert any(t.startswith("boards ") and after in t for t in texts)
    assert any(t.startswith("service ") and after in t for t in texts)
    assert any(t.startswith("boards Mon 30 Nov") for t in texts)  # the clocks at the start
    assert 'stroke="#6a3d9a"' in svg  # the zigzag
    assert 'stroke-dasharray="5,3"' in svg and "stored from the spool 3.7 s" in svg


def test_legend_labels_do_not_overlap():
    svg = legend_svg()
    assert overlaps(svg) == []
    texts = [t for t, _ in text_boxes(svg)]
    assert "OS component restarted" in texts and "clock warp (jump)" in texts and "stored from the spool" in texts


def test_the_report_tells_the_story_in_time():
    text = render_html([offline_story()])
    # the spooled crash's chain links to its stored dump, with the service's time
    assert 'href="#sc1-dump-d-spooled"' in text and 'id="sc1-dump-d-spooled"' in text
    assert "stored from the spool" in text and "in the service&#39;s store at 2026-12-03" in text
    assert "the board dated its crash 2026-11-30 00:53:23 UTC" in text
    assert "still" not in text.split("Crashes and where")[1].split("</table>")[0]  # nothing left in the spool
    assert ">lost<" in text
    # human times: audit and stored-dump times are dates, not epoch seconds
    assert str(int(T0 + 7 + 72 * 3600)) not in text and "2026-12-03 " in text
    assert "<th>stored at (service clock)</th>" in text
    assert "Clocks and faults" in text and "clock warp +3 d" in text
    assert "took 12.0 s of host time, while the clocks were warped +3 d" in text
    assert "<td class=\"num\">12.0 s <span class=\"muted\">(clocks +3 d)</span></td>" in text
    assert "<td class=\"num\">2.0 s</td>" in text  # median crash to stored, the spooled one counted


# ---- the runner records them (fake boards, the real service on loopback)


def test_the_runner_records_warps_with_the_clocks_and_each_crash_chain(tmp_path, fake_factory):
    from testbed.scenario.runner import QuietProgress, RunOptions, ScenarioRun
    from testbed.scenario.schema import scenario_from_data

    data = {
        "name": "warp-story",
        "groups": {"P/On": {"allow_crash_dumps": True, "boundary": "EU"}},
        "fleet": {"b": {"boards": 1, "group": "P/On", "apps": ["crashapp"]}},
        "steps": [{"sync": "all"}, {"crash": "all"}, {"wait": {"boards": "b-1", "event": "upload-ok"}},
                  {"link_down": "all"}, {"crash": {"boards": "all", "id": "off"}},
                  {"wait": {"boards": "b-1", "event": "app-restart", "count": 1}},
                  {"warp": {"by": "72h"}}, {"link_up": "all"}],
        "expect": [{"dump_stored": {"boards": "b-1", "count": 1}}],
    }  # fmt: skip
    sc = scenario_from_data(data, "<test>")
    run = ScenarioRun(sc, RunOptions(parallel=1, workdir=tmp_path, board_factory=fake_factory(), progress=QuietProgress()))
    res = run.run()
    assert not res.error, res.error
    (j,) = res.jumps
    assert j.seconds == 72 * 3600 and set(j.dates) == {"service", "b-1"}
    # both clocks said three days after the host's wall clock at the warp
    assert abs(j.dates["service"] - (res.t0_wall + j.t + 72 * 3600)) < 5
    assert abs(j.dates["b-1"] - (res.t0_wall + j.t + 72 * 3600)) < 5
    stored, offline = res.crashes
    assert stored.fate == "stored" and stored.dump_id == res.dumps[0].id and stored.stored_at == res.dumps[0].created
    assert offline.fate == "in-spool" and [link.what for link in offline.chain][:3] == ["crash", "failed", "spooled"]
    assert "clock warp +3 d" in render_html([res])


# ---- a recorded run: one QEMU board, the real service (scenario in the docstring)

RECORDED = Path(__file__).parent / "data" / "offline-spool-run.json"


def test_a_recorded_run_tells_its_story():
    """Recorded from `testbed scenario run` on a QEMU board (console, analysis and service log dropped):
    sync; crash (stored); link down; crash (upload-fail connect, spooled); warp 3 d; link up; sync
    (the spooled dump stored); a 400 fault; crash (lost)."""
    (res,) = load_results(str(RECORDED))
    recorded = res.crashes
    res.crashes = []
    assert crash_outcomes(res) == recorded  # the chains are a function of the events and the dumps
    assert [c.fate for c in recorded] == ["stored", "stored-from-spool", "lost"]
    spooled = recorded[1]
    dump = next(d for d in res.dumps if d.id == spooled.dump_id)
    assert dump.upload_id == spooled.upload_id and spooled.stored_at == dump.created
    (warp,) = res.jumps
    assert warp.seconds == 3 * 86400 and spooled.crash_at is not None
    assert spooled.crash_at < warp.dates["remote-1"] - 3 * 86400 + 5 < spooled.stored_at  # dated before, stored after
    svg = timeline_svg(res)
    assert overlaps(svg) == [] and "+3 d" in svg and "stored from the spool" in svg
    assert _stats(res)["stored"] != "-"
    text = render_html([res])
    assert f'href="#sc1-dump-{spooled.dump_id}"' in text and "Sat 05 Dec" in text


def test_a_latency_label_near_the_right_edge_is_drawn_to_the_left_of_its_end():
    events = [ev("crash", 9.0, app="a", sig=SIG_A), ev("upload-fail", 9.1, reason="connect", sig=SIG_A, upload_id=UID_1),
              ev("app-restart", 9.12, app="a", after_ms="120"),
              ev("upload-ok", 9.5, id="d", spooled="1", sig=SIG_A, upload_id=UID_1)]  # fmt: skip
    svg = timeline_svg(ScenarioResult("edge", "e.yaml", boards=[BoardRecord("b-1", events=events)]))
    assert "stored from the spool 500 ms</text>" in svg and "restart 120 ms</text>" in svg
    assert overlaps(svg) == []
    assert all(x1 <= 960 for _, (_, _, x1, _) in text_boxes(svg))
