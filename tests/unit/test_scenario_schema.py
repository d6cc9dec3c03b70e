"""Scenario loader: valid files load; every mistake names file, line and field before any board boots."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from testbed.scenario.schema import (
    ScenarioError,
    load_scenario,
    load_scenarios,
    parse_duration,
    scenario_from_data,
)

GOOD = """\
name: eu-story
description: an EU fleet
groups:
  DW100/Field: {allow_crash_dumps: Enabled, boundary: EU}
  DW100/Lab: {}
fleet:
  eu: {boards: 2, group: DW100/Field, apps: [crashapp]}
steps:
  - sync: all
  - crash: {boards: eu-1, app: crashapp, mode: segv}
  - wait: {boards: eu-1, event: upload-ok, timeout: 10s}
  - at: 20s
    link_down: eu-2
  - service_fault: {mode: delay, delay: 8s}
  - service_clear:
  - warp: 49h
  - set_group: {group: all, allow_crash_dumps: false, via: cli}
  - check:
      - dump_stored: {boards: eu-1, region: EU}
expect:
  - app_restarted: {app: crashapp, within: 5s}
  - no_request: eu-2
  - dump_skipped: {boards: eu, reason: stale-sync, count: 1}
"""


def write(tmp_path: Path, text: str, name: str = "sc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_file_loads_with_defaults_and_lines(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.name == "eu-story"
    assert sc.boards == ["eu-1", "eu-2"]
    assert sc.groups["DW100/Field"].allow_crash_dumps is True
    assert sc.groups["DW100/Field"].boundary == "EU"
    assert sc.groups["DW100/Lab"].boundary == "None"
    sync, crash, wait, link, fault, clear, warp, setg, check = sc.steps
    assert sync.args["boards"] == ["eu-1", "eu-2"] and sync.args["timeout"] == 20.0
    assert crash.args == {"boards": ["eu-1"], "app": "crashapp", "mode": "segv", "heap_kib": None, "id": None}
    assert wait.args["timeout"] == 10.0 and wait.line == 11
    assert link.at == 20.0 and link.args["boards"] == ["eu-2"]
    assert fault.args["delay"] == 8.0
    assert clear.action == "service_clear"
    assert warp.args == {"by": 49 * 3600.0, "service": True, "boards": ["eu-1", "eu-2"]}
    assert setg.args["group"] == ["DW100/Field", "DW100/Lab"] and setg.args["via"] == "cli"
    assert [c.kind for c in check.checks] == ["dump_stored"]
    assert [e.kind for e in sc.expect] == ["app_restarted", "no_request", "dump_skipped"]
    assert sc.expect[0].args["within"] == 5.0 and sc.expect[0].line == 21
    assert sc.expect[2].args["boards"] == ["eu-1", "eu-2"]
    assert [e.kind for _, e in sc.all_expectations()] == ["dump_stored", "app_restarted", "no_request", "dump_skipped"]


@pytest.mark.parametrize(
    "old,new,line,field,words",
    [
        ("allow_crash_dumps: Enabled", "alow_crash_dumps: Enabled", 4, "groups.DW100/Field.alow_crash_dumps",
         "did you mean 'allow_crash_dumps'"),
        ("apps: [crashapp]", "apps: [crashapp, crashsv]", 7, "fleet.eu.apps[1]", "did you mean 'crashsvc'"),
        ("{boards: eu-1, app: crashapp, mode: segv}", "{boards: eu-1, app: crashsvc}", 10, "steps[1].crash.app",
         "does not run app 'crashsvc'"),
        ("{boards: eu-1, app: crashapp, mode: segv}", "{boards: eu-1, mode: explode}", 10, "steps[1].crash.mode",
         "expected one of segv, abort, fpe, stack"),
        ("timeout: 10s}", "timeout: soon}", 11, "steps[2].wait.timeout", "expected a duration"),
        ("boards: 2,", "boards: two,", 7, "fleet.eu.boards", "whole number"),
        ("link_down: eu-2", "link_down: eu-3", 13, "steps[3].link_down.boards", "unknown board or fleet 'eu-3'"),
        ("  - sync: all", "  - snyc: all", 9, "steps[0].snyc", "did you mean 'sync'"),
        ("within: 5s}", "within: 5s, apps: crashapp}", 21, "expect[0].app_restarted.apps", "did you mean 'app'"),
        ("  - no_request: eu-2", "  - no_requests: eu-2", 22, "expect[1].no_requests", "did you mean 'no_request'"),
        ("reason: stale-sync", "reason: stale", 23, "expect[2].dump_skipped.reason", "expected one of"),
        ("boundary: EU}", "boundary: Europe}", 4, "groups.DW100/Field.boundary", "expected one of None, EU"),
        ("group: DW100/Field, apps", "group: DW100/Fields, apps", 7, "fleet.eu.group", "did you mean 'DW100/Field'"),
        ("{mode: delay, delay: 8s}", "{mode: delay}", 14, "steps[4].service_fault.delay", "needs a delay"),
        ("  - at: 20s", "  - at: 20s\n    sync: all", 14, "steps[3].link_down", "one action per step"),
        ("{boards: eu-1, app: crashapp, mode: segv}", "{app: crashapp, mode: segv}", 10, "steps[1].crash.boards",
         "missing (required): write `boards:` with `all`, a fleet (`eu`), a board (`eu-1`)"),
    ],
)
def test_mistakes_name_file_line_and_field(tmp_path, old, new, line, field, words):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), line, field), str(err)
    assert words in str(err)
    # a step or an expectation is counted from 1, as the progress lines count them ("step 3/9")
    place = re.match(r"(steps|expect)\[(\d+)\]\.?(.*)", field)
    if place:
        what = {"steps": "step", "expect": "expectation"}[place.group(1)]
        total = 9 if what == "step" else 3  # GOOD's steps and expectations
        assert str(err).startswith(f"{path}:{line}: {what} {int(place.group(2)) + 1}/{total}, field '{place.group(3)}': ")
    else:
        assert str(err).startswith(f"{path}:{line}: field '{field}': ")


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "name: x\ngroups:\n  a: [1, 2\nfleet: {}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.line in (3, 4) and "not valid YAML" in str(info.value)


def test_duplicate_key_is_an_error(tmp_path):
    path = write(tmp_path, GOOD.replace("  - sync: all", "  - sync: all\n    sync: eu-1"))
    with pytest.raises(ScenarioError, match="duplicate key 'sync'") as info:
        load_scenario(path)
    assert info.value.line == 10


def test_missing_sections_and_empty_file(tmp_path):
    with pytest.raises(ScenarioError, match="field 'fleet': missing"):
        load_scenario(write(tmp_path, "groups: {A/B: {}}\nsteps: [{sync: all}]\n"))
    with pytest.raises(ScenarioError, match="empty"):
        load_scenario(write(tmp_path, "", "empty.yaml"))
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "nope.yaml")
    no_expect = GOOD.split("expect:")[0].replace("  - check:\n      - dump_stored: {boards: eu-1, region: EU}\n", "")
    with pytest.raises(ScenarioError, match="at least one expectation"):
        load_scenario(write(tmp_path, no_expect, "noexp.yaml"))


def test_at_must_not_go_back_in_time(tmp_path):
    text = GOOD.replace("  - warp: 49h", "  - at: 5s\n    warp: 49h")
    with pytest.raises(ScenarioError, match="before an earlier step") as info:
        load_scenario(write(tmp_path, text))
    assert info.value.field == "steps[6].at"


def test_count_and_min_are_exclusive(tmp_path):
    text = GOOD.replace("reason: stale-sync, count: 1}", "reason: stale-sync, count: 1, min: 1}")
    with pytest.raises(ScenarioError, match="either count or min/max"):
        load_scenario(write(tmp_path, text))


def test_all_files_are_checked_before_anything_runs(tmp_path):
    good = write(tmp_path, GOOD, "a.yaml")
    bad = write(tmp_path, GOOD.replace("app: crashapp, mode", "app: crashap, mode"), "b.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenarios([good, bad])
    assert info.value.file == str(bad)
    with pytest.raises(ScenarioError, match="also used by"):
        load_scenarios([good, good])


def test_python_dicts_validate_the_same_way():
    data = {
        "groups": {"P/G": {"allow_crash_dumps": True}},
        "fleet": {"f": {"boards": 1, "group": "P/G", "apps": ["crashapp"]}},
        "steps": [{"sync": "all"}, {"crash": {"boards": "f-1", "app": "crashapp"}}],
        "expect": [{"dump_stored": "f-1"}],
    }
    sc = scenario_from_data(data, "<python>")
    assert sc.expect[0].args["boards"] == ["f-1"]
    data["steps"][1]["crash"]["app"] = "nope"
    with pytest.raises(ScenarioError, match="<python>: step 2/2, field 'crash.app'"):
        scenario_from_data(data, "<python>")


@pytest.mark.parametrize(
    "text,seconds",
    [(5, 5.0), (2.5, 2.5), ("500ms", 0.5), ("5s", 5.0), ("2m", 120.0), ("48h", 172800.0), ("29d", 29 * 86400.0),
     ("1h30m", 5400.0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5", "five", "-1s", True, -3, "5 parsecs"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_shipped_scenarios_all_load():
    root = Path(__file__).resolve().parents[2] / "scenarios"
    files = sorted(root.glob("*.yaml"))
    for sc in load_scenarios(files):
        assert sc.boards
