"""The scenario checker reports every mistake of a file at once (file, line, field, suggestion),
counts steps and expectations from 1 as the progress lines do, and says when an expectation was
written as a step or a step as an expectation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from testbed.scenario.model import ScenarioError, describe_field
from testbed.scenario.schema import load_scenario, load_scenarios

FOUR_MISTAKES = """\
groups:
  DW100/Field: {alow_crash_dumps: true}
fleet:
  eu: {boards: 2, group: DW100/Field}
steps:
  - sync: all
  - crash: {boards: eu-1, mode: explode}
  - wiat: {boards: eu-1, event: upload-ok}
expect:
  - dump_stored: {boards: eu-3}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def mistakes(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


def test_every_mistake_of_a_file_is_reported_at_once_with_file_line_field_and_suggestion(tmp_path):
    path = write(tmp_path, FOUR_MISTAKES)
    err = mistakes(path)
    assert [(e.line, e.field) for e in err.errors] == [
        (2, "groups.DW100/Field.alow_crash_dumps"), (7, "steps[1].crash.mode"), (8, "steps[2].wiat"),
        (10, "expect[0].dump_stored.boards"),
    ]  # fmt: skip
    assert all(e.file == str(path) for e in err.errors)
    lines = str(err).splitlines()
    assert lines == [
        f"{path}:2: field 'groups.DW100/Field.alow_crash_dumps': unknown field (did you mean 'allow_crash_dumps'?); "
        "allowed: allow_crash_dumps, boundary",
        f"{path}:7: step 2/3, field 'crash.mode': expected one of segv, abort, fpe, stack, got 'explode'",
        f"{path}:8: step 3/3, field 'wiat': unknown action (did you mean 'wait'?); actions: " + lines[2].split("actions: ")[1],
        f"{path}:10: expectation 1/1, field 'dump_stored.boards': unknown board or fleet 'eu-3' (did you mean 'eu-2'?); "
        "known: all, eu, eu-1, eu-2",
        f"4 mistakes in {path}",
    ]  # fmt: skip
    # the first mistake is also the error's own place (for callers that read one)
    assert (err.file, err.line, err.field) == (str(path), 2, "groups.DW100/Field.alow_crash_dumps")


def test_several_wrong_fields_of_one_step_are_all_reported(tmp_path):
    text = FOUR_MISTAKES.replace("{boards: eu-1, mode: explode}", "{boards: eu-9, mode: explode, heap_kib: lots}")
    fields = [e.field for e in mistakes(write(tmp_path, text)).errors]
    assert {"steps[1].crash.boards", "steps[1].crash.mode", "steps[1].crash.heap_kib"} <= set(fields)


def test_a_misspelt_required_field_is_one_mistake_not_two(tmp_path):
    text = FOUR_MISTAKES.replace("wiat: {boards: eu-1, event: upload-ok}", "wait: {boards: eu-1, evnt: upload-ok}")
    err = mistakes(write(tmp_path, text))
    step3 = [e for e in err.errors if e.field.startswith("steps[2]")]
    assert [e.field for e in step3] == ["steps[2].wait.evnt"] and "did you mean 'event'" in step3[0].message


def test_a_wrong_fleet_or_group_does_not_bring_mistakes_in_the_steps_that_name_them(tmp_path):
    text = """\
    groups:
      DW100/Field: {boundary: Europe}
    fleet:
      eu: {boards: two, group: DW100/Field, apps: [crashap]}
    steps:
      - crash: {boards: eu-2, app: crashapp}
      - set_group: {group: DW100/Field, allow_crash_dumps: true}
    expect:
      - dump_stored: eu
    """
    err = mistakes(write(tmp_path, text))
    assert [e.field for e in err.errors] == ["groups.DW100/Field.boundary", "fleet.eu.boards", "fleet.eu.apps[0]"]


def test_steps_expectations_and_checks_are_counted_from_one():
    assert describe_field("steps[2].crash.app", {"steps": 12}) == ("step 3/12", "crash.app")
    assert describe_field("steps[0]", {}) == ("step 1", "")
    assert describe_field("steps[4].check[0].dumps.count", {"steps": 5}) == ("step 5/5, check 1", "dumps.count")
    assert describe_field("expect[1].no_requests", {"expect": 2}) == ("expectation 2/2", "no_requests")
    assert describe_field("fleet.eu.boards", {"steps": 3}) == ("", "fleet.eu.boards")
    err = ScenarioError("s.yaml", 4, "steps[0]", "a step is a mapping with one action, got text", {"steps": 2})
    assert str(err) == "s.yaml:4: step 1/2: a step is a mapping with one action, got text"


def test_a_check_steps_expectation_is_named_by_step_and_check(tmp_path):
    text = FOUR_MISTAKES.replace("  - wiat: {boards: eu-1, event: upload-ok}\n",
                                 "  - check:\n      - dumps: {count: 1}\n      - dumps: {cont: 1}\n")  # fmt: skip
    err = mistakes(write(tmp_path, text))
    (check,) = [e for e in err.errors if "check" in e.field]
    assert check.field == "steps[2].check[1].dumps.cont" and check.line == 10
    assert f"{check.file}:10: step 3/3, check 2, field 'dumps.cont': unknown field (did you mean 'count'?)" in str(err)


def test_an_expectation_written_as_a_step_gets_a_hint(tmp_path):
    text = FOUR_MISTAKES.replace("  - wiat: {boards: eu-1, event: upload-ok}", "  - dumps: {count: 1}")
    err = mistakes(write(tmp_path, text))
    (step,) = [e for e in err.errors if e.field == "steps[2].dumps"]
    assert step.message.startswith("'dumps' is an expectation, not an action: it belongs under `expect:`")
    assert "`- check: [{dumps: ...}]`" in step.message


def test_an_action_written_as_an_expectation_gets_a_hint(tmp_path):
    text = FOUR_MISTAKES.replace("  - dump_stored: {boards: eu-3}", "  - wait: {boards: eu-1, event: upload-ok}")
    err = mistakes(write(tmp_path, text))
    (exp,) = [e for e in err.errors if e.field.startswith("expect")]
    assert exp.field == "expect[0].wait" and exp.line == 10
    assert exp.message.startswith("'wait' is a step (an action), not an expectation: it belongs under `steps:`")


def test_every_file_is_checked_and_every_mistake_of_each_reported(tmp_path):
    a = write(tmp_path, FOUR_MISTAKES, "a.yaml")
    b = write(tmp_path, FOUR_MISTAKES.replace("mode: explode", "mode: segv"), "b.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenarios([a, b])
    assert [e.file for e in info.value.errors] == [str(a)] * 4 + [str(b)] * 3
    assert str(info.value).endswith(f"7 mistakes in {a}, {b}")


def test_scenario_check_prints_every_mistake(tmp_path):
    from testbed.scenario import cli

    path = write(tmp_path, FOUR_MISTAKES)
    result = CliRunner().invoke(cli.scenario, ["check", str(path)])
    assert result.exit_code == 1
    for line, words in ((2, "did you mean 'allow_crash_dumps'"), (7, "step 2/3, field 'crash.mode'"),
                        (8, "step 3/3, field 'wiat'"), (10, "expectation 1/1")):  # fmt: skip
        assert f"{path}:{line}: " in result.output and words in result.output
    assert f"4 mistakes in {path}" in result.output


def test_duplicate_keys_are_reported_with_the_other_mistakes(tmp_path):
    text = FOUR_MISTAKES.replace("  - sync: all\n", "  - sync: all\n    sync: eu-1\n")
    err = mistakes(write(tmp_path, text))
    assert [e.line for e in err.errors] == [2, 7, 8, 9, 11]
    assert err.errors[1].message == "duplicate key 'sync' (first at line 6)" and err.errors[1].field == ""
    assert f"{err.file}:7: duplicate key 'sync' (first at line 6)" in str(err).splitlines()


def test_a_near_miss_of_the_other_sections_name_is_suggested_there(tmp_path):
    text = FOUR_MISTAKES.replace("  - wiat: {boards: eu-1, event: upload-ok}", "  - dump_store: eu-1")
    text = text.replace("  - dump_stored: {boards: eu-3}", "  - link_dwn: eu-1")
    err = mistakes(write(tmp_path, text))
    step, exp = [e for e in err.errors if e.line in (8, 10)]
    assert "unknown action (did you mean the expectation 'dump_stored', under `expect:`?)" in step.message
    assert "unknown expectation (did you mean the step 'link_down', under `steps:`?)" in exp.message


def test_a_wait_without_boards_waits_on_every_board(tmp_path):
    # the way a new user first writes it: `wait: {event: upload-ok}`
    path = write(tmp_path, """\
        groups:
          DW100/Field: {allow_crash_dumps: true}
        fleet:
          field: {boards: 2, group: DW100/Field}
        steps:
          - wait: {event: upload-ok}
          - wait: {boards: field-2, event: upload-ok}
        expect:
          - dumps: {count: 2}
        """)
    sc = load_scenario(path)
    assert sc.steps[0].op.boards == ["field-1", "field-2"]
    assert sc.steps[1].op.boards == ["field-2"]
