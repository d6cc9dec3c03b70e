"""The pytest plugin as a user's project sees it: a pytest run in a folder outside the repo,
with the installed plugin only (no conftest), no board."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from testbed.pytest_outputs import folder_name

USER_TEST = textwrap.dedent(
    '''
    import pytest
    from testbed.pytest_outputs import record_output

    pytestmark = pytest.mark.e2e  # registered by the plugin: --strict-markers accepts it


    @pytest.fixture
    def log_file(request, testbed_out):
        path = testbed_out / "console.log"
        path.write_text("hello from the board\\n")
        record_output(request, "my console log", path)
        return path


    def test_passes(log_file):
        assert log_file.exists()


    @pytest.mark.load
    def test_fails(log_file):
        assert log_file.read_text() == "something else"
    '''
)


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--strict-markers", *args],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_outputs_go_to_one_folder_per_test_and_their_paths_are_printed(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_user.py").write_text(USER_TEST)
    out = tmp_path / "out"
    proc = run_pytest(project, "--testbed-out", str(out), "-rP")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text  # one passed, one failed; no marker or collection error
    assert "1 failed, 1 passed" in text, text
    for name in ("test_passes", "test_fails"):
        log = out / folder_name(f"test_user.py::{name}") / "console.log"
        assert log.read_text() == "hello from the board\n"
        # in the test's report section (the failure, and -rP for the pass) and the end summary
        assert text.count(f"my console log: {log}") == 1, text
        assert f"test_user.py::{name}: {log.parent} (my console log)" in text, text
    assert text.count("testbed outputs") == 3, text  # two report sections and the summary


def test_outputs_default_to_the_tests_tmp_path(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_user.py").write_text(USER_TEST)
    base = tmp_path / "base"
    proc = run_pytest(project, "--basetemp", str(base), "-k", "test_passes")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert (base / "test_passes0" / "console.log").exists()
    assert f"test_user.py::test_passes: {base / 'test_passes0'} (my console log)" in text, text


def test_every_fixture_of_the_plugin_is_documented(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, "--fixtures")
    text = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ours = text[text.index("fixtures defined from testbed"):]
    for name in ("board", "board_pool", "board_image", "board_snapshot", "service", "service_process",
                 "control", "tenant_admin", "device_group", "claimed_device", "support_client",
                 "scenario_runner", "inventory_boards", "testbed_out"):  # fmt: skip
        assert f"\n{name} " in ours, f"{name} is not a fixture of the plugin"
    assert "no docstring available" not in ours, ours


def test_folder_names_are_one_path_component() -> None:
    assert folder_name("tests/test_a.py::test_b[x-1]") == "tests_test_a.py__test_b_x-1"
    assert "/" not in folder_name("a/b/../c.py::d")
    assert folder_name("::") == "test"


def test_many_tests_are_summed_up_as_their_common_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_many.py").write_text(textwrap.dedent(
        '''
        import pytest
        from testbed.pytest_outputs import record_output

        @pytest.mark.parametrize("i", range(40))
        def test_one(i, request, testbed_out):
            record_output(request, "a file", testbed_out / "f")
        '''
    ))  # fmt: skip
    proc = run_pytest(project, "--testbed-out", str(tmp_path / "out"))
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert f"40 tests, one folder each under {tmp_path / 'out'} " in text, text
