"""`--boards N`: fleets resize, selectors as written are resolved again, expectations name the boards used."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from testbed.scenario.cli import scenario as scenario_cli
from testbed.scenario.model import ScenarioError
from testbed.scenario.scale import scale_fleet
from testbed.scenario.schema import load_scenario, scenario_from_data
from tests.unit.test_scenario_schema import GOOD, write

#: A one-board fleet named by its board (`field-1`) in some places and by the fleet in others.
ONE_BOARD = {
    "name": "one-board",
    "groups": {"P/G": {"allow_crash_dumps": True}},
    "fleet": {"field": {"boards": 1, "group": "P/G", "apps": ["crashapp"]}},
    "steps": [{"sync": "all"}, {"crash": "field-1"}, {"wait": {"boards": "field", "event": "upload-ok"}},
              {"check": [{"dump_stored": "field-1"}]}],
    "expect": [{"dump_stored": {"boards": "field-1", "count": 1}}, {"upload": {"boards": "field"}},
               {"no_request": None}],
}  # fmt: skip


def test_scale_fleet_keeps_fleet_selectors_and_rejects_lost_boards(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    big = scale_fleet(sc, 4)
    assert big.boards == ["eu-1", "eu-2", "eu-3", "eu-4"]
    assert big.steps[0].args["boards"] == big.boards  # "all" grows with the fleet
    assert big.steps[1].args["boards"] == ["eu-1"]  # a named board stays itself
    with pytest.raises(ScenarioError, match="eu-2 does not exist with --boards 1"):
        scale_fleet(sc, 1)


def test_a_board_name_on_a_one_board_fleet_stays_one_board_and_says_so():
    sc = scenario_from_data(ONE_BOARD, "<one>")
    warnings: list[str] = []
    big = scale_fleet(sc, 3, warn=warnings.append)
    assert big.boards == ["field-1", "field-2", "field-3"]
    assert big.steps[1].args["boards"] == ["field-1"]  # the board named: one board, as written
    assert big.steps[2].args["boards"] == big.boards  # the fleet named: the whole fleet
    assert big.steps[3].checks[0].args["boards"] == ["field-1"]
    stored, upload, no_request = big.expect
    assert stored.args["boards"] == ["field-1"] and upload.args["boards"] == big.boards
    assert no_request.args["boards"] == big.boards  # the default (all boards) grows
    # every label names the boards actually used
    assert stored.text == stored.name == "dump_stored: boards=field-1 count=1"
    assert upload.text == "upload: boards=field-1,field-2,field-3 result=ok"
    assert big.steps[1].describe() == "crash boards=field-1 app=crashapp mode=segv"
    # the places that named the whole (one-board) fleet board by board are said, once per fleet
    (warning,) = warnings
    assert warning == ("<one>: with --boards 3, fleet field grows to field-1, field-2, field-3, but step 2 (crash), "
                       "step 4 check 1 (dump_stored) and expectation 1 (dump_stored) name its board field-1 and stay "
                       "on it; write `field` to act on the whole fleet")  # fmt: skip
    # the original is unchanged
    assert sc.boards == ["field-1"] and sc.expect[1].args["boards"] == ["field-1"]


def test_a_fleet_that_does_not_grow_is_not_warned_about():
    sc = scenario_from_data(ONE_BOARD, "<one>")
    warnings: list[str] = []
    assert scale_fleet(sc, 1, warn=warnings.append).boards == ["field-1"]
    assert warnings == []


def test_named_expectations_keep_their_names_and_defaults_are_made_again():
    data = {**ONE_BOARD, "expect": [{"name": "the crash is stored", "dump_stored": "field-1"},
                                    {"upload": {"boards": "field"}}, {"upload": {"boards": "all"}}]}  # fmt: skip
    big = scale_fleet(scenario_from_data(data, "<one>"), 2)
    assert [e.name for e in big.expect] == ["the crash is stored", "upload: boards=field-1,field-2 result=ok",
                                            "upload: boards=field-1,field-2 result=ok #2"]  # fmt: skip


def test_check_with_boards_shows_the_resized_scenario_and_the_warning(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("groups: {P/G: {allow_crash_dumps: true}}\nfleet: {field: {boards: 1, group: P/G}}\n"
                    "steps:\n  - sync: all\n  - crash: field-1\nexpect:\n  - dump_stored: field-1\n")  # fmt: skip
    out = CliRunner().invoke(scenario_cli, ["check", "--boards", "2", str(path)])
    assert out.exit_code == 0, out.output
    assert "one, 2 board(s)" in out.stdout
    assert out.stderr.startswith(f"warning: {path}: with --boards 2, fleet field grows to field-1, field-2, but "
                                 "step 2 (crash, line 5) and expectation 1 (dump_stored, line 7) name its board field-1")
    out = CliRunner().invoke(scenario_cli, ["check", str(path)])
    assert out.exit_code == 0 and "1 board(s)" in out.stdout and not out.stderr


def test_a_long_list_of_places_is_cut_short():
    data = {**ONE_BOARD, "steps": [*ONE_BOARD["steps"], {"sync": "field-1"}, {"crash": "field-1"}]}
    warnings: list[str] = []
    scale_fleet(scenario_from_data(data, "<one>"), 2, warn=warnings.append)
    (warning,) = warnings
    assert "but step 2 (crash), step 4 check 1 (dump_stored), step 5 (sync) and 2 more name its board field-1" in warning
