"""The registry of actions and expectations, and what is derived from it: schema, builder, docs."""

from __future__ import annotations

import pytest

from testbed.board.protocols import Capability
from testbed.contract.events import DumpSkipReason, EventName
from testbed.scenario import reference
from testbed.scenario.api import ScenarioBuilder
from testbed.scenario.model import ScenarioError
from testbed.scenario.registry import ACTIONS, EXPECTATIONS
from testbed.scenario.schema import scenario_from_data


def test_docs_reference_tables_are_generated_from_the_registry():
    path = reference.docs_path()
    text = path.read_text(encoding="utf-8")
    assert reference.render_docs(text) == text, (
        "docs/scenarios.md's reference tables are stale: run `testbed scenario reference --write-docs`"
    )
    for name in (*ACTIONS, *EXPECTATIONS):
        assert f"| `{name}` |" in text


def test_board_operations_declare_their_capabilities():
    needs = {name: cls.needs for name, cls in ACTIONS.items()}
    assert Capability.LINK in needs["link_down"] and Capability.LINK in needs["link_up"]
    assert Capability.PAUSE in needs["pause"] and Capability.PAUSE in needs["resume"]
    assert Capability.RESET in needs["reboot"] and Capability.CLOCK in needs["warp"]
    assert Capability.EVENTS in needs["wait"] and Capability.COMMANDS in needs["crash"]
    assert not needs["service_fault"] and not needs["set_group"] and not needs["idle"]


def test_timing_and_functional_expectations_are_declared():
    assert {n for n, c in EXPECTATIONS.items() if c.timing} == {"app_restarted", "stored_within"}


def _data(step: dict | None = None, expect: dict | None = None) -> dict:
    return {"groups": {"P/G": {}}, "fleet": {"x": {"boards": 1, "group": "P/G"}},
            "steps": [step or {"sync": "all"}], "expect": [expect or {"dumps": {"count": 0}}]}  # fmt: skip


def test_the_schema_speaks_the_contracts_vocabulary():
    for event in EventName:
        sc = scenario_from_data(_data({"wait": {"boards": "x-1", "event": str(event)}}), "<t>")
        assert sc.steps[0].args["event"] == event
    for reason in DumpSkipReason:  # bad-core, read-error and intent included
        sc = scenario_from_data(_data(expect={"dump_skipped": {"reason": str(reason)}}), "<t>")
        assert sc.expect[0].args["reason"] == reason
    with pytest.raises(ScenarioError, match="did you mean 'upload-ok'"):
        scenario_from_data(_data({"wait": {"boards": "x-1", "event": "upload-okay"}}), "<t>")


def test_the_builder_has_every_action_and_expectation():
    builder = ScenarioBuilder("b").group("P/G").fleet("x", group="P/G")
    for name in ACTIONS:
        assert callable(getattr(builder, name)) and name in dir(builder)
        if name not in ("wait", "check"):  # these two have their own signatures
            assert ACTIONS[name].help in getattr(builder, name).__doc__
    for kind in EXPECTATIONS:
        assert callable(getattr(builder, f"expect_{kind}"))
    sc = builder.sync("all").link_down("x-1").expect_dumps(count=0).expect_no_request(boards="x-1").build()
    assert [s.action for s in sc.steps] == ["sync", "link_down"] and [e.kind for e in sc.expect] == ["dumps", "no_request"]
    with pytest.raises(AttributeError):
        builder.no_such_action  # noqa: B018


def test_typed_fields_reach_the_instances():
    sc = scenario_from_data(_data({"crash": {"boards": "x-1", "heap_kib": 64, "id": "b2"}},
                                  {"app_restarted": {"within": "5s", "upload_slack": "250ms"}}), "<t>")  # fmt: skip
    crash, check = sc.steps[0].op, sc.expect[0].check
    assert (crash.boards, crash.app, crash.mode, crash.heap_kib, crash.id) == (["x-1"], "crashapp", "segv", 64, "b2")
    assert (check.within, check.upload_slack, check.boards) == (5.0, 0.25, ["x-1"])
    assert sc.expect[0].text == "app_restarted: within=5s boards=x-1 upload_slack=250ms"


def test_reasons_are_the_contracts():
    ok = scenario_from_data(_data({"wait": {"boards": "x-1", "event": "upload-fail", "where": {"reason": "http-503"}}},
                                  {"upload": {"result": "fail", "reason": "timeout"}}), "<t>")  # fmt: skip
    assert ok.steps[0].args["where"] == {"reason": "http-503"}
    with pytest.raises(ScenarioError, match=r"step 1/1, field 'wait.where.reason'.*did you mean 'throttled'"):
        scenario_from_data(_data({"wait": {"boards": "x-1", "event": "dump-skipped", "where": {"reason": "throttle"}}}), "<t>")
    with pytest.raises(ScenarioError, match=r"expectation 1/1, field 'upload.reason'.*upload-fail has no reason 'timed-out'"):
        scenario_from_data(_data(expect={"upload": {"result": "fail", "reason": "timed-out"}}), "<t>")
