"""Expectations can be named (YAML and Python); unnamed ones are named by kind and arguments, uniquely."""

from __future__ import annotations

import pytest

from testbed.scenario import reference
from testbed.scenario.api import ScenarioBuilder
from testbed.scenario.model import ScenarioError
from testbed.scenario.registry import EXPECTATIONS
from testbed.scenario.schema import load_scenario

HEAD = """\
groups: {P/G: {allow_crash_dumps: true}}
fleet: {eu: {boards: 2, group: P/G}}
steps:
  - sync: all
  - check:
      - {name: first look, dumps: {count: 0}}
      - dumps: {count: 0}
expect:
"""


def load(tmp_path, expect: str):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + expect)
    return path, load_scenario(path)


def test_names_next_to_the_kind_or_among_its_fields_and_defaults(tmp_path):
    _, sc = load(tmp_path, "  - name: eu-1 stored once\n    dump_stored: {boards: eu-1, count: 1}\n"
                           "  - no_request: {boards: eu-2, name: eu-2 silent}\n"
                           "  - dumps: {count: 0}\n"
                           "  - no_request: eu-2\n")  # fmt: skip
    names = [e.name for _, e in sc.all_expectations()]
    assert names == ["first look", "dumps: boards=eu-1,eu-2 count=0", "eu-1 stored once", "eu-2 silent",
                     "dumps: boards=eu-1,eu-2 count=0 #2", "no_request: boards=eu-2"]  # fmt: skip
    # the text says what it checks, without the name
    assert sc.expect[0].text == "dump_stored: boards=eu-1 count=1" and sc.expect[1].text == "no_request: boards=eu-2"
    assert sc.expect[0].check.label == "eu-1 stored once"


@pytest.mark.parametrize("expect,line,field,words", [
    ("  - {name: first look, dumps: {count: 1}}\n", 9, "expect[0].name", "the name 'first look' is also that of "
     "steps[1].check[0] (line 6); names are unique in a scenario"),
    ("  - name: x\n    dumps: {count: 1, name: y}\n", 9, "expect[0].name", "named twice"),
    ("  - name: ''\n    dumps: {count: 1}\n", 9, "expect[0].name", "cannot be empty"),
    ("  - name: x\n", 9, "expect[0]", "exactly one of"),
])  # fmt: skip
def test_bad_names_are_refused_with_file_line_and_field(tmp_path, expect, line, field, words):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + expect)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert (info.value.line, info.value.field) == (line, field)
    assert words in info.value.message


def test_the_builder_names_expectations_too():
    sc = (ScenarioBuilder("named").group("P/G").fleet("eu", group="P/G").sync("all")
          .check(("dumps", {"count": 0, "name": "nothing yet"}))
          .expect("dump_stored", boards="eu-1", name="stored").expect_no_request(boards="eu-1").build())  # fmt: skip
    assert [e.name for _, e in sc.all_expectations()] == ["nothing yet", "stored", "no_request: boards=eu-1"]


def test_every_expectation_lists_name_in_the_reference_table():
    table = reference.expectations_table()
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert len(rows) == len(EXPECTATIONS) and all("`name` text" in r for r in rows)
    assert "`name` text" not in reference.steps_table()  # a step's name is beside its action, not a field
