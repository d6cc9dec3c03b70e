"""`scenario run`, `demo` and `load run` write their reports to one default place, and say where."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from testbed import settings
from testbed.cli import main


@pytest.fixture
def no_boards(monkeypatch):
    """The runner replaced by one that runs nothing (this tests where the CLI writes, not a run)."""
    import testbed.scenario.runner as runner

    monkeypatch.setattr(runner, "run_scenarios", lambda scenarios, options: [])


@pytest.mark.parametrize("args", [["scenario", "run", "scenarios/demo-eu-field-story.yaml"], ["demo"]],
                         ids=["scenario run", "demo"])
def test_scenario_run_and_demo_write_their_report_under_the_one_default_place(tmp_path, monkeypatch, no_boards, args):
    from testbed.paths import REPO_ROOT

    monkeypatch.chdir(tmp_path)
    args = [str(REPO_ROOT / a) if a.endswith(".yaml") else a for a in args]
    result = CliRunner().invoke(main, args)
    written = sorted((tmp_path / settings.REPORTS_DIR).glob("*.html"))
    assert len(written) == 1, result.output
    # the path is printed at the end
    assert str(written[0].resolve()) in result.output.strip().splitlines()[-1], result.output


def test_load_run_defaults_to_the_same_place(tmp_path, monkeypatch):
    from testbed.load import cli

    seen = []

    def fake_run(opts):
        seen.append(opts.out_dir)
        return {"scenario": "sizes", "output_dir": str(tmp_path / opts.out_dir), "requests": {}, "counters": {},
                "checks": {"locust_ran": {"ok": True}}}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "run_scenario", fake_run)
    result = CliRunner().invoke(main, ["load", "run", "sizes"])
    assert result.exit_code == 0, result.output
    assert seen[0].parent == settings.REPORTS_DIR and seen[0].name.startswith("load-sizes-")
    assert result.output.strip().splitlines()[-1] == f"report: {tmp_path / seen[0] / 'summary.html'}"
    assert Path(settings.REPORTS_DIR) == Path("reports")  # README, docs and the fresh-root check name it
